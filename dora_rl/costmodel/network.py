"""Transfers under contention: airtime on shared WiFi media, wired links and the backbone.

All functions work on a batch of N plans. A *flow* is the traffic crossing one stage boundary
(activations forward, and gradients back when training) or one stage's gradient all-reduce.
On a WiFi domain concurrent flows share airtime by their shares (a device-to-device transfer
through the access point uses airtime twice: up at the sender's rate, down at the receiver's);
on a switch each device has its own full-duplex link; flows between domains also cross the
backbone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dora_rl.costmodel.formulas import ring_allreduce_bytes_per_device, shared_duration_s
from dora_rl.costmodel.tables import JobTables

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class FlowCosts:
    """Per-byte (boundary) or per-iteration (all-reduce) network costs of a batch of plans.

    Attributes:
        boundary_s_per_item: [N, S] wall time of boundary flow k per item crossing it.
        boundary_air_per_item: [N, S, W] airtime per item of boundary flow k on WiFi domain w.
        tx_s_per_item, rx_s_per_item: [N, D] radio/link time per item crossing every boundary.
        capacity_s_per_item: [N] busiest medium's airtime per item crossing every boundary.
        allreduce_s: [N, S] wall time of each stage's gradient all-reduce.
        allreduce_tx_s: [N, D] time each device spends sending (and, equally, receiving) it.
    """

    boundary_s_per_item: FloatArray
    boundary_air_per_item: FloatArray
    tx_s_per_item: FloatArray
    rx_s_per_item: FloatArray
    capacity_s_per_item: FloatArray
    allreduce_s: FloatArray
    allreduce_tx_s: FloatArray


def _safe_mul(frac: FloatArray, inv_rate: FloatArray) -> FloatArray:
    """``frac * inv_rate`` where a zero fraction costs nothing even on a dead link."""
    with np.errstate(invalid="ignore"):
        return np.where(frac > 0, frac * inv_rate, 0.0)


def _per_domain(seconds: FloatArray, member: FloatArray) -> FloatArray:
    """[N, D, S] per-device seconds summed over each domain's members: [N, S, W].

    Sums only members, so that a dead link (infinite time) outside a domain costs it nothing.
    """
    out = np.zeros((seconds.shape[0], seconds.shape[2], member.shape[1]))
    for w in range(member.shape[1]):
        inside = member[:, w] > 0
        if inside.any():
            out[:, :, w] = seconds[:, inside, :].sum(axis=1)
    return out


def flow_costs(tables: JobTables, onehot: FloatArray, frac: FloatArray, boundary_bytes: FloatArray,
               active_boundary: NDArray[np.bool_], stage_sync_bytes: FloatArray,
               group_size: FloatArray, boundary_shares: FloatArray, allreduce_shares: FloatArray,
               link_scale: FloatArray, cross_traffic: FloatArray,
               medium_share: FloatArray) -> FlowCosts:
    """Network costs of a batch of plans.

    Args:
        tables: The job's cost tables.
        onehot: [N, D, S] device d is in stage s.
        frac: [N, D] fraction of its stage's micro-batch device d processes.
        boundary_bytes: [N, S] bytes per item leaving stage k (0 for the last stage).
        active_boundary: [N, S] boundary k -> k+1 exists.
        stage_sync_bytes: [N, S] bytes each stage all-reduces per iteration (0 if none).
        group_size: [N, S] devices in each stage.
        boundary_shares, allreduce_shares: [N, S] shares; NaN = equal sharing.
        link_scale: [D] multiplier of the nominal link rates.
        cross_traffic: [W] airtime taken by other traffic.
        medium_share: [W] fraction of the free airtime this job may use.
    """
    with np.errstate(divide="ignore"):
        inv_rate = 1.0 / (tables.link_bytes_per_s * link_scale)  # [D], inf on a dead link
    free = (1.0 - cross_traffic) * medium_share  # [W]

    # Boundary flows: senders are stage k, receivers stage k + 1 (seconds per item).
    send = onehot * frac[:, :, None]  # [N, D, S]
    recv = np.zeros_like(send)
    recv[:, :, :-1] = send[:, :, 1:]
    nbytes = boundary_bytes[:, None, :]
    send_t = _safe_mul(send * nbytes, inv_rate[None, :, None])
    recv_t = _safe_mul(recv * nbytes, inv_rate[None, :, None])
    both = send_t + recv_t
    air = _per_domain(both, tables.wifi_member)
    wired = np.where(tables.wired_member[None, :, None] > 0, both, 0.0).max(axis=1)
    dom_send = np.einsum("nds,dw->nsw", send, tables.domain_member)
    dom_recv = np.einsum("nds,dw->nsw", recv, tables.domain_member)
    cross_frac = np.clip(1.0 - (dom_send * dom_recv).sum(axis=2), 0.0, 1.0)
    backbone = cross_frac * boundary_bytes / tables.backbone_bytes_per_s

    # All-reduce flows inside each stage group (ring over the group's devices).
    per_dev = ring_allreduce_bytes_per_device(group_size, stage_sync_bytes)  # [N, S]
    member_t = _safe_mul(onehot * per_dev[:, None, :], inv_rate[None, :, None])  # [N, D, S]
    ar_air = 2.0 * _per_domain(member_t, tables.wifi_member)
    ar_wired = np.where(tables.wired_member[None, :, None] > 0, member_t, 0.0).max(axis=1)
    n_domains = (np.einsum("nds,dw->nsw", onehot, tables.domain_member) > 0).sum(axis=2)
    ar_backbone = np.where(n_domains > 1, n_domains, 0) * per_dev / tables.backbone_bytes_per_s

    # Shares: equal between the job's flows on each medium unless the plan sets them.
    uses_b = (air > 0) & active_boundary[:, :, None]
    uses_a = ar_air > 0
    n_flows = uses_b.sum(axis=1) + uses_a.sum(axis=1)  # [N, W]
    equal = 1.0 / np.maximum(n_flows, 1)[:, None, :]
    b_share = np.where(np.isnan(boundary_shares)[:, :, None], equal, boundary_shares[:, :, None])
    a_share = np.where(np.isnan(allreduce_shares)[:, :, None], equal, allreduce_shares[:, :, None])
    b_wifi = shared_duration_s(air, b_share, free[None, None, :]).max(axis=2)
    a_wifi = shared_duration_s(ar_air, a_share, free[None, None, :]).max(axis=2)

    boundary_s = np.maximum(np.maximum(b_wifi, wired), backbone)
    boundary_s = np.where(active_boundary, boundary_s, 0.0)
    allreduce_s = np.where(per_dev > 0, np.maximum(np.maximum(a_wifi, ar_wired), ar_backbone),
                           0.0)
    with np.errstate(invalid="ignore"):
        cap = np.where(air.sum(axis=1) > 0, air.sum(axis=1) / free[None, :], 0.0).max(axis=1)
    tx, rx, ar_tx = send_t.sum(axis=2), recv_t.sum(axis=2), member_t.sum(axis=2)
    return FlowCosts(boundary_s_per_item=boundary_s, boundary_air_per_item=air,
                     tx_s_per_item=tx, rx_s_per_item=rx, capacity_s_per_item=cap,
                     allreduce_s=allreduce_s, allreduce_tx_s=ar_tx)
