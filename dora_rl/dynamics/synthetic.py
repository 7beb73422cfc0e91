"""Synthetic run-time processes: link-rate multipliers, contention bursts and two-state chains.

Every function draws only from the ``np.random.Generator`` it is given and works in steps (the
caller converts seconds to steps); outputs are float64 arrays of length ``n_steps``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from dora_rl.dynamics.traces import LINK_SCALE_MAX

FloatArray = NDArray[np.float64]

CROSS_TRAFFIC_CAP = 0.94
"""Largest cross-traffic fraction a generator returns (always < 0.95)."""


def leave_probability(mean_steps: float) -> float:
    """Per-step probability of leaving a state whose mean dwell is ``mean_steps`` (geometric).

    Dwell times shorter than one step are one step; an infinite mean never leaves.

    Example:
        >>> leave_probability(4.0), leave_probability(0.5), leave_probability(math.inf)
        (0.25, 1.0, 0.0)
    """
    if math.isinf(mean_steps):
        return 0.0
    return 1.0 / max(float(mean_steps), 1.0)


def _geometric(rng: np.random.Generator, p: float, size: int, cap: int) -> NDArray[np.int64]:
    if p <= 0.0:
        return np.full(size, cap + 1, dtype=np.int64)
    return rng.geometric(p, size=size).astype(np.int64)


def two_state_chain(rng: np.random.Generator, n_steps: int, start_on: bool, mean_on: float,
                    mean_off: float) -> tuple[NDArray[np.bool_], NDArray[np.intp]]:
    """A two-state Markov chain over ``n_steps`` steps, generated segment by segment.

    Dwell times are geometric with means ``mean_on`` and ``mean_off`` steps (``math.inf``: the
    state is never left). The chain is memoryless, so a call continues a previous one exactly:
    the first segment is in ``start_on``'s state and its remaining length may be zero.

    Args:
        rng: Source of randomness.
        n_steps: Number of steps.
        start_on: State just before the first step.
        mean_on: Mean dwell in the on state, in steps.
        mean_off: Mean dwell in the off state, in steps.

    Returns:
        ``on[n_steps]`` and ``segment[n_steps]``: the state at each step and the index of its
        segment (0 is the continued one; segments alternate between the two states).

    Example:
        >>> on, seg = two_state_chain(np.random.default_rng(0), 50, True, 5.0, 5.0)
        >>> bool(np.all(on == (seg % 2 == 0)))
        True
    """
    if n_steps <= 0:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.intp)
    p = (leave_probability(mean_on), leave_probability(mean_off))
    if not start_on:
        p = (p[1], p[0])
    finite = [m for m in (mean_on, mean_off) if not math.isinf(m)] or [float(n_steps)]
    m = max(4, int(2.0 * n_steps / max(sum(finite), 1.0)) + 4)
    parts: list[NDArray[np.int64]] = []
    total = 0
    while total < n_steps:
        lengths = np.empty(2 * m, dtype=np.int64)
        lengths[0::2] = _geometric(rng, p[0], m, n_steps)
        lengths[1::2] = _geometric(rng, p[1], m, n_steps)
        if not parts:
            lengths[0] -= 1
        parts.append(lengths)
        total += int(lengths.sum())
    all_lengths = np.concatenate(parts)
    seg = np.repeat(np.arange(all_lengths.size), all_lengths)[:n_steps]
    on = (seg % 2 == 0) if start_on else (seg % 2 == 1)
    return on, seg


def _fade_steps(rng: np.random.Generator, n_steps: int, prob: float,
                length: tuple[int, int]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Steps inside fades and the fade each belongs to (fades start with ``prob`` per step)."""
    starts = np.flatnonzero(rng.random(n_steps) < prob)
    lens = rng.integers(length[0], length[1] + 1, size=starts.size)
    fade = np.repeat(np.arange(starts.size), lens)
    offset = np.arange(fade.size) - np.repeat(np.cumsum(lens) - lens, lens)
    idx = starts[fade] + offset
    keep = idx < n_steps
    return idx[keep], fade[keep]


