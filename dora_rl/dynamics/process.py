"""The run-time world a controller lives in: links, contention, churn, load, battery, jobs, QoE.

:class:`RuntimeDynamics` turns a scenario's ``dynamics`` section into a reproducible sequence of
:class:`WorldState` values, one per control interval. Every exogenous process (link rates, cross
traffic, devices leaving, background load, jobs starting and stopping, QoE changes) is generated
vectorised in chunks of :data:`CHUNK_STEPS` intervals, continuing the Markov chains exactly from
one chunk to the next; a step only reads one row of each chunk and drains the batteries, so it
costs a few microseconds. All randomness comes from the generator passed to ``reset``/``step``.

Time scales (seconds; converted to intervals with ``interval_s``) are module constants below.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from numpy.typing import NDArray

from dora_rl.config import Scenario
from dora_rl.costmodel.state import State
from dora_rl.dynamics.daily import DailyProfiles, at_times, hourly_series, load_profiles, rate_steps
from dora_rl.dynamics.synthetic import (
    CROSS_TRAFFIC_CAP,
    contention_bursts,
    link_dips,
    synthetic_bandwidth,
    two_state_chain,
)
from dora_rl.dynamics.traces import (
    LINK_SCALE_MAX,
    SPLITS,
    Trace,
    default_traces_dir,
    load_traces,
    split_traces,
    trace_scale,
)
from dora_rl.errors import ConfigError, DoraError

Bandwidth = Literal["trace", "synthetic", "static"]
A = TypeVar("A", bound=NDArray[Any])
CHUNK_STEPS = 512  # intervals generated at once (where synthetic levels and bursts are redrawn)
# Time scales in seconds, converted to intervals with ``interval_s``:
ABSENCE_S = 600.0  # mean time a device that left stays away (exponential)
LOAD_DWELL_S = 60.0  # mean time a device stays idle, or busy with other users' work
LOAD_MIN = 0.1  # smallest background load of a busy device (capped at background_load_max)
JOB_ACTIVE_S, JOB_INACTIVE_S = 300.0, 120.0  # mean active / inactive time of jobs 2, 3, ...
QOE_NORMAL_S, QOE_CHANGED_S = 600.0, 120.0  # mean time between QoE changes, and their length
QOE_LEVELS = (0.8, 1.0, 1.25)  # multipliers a job's time targets jump to (< 1 tighter)
WIRED_GAP_S, WIRED_DIP_S = 900.0, 2.0  # mean time between dips of a wired link, dip length
SYNTH_HOLD_S, SYNTH_FADES_PER_S, SYNTH_FADE_S = 10.0, 0.01, (2.0, 6.0)  # synthetic WiFi
BURST_GAP_S, BURST_S = 60.0, 8.0  # mean quiet time between traffic bursts, burst length


@dataclass(frozen=True)
class WorldState:
    """What the world looks like during one control interval.

    Arrays are read-only views; copy them before changing anything.

    Attributes:
        state: Links, availability, load, battery and cross traffic of the interval.
        job_active: Whether each job (card order) has work this interval.
        qoe_scale: Multiplier on each job's time targets (1 = the card's targets, < 1 tighter).
        step: Interval index since ``reset`` (0 at reset).
        rate_scale: Multiplier on each job's request rate (1 = the card's rate; None: 1 for
            every job), a multiple of :data:`~dora_rl.dynamics.daily.RATE_STEP`.
        hour: Hour of the day the interval starts at, in [0, 24).
    """

    state: State
    job_active: NDArray[np.bool_]
    qoe_scale: NDArray[np.float64]
    step: int
    rate_scale: NDArray[np.float64] | None = None
    hour: float = 0.0


def _fast_state(link_scale: NDArray[np.float64], available: NDArray[np.bool_],
                load: NDArray[np.float64], battery_wh: NDArray[np.float64],
                cross_traffic: NDArray[np.float64], medium_share: NDArray[np.float64]) -> State:
    """A State built without re-running its range checks (~20 us) the process already ensures."""
    state = object.__new__(State)
    state.__dict__.update(link_scale=link_scale, available=available, load=load,
                          battery_wh=battery_wh, cross_traffic=cross_traffic,
                          medium_share=medium_share)
    return state


def _frozen(a: A) -> A:
    a.flags.writeable = False
    return a


class RuntimeDynamics:
    """Reproducible run-time dynamics of a scenario, one :class:`WorldState` per interval.

    Args:
        scenario: The validated scenario.
        bandwidth: ``trace`` (WiFi devices replay measured traces), ``synthetic`` (generated
            levels and fades) or ``static`` (nominal links and baseline cross traffic); None
            uses the card's ``dynamics.bandwidth``.
        traces_dir: Folder of traces; None uses the card's ``dynamics.traces_dir`` (relative to
            the card) or else :func:`~dora_rl.dynamics.traces.default_traces_dir`. Only files
            named ``*_wifi.csv`` or without a ``_wifi``/``_cellular`` suffix are used.
        split: Which of the project's own traces (by file) to replay: ``train``,
            ``validation`` or ``test``; every trace of any other folder is replayed.
        interval_s: Length of one step in seconds.
        job_churn: Whether jobs other than the first start and stop.
        qoe_changes: Whether jobs' time targets change now and then.

    Behaviour (see the module constants for the time scales):

    - WiFi devices (on a ``wifi`` domain) each replay their own trace from a random offset,
      wrapping at the end (trace): scaled by the trace's 95th percentile (the card's
      ``dynamics.trace_units: relative``, the default) or divided by the device's
      ``link_mbps`` (``absolute``: the recorded rates), clipped to [0, 1.2],
      or follow :func:`~dora_rl.dynamics.synthetic.synthetic_bandwidth` (synthetic); wired
      devices get rare short dips (static: everything exactly 1.0).
    - WiFi domains add :func:`~dora_rl.dynamics.synthetic.contention_bursts` to the card's
      ``cross_traffic`` (static: the baseline); always at most 0.94.
    - Devices with ``can_leave`` leave with probability ``churn_per_hour * interval_s / 3600``
      per step and come back after an exponential absence; when every device can leave, the
      first one never does, so at least one device is always available.
    - Each device alternates idle and busy; when busy its load is uniform in
      ``[min(0.1, max), background_load_max]`` (one draw per busy period).
    - Batteries drain by ``energy_per_device_j / 3600`` Wh per step, never recharge and never go
      below 0; below ``battery_floor * capacity`` a device reports ``battery_wh = 0``, so
      :attr:`State.usable` drops it (the charge keeps its true value internally).
    - The first job is always active; the others alternate active and inactive.
    - A job's ``qoe_scale`` jumps to one of :data:`QOE_LEVELS` and returns to 1.0 later.
    - With ``load_profiles``, an episode starts on a random day of the split at a random hour
      (or ``start_hour``); a job with ``rate_profile`` runs at that column's multiplier
      (:mod:`dora_rl.dynamics.daily`) and a domain with ``cross_traffic_profile`` has its
      cross traffic scaled by its column, bursts included.
    - Intervals longer than a second see averages: a trace's mean over the interval's
      seconds, and dips and bursts shorter than the interval spread over it.
    """

    def __init__(self, scenario: Scenario, bandwidth: Bandwidth | None = None,
                 traces_dir: str | Path | None = None, split: str = "train",
                 interval_s: float = 1.0, job_churn: bool = True,
                 qoe_changes: bool = True) -> None:
        dyn = scenario.dynamics
        self.scenario = scenario
        self.bandwidth: Bandwidth = bandwidth if bandwidth is not None else dyn.bandwidth
        if self.bandwidth not in ("trace", "synthetic", "static"):
            raise DoraError(f"bandwidth must be trace, synthetic or static, got {bandwidth!r}")
        if split not in SPLITS:
            raise DoraError(f"split must be one of {list(SPLITS)}, got {split!r}")
        if not (math.isfinite(interval_s) and interval_s > 0):
            raise DoraError(f"interval_s must be a positive number, got {interval_s}")
        self.split, self.interval_s = split, float(interval_s)
        self.job_churn, self.qoe_changes = job_churn, qoe_changes
        kinds = {d.name: d.kind for d in scenario.network.domains}
        devices = scenario.devices
        self.n_devices, self.n_jobs = len(devices), len(scenario.jobs)
        self.wifi = np.array([kinds[d.network.domain] == "wifi" for d in devices])
        self.wifi_domains = np.array([d.kind == "wifi" for d in scenario.network.domains])
        self.base_cross = np.minimum([d.cross_traffic for d in scenario.network.domains],
                                     CROSS_TRAFFIC_CAP).astype(np.float64)
        self.can_leave = np.array([d.can_leave for d in devices], dtype=bool)
        if self.can_leave.all():
            self.can_leave[0] = False
        self.capacity_wh = np.array([d.battery_wh or np.nan for d in devices])
        self._batteries = [(d, c * dyn.battery_floor) for d, c in
                           enumerate(self.capacity_wh.tolist()) if not math.isnan(c)]
        self.churn_per_hour, self.load_max = dyn.churn_per_hour, dyn.background_load_max
        self.traces: list[Trace] = []
        self._scaled: list[NDArray[np.float64]] = []
        if self.bandwidth == "trace" and self.wifi.any():
            if traces_dir is None and dyn.traces_dir is not None:
                traces_dir = Path(scenario.base_dir) / dyn.traces_dir
            directory = Path(traces_dir) if traces_dir is not None else default_traces_dir()
            every = load_traces(directory, kind="wifi")
            # the split keeps the project's own walks apart for training and testing; a
            # user's folder is replayed whole
            own = directory.resolve() == default_traces_dir().resolve()
            self.traces = split_traces(every, split) if own else every
            if not self.traces:
                raise ConfigError(str(directory), "", f"no trace in split {split!r} "
                                  f"({len(every)} traces in all; at least 3 are needed)")
            self._scaled = [trace_scale(t.mbps) for t in self.traces]
        self.trace_units = dyn.trace_units
        self._link_mbps = np.array([d.network.link_mbps for d in devices])
        self._absolute: dict[tuple[int, int], NDArray[np.float64]] = {}
        self._share = _frozen(np.ones(len(scenario.network.domains)))
        self.profiles: DailyProfiles | None = None
        self.profile_days: NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        """Indices of the load profile's days in the split (empty without a profile)."""
        self._rate_cols: list[tuple[int, int]] = []  # (job, column) pairs
        self._cross_cols: list[tuple[int, int]] = []  # (domain, column) pairs
        if dyn.load_profiles is not None:
            self._read_profiles(scenario, Path(scenario.base_dir) / dyn.load_profiles)
        self._day, self._hour0 = 0, 0.0
        self._world: WorldState | None = None

    def link_multipliers(self, trace: int, device: int) -> NDArray[np.float64]:
        """Link-rate multipliers of ``device`` replaying trace number ``trace``, one a second:
        the trace over its 95th percentile (``trace_units: relative``) or over the device's
        ``link_mbps`` (``absolute``), clipped to [0, 1.2]."""
        if self.trace_units == "relative":
            return self._scaled[trace]
        key = (trace, device)
        if key not in self._absolute:
            rates = self.traces[trace].mbps / self._link_mbps[device]
            self._absolute[key] = np.clip(rates, 0.0, LINK_SCALE_MAX)
        return self._absolute[key]

    def trace_multipliers(self, device: int) -> NDArray[np.float64]:
        """Every trace's :meth:`link_multipliers` for ``device``, end to end (empty without
        traces)."""
        if not self.traces:
            return np.zeros(0)
        return np.concatenate([self.link_multipliers(i, device) for i in range(len(self.traces))])

    def _read_profiles(self, scenario: Scenario, path: Path) -> None:
        profiles = self.profiles = load_profiles(path)
        self.profile_days = profiles.split(self.split)

        def columns(field: str, names: list[str | None]) -> list[tuple[int, int]]:
            """(index, column) of every item naming a column, each name checked."""
            out = []
            for i, name in enumerate(names):
                if name is None:
                    continue
                if name not in profiles.columns:
                    raise ConfigError(scenario.source, field.format(i),
                                      f"no column {name!r} in {path.name} (columns: "
                                      f"{', '.join(profiles.columns)})")
                out.append((i, profiles.column(name)))
            return out

        self._rate_cols = columns("jobs[{}].rate_profile",
                                  [job.rate_profile for job in scenario.jobs])
        self._cross_cols = columns("network.domains[{}].cross_traffic_profile",
                                   [d.cross_traffic_profile for d in scenario.network.domains])

    def _steps(self, seconds: float) -> float:
        return seconds / self.interval_s

    # ------------------------------------------------------------------ public API
    @property
    def world(self) -> WorldState:
        """The WorldState last returned by :meth:`reset` or :meth:`step`."""
        if self._world is None:
            raise DoraError("RuntimeDynamics: call reset() before reading the world")
        return self._world

    def reset(self, rng: np.random.Generator) -> WorldState:
        """Start a new episode: pick traces and offsets, draw initial states; return step 0."""
        n = self.n_devices
        self._t = 0
        if self._scaled:  # distinct traces while there are enough, each from a random second
            self._pick = np.zeros(n, dtype=np.int64)
            wifi = np.flatnonzero(self.wifi)
            k = len(self._scaled)
            self._pick[wifi] = rng.choice(k, size=wifi.size, replace=wifi.size > k)
            self._offset = np.array([rng.integers(self._scaled[i].size) for i in self._pick])
            self._series = [self.link_multipliers(int(i), d) for d, i in enumerate(self._pick)]
        self._present = np.ones(n, dtype=bool)
        self._busy = np.zeros(n, dtype=bool)
        self._load_level = np.zeros(n)
        if self.load_max > 0:
            self._busy = rng.random(n) < 0.5
            self._load_level = rng.uniform(min(LOAD_MIN, self.load_max), self.load_max, size=n)
        self._active = np.ones(self.n_jobs, dtype=bool)
        self._qoe_changed = np.zeros(self.n_jobs, dtype=bool)
        self._qoe_level = np.ones(self.n_jobs)
        self._charge = self.capacity_wh.tolist()
        self._battery = _frozen(self.capacity_wh.copy())
        self._battery_list = self.capacity_wh.tolist()
        if self.profiles is not None:
            start = self.scenario.dynamics.start_hour
            self._day = int(rng.integers(self.profile_days.size))
            self._hour0 = float(rng.uniform(0.0, 24.0)) if start is None else float(start)
        self._fill(rng, 0)
        return self._emit(0)

    def step(self, rng: np.random.Generator,
             energy_per_device_j: NDArray[np.float64] | Sequence[float] | None = None
             ) -> WorldState:
        """Advance one interval; ``energy_per_device_j`` (J per device) drains the batteries.

        Raises:
            DoraError: called before :meth:`reset`, or the energy is not finite and >= 0.
        """
        if self._world is None:
            raise DoraError("RuntimeDynamics: call reset() before step()")
        if energy_per_device_j is not None and self._batteries:
            energy = energy_per_device_j
            if not (isinstance(energy, list) and len(energy) == self.n_devices):
                energy = np.asarray(energy, dtype=np.float64)  # (a list needs no conversion)
            self._drain(energy)
        self._t += 1
        row = self._t - self._chunk_start
        if row >= CHUNK_STEPS:
            self._fill(rng, self._t)
            row = 0
        return self._emit(row)

    # ------------------------------------------------------------------ internals
    def _drain(self, energy: NDArray[np.float64] | list[float]) -> None:
        """Drain each battery (Python floats: a handful of devices, cheaper than NumPy)."""
        if isinstance(energy, np.ndarray):
            if energy.shape != (self.n_devices,):
                raise DoraError(f"energy_per_device_j: shape {energy.shape}, "
                                f"not ({self.n_devices},)")
            energy = energy.tolist()
        joules, charge = energy, self._charge
        reported = list(charge)
        for d, floor in self._batteries:
            used = joules[d]
            if not 0.0 <= used < math.inf:
                raise DoraError(f"energy_per_device_j[{d}] must be finite and >= 0, got {used}")
            left = charge[d] - used / 3600.0
            charge[d] = 0.0 if left < 0.0 else left  # max(left, 0.0) without a builtin call
            reported[d] = 0.0 if charge[d] < floor else charge[d]
        self._battery = _frozen(np.array(reported))
        self._battery_list = reported

    @property
    def charge_wh(self) -> NDArray[np.float64]:
        """True remaining charge per device (NaN on mains), even below the battery floor."""
        return np.array(self._charge)

    def _emit(self, row: int) -> WorldState:
        state = _fast_state(self._link[row], self._avail[row], self._load[row], self._battery,
                            self._cross[row], self._share)
        # the State's list views (the env's hot path), converted row by row: converting the
        # whole chunk at once made thousands of lists that lived on, which kept the garbage
        # collector busy in long runs
        battery = self._battery_list
        usable = self._avail[row].tolist()  # present and, on a battery, not empty (NaN: mains)
        for d, _ in self._batteries:
            if usable[d]:
                b = battery[d]
                usable[d] = b != b or b > 0
        state.__dict__["lists"] = (self._load[row].tolist(), usable, self._link[row].tolist(),
                                   self._free[row].tolist())
        state.__dict__["usable"] = np.array(usable)  # State.usable, from the list just made
        world = object.__new__(WorldState)  # as _fast_state: no frozen-dataclass __init__
        world.__dict__.update(state=state, job_active=self._jobs[row], qoe_scale=self._qoe[row],
                              step=self._t,
                              rate_scale=self._rate[row] if self._rate is not None else None,
                              hour=(self._hour0 + self._t * self.interval_s / 3600.0) % 24.0)
        self._world = world
        return world

    def _fill(self, rng: np.random.Generator, start: int) -> None:
        """Generate the next CHUNK_STEPS rows of every process, from step ``start``."""
        self._chunk_start = start
        self._link = _frozen(self._links(rng, start))
        self._cross = _frozen(self._cross_traffic(rng))
        self._avail = _frozen(self._churn(rng))
        self._load = _frozen(self._background(rng))
        self._jobs = _frozen(self._job_activity(rng))
        self._qoe = _frozen(self._qoe_scale(rng))
        self._rate = self._rates(start)
        self._free = (1.0 - self._cross) * self._share

    def _profile(self, column: int, start: int) -> NDArray[np.float64]:
        """A profile column's multiplier at the start of each interval of the chunk."""
        assert self.profiles is not None
        hours = self._hour0 + (start + np.arange(CHUNK_STEPS, dtype=np.float64)) \
            * (self.interval_s / 3600.0)
        days = int(hours[-1] // 24) + 1
        series = hourly_series(self.profiles, column, self.profile_days, self._day)
        if series.size < days * 24:  # an episode longer than the split's days wraps
            series = np.tile(series, -(-days * 24 // series.size))
        return at_times(series, hours)

    def _rates(self, start: int) -> NDArray[np.float64] | None:
        """Each job's rate multiplier per interval of the chunk (None: no job's rate varies,
        and the world says so, which spares the hot path)."""
        if not self._rate_cols:
            return None
        out = np.ones((CHUNK_STEPS, self.n_jobs))
        for j, column in self._rate_cols:
            out[:, j] = rate_steps(self._profile(column, start))
        return _frozen(out)

    def _links(self, rng: np.random.Generator, start: int) -> NDArray[np.float64]:
        out = np.ones((CHUNK_STEPS, self.n_devices))
        if self.bandwidth == "static":
            return out
        seconds = np.floor((start + np.arange(CHUNK_STEPS)) * self.interval_s).astype(np.int64)
        fades = (max(1, round(self._steps(SYNTH_FADE_S[0]))),
                 max(1, round(self._steps(SYNTH_FADE_S[1]))))
        width = max(1, int(self.interval_s))  # seconds a trace averages over per interval
        spread = min(1.0, WIRED_DIP_S / self.interval_s)  # a short dip spread over its interval
        for d in range(self.n_devices):
            if not self.wifi[d]:
                dips = link_dips(rng, CHUNK_STEPS, mean_gap=self._steps(WIRED_GAP_S),
                                 mean_dip=self._steps(WIRED_DIP_S))
                out[:, d] = dips if spread == 1.0 else 1.0 - (1.0 - dips) * spread
            elif self.bandwidth == "trace":
                scaled = self._series[d]
                at = self._offset[d] + seconds[:, None] + np.arange(width)[None, :]
                out[:, d] = scaled[at[:, 0] % scaled.size] if width == 1 else \
                    scaled[at % scaled.size].mean(axis=1)
            else:
                out[:, d] = synthetic_bandwidth(
                    rng, CHUNK_STEPS, mean_hold=self._steps(SYNTH_HOLD_S),
                    fade_prob=min(1.0, SYNTH_FADES_PER_S * self.interval_s), fade_steps=fades)
        return out

    def _cross_traffic(self, rng: np.random.Generator) -> NDArray[np.float64]:
        out = np.tile(self.base_cross, (CHUNK_STEPS, 1))
        if self.bandwidth != "static":
            spread = min(1.0, BURST_S / self.interval_s)  # a burst's airtime over its interval
            for w in np.flatnonzero(self.wifi_domains):
                base = float(self.base_cross[w])
                bursts = contention_bursts(rng, CHUNK_STEPS, base,
                                           mean_gap=self._steps(BURST_GAP_S),
                                           mean_burst=self._steps(BURST_S))
                out[:, w] = bursts if spread == 1.0 else base + (bursts - base) * spread
        for dom, column in self._cross_cols:
            out[:, dom] = np.clip(out[:, dom] * self._profile(column, self._chunk_start), 0.0,
                                CROSS_TRAFFIC_CAP)
        return out

    def _churn(self, rng: np.random.Generator) -> NDArray[np.bool_]:
        out = np.ones((CHUNK_STEPS, self.n_devices), dtype=bool)
        if self.churn_per_hour <= 0:
            return out
        mean_present = self._steps(3600.0 / self.churn_per_hour)
        for d in np.flatnonzero(self.can_leave):
            on, _ = two_state_chain(rng, CHUNK_STEPS, bool(self._present[d]), mean_present,
                                    self._steps(ABSENCE_S))
            out[:, d] = on
            self._present[d] = on[-1]
        return out

    def _levels(self, rng: np.random.Generator, on_before: bool, level_before: float,
                mean_on: float, mean_off: float, values: NDArray[np.float64] | None,
                off_value: float) -> tuple[NDArray[np.float64], bool, float]:
        """A two-state chain whose on segments hold a level (uniform or from ``values``)."""
        on, seg = two_state_chain(rng, CHUNK_STEPS, on_before, mean_on, mean_off)
        n_seg = int(seg[-1]) + 1
        if values is None:
            lv = rng.uniform(min(LOAD_MIN, self.load_max), self.load_max, size=n_seg)
        else:
            lv = rng.choice(values, size=n_seg)
        if on_before:
            lv[0] = level_before
        out = np.where(on, lv[seg], off_value)
        return out, bool(on[-1]), float(lv[seg[-1]])

    def _background(self, rng: np.random.Generator) -> NDArray[np.float64]:
        out = np.zeros((CHUNK_STEPS, self.n_devices))
        if self.load_max <= 0:
            return out
        dwell = self._steps(LOAD_DWELL_S)
        for d in range(self.n_devices):
            out[:, d], self._busy[d], self._load_level[d] = self._levels(
                rng, bool(self._busy[d]), float(self._load_level[d]), dwell, dwell, None, 0.0)
        return out

    def _job_activity(self, rng: np.random.Generator) -> NDArray[np.bool_]:
        out = np.ones((CHUNK_STEPS, self.n_jobs), dtype=bool)
        if not self.job_churn:
            return out
        for j in range(1, self.n_jobs):
            on, _ = two_state_chain(rng, CHUNK_STEPS, bool(self._active[j]),
                                    self._steps(JOB_ACTIVE_S), self._steps(JOB_INACTIVE_S))
            out[:, j] = on
            self._active[j] = on[-1]
        return out

    def _qoe_scale(self, rng: np.random.Generator) -> NDArray[np.float64]:
        out = np.ones((CHUNK_STEPS, self.n_jobs))
        if not self.qoe_changes:
            return out
        levels = np.array(QOE_LEVELS)
        for j in range(self.n_jobs):
            out[:, j], self._qoe_changed[j], self._qoe_level[j] = self._levels(
                rng, bool(self._qoe_changed[j]), float(self._qoe_level[j]),
                self._steps(QOE_CHANGED_S), self._steps(QOE_NORMAL_S), levels, 1.0)
        return out
