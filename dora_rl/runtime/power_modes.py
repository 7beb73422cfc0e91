"""Power modes of the emulated devices, and their energy, by the interval model's rules.

The live runtime keeps each device's power mode (``0`` nominal, ``v`` its ``v``-th slower
``dvfs`` level, :data:`~dora_rl.world.SLEEP` asleep) the way
:meth:`dora_rl.world.IntervalModel.transition` does: a device a plan uses (or is switching
to) cannot sleep (the request is refused and it keeps its mode), a device asked to leave sleep
wakes and is unusable for ``wake_s`` seconds of the card's world, paying ``wake_j`` once. A
mode slows the device's emulated compute by its speed factor
(:attr:`~dora_rl.runtime.emulation.Emulator.speed`). A device with a thermal model heats by
the energy charged to it each interval and, while hot, runs no faster than its throttle level,
as in the interval model.

Each control interval's energy is :func:`dora_rl.world.devices.interval_energy` per device
over what the runtime measured (busy, transmit and receive seconds) in the modes of that
interval: :func:`device_energies`. :class:`PowerInterval` is the power state an interval ran
in. The rules themselves are :mod:`dora_rl.world.power`'s, called, not copied.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from dora_rl.world import SLEEP, DeviceEnergy, DeviceFacts
from dora_rl.world.power import (
    PowerStep,
    apply_modes,
    capped_modes,
    devices_energy,
    heated,
    hot_devices,
    idle_temps,
)


@dataclass(frozen=True)
class PowerInterval:
    """The devices' power state over one control interval (card order).

    Attributes:
        modes: Power mode of each device.
        asleep: Asleep the whole interval (sleep power only).
        present: In the emulated world (a device that left draws nothing).
        used: A plan of the job uses it (with ``unused_devices: off``, the others are off).
        woke: Woke at the start of the interval (pays one wake).
    """

    modes: tuple[int, ...]
    asleep: tuple[bool, ...]
    present: tuple[bool, ...]
    used: tuple[bool, ...]
    woke: tuple[bool, ...]

    @classmethod
    def nominal(cls, n_devices: int) -> PowerInterval:
        """Every device present, awake at its nominal mode and used."""
        on = (True,) * n_devices
        return cls((0,) * n_devices, (False,) * n_devices, on, on, (False,) * n_devices)


class PowerRecord:
    """The runtime's power modes and wake timers (thread safety: the runtime's lock).

    Args:
        facts: The devices' facts (:attr:`dora_rl.world.IntervalModel.devices`).
    """

    def __init__(self, facts: Sequence[DeviceFacts], power_off_unused: bool = False) -> None:
        self.facts = tuple(facts)
        self.power_off_unused = power_off_unused
        """The card powers unused devices off (they boot like a wake when used again)."""
        n = len(self.facts)
        self.modes = [0] * n
        self.wake_left_s = [0.0] * n
        """Card seconds until each device is awake (0: awake or asleep)."""
        self.woke = [False] * n
        """Woke since the last :meth:`interval` (charged to the interval that starts next)."""
        self.refused = 0
        """Mode requests the rules refused so far."""
        self.temp_c = list(idle_temps(self.facts))
        """Each device's temperature (empty: no device has a thermal model)."""
        self.effective = [0] * n
        """The modes the devices run in: :attr:`modes` with hot devices throttled."""

    def awake(self, device: int) -> bool:
        """Whether ``device`` can compute now (not asleep, not waking)."""
        return self.modes[device] != SLEEP and self.wake_left_s[device] <= 0

    def apply(self, wanted: Sequence[int] | None, used: Collection[int]) -> int:
        """Set the modes a decision asks for (None keeps them) given the devices a plan uses
        or is switching to; returns the requests refused.

        Example:
            A device that may sleep goes to sleep, wakes when a plan needs it, and is
            unusable for its wake time:

            >>> f = DeviceFacts(1.0, 2.0, 2.0, (5.0, 3.0), 0.1, 2.0, 4.0, True, None, 1e8,
            ...                 True, 0)
            >>> rec = PowerRecord([f])
            >>> rec.apply([SLEEP], used=()), rec.modes
            (0, [-1])
            >>> rec.apply([SLEEP], used=(0,)), rec.modes, rec.wake_left_s, rec.woke
            (1, [0], [2.0], [True])
            >>> rec.tick(1.5); rec.awake(0)
            False
            >>> rec.tick(1.0); rec.awake(0)
            True
        """
        step = apply_modes(self.facts, self.modes, self.wake_left_s, wanted, used,
                           self.power_off_unused, hot_devices(self.facts, self.temp_c))
        self.modes, self.wake_left_s = list(step.kept), list(step.wake_left_s)
        self.effective = list(step.modes)
        self.woke = [a or b for a, b in zip(self.woke, step.woke, strict=True)]
        self.refused += step.refused
        return step.refused

    def tick(self, seconds: float, energies: Sequence[DeviceEnergy] = ()) -> None:
        """``seconds`` of the card's world passed, in which the devices drew ``energies``:
        wake timers run down, the devices heat or cool, and the heat caps apply anew."""
        self.wake_left_s = [max(w - seconds, 0.0) for w in self.wake_left_s]
        if self.temp_c and energies and seconds > 0:
            self.temp_c = list(heated(self.facts, self.temp_c,
                                      [e.total_j / seconds for e in energies], seconds))
            self.effective = list(capped_modes(self.facts, self.modes,
                                               hot_devices(self.facts, self.temp_c)))

    def speed(self, speeds: Sequence[Sequence[float]]) -> list[float]:
        """Each device's compute speed factor in its mode (``speeds``: the cost tables'
        ``dvfs_speed`` rows; asleep counts as nominal)."""
        return [row[m if m >= 0 else 0] for row, m in zip(speeds, self.effective, strict=True)]

    def interval(self, present: Sequence[bool], used: Collection[int]) -> PowerInterval:
        """The power state of the interval starting now (the wakes since the last call are
        charged to it)."""
        n = len(self.facts)
        woke, self.woke = tuple(self.woke), [False] * n
        return PowerInterval(
            modes=tuple(self.effective),
            asleep=tuple(self.modes[d] == SLEEP and self.wake_left_s[d] <= 0 for d in range(n)),
            present=tuple(bool(p) for p in present),
            used=tuple(d in used for d in range(n)), woke=woke)


