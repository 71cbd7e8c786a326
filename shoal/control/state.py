"""The controller's live state: components and their copies (replicas), and how describe shows them."""
from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from shoal.control.models import ComponentSpec, ComponentView, CopyStatus, CopyView, Status
from shoal.launch import Slot
from shoal.runtime.base import RunningCopy
from shoal.security.environment import redacted


@dataclass(eq=False)
class Replica:
    """One copy: its slot, its process, and what happened to it."""

    id: str
    component: str
    slot: Slot
    spec: ComponentSpec  # what this copy runs (during a rolling update, old and new copies differ)
    status: CopyStatus = CopyStatus.STARTING
    handle: RunningCopy | None = None
    health_path: str = "/health"  # the engine's readiness route
    adapters: tuple[tuple[str, str], ...] = ()  # the LoRA adapters it was started with, or has loaded since
    token: str = field(default="", repr=False)  # the copy's credential (shoal.engines.base.with_credential)
    restarts: int = 0
    reason: str | None = None
    stopping: bool = False
    trial: bool = False  # started by a rolling update and not yet replacing a copy: its failure is the update's
    task: asyncio.Task | None = None
    adapters_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)  # one PUT /adapters at a time
    suspect: asyncio.Event = field(default_factory=asyncio.Event)  # the gateway saw it keep a request waiting
    recent_restarts: deque[float] = field(default_factory=deque)  # monotonic times, for the crash-loop rule

    @property
    def address(self) -> str | None:
        return self.handle.address if self.handle else None

    @property
    def adapter_names(self) -> list[str]:
        return [name for name, _ in self.adapters]

    def restarts_within(self, window_s: float) -> int:
        """Count a restart now; how many there were in the last `window_s` seconds."""
        now = time.monotonic()
        self.recent_restarts.append(now)
        while self.recent_restarts and self.recent_restarts[0] < now - window_s:
            self.recent_restarts.popleft()
        return len(self.recent_restarts)

    def view(self, in_flight: int) -> CopyView:
        return CopyView(id=self.id, status=self.status, slot=self.slot, address=self.address,
                        pid=self.handle.pid if self.handle else None, restarts=self.restarts,
                        reason=self.reason, in_flight=in_flight)


@dataclass(eq=False)
class Component:
    spec: ComponentSpec
    replicas: list[Replica] = field(default_factory=list)
    phase: Status = Status.CREATING
    failure: str | None = None
    next_index: int = 0
    rolling: asyncio.Task | None = None  # an update replacing copies
    deletion: asyncio.Task | None = None  # draining and stopping every copy, then forgetting the component
    rolled_back: str | None = None  # why the last update was rolled back
    leaving: list[Replica] = field(default_factory=list)  # scaled in, draining: they still hold their slots
    incoming: list[Replica] = field(default_factory=list)  # a rolling update's new copies, not yet serving
    adapters: dict[str, str] = field(default_factory=dict)  # its adapter components: name -> artifact, in order

    @property
    def status(self) -> Status:
        if self.phase == Status.DELETING:
            return self.phase
        if self.failure:
            return Status.FAILED
        if self.rolling and not self.rolling.done():
            return self.phase
        if all(r.status == CopyStatus.IN_SERVICE for r in self.replicas):
            return Status.IN_SERVICE
        return self.phase

    def redacted_spec(self) -> ComponentSpec:
        return self.spec.model_copy(update={"env": redacted(self.spec.env)})

    def view(self, copies: list[CopyView]) -> ComponentView:
        return ComponentView(spec=self.redacted_spec(), status=self.status, reason=self.failure or self.rolled_back,
                             copies=copies)
