"""Placement is pure: these tests need no processes."""
from __future__ import annotations

import pytest

from shoal.control.placement import Holder, PlacementError, max_copies, place
from shoal.control.resources import CATALOG, ComputeRequirements, instance_type

P4D = CATALOG["ml.p4d.24xlarge"]


def need(gpus: int = 0, cpus: float = 1, memory_gib: float = 1) -> ComputeRequirements:
    return ComputeRequirements(num_accelerators=gpus, num_cpus=cpus, min_memory_mb=int(memory_gib * 1024))


def test_seed_component_fills_a_p4d_exactly() -> None:
    slots = place(P4D, 1, [], "llama", need(1, 10, 100), 8)
    assert sorted(a for s in slots for a in s.accelerators) == list(range(8))
    cores = [c for s in slots for c in s.cores]
    assert len(cores) == len(set(cores)) == 80
    with pytest.raises(PlacementError) as err:
        place(P4D, 1, [Holder("llama", s) for s in slots], "llama", need(1, 10, 100), 1)
    message = str(err.value)
    assert "copy 9 of llama" in message and "1 accelerator" in message and "0 free" in message
    assert "ml.p4d.24xlarge x1" in message and "llama (8 copies)" in message


def test_two_models_share_one_instance() -> None:
    llama = place(P4D, 1, [], "llama", need(1, 10, 100), 4)
    placed = [Holder("llama", s) for s in llama]
    mistral = place(P4D, 1, placed, "mistral", need(1, 10, 100), 4)
    assert {a for s in llama for a in s.accelerators}.isdisjoint({a for s in mistral for a in s.accelerators})
    with pytest.raises(PlacementError, match=r"llama \(4 copies\), mistral \(4 copies\)"):
        place(P4D, 1, placed + [Holder("mistral", s) for s in mistral], "falcon", need(1, 10, 100), 1)


# The seed's table: Llama 2 on ml.p4d.24xlarge (8 x A100 40 GB, 96 vCPU, 1152 GiB).
SEED_TABLE = [
    ("Llama 7B", need(1, 10, 100), 8),
    ("Llama 7B 4-bit", need(1, 10, 100), 8),
    ("Llama 13B", need(1, 10, 100), 8),
    ("Llama 13B 4-bit", need(1, 10, 100), 8),
    ("Llama 70B", need(4, 40, 500), 2),
    ("Llama 70B 4-bit", need(2, 20, 250), 4),
]


@pytest.mark.parametrize("model,requirements,copies", SEED_TABLE, ids=[row[0] for row in SEED_TABLE])
def test_seed_hardware_table(model: str, requirements: ComputeRequirements, copies: int) -> None:
    assert max_copies(P4D, requirements) == copies


def test_fractional_cpus_share_cores_but_not_with_whole_core_copies() -> None:
    t = CATALOG["ml.m5.xlarge"]  # 4 vCPU
    whole = place(t, 1, [], "a", need(0, 2), 1)
    halves = place(t, 1, [Holder("a", s) for s in whole], "b", need(0, 0.5), 4)
    assert [s.cores for s in halves] == [(2,), (2,), (3,), (3,)]
    assert all(c not in whole[0].cores for s in halves for c in s.cores)
    assert max_copies(t, need(0, 0.25, 0.5)) == 16


def test_copies_spill_onto_the_next_instance_and_memory_counts() -> None:
    slots = place(P4D, 2, [], "llama", need(1, 10, 100), 12)
    assert [s.instance for s in slots] == [0] * 8 + [1] * 4
    with pytest.raises(PlacementError, match="MB memory"):
        place(P4D, 1, [], "big", need(0, 1, 2000), 1)


def test_cpu_only_and_unknown_instance_types() -> None:
    with pytest.raises(PlacementError, match="accelerator"):
        place(CATALOG["ml.m5.xlarge"], 1, [], "gpu-model", need(1), 1)
    with pytest.raises(ValueError, match="unknown instance type 'ml.nope'"):
        instance_type("ml.nope")
    local = instance_type("local")
    assert local.vcpus >= 1 and local.memory_mib > 1000


def test_requirement_validation() -> None:
    with pytest.raises(ValueError):
        ComputeRequirements(num_cpus=1.5)
    with pytest.raises(ValueError):
        ComputeRequirements(min_memory_mb=1000, max_memory_mb=500)
    with pytest.raises(ValueError):
        ComputeRequirements(num_accelerators=-1)