def synthetic_bandwidth(rng: np.random.Generator, n_steps: int, *, mean_hold: float = 10.0,
                        levels: tuple[float, float] = (0.3, 1.1), fade_prob: float = 0.01,
                        fade_steps: tuple[int, int] = (2, 6), fade_depth: float = 0.05,
                        jitter: float = 0.03) -> FloatArray:
    """Link-rate multipliers in ``[0, 1.2]``: held levels, deep fades and a little jitter.

    The rate holds a level drawn uniformly from ``levels`` for a geometric number of steps (mean
    ``mean_hold``), then jumps to a new one. Independently, with probability ``fade_prob`` per step
    a deep fade starts: for ``fade_steps`` steps (uniform integer, inclusive) the rate drops to a
    level uniform in ``[0, fade_depth]``, as when a walker loses the access point. Every sample is
    finally multiplied by ``1 + jitter * N(0, 1)`` and clipped to ``[0, 1.2]``.

    Args:
        rng: Source of randomness.
        n_steps: Number of samples.
        mean_hold: Mean hold time of a level, in steps.
        levels: Range of the held levels (fractions of the nominal link rate).
        fade_prob: Probability per step that a deep fade starts.
        fade_steps: Shortest and longest fade, in steps.
        fade_depth: Largest multiplier during a fade.
        jitter: Relative standard deviation of the per-step noise.

    Example:
        >>> x = synthetic_bandwidth(np.random.default_rng(1), 1000)
        >>> bool(x.min() >= 0.0 and x.max() <= 1.2), bool((x < 0.1).any())
        (True, True)
    """
    p = leave_probability(mean_hold)
    holds = rng.geometric(p, size=max(4, int(2 * n_steps * p) + 4))
    while holds.sum() < n_steps:
        holds = np.concatenate([holds, rng.geometric(p, size=holds.size)])
    seg = np.repeat(np.arange(holds.size), holds)[:n_steps]
    x = rng.uniform(levels[0], levels[1], size=holds.size)[seg]
    idx, fade = _fade_steps(rng, n_steps, fade_prob, fade_steps)
    x[idx] = rng.uniform(0.0, fade_depth, size=int(fade.max(initial=-1)) + 1)[fade]
    if jitter > 0:
        x *= 1.0 + jitter * rng.standard_normal(n_steps)
    return np.clip(x, 0.0, LINK_SCALE_MAX)


def contention_bursts(rng: np.random.Generator, n_steps: int, base: float, *,
                      mean_gap: float = 60.0, mean_burst: float = 8.0,
                      burst: tuple[float, float] = (0.1, 0.4),
                      jitter: float = 0.01) -> FloatArray:
    """Cross-traffic fractions in ``[0, 0.95)``: household bursts on top of ``base``.

    Quiet gaps (geometric, mean ``mean_gap`` steps) alternate with bursts (mean ``mean_burst``
    steps) that add a fraction uniform in ``burst`` (one draw per burst), e.g. a video call or a
    backup sharing the medium. Gaussian jitter of standard deviation ``jitter`` is added and the
    result clipped to ``[0, 0.94]``.

    Args:
        rng: Source of randomness.
        n_steps: Number of samples.
        base: Long-run cross traffic without bursts (the card's ``cross_traffic``), in [0, 1].
        mean_gap: Mean quiet time between bursts, in steps.
        mean_burst: Mean burst length, in steps.
        burst: Range of the extra airtime a burst takes.
        jitter: Standard deviation of the per-step noise.

    Example:
        >>> x = contention_bursts(np.random.default_rng(2), 1000, 0.2)
        >>> bool(x.min() >= 0.0 and x.max() < 0.95 and x.max() > 0.3)
        True
    """
    if not 0.0 <= base <= 1.0:
        raise ValueError(f"base must be in [0, 1], got {base}")
    on, seg = two_state_chain(rng, n_steps, False, mean_burst, mean_gap)
    extra = rng.uniform(burst[0], burst[1], size=int(seg[-1]) + 1 if n_steps else 0)[seg]
    x = base + np.where(on, extra, 0.0)
    if jitter > 0:
        x = x + jitter * rng.standard_normal(n_steps)
    return np.clip(x, 0.0, CROSS_TRAFFIC_CAP)


def link_dips(rng: np.random.Generator, n_steps: int, *, mean_gap: float = 900.0,
              mean_dip: float = 2.0, depth: tuple[float, float] = (0.2, 0.8)) -> FloatArray:
    """Multipliers of a wired link: 1.0 with rare short dips to a level uniform in ``depth``.

    Example:
        >>> x = link_dips(np.random.default_rng(3), 5000, mean_gap=100.0)
        >>> bool((x == 1.0).mean() > 0.9 and x.min() >= 0.2)
        True
    """
    on, seg = two_state_chain(rng, n_steps, False, mean_dip, mean_gap)
    level = rng.uniform(depth[0], depth[1], size=int(seg[-1]) + 1 if n_steps else 0)[seg]
    return np.where(on, level, 1.0)
