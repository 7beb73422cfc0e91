"""The plan space the partitioner searches, and how identical devices collapse into classes.

A plan is a chain of contiguous stages; each stage runs on a *group*: devices of one contention
domain, at most ``max_group_classes`` distinct device classes and at most ``max_group_size``
devices. Devices are in one *class* when every figure the cost model uses is the same for them
in the current state (compute, memory, power, link, domain, load, availability), so which of
them a stage takes cannot change any cost: the solver counts devices per class instead of
naming them, which removes the symmetry between identical boxes. DVFS stays at nominal and
shares at equal sharing (the network scheduler refines shares afterwards).

Example:
    >>> from dora_rl.scenarios import load
    >>> from dora_rl.costmodel import CostModel
    >>> space = SearchSpace.build(CostModel(load("tiny")))
    >>> len(space.classes), [g.members for g in space.groups][:3]
    (3, [(0,), (1,), (2,)])
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from dora_rl.costmodel import CostModel, State


@dataclass(frozen=True)
class Group:
    """A stage's device group: representative devices and how many of each class it uses."""

    members: tuple[int, ...]
    class_counts: tuple[tuple[int, int], ...]
    domain: int

    @property
    def size(self) -> int:
        """Number of devices."""
        return len(self.members)


@dataclass(frozen=True)
class SearchSpace:
    """Device classes, candidate groups and plan-shape limits of one job in one state.

    Attributes:
        classes: Device indices of each class (only usable devices that can run the job).
        groups: Every group the solver may give a stage.
        max_stages: Most pipeline stages a plan may have.
        micro_batches: Micro-batch counts tried (training; ``(1,)`` otherwise).
    """

    classes: tuple[tuple[int, ...], ...]
    groups: tuple[Group, ...]
    max_stages: int
    micro_batches: tuple[int, ...]

    @classmethod
    def build(cls, model: CostModel, state: State | None = None, max_stages: int = 8,
              max_group_size: int = 4, max_group_classes: int = 2,
              micro_batches: tuple[int, ...] | None = None) -> SearchSpace:
        """The search space of ``model``'s job in ``state`` (nominal when omitted)."""
        t = model.tables
        state = state or model.nominal
        usable = state.usable & t.can_run
        keys: dict[tuple[object, ...], list[int]] = {}
        for d in np.flatnonzero(usable):
            keys.setdefault(_device_key(model, state, int(d)), []).append(int(d))
        classes = tuple(tuple(v) for v in keys.values())
        groups = _groups(classes, t.domain_of.tolist(), max_group_size, max_group_classes)
        n_dev = sum(len(c) for c in classes)
        if micro_batches is None:
            micro_batches = _micro_batch_options(model)
        return cls(classes=classes, groups=groups,
                   max_stages=max(1, min(max_stages, n_dev, t.n_layers)),
                   micro_batches=micro_batches)


def _device_key(model: CostModel, state: State, d: int) -> tuple[object, ...]:
    t = model.tables
    rows = (t.fwd_prefix_s[d], t.bwd_prefix_s[d], t.weight_read_prefix_s[d],
            t.dvfs_busy_w[d, :1])
    scalars = (t.idle_w[d], t.tx_w[d], t.rx_w[d], t.memory_bytes[d], t.link_bytes_per_s[d],
               int(t.domain_of[d]), t.memory_bw_bytes_per_s[d], state.load[d],
               state.link_scale[d])
    return tuple(r.tobytes() for r in rows) + tuple(float(s) for s in scalars)


def _micro_batch_options(model: CostModel) -> tuple[int, ...]:
    job = model.tables.job.training
    if job is None:
        return (1,)
    options = {m for m in (1, 2, 4, 8, 16) if m <= job.global_batch}
    options.add(job.micro_batches)
    return tuple(sorted(options))


def _groups(classes: tuple[tuple[int, ...], ...], domain_of: list[int], max_size: int,
            max_classes: int) -> tuple[Group, ...]:
    by_domain: dict[int, list[int]] = {}
    for ci, members in enumerate(classes):
        by_domain.setdefault(domain_of[members[0]], []).append(ci)
    out: list[Group] = []
    for domain, class_ids in sorted(by_domain.items()):
        for n_cls in range(1, max_classes + 1):
            for combo in itertools.combinations(class_ids, n_cls):
                ranges = [range(1, min(len(classes[c]), max_size) + 1) for c in combo]
                for counts in itertools.product(*ranges):
                    if sum(counts) > max_size:
                        continue
                    members = tuple(d for c, n in zip(combo, counts, strict=True)
                                    for d in classes[c][:n])
                    out.append(Group(members=members,
                                     class_counts=tuple(zip(combo, counts, strict=True)),
                                     domain=domain))
    out.sort(key=lambda g: (g.size, g.members))
    return tuple(out)
