"""The simulator's energy accounting: the interval model's formula on simulated activity.

The interval model decides each device's *state* over an interval (on, asleep, off, woken) from
the control state; the simulator measures its *activity* (busy, transmit and receive seconds)
event by event. A device's energy is :func:`~dora_rl.world.devices.interval_energy` over the
two: one energy formula for both worlds.

Example:
    The interval model charged a device on for the whole second (1 J idle at 1 W) and 0.2 s
    busy at 10 W; the simulator measured 0.3 s busy and 0.1 s sending at 3 W instead:

    >>> from dora_rl.world import DeviceFacts, interval_energy
    >>> f = DeviceFacts(idle_w=1.0, tx_w=3.0, rx_w=2.5, busy_w=(10.0,), sleep_w=0.1,
    ...                 wake_s=2.0, wake_j=5.0, dedicated=True, storage_bytes_per_s=None,
    ...                 link_bytes_per_s=1e8, wifi=True, domain=0)
    >>> charged = interval_energy(f, 0, 1.0, 1.0, 0.2, 0.0, 0.0, False)
    >>> e = simulated_energy(f, 0, 1.0, charged, busy_s=0.3, tx_s=0.1, rx_s=0.0)
    >>> round(e.idle_j, 6), round(e.busy_j, 6), round(e.tx_j, 6), round(e.total_j, 6)
    (1.0, 2.7, 0.2, 3.9)
"""

from __future__ import annotations

from dataclasses import replace

from dora_rl.world.devices import DeviceEnergy, DeviceFacts, interval_energy


def on_time_s(facts: DeviceFacts, charged: DeviceEnergy, interval_s: float) -> float:
    """Seconds the device was on in an interval the interval model ``charged``: its idle
    energy over its idle power (a device that draws no idle power shows no on time in the
    charge and counts as on; only the cap on its activity depends on it).

    Example:
        >>> from dora_rl.world import DeviceFacts, interval_energy
        >>> f = DeviceFacts(2.0, 3.0, 3.0, (6.0,), None, 0.0, 0.0, False, None, 1e7, True, 0)
        >>> on_time_s(f, interval_energy(f, 0, 1.0, 0.0, 0, 0, 0, False), 1.0)  # off
        0.0
        >>> on_time_s(f, interval_energy(f, 0, 1.0, 1.0, 0.1, 0, 0, False), 1.0)
        1.0
    """
    if facts.idle_w <= 0.0:
        return interval_s
    on = charged.idle_j / facts.idle_w
    return interval_s if on > interval_s else on


def simulated_energy(facts: DeviceFacts, mode: int, interval_s: float, charged: DeviceEnergy,
                     busy_s: float, tx_s: float, rx_s: float) -> DeviceEnergy:
    """A device's energy over an interval with the simulated activity in place of the
    interval model's: on time, sleep and wake as ``charged`` (the interval model's energy of
    the device, which follows the control state), busy, transmit and receive seconds as
    measured, in power ``mode``, through :func:`~dora_rl.world.devices.interval_energy`.

    Fed the interval model's own activity it gives ``charged`` back
    (``tests/test_sim_accounting.py``).
    """
    on_s = on_time_s(facts, charged, interval_s)
    e = interval_energy(facts, mode, interval_s, on_s, busy_s, tx_s, rx_s, charged.wake_j > 0)
    if e.sleep_j == charged.sleep_j and e.wake_j == charged.wake_j:
        return e
    return replace(e, sleep_j=charged.sleep_j, wake_j=charged.wake_j)


__all__ = ["on_time_s", "simulated_energy"]
