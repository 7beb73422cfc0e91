"""The cost formulas, one function each, working on floats and NumPy arrays alike.

Every formula carries a small example computed by hand. The evaluator
(:mod:`dora_rl.costmodel.evaluate`) applies them to whole batches of plans at once.

Conventions: times in seconds, sizes in bytes, rates in bytes per second, power in watts,
energy in joules. An *item* is one sample (vision) or one token (language models).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

F = Any
"""A float or a NumPy array of floats: every formula accepts either."""

MBPS_TO_BYTES_PER_S = 1e6 / 8.0
MIN_ITEM_S = 1e-12
"""Floor on a stage's time per item, so that a stage of zero-FLOP layers has a finite rate."""


def _plain(x: Any) -> Any:
    """A NumPy scalar as a Python float; arrays unchanged."""
    return (
        float(x) if isinstance(x, np.generic) or (isinstance(x, np.ndarray) and not x.ndim) else x
    )


def layer_time_per_item_s(flops: F, peak_flops: float, efficiency: float) -> F:
    """Seconds one item takes through a layer on a device at nominal speed.

    Example:
        A 2 GFLOP layer on a 1 TFLOP/s device achieving 40 % of peak: 2e9 / (1e12 * 0.4) = 5 ms.

        >>> round(layer_time_per_item_s(2e9, 1e12, 0.4), 6)
        0.005
    """
    return flops / (peak_flops * efficiency)


def effective_time_s(nominal_s: F, speed: F | float, load: F | float) -> F:
    """Time under a DVFS speed factor and a background load taking part of the device.

    Example:
        10 ms of work at 50 % clock with a quarter of the device taken by others:
        0.010 / (0.5 * 0.75) = 26.7 ms.

        >>> round(effective_time_s(0.010, 0.5, 0.25), 5)
        0.02667
    """
    return nominal_s / (speed * (1.0 - load))


def stage_time_s(compute_s: F, fastest_item_s: F, weight_read_s: F) -> F:
    """Time a data-parallel stage needs: the slowest of compute, one item, and weight reads.

    ``compute_s`` is the slowest replica's share of the micro-batch (see :func:`replica_s`).
    A stage is never faster than one item on its fastest replica, nor than the time its
    slowest replica needs to read the stage weights from memory (the roofline bound that
    dominates LLM decoding).

    Example:
        >>> stage_time_s(0.02, 1 / 300, 0.001)
        0.02
        >>> stage_time_s(0.0025, 1 / 300, 0.001) == 1 / 300  # one item: fastest replica
        True
    """
    return _plain(np.maximum(np.maximum(compute_s, fastest_item_s), weight_read_s))


def replica_s(items: F, share: F, item_s: F) -> F:
    """Time one replica spends on its share of a micro-batch.

    The micro-batch is split in proportion to each replica's *planned* speed (its DVFS level,
    not the background load, which the plan cannot know), so with no load all replicas finish
    together; load on one replica makes it the straggler and never speeds the stage.

    Example:
        Replicas at 100 and 300 items/s share 8 items as 2 and 6: 20 ms each. If others take
        half of the second (150 items/s left), its 6 items need 40 ms.

        >>> round(replica_s(8.0, 0.25, 0.01), 6), round(replica_s(8.0, 0.75, 1 / 300), 6)
        (0.02, 0.02)
        >>> round(replica_s(8.0, 0.75, 1 / 150), 6)
        0.04
    """
    return items * share * item_s


def airtime_s(n_bytes: F, sender_rate: F | float, receiver_rate: F | float) -> F:
    """Airtime of a device-to-device transfer relayed through a WiFi access point.

    The frame crosses the shared medium twice: uplink at the sender's PHY rate, downlink at the
    receiver's. Rates in bytes/s; a zero rate gives an infinite time.

    Example:
        1 MB from a 100 Mbit/s phone to a 400 Mbit/s laptop: 8e6/100e6 + 8e6/400e6 = 0.1 s.

        >>> round(airtime_s(1e6, 100 * MBPS_TO_BYTES_PER_S, 400 * MBPS_TO_BYTES_PER_S), 6)
        0.1
    """
    with np.errstate(divide="ignore"):
        return _plain(n_bytes * (1.0 / np.float64(sender_rate) + 1.0 / np.float64(receiver_rate)))


