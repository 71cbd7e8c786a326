"""What the controller needs from a runtime: launch a copy on its slot, watch it, stop it.

A runtime knows nothing of engines: it runs a `LaunchPlan` (argv + env, made by an engine recipe in
`shoal.engines`) on a `Slot` (made by placement), filling in the host and port it chose.
"""
from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

HOST, PORT = "{host}", "{port}"  # placeholders in a LaunchPlan, filled in by the runtime


@dataclass(frozen=True)
class Slot:
    """Where one copy runs: an instance, its accelerators and cores, a memory budget."""

    instance: int
    accelerators: tuple[int, ...]
    cores: tuple[int, ...]
    cpu_share: float  # of the cores above (fractional copies share one core)
    memory_mb: int


@dataclass(frozen=True)
class LaunchPlan:
    """The process of one copy: its command line and environment (with `{host}` / `{port}` left for
    the runtime), and the route that says it is ready."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/health"

    def render(self, host: str, port: int) -> tuple[list[str], dict[str, str]]:
        def fill(text: str) -> str:
            return text.replace(HOST, host).replace(PORT, str(port))
        return [fill(a) for a in self.argv], {k: fill(v) for k, v in self.env.items()}


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