def device_energies(facts: Sequence[DeviceFacts], power: PowerInterval, span_s: float,
                    busy_s: Sequence[float], tx_s: Sequence[float], rx_s: Sequence[float],
                    power_off_unused: bool = False) -> tuple[DeviceEnergy, ...]:
    """Each device's energy over an interval of ``span_s`` card seconds, by cause:
    :func:`~dora_rl.world.devices.interval_energy` on the measured busy and radio seconds in
    the interval's power state. As in the interval model, an asleep device draws its sleep
    power, one that left draws nothing, and with ``unused_devices: off`` a device no plan uses
    (and that did not just wake) is off.

    Example:
        One nominal device, 0.2 s busy at 10 W and 0.1 s sending at 3 W over a second, 1 W
        idle: 1 J idle + 1.8 J busy + 0.2 J radio.

        >>> f = DeviceFacts(1.0, 3.0, 2.5, (10.0,), None, 0.0, 0.0, False, None, 1e8, True, 0)
        >>> [e.total_j for e in device_energies([f], PowerInterval.nominal(1), 1.0, [0.2],
        ...                                      [0.1], [0.0])]
        [3.0]
    """
    # a device asleep through the interval is in SLEEP with no wake pending: the model's rule
    step = PowerStep(power.modes, (0.0,) * len(facts), power.woke, 0)
    used = {d for d, u in enumerate(power.used) if u}
    return devices_energy(facts, step, power.present, used, busy_s, tx_s, rx_s, span_s,
                          power_off_unused)


__all__ = ["PowerInterval", "PowerRecord", "device_energies"]
