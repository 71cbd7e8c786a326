"""The controller: keeps each component's copies placed, running and healthy.

Each copy has a supervising task: launch on its slot, wait for `/health` within the component's
startup timeout (else the component is Failed), then watch the process: a crash or a copy over
MaxMemoryRequiredInMb is restarted with exponential backoff. Scale-in drains a copy (no new requests,
in-flight ones finish) before stopping it; an env update replaces copies one at a time.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shoal.control.models import (
    ComponentSpec,
    ComponentUpdate,
    ComponentView,
    CopyStatus,
    CopyView,
    EndpointSpec,
    EndpointView,
    Status,
)
from shoal.control.placement import Holder, PlacementError, Slot, place
from shoal.control.resources import instance_type
from shoal.control.store import StateStore
from shoal.engine.settings import SECRET_ENV_NAMES
from shoal.errors import ApiError
from shoal.runtime.base import CopyLaunch, LaunchError, RunningCopy, Runtime

log = logging.getLogger(__name__)
WATCH_INTERVAL_S = 0.5
MAX_BACKOFF_S = 30.0
DRAIN_TIMEOUT_S = 120.0


def not_found(kind: str, name: str) -> ApiError:
    return ApiError(404, f"Could not find {kind} \"{name}\".", "ValidationException")


def conflict(message: str) -> ApiError:
    return ApiError(409, message, "ConflictException")


def invalid(message: str) -> ApiError:
    return ApiError(400, message, "ValidationException")


@dataclass(eq=False)
class Replica:
    """One copy: its slot and what the gateway needs to route to it."""

    id: str
    component: str
    slot: Slot
    status: CopyStatus = CopyStatus.STARTING
    handle: RunningCopy | None = None
    in_flight: int = 0
    restarts: int = 0
    reason: str | None = None
    stopping: bool = False
    replace: bool = False  # an env update asked for a fresh process
    unreachable_until: float = 0.0  # the gateway saw it refuse a connection: no requests until then
    task: asyncio.Task | None = None
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def address(self) -> str | None:
        return self.handle.address if self.handle else None

    def view(self) -> CopyView:
        return CopyView(id=self.id, status=self.status, slot=self.slot, address=self.address,
                        pid=self.handle.pid if self.handle else None, restarts=self.restarts,
                        reason=self.reason, in_flight=self.in_flight)


@dataclass(eq=False)
class Component:
    spec: ComponentSpec
    replicas: list[Replica] = field(default_factory=list)
    phase: Status = Status.CREATING
    failure: str | None = None
    next_index: int = 0
    rolling: asyncio.Task | None = None  # an env update replacing copies one by one
    leaving: list[Replica] = field(default_factory=list)  # scaled in, draining: they still hold their slots

    @property
    def status(self) -> Status:
        if self.failure:
            return Status.FAILED
        if self.phase == Status.DELETING or (self.rolling and not self.rolling.done()):
            return self.phase
        if all(r.status == CopyStatus.IN_SERVICE for r in self.replicas):
            return Status.IN_SERVICE
        return self.phase

    def serving(self) -> list[Replica]:
        now = time.monotonic()
        return [r for r in self.replicas if r.status == CopyStatus.IN_SERVICE and r.unreachable_until <= now]

    def view(self) -> ComponentView:
        env = {k: ("***" if k in SECRET_ENV_NAMES else v) for k, v in self.spec.env.items()}
        return ComponentView(spec=self.spec.model_copy(update={"env": env}), status=self.status,
                             reason=self.failure, copies=[r.view() for r in self.replicas])


class Controller:
    def __init__(self, store: StateStore, runtime: Runtime, state_dir: Path) -> None:
        self.store = store
        self.runtime = runtime
        self.log_dir = state_dir / "logs"
        self.endpoints: dict[str, EndpointSpec] = {}
        self.components: dict[str, Component] = {}
        self._http = httpx.AsyncClient(timeout=2.0)

    # -- lifecycle ----------------------------------------------------------------------
    async def restore(self) -> None:
        """Re-create what the store says should run (after a restart of the server)."""
        for spec in self.store.endpoints():
            self.endpoints[spec.name] = spec
        for comp in self.store.components():
            if comp.endpoint in self.endpoints:
                self._adopt(comp)

    async def close(self) -> None:
        await asyncio.gather(*(self._stop_replica(r, drain=False) for c in self.components.values()
                               for r in c.replicas + c.leaving))
        await self._http.aclose()
        await self.runtime.close()

    # -- endpoints ----------------------------------------------------------------------
    def create_endpoint(self, spec: EndpointSpec) -> EndpointView:
        if spec.name in self.endpoints:
            raise conflict(f"Cannot create already existing endpoint \"{spec.name}\".")
        self.endpoints[spec.name] = spec
        self.store.put_endpoint(spec)
        return self.endpoint_view(spec.name)

    async def delete_endpoint(self, name: str, cascade: bool = False) -> None:
        self._endpoint(name)
        members = self.members(name)
        if members and not cascade:
            raise conflict(f"Endpoint \"{name}\" still has inference components "
                           f"({', '.join(c.spec.name for c in members)}); delete them first or cascade.")
        await asyncio.gather(*(self.delete_component(c.spec.name) for c in members))
        del self.endpoints[name]
        self.store.delete_endpoint(name)

    def endpoint_view(self, name: str) -> EndpointView:
        spec = self._endpoint(name)
        members = self.members(name)
        statuses = {c.status for c in members}
        status = next((s for s in (Status.FAILED, Status.CREATING, Status.UPDATING, Status.DELETING)
                       if s in statuses), Status.IN_SERVICE)
        return EndpointView(spec=spec, status=status, components=[c.spec.name for c in members])

    def members(self, endpoint: str) -> list[Component]:
        return [c for c in self.components.values() if c.spec.endpoint == endpoint]

    def _endpoint(self, name: str) -> EndpointSpec:
        try:
            return self.endpoints[name]
        except KeyError:
            raise not_found("endpoint", name) from None

    # -- components ---------------------------------------------------------------------
    def component(self, name: str) -> Component:
        try:
            return self.components[name]
        except KeyError:
            raise not_found("inference component", name) from None

    def create_component(self, spec: ComponentSpec) -> ComponentView:
        self._endpoint(spec.endpoint)
        if spec.name in self.components:
            raise conflict(f"Cannot create already existing inference component \"{spec.name}\".")
        slots = self._place(spec.endpoint, spec.name, spec, spec.copies)
        self.store.put_component(spec)
        return self._adopt(spec, slots).view()

    def _adopt(self, spec: ComponentSpec, slots: list[Slot] | None = None) -> Component:
        comp = self.components[spec.name] = Component(spec)
        if slots is None:
            try:
                slots = self._place(spec.endpoint, spec.name, spec, spec.copies)
            except ApiError as exc:  # the machine shrank since the state was written
                comp.failure = exc.message
                return comp
        for slot in slots:
            self._start_replica(comp, slot)
        return comp

    def _place(self, endpoint: str, component: str, spec: ComponentSpec, copies: int,
               moving: Replica | None = None) -> list[Slot]:
        """Slots on the endpoint's instances that the runtime has now, beside every other copy there."""
        ep = self.endpoints[endpoint]
        holders = [Holder(c.spec.name, r.slot) for c in self.members(endpoint) for r in c.replicas + c.leaving
                   if r is not moving]
        count, gone = self.runtime.instances(ep.instance_type, ep.instance_count)
        try:
            return place(instance_type(ep.instance_type), count, holders, component, spec.compute, copies, gone)
        except PlacementError as exc:
            raise invalid(str(exc)) from None

    async def update_component(self, name: str, update: ComponentUpdate) -> ComponentView:
        comp = self.component(name)
        if comp.status == Status.DELETING:
            raise conflict(f"Inference component \"{name}\" is being deleted.")
        if update.copies is not None and update.copies != len(comp.replicas):
            comp.phase = Status.UPDATING
            self._scale(comp, update.copies)
        if update.env is not None and update.env != comp.spec.env:
            comp.phase = Status.UPDATING
            comp.spec = comp.spec.model_copy(update={"env": update.env})
            if comp.rolling:
                comp.rolling.cancel()
            comp.rolling = asyncio.create_task(self._roll(comp))
        comp.spec = comp.spec.model_copy(update={"copies": len(comp.replicas)})
        self.store.put_component(comp.spec)
        return comp.view()

    def _scale(self, comp: Component, copies: int) -> None:
        extra = copies - len(comp.replicas)
        if extra > 0:
            for slot in self._place(comp.spec.endpoint, comp.spec.name, comp.spec, extra):
                self._start_replica(comp, slot)
            comp.failure = None
            return
        leaving = comp.replicas[copies:]
        comp.replicas = comp.replicas[:copies]
        comp.leaving += leaving
        for r in leaving:  # drained in the background; their slots stay taken until they stop
            asyncio.create_task(self._retire(comp, r))

    async def _retire(self, comp: Component, replica: Replica) -> None:
        try:
            await self._stop_replica(replica, drain=True)
        finally:
            comp.leaving.remove(replica)

    async def _roll(self, comp: Component) -> None:
        """Replace copies one at a time so the component keeps serving during an env update."""
        for r in list(comp.replicas):
            r.replace = True
            while r in comp.replicas and (r.replace or r.status != CopyStatus.IN_SERVICE) and not r.stopping:
                if r.status == CopyStatus.FAILED:
                    return
                await asyncio.sleep(WATCH_INTERVAL_S)

    async def delete_component(self, name: str) -> None:
        comp = self.component(name)
        comp.phase = Status.DELETING
        await asyncio.gather(*(self._stop_replica(r, drain=True) for r in comp.replicas))
        self.components.pop(name, None)
        self.store.delete_component(name)

    # -- copies -------------------------------------------------------------------------
    def _start_replica(self, comp: Component, slot: Slot) -> Replica:
        replica = Replica(id=f"{comp.spec.name}-{comp.next_index}", component=comp.spec.name, slot=slot)
        comp.next_index += 1
        replica.idle.set()
        comp.replicas.append(replica)
        replica.task = asyncio.create_task(self._supervise(comp, replica))
        return replica

    async def _drain(self, replica: Replica) -> None:
        """No new requests for the copy; wait (bounded) for its in-flight ones to finish."""
        replica.status = CopyStatus.DRAINING
        try:
            await asyncio.wait_for(replica.idle.wait(), DRAIN_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.warning("%s still had %d requests after %ss; stopping it anyway", replica.id, replica.in_flight,
                        DRAIN_TIMEOUT_S)

    async def _stop_replica(self, replica: Replica, drain: bool) -> None:
        replica.stopping = True
        if drain and replica.status == CopyStatus.IN_SERVICE:
            await self._drain(replica)
        if replica.task:
            replica.task.cancel()
        if replica.handle:
            await replica.handle.stop()

    async def _supervise(self, comp: Component, replica: Replica) -> None:
        backoff = 1.0
        instance_type_name = self.endpoints[comp.spec.endpoint].instance_type
        while not replica.stopping:
            launched = time.monotonic()
            try:
                replica.handle = await self.runtime.launch(CopyLaunch(
                    replica.id, comp.spec.model_id, comp.spec.env, replica.slot,
                    self.log_dir / f"{replica.id}.log", instance_type_name))
            except LaunchError as exc:
                replica.reason = exc.reason
                if not exc.retry:
                    replica.status, comp.failure = CopyStatus.FAILED, f"{replica.id}: {exc.reason}"
                    return
                replica.status = CopyStatus.STARTING
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            problem = await self._wait_healthy(replica.handle, comp.spec.startup_timeout_s)
            if problem:
                await replica.handle.stop(grace_s=2)
                replica.status, replica.reason = CopyStatus.FAILED, problem
                comp.failure = f"{replica.id}: {problem}"
                log.error("%s failed to start: %s", replica.id, problem)
                return
            replica.status, replica.reason, replica.unreachable_until = CopyStatus.IN_SERVICE, None, 0.0
            log.info("%s in service at %s", replica.id, replica.address)
            why = await self._watch(comp, replica)
            if replica.stopping:
                return
            if why == "replaced":
                await self._drain_and_stop(replica)
                replica.replace = False
                continue
            replica.restarts += 1
            replica.status, replica.reason = CopyStatus.RESTARTING, why
            log.warning("%s %s; restarting in %.0fs", replica.id, why, backoff)
            await replica.handle.stop(grace_s=2)
            if replica.handle.instance_lost and not self._replace(comp, replica):
                return
            backoff = 1.0 if time.monotonic() - launched > 2 * MAX_BACKOFF_S else min(backoff * 2, MAX_BACKOFF_S)
            await asyncio.sleep(backoff)

    def _replace(self, comp: Component, replica: Replica) -> bool:
        """Move a copy whose instance is gone onto the capacity that is left; False if none is."""
        try:
            replica.slot = self._place(comp.spec.endpoint, comp.spec.name, comp.spec, 1, moving=replica)[0]
        except ApiError as exc:
            replica.status = CopyStatus.FAILED
            replica.reason = comp.failure = f"{replica.id} lost its instance and cannot be re-placed: {exc.message}"
            log.error("%s", comp.failure)
            return False
        log.warning("%s re-placed on instance %d", replica.id, replica.slot.instance)
        return True

    async def _wait_healthy(self, handle: RunningCopy, timeout_s: int) -> str | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (ended := handle.exit_status()) is not None:
                return f"engine {ended} during startup"
            try:
                if (await self._http.get(f"{handle.address}/health")).status_code == 200:
                    return None
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
        return f"no healthy answer from /health within ContainerStartupHealthCheckTimeoutInSeconds={timeout_s}"

    async def _watch(self, comp: Component, replica: Replica) -> str:
        """Return why the copy must be restarted: it ended, grew past its memory limit, or was replaced."""
        assert replica.handle is not None
        limit = comp.spec.compute.max_memory_mb
        while not replica.stopping:
            if (ended := replica.handle.exit_status()) is not None:
                return ended
            if limit and (used := replica.handle.memory_mb() or 0) > limit:
                return f"used {used:.0f} MB, over MaxMemoryRequiredInMb={limit}"
            if replica.replace:
                return "replaced"
            await asyncio.sleep(WATCH_INTERVAL_S)
        return "stopping"

    async def _drain_and_stop(self, replica: Replica) -> None:
        await self._drain(replica)
        assert replica.handle is not None
        await replica.handle.stop()
        replica.status = CopyStatus.STARTING

    # -- views --------------------------------------------------------------------------
    def list_components(self, endpoint: str | None = None) -> list[ComponentView]:
        return [c.view() for c in self.components.values() if endpoint in (None, c.spec.endpoint)]
