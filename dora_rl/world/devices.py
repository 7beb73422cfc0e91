"""Per-device facts the interval model needs, power modes and sleep, and a device's energy.

A device is in one *power mode* each interval: ``0`` is the catalog's nominal mode, ``v >= 1``
its ``v``-th slower ``dvfs`` level (a Jetson nvpmodel mode, a laptop or phone power profile),
and :data:`SLEEP` is asleep (only a dedicated device with a catalog ``sleep`` entry may sleep,
and only while no plan uses it). A sleeping device asked to work wakes: it is unusable for its
``wake_s`` and pays ``wake_j`` once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from dora_rl.config import Scenario, Thermal
from dora_rl.costmodel.formulas import device_energy_j

SLEEP = -1
"""The power mode of a sleeping device."""


@dataclass(frozen=True)
class DeviceFacts:
    """What the interval model reads of one device (card order).

    Attributes:
        idle_w, tx_w, rx_w: Power when on and idle, transmitting, receiving.
        busy_w: Busy power per power mode (index 0 nominal, then the ``dvfs`` levels).
        sleep_w: Power asleep (None: the device cannot be slept).
        wake_s, wake_j: Time and extra energy of one wake.
        dedicated: On only for the jobs: its idle (or sleep) power is the jobs' cost.
        storage_bytes_per_s: Rate it reads model files from local storage (None: it has none
            and receives weights over the network).
        link_bytes_per_s: Nominal link rate; wifi: whether it sits on a WiFi medium.
        domain: Its contention domain (index).
        thermal: How it heats and throttles (None: it does not throttle).
    """

    idle_w: float
    tx_w: float
    rx_w: float
    busy_w: tuple[float, ...]
    sleep_w: float | None
    wake_s: float
    wake_j: float
    dedicated: bool
    storage_bytes_per_s: float | None
    link_bytes_per_s: float
    wifi: bool
    domain: int
    thermal: Thermal | None = None

    @cached_property
    def n_modes(self) -> int:
        """Power modes the device has (nominal plus its slower levels)."""
        return len(self.busy_w)

    @property
    def idle_c(self) -> float:
        """Temperature idling (its thermal model's steady state at idle power; 0 without
        one)."""
        t = self.thermal
        return t.ambient_c + t.c_per_w * self.idle_w if t is not None else 0.0

    def heat(self, temp_c: float) -> float:
        """How far ``temp_c`` is from idling (0) to the throttle point (1); 0 without a
        thermal model."""
        t = self.thermal
        if t is None:
            return 0.0
        idle_c = self.idle_c
        return (temp_c - idle_c) / (t.throttle_c - idle_c)

    def hot(self, temp_c: float) -> bool:
        """Whether the firmware throttles it at ``temp_c``."""
        return self.thermal is not None and temp_c >= self.thermal.throttle_c

    @cached_property
    def can_sleep(self) -> bool:
        """Whether a controller may put the device to sleep."""
        return self.dedicated and self.sleep_w is not None


def device_facts(scenario: Scenario) -> tuple[DeviceFacts, ...]:
    """The facts of every device of ``scenario``, in card order."""
    domains = [d.name for d in scenario.network.domains]
    wifi = {d.name: d.kind == "wifi" for d in scenario.network.domains}
    out = []
    for dev in scenario.devices:
        sleep, storage = dev.sleep, dev.storage
        out.append(DeviceFacts(
            idle_w=dev.power.idle_w, tx_w=dev.power.tx_w, rx_w=dev.power.rx_w,
            busy_w=(dev.power.busy_w, *(lv.busy_w for lv in dev.dvfs)),
            sleep_w=sleep.sleep_w if sleep is not None else None,
            wake_s=sleep.wake_s if sleep is not None else 0.0,
            wake_j=sleep.wake_j if sleep is not None else 0.0,
            dedicated=dev.dedicated,
            storage_bytes_per_s=storage.read_mbps * 1e6 / 8.0 if storage is not None else None,
            link_bytes_per_s=dev.network.link_mbps * 1e6 / 8.0,
            wifi=wifi[dev.network.domain], domain=domains.index(dev.network.domain),
            thermal=dev.thermal))
    return tuple(out)


@dataclass(frozen=True)
class DeviceEnergy:
    """One device's energy over one interval, by cause (joules).

    ``busy_j``, ``tx_j`` and ``rx_j`` are the parts above idle power; ``idle_j`` the idle power
    over the time the device was on; ``sleep_j`` its sleep power; ``wake_j`` the waking cost.
    """

    idle_j: float
    busy_j: float
    tx_j: float
    rx_j: float
    sleep_j: float
    wake_j: float
    dedicated: bool

    def __init__(self, idle_j: float, busy_j: float, tx_j: float, rx_j: float, sleep_j: float,
                 wake_j: float, dedicated: bool) -> None:
        # the generated frozen __init__ sets each field through object.__setattr__; one
        # update of the instance dict does the same (every device, every interval)
        self.__dict__.update(idle_j=idle_j, busy_j=busy_j, tx_j=tx_j, rx_j=rx_j,
                             sleep_j=sleep_j, wake_j=wake_j, dedicated=dedicated)

    @property
    def total_j(self) -> float:
        """Everything the device drew."""
        return self.idle_j + self.busy_j + self.tx_j + self.rx_j + self.sleep_j + self.wake_j

    @property
    def jobs_j(self) -> float:
        """What the jobs caused: work, radio and wakes; idle and sleep power only on a
        dedicated device (a device that is on anyway would draw its idle power regardless)."""
        base = self.idle_j + self.sleep_j if self.dedicated else 0.0
        return base + self.busy_j + self.tx_j + self.rx_j + self.wake_j


def interval_energy(facts: DeviceFacts, mode: int, interval_s: float, on_s: float,
                    busy_s: float, tx_s: float, rx_s: float, woke: bool) -> DeviceEnergy:
    """A device's energy over an interval in which it was on for ``on_s`` (asleep the rest),
    busy ``busy_s``, transmitting ``tx_s`` and receiving ``rx_s`` (within the on time; the
    sum is capped at ``on_s``, the busiest activity first), in power ``mode``; ``woke``
    charges one wake.

    The on part is :func:`~dora_rl.costmodel.formulas.device_energy_j`, split into idle and the
    increments above idle.

    Example:
        On the whole second, 0.2 s busy at 10 W, 0.1 s sending at 3 W, idle at 1 W:
        1 J idle + 1.8 J busy + 0.2 J radio = 3.0 J.

        >>> f = DeviceFacts(idle_w=1.0, tx_w=3.0, rx_w=2.5, busy_w=(10.0,), sleep_w=0.1,
        ...                 wake_s=2.0, wake_j=5.0, dedicated=True, storage_bytes_per_s=None,
        ...                 link_bytes_per_s=1e8, wifi=True, domain=0)
        >>> e = interval_energy(f, 0, 1.0, 1.0, 0.2, 0.1, 0.0, False)
        >>> round(e.idle_j, 6), round(e.busy_j, 6), round(e.tx_j, 6), round(e.total_j, 6)
        (1.0, 1.8, 0.2, 3.0)
        >>> round(interval_energy(f, SLEEP, 1.0, 0.0, 0, 0, 0, False).total_j, 6)  # asleep
        0.1
    """
    sleep_j = (facts.sleep_w or 0.0) * (interval_s - on_s)
    wake_j = facts.wake_j if woke else 0.0
    if on_s <= 0:
        return DeviceEnergy(0.0, 0.0, 0.0, 0.0, sleep_j, wake_j, facts.dedicated)
    busy_s = busy_s if busy_s < on_s else on_s
    tx_s = tx_s if tx_s < on_s - busy_s else on_s - busy_s
    rx_s = rx_s if rx_s < on_s - busy_s - tx_s else on_s - busy_s - tx_s
    busy_w = facts.busy_w[mode if mode >= 0 else 0]
    total = device_energy_j(on_s, busy_s, tx_s, rx_s, facts.idle_w, busy_w, facts.tx_w,
                            facts.rx_w)
    idle_j = facts.idle_w * on_s
    busy_j = (busy_w - facts.idle_w) * busy_s
    tx_j = (facts.tx_w - facts.idle_w) * tx_s
    rx_j = total - idle_j - busy_j - tx_j  # the formula's receive increment
    return DeviceEnergy(idle_j, busy_j, tx_j, rx_j, sleep_j, wake_j, facts.dedicated)


__all__ = ["SLEEP", "DeviceEnergy", "DeviceFacts", "device_facts", "interval_energy"]
