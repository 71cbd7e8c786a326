"""What the controller needs from a runtime: launch a copy on its slot, watch it, stop it."""
from __future__ import annotations

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

    def exit_status(self) -> str | None:
        """None while it runs; why it ended otherwise."""
        ...

    def memory_mb(self) -> float | None: ...

    async def stop(self, grace_s: float = 10.0) -> None: ...


class Runtime(Protocol):
    async def launch(self, launch: CopyLaunch) -> RunningCopy: ...

    async def close(self) -> None: ...