def shared_duration_s(airtime: F, share: F | float, free_fraction: F | float) -> F:
    """Wall time of a flow that holds ``share`` of the airtime left free by cross traffic.

    Example:
        0.1 s of airtime with half of the medium, 20 % of it taken by neighbours:
        0.1 / (0.5 * 0.8) = 0.25 s.

        >>> shared_duration_s(0.1, 0.5, 0.8)
        0.25
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(airtime > 0, airtime / (np.float64(share) * free_fraction), 0.0)
    return out if isinstance(airtime, np.ndarray) else float(out)


def ring_allreduce_bytes_per_device(n_devices: F, stage_bytes: F) -> F:
    """Bytes each device sends in a ring all-reduce of ``stage_bytes`` over ``n_devices``.

    Example:
        4 replicas reducing 100 MB of gradients each send 2 * 3 / 4 * 100 MB = 150 MB.

        >>> ring_allreduce_bytes_per_device(4.0, 100e6)
        150000000.0
        >>> ring_allreduce_bytes_per_device(1.0, 100e6)  # a single replica sends nothing
        0.0
    """
    if not isinstance(n_devices, np.ndarray) and not isinstance(stage_bytes, np.ndarray):
        return 2.0 * (n_devices - 1.0) / max(n_devices, 1.0) * stage_bytes  # scalar fast path
    return _plain(2.0 * (n_devices - 1.0) / np.maximum(n_devices, 1.0) * stage_bytes)


def round_trip_period_s(cycle_s: list[float], transfer_s: list[float]) -> float:
    """The period 1F1B's in-flight limit imposes: stage k may hold K - k micro-batches, so
    in steady state one micro-batch's round trip from stage k (forward and backward through
    every later stage, both directions of every later boundary) is spread over K - k slots.

    Args:
        cycle_s: Forward plus backward time of each stage for one micro-batch (K values).
        transfer_s: One-way time of each boundary k -> k + 1 for one micro-batch (K - 1
            values, or K with a trailing 0).

    Example:
        Two stages of 15 ms with a 10 ms transfer: the round trip from stage 0 is
        15 + 15 + 2 * 10 = 50 ms over 2 slots, 25 ms, longer than either stage's 15 ms.

        >>> round(round_trip_period_s([0.015, 0.015], [0.010]), 6)
        0.025
        >>> round_trip_period_s([0.02, 0.01], [0.0])  # no transfers: never above the slowest
        0.015
    """
    k_total = len(cycle_s)
    out, trip = 0.0, 0.0
    for k in range(k_total - 1, -1, -1):
        trip += cycle_s[k] + (2.0 * transfer_s[k] if k < len(transfer_s) else 0.0)
        out = max(out, trip / (k_total - k))
    return out


def one_f_one_b_iteration_s(fill_s: F, bottleneck_s: F, micro_batches: F, tail_s: F) -> F:
    """Iteration time of a 1F1B pipeline.

    The first micro-batch traverses every stage forward and backward (``fill_s``: all stage
    compute plus all boundary transfers), each further micro-batch adds one bottleneck cycle,
    and the part of the gradient all-reduce not hidden behind the drain is added at the end.
    With K equal stages of cycle B and no transfers, this is the textbook (m + K - 1) * B.

    Example:
        K = 4 stages of 10 ms forward+backward, m = 8 micro-batches, no transfers:
        0.04 + 7 * 0.01 = 0.11 s = (8 + 4 - 1) * 10 ms.

        >>> round(one_f_one_b_iteration_s(0.04, 0.01, 8.0, 0.0), 6)
        0.11
    """
    if not isinstance(micro_batches, np.ndarray):  # scalar fast path; 0 * inf must not be NaN
        steady = (micro_batches - 1.0) * bottleneck_s if micro_batches > 1.0 else 0.0
        return fill_s + steady + tail_s
    with np.errstate(invalid="ignore"):
        steady_arr = np.where(micro_batches > 1.0, (micro_batches - 1.0) * bottleneck_s, 0.0)
    return fill_s + steady_arr + tail_s


def device_energy_j(
    interval_s: F, busy_s: F, tx_s: F, rx_s: F, idle_w: F, busy_w: F, tx_w: F, rx_w: F
) -> F:
    """Energy of one device over an interval: power times time in each state.

    Busy, transmit and receive times are disjoint parts of the interval; the rest is idle.

    Example:
        Over 1 s: 0.2 s busy at 10 W, 0.1 s transmitting at 3 W, 0.1 s receiving at 2.5 W, and
        0.6 s idle at 1 W: 2 + 0.3 + 0.25 + 0.6 = 3.15 J.

        >>> round(device_energy_j(1.0, 0.2, 0.1, 0.1, 1.0, 10.0, 3.0, 2.5), 6)
        3.15
    """
    # A plan that never completes (a dead link on its path) costs infinite energy, not NaN.
    if not isinstance(interval_s, np.ndarray):  # scalar fast path
        if interval_s == math.inf:
            return math.inf
        idle = interval_s - busy_s - tx_s - rx_s
        return busy_w * busy_s + tx_w * tx_s + rx_w * rx_s + idle_w * idle
    with np.errstate(invalid="ignore"):
        idle_s = interval_s - busy_s - tx_s - rx_s
        out = busy_w * busy_s + tx_w * tx_s + rx_w * rx_s + idle_w * idle_s
    return np.where(np.isfinite(interval_s), out, np.inf)


def device_temperature_c(temp_c: float, power_w: float, ambient_c: float, c_per_w: float,
                         time_constant_s: float, span_s: float) -> float:
    """A device's SoC temperature after drawing ``power_w`` for ``span_s``, from ``temp_c``: a
    first-order (Newton) thermal model, whose steady state is ``ambient_c + c_per_w *
    power_w`` and which closes ``1 - exp(-span_s / time_constant_s)`` of the gap to it.

    Example:
        A board at 50 C drawing 7 W in a 22 C room with 10 C/W heads for 92 C; after one time
        constant it has closed 63 % of the 42 C gap:

        >>> round(device_temperature_c(50.0, 7.0, 22.0, 10.0, 160.0, 160.0), 2)
        76.55
        >>> device_temperature_c(50.0, 2.8, 22.0, 10.0, 160.0, 1.0)  # idle: steady already
        50.0
    """
    steady_c = ambient_c + c_per_w * power_w
    return steady_c + (temp_c - steady_c) * math.exp(-span_s / time_constant_s)


def md1_wait_s(arrival_rate_per_s: float, service_s: float) -> float:
    """Mean wait in an M/D/1 queue: Poisson arrivals served one at a time in a fixed time
    (a pipeline's bottleneck period, or a whole LLM request served alone): ``rho * S /
    (2 (1 - rho))`` with ``rho = rate * S``; infinite once ``rho >= 1`` (the queue grows).

    Example:
        5 requests a second on a 0.1 s bottleneck: rho = 0.5, wait 0.05 * 0.1 / 0.1 = 50 ms.

        >>> md1_wait_s(5.0, 0.1)
        0.05
        >>> md1_wait_s(10.0, 0.1)
        inf
    """
    rho = arrival_rate_per_s * service_s
    if not rho < 1.0:
        return math.inf
    return rho * service_s / (2.0 * (1.0 - rho))


def relative_slack(target: F, value: F) -> F:
    """QoE slack as a fraction of the target for an upper-bound target: positive means met.

    Example:
        A 200 ms SLO met in 150 ms has 25 % slack; missed at 300 ms, -50 %.

        >>> relative_slack(200.0, 150.0), relative_slack(200.0, 300.0)
        (0.25, -0.5)
    """
    return (target - value) / target
