"""What the controller needs from a runtime: launch a copy on its slot, watch it, stop it."""
from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shoal.control.placement import Slot


@dataclass(frozen=True)
class CopyLaunch:
    copy_id: str
    model_id: str
    env: dict[str, str]
    slot: Slot
    log_path: Path
    instance_type: str = "local"


class LaunchError(Exception):
    """A copy could not be started. `retry`: the cause may pass (no room now) or not (can never fit)."""

    def __init__(self, reason: str, retry: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


# What a copy runs: shoal's engine, or any TGI-compatible server that takes --host and --port.
ENGINE_COMMAND = (sys.executable, "-m", "shoal.cli", "engine")


def engine_command(command: str | None) -> tuple[str, ...]:
    return tuple(shlex.split(command)) if command else ENGINE_COMMAND


def engine_env(launch: CopyLaunch, port: int) -> dict[str, str]:
    """The settings a copy's engine starts with: the component's env plus its slot."""
    slot = launch.slot
    return {
        **launch.env,
        "HF_MODEL_ID": launch.model_id,
        "PORT": str(port),
        "CUDA_VISIBLE_DEVICES": ",".join(str(a) for a in slot.accelerators),
        "SM_NUM_GPUS": str(len(slot.accelerators)),
        "SHOAL_NUM_THREADS": str(max(1, len(slot.cores))),
    }


class RunningCopy(Protocol):
    address: str  # base URL of the copy's engine
    pid: int | None
    instance_lost: bool  # its instance (machine, Ray node) is gone: the copy must be placed elsewhere

    def exit_status(self) -> str | None:
        """None while it runs; why it ended otherwise."""
        ...

    def memory_mb(self) -> float | None: ...

    async def stop(self, grace_s: float = 10.0) -> None: ...


class Runtime(Protocol):
    def instances(self, instance_type: str, wanted: int) -> tuple[int, frozenset[int]]:
        """How many instances an endpoint of this type and count has, and which of them are gone."""
        ...

    async def launch(self, launch: CopyLaunch) -> RunningCopy: ...

    async def close(self) -> None: ...
