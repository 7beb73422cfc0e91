"""Power modes, sleep and wake of the devices, and their energy over an interval: the rules
the interval model applies, public so that a live runtime applies exactly the same ones.

A device is in one power mode each interval: ``0`` nominal, ``v`` its ``v``-th slower ``dvfs``
level, or :data:`~dora_rl.world.devices.SLEEP`. A device some plan uses (or is switching to)
cannot sleep (the request is refused and it keeps its mode), nor can one that is not dedicated
or has no sleep state; a sleeping device asked to work wakes: it is unusable for ``wake_s``
and pays ``wake_j`` once. A device whose thermal model says it is hot runs no faster than
its ``throttle_level`` whatever mode was asked for (the firmware's cap, not a refusal).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from dora_rl.costmodel.formulas import device_temperature_c
from dora_rl.world.devices import SLEEP, DeviceEnergy, DeviceFacts, interval_energy


@dataclass(frozen=True)
class PowerStep:
    """The devices' power state for one interval.

    Attributes:
        modes: Each device's mode.
        wake_left_s: Seconds until each device is awake, at the interval's start.
        woke: Woke at the interval's start (pays one wake).
        refused: Requests the rules refused.
        throttled: Per device, its clock was capped by heat (empty: none was).
        chosen: The modes before the heat cap (empty: no cap applied), which are what the
            device returns to when it cools and what a "keep the modes" decision keeps.
    """

    modes: tuple[int, ...]
    wake_left_s: tuple[float, ...]
    woke: tuple[bool, ...]
    refused: int
    throttled: tuple[bool, ...] = ()
    chosen: tuple[int, ...] = ()

    def __init__(self, modes: tuple[int, ...], wake_left_s: tuple[float, ...],
                 woke: tuple[bool, ...], refused: int, throttled: tuple[bool, ...] = (),
                 chosen: tuple[int, ...] = ()) -> None:
        # as the generated frozen __init__, in one update of the instance dict (hot)
        self.__dict__.update(modes=modes, wake_left_s=wake_left_s, woke=woke, refused=refused,
                             throttled=throttled, chosen=chosen)

    @property
    def kept(self) -> tuple[int, ...]:
        """The modes to carry to the next interval (the ones chosen, before any heat cap)."""
        return self.chosen or self.modes


def apply_modes(facts: Sequence[DeviceFacts], before: Sequence[int],
                wake_left_s: Sequence[float], wanted: Sequence[int] | None,
                used: Collection[int], power_off_unused: bool = False,
                hot: Sequence[bool] | None = None) -> PowerStep:
    """The modes a request leads to (``wanted``, None keeps ``before``) given the devices a
    plan uses or is switching to. With ``power_off_unused`` (a card's ``unused_devices: off``)
    every device no plan uses is powered off, which the modes record as asleep: powering it
    back takes its wake time and energy like a wake. A device ``hot`` (per device, at the
    interval's start) runs at its thermal ``throttle_level`` or slower.

    Example:
        A device that may sleep sleeps; asked to sleep while a plan needs it, it is refused
        and wakes:

        >>> f = DeviceFacts(1.0, 2.0, 2.0, (5.0, 3.0), 0.1, 2.0, 4.0, True, None, 1e8, True, 0)
        >>> apply_modes([f], [0], [0.0], [SLEEP], used=()).modes
        (-1,)
        >>> apply_modes([f], [SLEEP], [0.0], [SLEEP], used=(0,))
        PowerStep(modes=(0,), wake_left_s=(2.0,), woke=(True,), refused=1, throttled=(), chosen=())
    """
    want = list(wanted) if wanted is not None else list(before)
    modes, wake, woke, refused = [], list(wake_left_s), [], 0
    for d, f in enumerate(facts):
        mode = want[d]
        if power_off_unused and d not in used:
            mode = SLEEP
        elif mode == SLEEP and (d in used or not f.can_sleep):
            refused += 1
            mode = before[d] if before[d] != SLEEP else 0
        if not -1 <= mode < f.n_modes:
            refused += 1
            mode = 0
        wakes = before[d] == SLEEP and mode != SLEEP
        if wakes:
            wake[d] = f.wake_s
        modes.append(mode)
        woke.append(wakes)
    chosen = tuple(modes)
    ran = capped_modes(facts, chosen, hot)  # the cap never wakes nor sleeps a device
    if ran == chosen:
        return PowerStep(chosen, tuple(wake), tuple(woke), refused)
    return PowerStep(ran, tuple(wake), tuple(woke), refused,
                     tuple(r != c for r, c in zip(ran, chosen, strict=True)), chosen)


def idle_temps(facts: Sequence[DeviceFacts]) -> tuple[float, ...]:
    """Every device's idle temperature, or empty when no device has a thermal model (the
    control state then carries no temperatures)."""
    if all(f.thermal is None for f in facts):
        return ()
    return tuple(f.idle_c for f in facts)


def heated(facts: Sequence[DeviceFacts], temp_c: Sequence[float], power_w: Sequence[float],
           span_s: float) -> tuple[float, ...]:
    """Temperatures after each device drew ``power_w`` for ``span_s``
    (:func:`~dora_rl.costmodel.formulas.device_temperature_c`; 0 for a device without a
    thermal model, empty when ``temp_c`` is)."""
    if not temp_c:
        return ()
    out = []
    for f, t, p in zip(facts, temp_c, power_w, strict=True):
        th = f.thermal
        out.append(device_temperature_c(t, p, th.ambient_c, th.c_per_w, th.time_constant_s,
                                        span_s) if th is not None else 0.0)
    return tuple(out)


def hot_devices(facts: Sequence[DeviceFacts], temp_c: Sequence[float]) -> list[bool] | None:
    """Per device, whether heat caps its clock (None when ``temp_c`` is empty)."""
    if not temp_c:
        return None
    return [f.hot(t) for f, t in zip(facts, temp_c, strict=True)]


def capped_modes(facts: Sequence[DeviceFacts], modes: Sequence[int],
                 hot: Sequence[bool] | None) -> tuple[int, ...]:
    """``modes`` with every hot device slowed to its throttle level (asleep stays asleep)."""
    if hot is None:
        return tuple(modes)
    return tuple(max(m, f.thermal.throttle_level) if h and f.thermal is not None and m != SLEEP
                 else m for f, m, h in zip(facts, modes, hot, strict=True))


def asleep(modes: Sequence[int], wake_left_s: Sequence[float], device: int) -> bool:
    """Whether ``device`` sleeps through the interval."""
    return modes[device] == SLEEP and wake_left_s[device] <= 0


def devices_energy(facts: Sequence[DeviceFacts], power: PowerStep, present: Sequence[bool],
                   used: Collection[int], busy_s: Sequence[float], tx_s: Sequence[float],
                   rx_s: Sequence[float], interval_s: float,
                   power_off_unused: bool = False) -> tuple[DeviceEnergy, ...]:
    """Each device's energy over an interval, by cause
    (:func:`~dora_rl.world.devices.interval_energy`): an asleep device draws its sleep power,
    one that left draws nothing, and with ``unused_devices: off`` a device no plan uses (and
    that did not just wake) is off.

    Example:
        One nominal device, 0.2 s busy at 10 W and 0.1 s sending at 3 W over a second, 1 W
        idle: 1 J idle + 1.8 J busy + 0.2 J radio.

        >>> f = DeviceFacts(1.0, 3.0, 2.5, (10.0,), None, 0.0, 0.0, False, None, 1e8, True, 0)
        >>> step = PowerStep((0,), (0.0,), (False,), 0)
        >>> [e.total_j for e in devices_energy([f], step, [True], {0}, [0.2], [0.1], [0.0],
        ...                                    1.0)]
        [3.0]
    """
    out = []
    modes, wake_left = power.modes, power.wake_left_s
    for d, f in enumerate(facts):
        off = not present[d] or (power_off_unused and d not in used and not power.woke[d])
        if off:  # gone, or powered off: draws nothing, asleep or not
            out.append(DeviceEnergy(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, f.dedicated))
            continue
        on_s = 0.0 if modes[d] == SLEEP and wake_left[d] <= 0 else interval_s  # asleep()
        out.append(interval_energy(f, power.modes[d], interval_s, on_s, busy_s[d], tx_s[d],
                                   rx_s[d], power.woke[d]))
    return tuple(out)


__all__ = ["PowerStep", "apply_modes", "asleep", "capped_modes", "devices_energy", "heated",
           "hot_devices", "idle_temps"]
