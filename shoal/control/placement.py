"""Placement: which instance, accelerator ids, CPU core ids and memory each copy gets.

Pure functions over plain data, so every rule is unit-testable. Copies never share an accelerator.
A copy asking for one core or more gets whole cores of its own; copies asking for a fraction of a
core share cores with other fractional copies only. Instances fill in order (bin packing, as
SageMaker places inference components).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from shoal.control.resources import ComputeRequirements, InstanceType
from shoal.launch import Slot

__all__ = ["Holder", "PlacementError", "Slot", "max_copies", "place"]

_EPS = 1e-9


@dataclass
class Holder:
    """A placed copy, as the placer sees it."""

    component: str
    slot: Slot


class PlacementError(ValueError):
    """Copies that do not fit; the message says what is short and who holds it. `copy_number`: the first copy
    that does not fit (1-based, counting the component's placed copies); `short`: what it needs that is
    missing, and who holds it."""

    def __init__(self, component: str, copy_number: int, short: str) -> None:
        super().__init__(f"copy {copy_number} of {component} does not fit: {short}")
        self.component, self.copy_number, self.short = component, copy_number, short


@dataclass
class _Instance:
    index: int
    type: InstanceType
    free_accelerators: list[int]
    core_load: list[float]  # per core: 0 free, 1 exclusive; fractions for shared cores
    free_memory_mb: int
    holders: Counter[str] = field(default_factory=Counter)

    @classmethod
    def empty(cls, index: int, t: InstanceType) -> _Instance:
        return cls(index, t, list(range(t.accelerators)), [0.0] * t.vcpus, t.memory_mib)

    def take(self, slot: Slot, component: str) -> None:
        for a in slot.accelerators:
            self.free_accelerators.remove(a)
        for c in slot.cores:
            self.core_load[c] += 1.0 if slot.cpu_share >= 1 else slot.cpu_share
        self.free_memory_mb -= slot.memory_mb
        self.holders[component] += 1

    def fit(self, need: ComputeRequirements) -> Slot | str:
        """A slot for one copy, or a description of what is short here."""
        if len(self.free_accelerators) < need.num_accelerators:
            return (f"{need.num_accelerators} accelerator(s); {self.type.accelerators} in all, "
                    f"{len(self.free_accelerators)} free")
        if need.num_cpus >= 1:
            free = [i for i, load in enumerate(self.core_load) if load <= _EPS]
            if len(free) < need.num_cpus:
                return f"{int(need.num_cpus)} CPU core(s); {self.type.vcpus} in all, {len(free)} free"
            cores = tuple(free[:int(need.num_cpus)])
        else:
            shared = [i for i, load in enumerate(self.core_load) if load + need.num_cpus <= 1 + _EPS]
            shared.sort(key=lambda i: (self.core_load[i] <= _EPS, i))  # fill shared cores first
            if not shared:
                return f"{need.num_cpus} of a CPU core; all {self.type.vcpus} cores are taken"
            cores = (shared[0],)
        if self.free_memory_mb < need.min_memory_mb:
            return f"{need.min_memory_mb} MB memory; {self.type.memory_mib} MB in all, {self.free_memory_mb} MB free"
        accelerators = tuple(self.free_accelerators[:need.num_accelerators])
        return Slot(self.index, accelerators, cores, need.num_cpus, need.min_memory_mb)


def place(instance_type: InstanceType, instance_count: int, placed: list[Holder], component: str,
          need: ComputeRequirements, copies: int, gone: frozenset[int] = frozenset()) -> list[Slot]:
    """Slots for `copies` more copies of `component`, beside the copies already `placed`, on the
    instances that are not `gone`."""
    instances = [_Instance.empty(i, instance_type) for i in range(instance_count)]
    for holder in placed:
        instances[holder.slot.instance].take(holder.slot, holder.component)
    slots: list[Slot] = []
    for n in range(copies):
        reasons = []
        for inst in instances:
            if inst.index in gone:
                continue
            slot = inst.fit(need)
            if isinstance(slot, Slot):
                inst.take(slot, component)
                slots.append(slot)
                break
            reasons.append((inst, slot))
        else:
            raise _explain(component, len(placed_of(placed, component)) + n + 1, instance_type, instance_count,
                           reasons)
    return slots


def placed_of(placed: list[Holder], component: str) -> list[Holder]:
    return [h for h in placed if h.component == component]


def _explain(component: str, copy_number: int, t: InstanceType, count: int,
             reasons: list[tuple[_Instance, str]]) -> PlacementError:
    if not reasons:
        return PlacementError(component, copy_number, f"no instance of {t.name} x{count} is available")
    inst, short = reasons[0]
    holders = ", ".join(f"{name} ({n} cop{'y' if n == 1 else 'ies'})" for name, n in inst.holders.most_common())
    taken = f"; taken by {holders}" if holders else ""
    return PlacementError(component, copy_number, f"it needs {short} on {t.name} x{count}{taken}")


def max_copies(instance_type: InstanceType, need: ComputeRequirements, instance_count: int = 1) -> int:
    """How many copies of one component fit on empty instances."""
    n = 0
    try:
        while True:
            place(instance_type, instance_count, [], "probe", need, n + 1)
            n += 1
    except PlacementError:
        return n
