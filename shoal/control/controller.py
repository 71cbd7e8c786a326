"""The controller: endpoints and inference components as desired state, their copies placed and running.

Desired state lives in SQLite (shoal.control.store); copies are derived from it, placed
(shoal.control.placement), started and watched (shoal.control.supervisor), and published to the
gateway's routing table when they serve. Scale-in drains a copy before stopping it; an update rolls:
new copies come into service before as many old ones drain, a batch at a time, and a failed batch rolls
the update back.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from shoal.control.models import (
    ComponentSpec,
    ComponentUpdate,
    ComponentView,
    CopyStatus,
    EndpointSpec,
    EndpointView,
    Status,
)
from shoal.control.placement import Holder, PlacementError, place
from shoal.control.resources import instance_type
from shoal.control.state import Component, Replica
from shoal.control.store import StateStore
from shoal.control.supervisor import WATCH_INTERVAL_S, SupervisionSettings, Supervisor
from shoal.engines import EngineConfigError, engine_kind
from shoal.engines.base import Limits, ServerPolicy
from shoal.engines.translate import TgiLimits
from shoal.errors import ApiError
from shoal.gateway.pool import PoolConfig, RoutingTable
from shoal.gateway.routing import check_settings
from shoal.launch import Slot
from shoal.runtime.base import Runtime

log = logging.getLogger(__name__)
ROLL_SLACK_S = 30.0  # beyond the startup timeout, for a rolling update's new copies to come into service


def not_found(kind: str, name: str) -> ApiError:
    return ApiError(404, f"Could not find {kind} \"{name}\".", "ValidationException")


def conflict(message: str) -> ApiError:
    return ApiError(409, message, "ConflictException")


def invalid(message: str) -> ApiError:
    return ApiError(400, message, "ValidationException")


class PlacementRefused(ApiError):
    """Copies that do not fit, as the APIs answer it (400), with placement's fields for callers that act on
    it (the autoscaler starts as many copies as fit)."""

    def __init__(self, error: PlacementError) -> None:
        super().__init__(400, str(error), "ValidationException")
        self.copy_number, self.short = error.copy_number, error.short


@dataclass(frozen=True)
class BatchSize:
    """How many copies a rolling step replaces: a number of copies, or a percentage of the copy count."""

    copies: int | None = None
    percent: int | None = None

    def of(self, total: int) -> int:
        if self.copies is not None:
            return max(1, self.copies)
        return max(1, total * (self.percent or 100) // 100)


@dataclass(frozen=True)
class RollingPolicy:
    """An update's pace: `batch` new copies at a time come into service before as many old ones drain;
    `wait_s` between batches; a failed batch rolls the update back `rollback` copies at a time."""

    batch: BatchSize = field(default_factory=lambda: BatchSize(copies=1))
    wait_s: float = 0.0
    rollback: BatchSize = field(default_factory=lambda: BatchSize(percent=100))


def same_launch(a: ComponentSpec, b: ComponentSpec) -> bool:
    """Copies of `a` and of `b` run the same process (the copy count aside)."""
    return a.model_dump(exclude={"copies"}) == b.model_dump(exclude={"copies"})


class Controller:
    def __init__(self, store: StateStore, runtime: Runtime, state_dir: Path, table: RoutingTable | None = None,
                 supervision: SupervisionSettings | None = None, policy: ServerPolicy | None = None) -> None:
        self.store = store
        self.runtime = runtime
        self.table = table or RoutingTable()
        self.supervisor = Supervisor(runtime, self.table, state_dir / "logs", supervision)
        self.policy = policy or ServerPolicy()  # what the operator allows components
        self.endpoints: dict[str, EndpointSpec] = {}
        self.components: dict[str, Component] = {}

    # -- lifecycle ----------------------------------------------------------------------
    async def restore(self) -> None:
        """Re-create what the store says should run (after a restart of the server)."""
        for spec in self.store.endpoints():
            self._open_endpoint(spec)
        for comp in sorted(self.store.components(), key=lambda c: c.is_adapter):  # bases before their adapters
            if comp.endpoint in self.endpoints:
                self._adopt(comp)

    def closing(self) -> None:
        """The server is stopping: from now on copies that end stay ended."""
        self.supervisor.closing = True

    async def close(self) -> None:
        self.closing()
        for comp in self.components.values():
            if comp.rolling:
                comp.rolling.cancel()
        await asyncio.gather(*(self.supervisor.stop(c, r, drain=False) for c in self.components.values()
                               for r in c.replicas + c.leaving + c.incoming))
        await self.supervisor.close()
        await self.runtime.close()

    # -- endpoints ----------------------------------------------------------------------
    def create_endpoint(self, spec: EndpointSpec) -> EndpointView:
        if spec.name in self.endpoints:
            raise conflict(f"Cannot create already existing endpoint \"{spec.name}\".")
        self._open_endpoint(spec)
        self.store.put_endpoint(spec)
        return self.endpoint_view(spec.name)

    def _open_endpoint(self, spec: EndpointSpec) -> None:
        self.endpoints[spec.name] = spec
        self.table.set_endpoint(spec.name, spec.routing)

    async def delete_endpoint(self, name: str, cascade: bool = False) -> None:
        self._endpoint(name)
        members = self.members(name)
        if members and not cascade:
            raise conflict(f"Endpoint \"{name}\" still has inference components "
                           f"({', '.join(c.spec.name for c in members)}); delete them first or cascade.")
        for adapters_first in (True, False):  # a base goes after its adapters
            await asyncio.gather(*(self.delete_component(c.spec.name) for c in members
                                   if c.spec.is_adapter == adapters_first))
        self.endpoints.pop(name, None)
        self.table.drop_endpoint(name)
        self.store.delete_endpoint(name)

    def update_endpoint(self, spec: EndpointSpec) -> EndpointView:
        """Another instance count or routing strategy (or instance type, with no copies placed) for an endpoint."""
        old = self._endpoint(spec.name)
        if problem := _misfit(self._holders(spec.name), old, spec):
            raise invalid(problem)
        self._open_endpoint(spec)  # its components' routers follow its strategy at once
        self.store.put_endpoint(spec)
        return self.endpoint_view(spec.name)

    def endpoint_view(self, name: str) -> EndpointView:
        spec = self._endpoint(name)
        members = self.members(name)
        statuses = {c.status for c in members}
        status = next((s for s in (Status.FAILED, Status.CREATING, Status.UPDATING, Status.DELETING)
                       if s in statuses), Status.IN_SERVICE)
        return EndpointView(spec=spec, status=status, components=[c.spec.name for c in members])

    def instance_problem(self, name: str) -> str | None:
        """Why the runtime has no instance for an endpoint at all (a Ray cluster without a node of its type),
        or None."""
        ep = self._endpoint(name)
        count, _gone = self.runtime.instances(ep.instance_type, ep.instance_count)
        if count:
            return None
        return self.runtime.missing_instances_hint(ep.instance_type) or None

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

    def component_view(self, name: str) -> ComponentView:
        comp = self.component(name)
        if comp.spec.is_adapter:
            return ComponentView(spec=comp.redacted_spec(), status=self._adapter_status(comp), reason=comp.failure)
        view = comp.view([r.view(self.table.in_flight(name, r.id)) for r in comp.replicas + comp.incoming])
        serving = sum(r.status == CopyStatus.IN_SERVICE for r in comp.replicas)
        return view.model_copy(update={"desired_copies": len(comp.replicas), "current_copies": serving,
                                       "draining_copies": len(comp.leaving), "adapters": list(comp.adapters)})

    def list_components(self, endpoint: str | None = None) -> list[ComponentView]:
        return [self.component_view(name) for name, c in self.components.items() if endpoint in (None, c.spec.endpoint)]

    def check_engine(self, spec: ComponentSpec) -> None:
        """What the server can tell at deploy: the engine may run here, takes these settings, finds the model
        where it may read it; the component's routing settings are good."""
        try:
            engine_kind(spec.engine).check(spec.deployment(), self.policy)
            check_settings(spec.env)
        except ValueError as exc:  # EngineConfigError, and a routing setting's refusal
            raise invalid(str(exc)) from None

    def create_component(self, spec: ComponentSpec) -> ComponentView:
        self._endpoint(spec.endpoint)
        if spec.name in self.components:
            raise conflict(f"Cannot create already existing inference component \"{spec.name}\".")
        if spec.is_adapter:
            self._adapter_artifact(spec)
            self.store.put_component(spec)
            self._adopt(spec)
            return self.component_view(spec.name)
        self.check_engine(spec)
        slots = self._place(spec.endpoint, spec.name, spec, spec.copies)
        self.store.put_component(spec)
        self._adopt(spec, slots)
        return self.component_view(spec.name)

    def _adopt(self, spec: ComponentSpec, slots: list[Slot] | None = None) -> Component:
        comp = self.components[spec.name] = Component(spec)
        if spec.is_adapter:
            try:
                self._attach_adapter(comp, self._adapter_artifact(spec))
            except ApiError as exc:  # restoring: its base or its file may be gone
                comp.failure = exc.message
            return comp
        try:
            self._publish(comp)
            if slots is None:  # restoring: the machine, the model or the engine may have changed since
                self.check_engine(spec)
                slots = self._place(spec.endpoint, spec.name, spec, spec.copies)
        except ApiError as exc:
            comp.failure = exc.message
            return comp
        for slot in slots:
            self._start_replica(comp, slot)
        return comp

    def _publish(self, comp: Component) -> None:
        """Tell the gateway how to reach and speak to this component's copies (its pool is updated in place)."""
        spec, kind = comp.spec, engine_kind(comp.spec.engine)
        d = spec.deployment()
        try:
            limits = TgiLimits(Limits.of(d).max_total, d.int_setting("MAX_STOP_SEQUENCES") or 4,
                               d.int_setting("MAX_TOP_N_TOKENS") or 5)
        except EngineConfigError as exc:
            raise invalid(str(exc)) from None
        config = PoolConfig(name=spec.name, endpoint=spec.endpoint, model_id=spec.model_id, engine=spec.engine,
                            adapter=kind.adapter(d), limits=limits,
                            routing_settings={k: v for k, v in spec.env.items() if k.startswith("SHOAL_")},
                            adapters=tuple(comp.adapters))
        self.table.publish(config, lambda: comp.status.value, lambda copy_id: self._suspect(comp, copy_id))

    def _suspect(self, comp: Component, copy_id: str) -> None:
        if replica := next((r for r in comp.replicas if r.id == copy_id), None):
            replica.suspect.set()

    def _place(self, endpoint: str, component: str, spec: ComponentSpec, copies: int,
               moving: Replica | None = None) -> list[Slot]:
        """Slots on the endpoint's instances that the runtime has now, beside every other copy there."""
        ep = self.endpoints[endpoint]
        holders = [h for h in self._holders(endpoint) if h.replica is not moving]
        count, gone = self.runtime.instances(ep.instance_type, ep.instance_count)
        if count == 0 and copies and (hint := self.runtime.missing_instances_hint(ep.instance_type)):
            raise invalid(f"copy 1 of {component} cannot be placed: {hint}")
        try:
            return place(instance_type(ep.instance_type), count, holders, component, spec.compute, copies, gone)
        except PlacementError as exc:
            raise PlacementRefused(exc) from None

    def _holders(self, endpoint: str) -> list[Holder]:
        """Every copy on the endpoint's instances: serving, starting, or draining (they keep their slots)."""
        return [_Held(c.spec.name, r.slot, r) for c in self.members(endpoint)
                for r in c.replicas + c.leaving + c.incoming]

    async def update_component(self, name: str, update: ComponentUpdate) -> ComponentView:
        """Scale, and/or roll to new settings one copy at a time."""
        changes = {key: value for key, value in (("copies", update.copies), ("env", update.env)) if value is not None}
        return self.roll_component(self._changeable(name).spec.model_copy(update=changes), RollingPolicy())

    def roll_component(self, spec: ComponentSpec, policy: RollingPolicy) -> ComponentView:
        """Move a component to `spec`: another copy count, and/or another model, engine, settings or compute
        with a rolling update (new copies come into service before old ones drain; a failed batch rolls the
        update back). An update during a roll takes over from it."""
        comp = self._changeable(spec.name)
        old = comp.spec
        if not same_launch(old, spec):
            self.check_engine(spec)
            self._check_protocol(old, spec)
        comp.spec = spec
        try:
            if spec.copies != len(comp.replicas):
                comp.phase = Status.UPDATING
                self._scale(comp, spec.copies)  # copies added run `spec`; copies removed are old ones first
        except ApiError:
            comp.spec = old
            raise
        if not same_launch(old, spec):
            self._begin_roll(comp, old, policy)
        self._save(comp)
        return self.component_view(spec.name)

    def _changeable(self, name: str) -> Component:
        comp = self.component(name)
        if comp.status == Status.DELETING:
            raise conflict(f"Inference component \"{name}\" is being deleted.")
        if comp.spec.is_adapter:
            raise invalid(f"{name} is an adapter inference component: it has no copies or settings of its own "
                          f"(its base {comp.spec.base} has)")
        return comp

    def _check_protocol(self, old: ComponentSpec, new: ComponentSpec) -> None:
        """Old and new copies serve side by side during a roll, behind one pool: they must speak alike."""
        was, will = (engine_kind(s.engine).protocol_of(s.deployment()) for s in (old, new))
        if was != will:
            raise invalid(f"an update cannot change the protocol {new.name}'s copies speak ({was.value} → "
                          f"{will.value}: engine {old.engine} → {new.engine}) while they serve side by side; "
                          f"deploy the new engine as another inference component")

    def _save(self, comp: Component) -> None:
        comp.spec = comp.spec.model_copy(update={"copies": len(comp.replicas)})
        self.store.put_component(comp.spec)

    def _scale(self, comp: Component, copies: int) -> None:
        extra = copies - len(comp.replicas)
        if extra > 0:
            for slot in self._place(comp.spec.endpoint, comp.spec.name, comp.spec, extra):
                self._start_replica(comp, slot)
            comp.failure = None
            return
        # copies of an older spec (a roll in progress) leave first
        keep = sorted(comp.replicas, key=lambda r: not same_launch(r.spec, comp.spec))
        comp.replicas, leaving = keep[:copies], keep[copies:]
        comp.leaving += leaving
        for r in leaving:  # drained in the background; their slots stay taken until they stop
            asyncio.create_task(self._retire(comp, r))

    async def _retire(self, comp: Component, replica: Replica) -> None:
        try:
            await self.supervisor.stop(comp, replica, drain=True)
        finally:
            comp.leaving.remove(replica)

    async def _retire_now(self, comp: Component, replicas: list[Replica]) -> None:
        """Drain and stop `replicas` (out of the component's count at once), whatever happens to the caller."""
        comp.replicas = [r for r in comp.replicas if r not in replicas]
        comp.leaving += replicas
        await asyncio.shield(asyncio.gather(*(self._retire(comp, r) for r in replicas)))

    # -- rolling updates ----------------------------------------------------------------
    def _begin_roll(self, comp: Component, old: ComponentSpec, policy: RollingPolicy) -> None:
        """Roll the copies from `old` to the component's (new) spec, taking over from a roll under way."""
        comp.phase, comp.rolled_back = Status.UPDATING, None
        self._publish(comp)
        if comp.rolling:
            comp.rolling.cancel()
        comp.rolling = asyncio.create_task(self._update(comp, old, policy))

    async def _update(self, comp: Component, old: ComponentSpec, policy: RollingPolicy) -> None:
        """Roll to the component's spec; if a batch fails, roll back to `old`."""
        name = comp.spec.name
        problem = await self._roll_to(comp, comp.spec, policy.batch, policy.wait_s)
        if problem is None:
            log.info("%s updated: every copy runs the new spec", name)
            if all(r.status != CopyStatus.FAILED for r in comp.replicas):  # failed copies were replaced too
                comp.failure = None
            return
        log.warning("%s: update failed (%s); rolling back", name, problem)
        comp.spec = old.model_copy(update={"copies": comp.spec.copies})
        self._publish(comp)
        self.store.put_component(comp.spec)
        back = await self._roll_to(comp, comp.spec, policy.rollback, 0.0)
        if back is None and len(comp.replicas) < comp.spec.copies:  # a copy retired to make room comes back
            try:
                self._scale(comp, comp.spec.copies)
            except ApiError as exc:
                back = exc.message
        if back:
            comp.failure = f"the update failed ({problem}) and so did its rollback ({back})"
        else:
            comp.rolled_back = f"the update was rolled back: {problem}"

    async def _roll_to(self, comp: Component, spec: ComponentSpec, batch: BatchSize, wait_s: float) -> str | None:
        """Replace every copy that does not run `spec` with one that does, a batch at a time: the batch's new
        copies in service first, then as many old ones drained and stopped. What went wrong, or None."""
        fresh: list[Replica] = []
        try:
            while stale := [r for r in comp.replicas if not self._runs(r, spec, comp)]:
                fresh, short = self._trials(comp, spec, min(batch.of(comp.spec.copies), len(stale)))
                if not fresh:  # no room beside the old copies: retire one first (capacity dips by a copy)
                    await self._retire_now(comp, stale[:1])
                    fresh, short = self._trials(comp, spec, 1)
                    if not fresh:
                        return short
                if problem := await self._until_serving(fresh):
                    await self._drop(comp, fresh)
                    return problem
                going = [r for r in stale[:len(fresh)] if r in comp.replicas]
                for r in fresh:
                    comp.incoming.remove(r)
                    r.trial = False
                comp.replicas = [r for r in comp.replicas if r not in going] + fresh
                fresh = []
                await self._retire_now(comp, going)
                await asyncio.sleep(wait_s)
        except asyncio.CancelledError:  # another update or a delete took over: this roll's new copies go
            if fresh:
                asyncio.create_task(self._drop(comp, fresh))
            raise
        return None

    @staticmethod
    def _runs(replica: Replica, spec: ComponentSpec, comp: Component) -> bool:
        """The copy runs `spec`, with the component's adapters where its engine loads them only at start."""
        if not same_launch(replica.spec, spec):
            return False
        return engine_kind(spec.engine).loads_adapters_live or replica.adapters == tuple(comp.adapters.items())

    def _trials(self, comp: Component, spec: ComponentSpec, count: int) -> tuple[list[Replica], str]:
        """Start up to `count` copies of `spec` beside the current ones, as many as there is room for; and
        what is short, if not all fit."""
        started: list[Replica] = []
        for _ in range(count):
            try:
                slot = self._place(spec.endpoint, spec.name, spec, 1)[0]
            except ApiError as exc:
                return started, exc.message
            started.append(self._start_replica(comp, slot, spec, trial=True))
        return started, ""

    @staticmethod
    async def _until_serving(fresh: list[Replica]) -> str | None:
        """Wait until every copy in `fresh` is in service; why one never got there, or None."""
        limit_s = max(r.spec.startup_timeout_s for r in fresh) + ROLL_SLACK_S
        deadline = time.monotonic() + limit_s
        while not all(r.status == CopyStatus.IN_SERVICE for r in fresh):
            if failed := next((r for r in fresh if r.status == CopyStatus.FAILED), None):
                return f"{failed.id}: {failed.reason}"
            if time.monotonic() > deadline:
                return f"{', '.join(r.id for r in fresh)} not in service after {limit_s:g}s"
            await asyncio.sleep(WATCH_INTERVAL_S)
        return None

    async def _drop(self, comp: Component, replicas: list[Replica]) -> None:
        """Stop a roll's new copies (draining those that served)."""
        await asyncio.gather(*(self.supervisor.stop(comp, r, drain=True) for r in replicas))
        comp.incoming = [r for r in comp.incoming if r not in replicas]

    # -- adapters (LoRA): components without copies, served by every copy of their base ---------------------------
    def _adapter_base(self, spec: ComponentSpec) -> Component:
        base = self.components.get(spec.base or "")
        if base is None:
            raise invalid(f"Could not find base inference component \"{spec.base}\" (BaseInferenceComponentName).")
        if base.spec.endpoint != spec.endpoint:
            raise invalid(f"The base inference component {base.spec.name} is on endpoint {base.spec.endpoint}, not "
                          f"{spec.endpoint}: an adapter must be on its base's endpoint.")
        if base.spec.is_adapter:
            raise invalid(f"{base.spec.name} is an adapter inference component: an adapter's base must run a model.")
        return base

    def _adapter_artifact(self, spec: ComponentSpec) -> str:
        """The adapter's file as its base's engine will load it (400 saying why it cannot)."""
        base = self._adapter_base(spec)
        try:
            return engine_kind(base.spec.engine).check_adapter(spec.model_id, self.policy)
        except ValueError as exc:
            raise invalid(str(exc)) from None

    def _attach_adapter(self, comp: Component, artifact: str) -> None:
        base = self._adapter_base(comp.spec)
        base.adapters[comp.spec.name] = artifact
        self.table.add_adapter(comp.spec.name, base.spec.name)
        self._publish(base)
        self._adapters_changed(base)

    def _detach_adapter(self, comp: Component) -> None:
        self.table.remove_adapter(comp.spec.name)
        if (base := self.components.get(comp.spec.base or "")) is not None:
            base.adapters.pop(comp.spec.name, None)
            self._publish(base)
            self._adapters_changed(base)

    def _adapters_changed(self, base: Component) -> None:
        """The base's copies serve its adapters as they are now: a running copy loads or drops them where its
        engine can (the built-in one), else the copies are replaced one at a time, the new ones loading them."""
        if engine_kind(base.spec.engine).loads_adapters_live:
            for replica in base.replicas + base.incoming:
                if replica.status == CopyStatus.IN_SERVICE:
                    asyncio.create_task(self.supervisor.sync_adapters(base, replica))
        elif base.replicas and base.status != Status.DELETING:
            self._begin_roll(base, base.spec, RollingPolicy())

    def _adapter_status(self, comp: Component) -> Status:
        """An adapter has no copies of its own: InService once every copy of its base in service serves it
        (a copy loads it, or is replaced by one that does), else its base's status."""
        base = self.components.get(comp.spec.base or "")
        if comp.phase == Status.DELETING:
            return Status.DELETING
        if comp.failure or base is None:
            return Status.FAILED
        serving = [r for r in base.replicas if r.status == CopyStatus.IN_SERVICE]
        if serving and base.status != Status.FAILED:
            loaded = all(comp.spec.name in dict(r.adapters) for r in serving)
            return Status.IN_SERVICE if loaded else Status.CREATING
        return base.status

    def adapters_of(self, name: str) -> list[str]:
        """The adapter components of `name` (those being deleted aside)."""
        return [n for n, c in self.components.items() if c.spec.base == name and c.deletion is None]

    # -- deleting -----------------------------------------------------------------------
    def start_delete(self, name: str) -> asyncio.Task[None]:
        """Begin deleting a component (status Deleting at once); the task drains and stops its copies."""
        comp = self.component(name)
        if comp.deletion is None and (adapters := self.adapters_of(name)):
            raise invalid(f"Inference component {name} is the base of adapter inference components "
                          f"({', '.join(adapters)}); delete them first.")
        if comp.deletion is None:
            comp.phase = Status.DELETING
            if comp.rolling:
                comp.rolling.cancel()
            comp.deletion = asyncio.create_task(self._delete(comp))
        return comp.deletion

    async def delete_component(self, name: str) -> None:
        await asyncio.shield(self.start_delete(name))

    async def _delete(self, comp: Component) -> None:
        name = comp.spec.name
        if comp.spec.is_adapter:
            self._detach_adapter(comp)
        await asyncio.gather(*(self.supervisor.stop(comp, r, drain=True) for r in comp.replicas + comp.incoming))
        self.components.pop(name, None)
        self.table.close_pool(name)
        self.store.delete_component(name)

    # -- copies -------------------------------------------------------------------------
    def _start_replica(self, comp: Component, slot: Slot, spec: ComponentSpec | None = None,
                       trial: bool = False) -> Replica:
        replica = Replica(id=f"{comp.spec.name}-{comp.next_index}", component=comp.spec.name, slot=slot,
                          spec=spec or comp.spec, trial=trial)
        comp.next_index += 1
        (comp.incoming if trial else comp.replicas).append(replica)
        instance = self.endpoints[comp.spec.endpoint].instance_type
        replica.task = asyncio.create_task(self.supervisor.run(comp, replica, instance,
                                                               lambda r: self._relocate(comp, r)))
        return replica

    def _relocate(self, comp: Component, replica: Replica) -> bool:
        """Move a copy whose instance is gone onto the capacity that is left; False if none is."""
        try:
            replica.slot = self._place(comp.spec.endpoint, comp.spec.name, replica.spec, 1, moving=replica)[0]
        except ApiError as exc:
            self.supervisor.fail(comp, replica, f"lost its instance and cannot be re-placed: {exc.message}")
            return False
        log.warning("%s re-placed on instance %d", replica.id, replica.slot.instance)
        return True


@dataclass
class _Held(Holder):
    """A placed copy, and which replica it is (so a copy being moved does not count against itself)."""

    replica: Replica | None = None


def _misfit(holders: list[Holder], old: EndpointSpec, new: EndpointSpec) -> str | None:
    """Why the copies placed on an endpoint cannot stay where they are under its new shape, or None."""
    if not holders:
        return None
    if new.instance_type != old.instance_type:
        return (f"endpoint {new.name} has copies placed on {old.instance_type}; scale its inference components to "
                f"0 copies before changing its instance type to {new.instance_type}")
    if (used := max(h.slot.instance for h in holders) + 1) > new.instance_count:
        return (f"endpoint {new.name} has copies on instance {used} of {old.instance_type}; scale its inference "
                f"components in before lowering its instance count to {new.instance_count}")
    return None
