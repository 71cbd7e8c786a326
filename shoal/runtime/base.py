"""What the controller needs from a runtime: launch a copy on its slot, watch it, stop it.

A runtime knows nothing of engines: it runs a `LaunchPlan` (argv + env, made by an engine recipe in
`shoal.engines`) on a `Slot` (made by placement), filling in the host and port it chose (shoal.launch).
"""
from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shoal.launch import LaunchPlan, Slot


@dataclass(frozen=True)
class CopyLaunch:
    copy_id: str
    plan: LaunchPlan
    slot: Slot
    log_path: Path
    instance_type: str = "local"


class LaunchError(Exception):
    """A copy could not be started. `retry`: the cause may pass (no room now) or not (can never fit)."""

    def __init__(self, reason: str, retry: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


def describe_exit(code: int) -> str:
    """A process's return code in words: `killed by signal 11 (SIGSEGV: Segmentation fault)`."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        sig = signal.Signals(-code)
    except ValueError:
        return f"killed by signal {-code}"
    return f"killed by signal {-code} ({sig.name}: {signal.strsignal(sig)})"


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def log_tail(path: Path, lines: int = 6, max_bytes: int = 16384) -> list[str]:
    """The last non-empty lines of a copy's log (progress bars and colours removed); [] if unreadable."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - max_bytes))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    kept = [_ANSI.sub("", line.split("\r")[-1]).rstrip() for line in text.splitlines()]
    return [line for line in kept if line.strip()][-lines:]


class RunningCopy(Protocol):
    address: str  # base URL of the copy's engine
    pid: int | None
    instance_lost: bool  # its instance (machine, Ray node) is gone: the copy must be placed elsewhere

    def exit_status(self) -> str | None:
        """None while it runs; why it ended otherwise (see describe_exit)."""
        ...

    def memory_mb(self) -> float | None: ...

    def cpu_percent(self) -> float | None:
        """CPU use since the previous call, in % of one core (None: the first call, or not measurable here)."""
        ...

    async def stop(self, grace_s: float = 10.0) -> None: ...


class Runtime(Protocol):
    def instances(self, instance_type: str, wanted: int) -> tuple[int, frozenset[int]]:
        """How many instances an endpoint of this type and count has, and which of them are gone."""
        ...

    def missing_instances_hint(self, instance_type: str) -> str:
        """What to do when there is no instance of this type at all ('' when nothing can be done)."""
        ...

    async def launch(self, launch: CopyLaunch) -> RunningCopy: ...

    async def close(self) -> None: ...
