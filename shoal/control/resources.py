"""Machine shapes (SageMaker's instance types, and `local`) and what one copy asks of them."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache

import psutil
from pydantic import BaseModel, Field, model_validator


@dataclass(frozen=True)
class InstanceType:
    name: str
    accelerators: int
    accelerator_name: str
    accelerator_memory_gib: int
    vcpus: int
    memory_mib: int


def _gib(n: int) -> int:
    return n * 1024


CATALOG: dict[str, InstanceType] = {t.name: t for t in (
    InstanceType("ml.p4d.24xlarge", 8, "A100-40GB", 40, 96, _gib(1152)),
    InstanceType("ml.p4de.24xlarge", 8, "A100-80GB", 80, 96, _gib(1152)),
    InstanceType("ml.p5.48xlarge", 8, "H100-80GB", 80, 192, _gib(2048)),
    InstanceType("ml.g5.xlarge", 1, "A10G", 24, 4, _gib(16)),
    InstanceType("ml.g5.2xlarge", 1, "A10G", 24, 8, _gib(32)),
    InstanceType("ml.g5.12xlarge", 4, "A10G", 24, 48, _gib(192)),
    InstanceType("ml.g5.48xlarge", 8, "A10G", 24, 192, _gib(768)),
    InstanceType("ml.g6.12xlarge", 4, "L4", 24, 48, _gib(192)),
    InstanceType("ml.g6.48xlarge", 8, "L4", 24, 192, _gib(768)),
    InstanceType("ml.m5.xlarge", 0, "", 0, 4, _gib(16)),
    InstanceType("ml.c5.2xlarge", 0, "", 0, 8, _gib(16)),
)}


def _gpus() -> tuple[int, str, int]:
    """(count, name, memory GiB) of NVIDIA GPUs visible through nvidia-smi; (0, "", 0) without."""
    if not shutil.which("nvidia-smi"):
        return 0, "", 0
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return 0, "", 0
    rows = [line.split(", ") for line in out.strip().splitlines() if line]
    if not rows:
        return 0, "", 0
    return len(rows), rows[0][0], int(float(rows[0][1]) / 1024)


@lru_cache(maxsize=1)
def local_instance() -> InstanceType:
    """This machine: the cores this process may use, its memory, its GPUs."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    count, name, memory = _gpus()
    return InstanceType("local", count, name, memory, cores, psutil.virtual_memory().total // (1 << 20))


def instance_type(name: str) -> InstanceType:
    if name == "local":
        return local_instance()
    try:
        return CATALOG[name]
    except KeyError:
        known = ", ".join(["local", *CATALOG])
        raise ValueError(f"unknown instance type '{name}'; known: {known}") from None


class ComputeRequirements(BaseModel):
    """SageMaker's ComputeResourceRequirements of one copy."""

    num_accelerators: int = Field(0, ge=0, alias="NumberOfAcceleratorDevicesRequired")
    num_cpus: float = Field(1.0, gt=0, alias="NumberOfCpuCoresRequired")
    min_memory_mb: int = Field(1024, ge=0, alias="MinMemoryRequiredInMb")
    max_memory_mb: int | None = Field(None, gt=0, alias="MaxMemoryRequiredInMb")

    model_config = {"populate_by_name": True}

    @model_validator(mode="after")
    def _memory_bounds(self) -> ComputeRequirements:
        if self.max_memory_mb is not None and self.max_memory_mb < self.min_memory_mb:
            raise ValueError("MaxMemoryRequiredInMb must be >= MinMemoryRequiredInMb")
        if self.num_cpus > 1 and self.num_cpus != int(self.num_cpus):
            raise ValueError("NumberOfCpuCoresRequired above 1 must be a whole number of cores")
        return self
