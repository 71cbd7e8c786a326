"""The controller: endpoints and inference components as desired state, their copies placed and running.

Desired state lives in SQLite (shoal.control.store); copies are derived from it, placed
(shoal.control.placement), started and watched (shoal.control.supervisor), and published to the
gateway's routing table when they serve. Scale-in drains a copy before stopping it; an update replaces
copies one at a time.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from shoal.control.autoscaling.policy import AutoscalingView
from shoal.control.models import ComponentSpec, ComponentUpdate, ComponentView, CopyStatus, EndpointSpec, \
    EndpointView, Status
from shoal.control.placement import Holder, PlacementError, place
from shoal.control.resources import instance_type
from shoal.control.state import Component, Replica
from shoal.control.store import StateStore
from shoal.control.supervisor import WATCH_INTERVAL_S, SupervisionSettings, Supervisor
from shoal.engines import EngineConfigError, engine_kind
from shoal.engines.base import Limits
from shoal.errors import ApiError, ModelNotFoundError
from shoal.gateway.pool import PoolConfig, RoutingTable
from shoal.models.registry import check_model_location, default_model_dirs
from shoal.runtime.base import Runtime, Slot

log = logging.getLogger(__name__)


def not_found(kind: str, name: str) -> ApiError:
    return ApiError(404, f"Could not find {kind} \"{name}\".", "ValidationException")


def conflict(message: str) -> ApiError:
    return ApiError(409, message, "ConflictException")


def invalid(message: str) -> ApiError:
    return ApiError(400, message, "ValidationException")


class Controller:
    def __init__(self, store: StateStore, runtime: Runtime, state_dir: Path, table: RoutingTable | None = None,
                 supervision: SupervisionSettings | None = None, allow_command_engine: bool = False,
                 model_dirs: tuple[Path, ...] = ()) -> None:
        self.store = store
        self.runtime = runtime
        self.table = table or RoutingTable()
        self.supervisor = Supervisor(runtime, self.table, state_dir / "logs", supervision)
        self.allow_command_engine = allow_command_engine
        self.model_dirs = model_dirs or default_model_dirs()
        self.endpoints: dict[str, EndpointSpec] = {}
        self.components: dict[str, Component] = {}
        self.autoscaling_view: Callable[[str], AutoscalingView | None] = lambda _name: None  # set by the autoscaler

    # -- lifecycle ----------------------------------------------------------------------
    async def restore(self) -> None:
        """Re-create what the store says should run (after a restart of the server)."""
        for spec in self.store.endpoints():
            self._open_endpoint(spec)
        for comp in self.store.components():
            if comp.endpoint in self.endpoints:
                self._adopt(comp)

    async def close(self) -> None:
        await asyncio.gather(*(self.supervisor.stop(c, r, drain=False) for c in self.components.values()
                               for r in c.replicas + c.leaving))
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
        await asyncio.gather(*(self.delete_component(c.spec.name) for c in members))
        del self.endpoints[name]
        self.table.drop_endpoint(name)
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

    def component_view(self, name: str) -> ComponentView:
        comp = self.component(name)
        view = comp.view([r.view(self.table.in_flight(name, r.id)) for r in comp.replicas])
        serving = sum(r.status == CopyStatus.IN_SERVICE for r in comp.replicas)
        return view.model_copy(update={"desired_copies": len(comp.replicas), "current_copies": serving,
                                       "draining_copies": len(comp.leaving), "autoscaling": self.autoscaling_view(name)})

    def list_components(self, endpoint: str | None = None) -> list[ComponentView]:
        return [self.component_view(name) for name, c in self.components.items() if endpoint in (None, c.spec.endpoint)]

    def check_engine(self, spec: ComponentSpec) -> None:
        """What the server can tell at deploy: the engine may run here, takes these settings, finds the model."""
        if spec.engine == "command" and not self.allow_command_engine:
            raise invalid("engine 'command' runs any command line on this server; it is off unless the server "
                          "is started with --allow-command-engine")
        try:
            if spec.engine != "command":  # a command line was allowed by the operator: it decides
                check_model_location(spec.model_id, self.model_dirs)
            engine_kind(spec.engine).check(spec.deployment())
        except (EngineConfigError, ModelNotFoundError) as exc:
            raise invalid(str(exc)) from None

    def create_component(self, spec: ComponentSpec) -> ComponentView:
        self._endpoint(spec.endpoint)
        if spec.name in self.components:
            raise conflict(f"Cannot create already existing inference component \"{spec.name}\".")
        self.check_engine(spec)
        slots = self._place(spec.endpoint, spec.name, spec, spec.copies)
        self.store.put_component(spec)
        self._adopt(spec, slots)
        return self.component_view(spec.name)

    def _adopt(self, spec: ComponentSpec, slots: list[Slot] | None = None) -> Component:
        comp = self.components[spec.name] = Component(spec)
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
        """Tell the gateway how to reach and speak to this component's copies."""
        spec, kind = comp.spec, engine_kind(comp.spec.engine)
        d = spec.deployment()
        try:
            max_total = Limits.of(d).max_total
        except EngineConfigError as exc:
            raise invalid(str(exc)) from None
        config = PoolConfig(name=spec.name, endpoint=spec.endpoint, model_id=spec.model_id, engine=spec.engine,
                            protocol=kind.protocol_of(d), per_copy_limit=kind.copy_concurrency(d),
                            max_total_tokens=max_total, max_stop_sequences=d.int_setting("MAX_STOP_SEQUENCES") or 4,
                            max_top_n_tokens=d.int_setting("MAX_TOP_N_TOKENS") or 5)
        self.table.open_pool(config, lambda: comp.status.value, lambda copy_id: self._suspect(comp, copy_id))

    def _suspect(self, comp: Component, copy_id: str) -> None:
        if replica := next((r for r in comp.replicas if r.id == copy_id), None):
            replica.suspect.set()

    def _place(self, endpoint: str, component: str, spec: ComponentSpec, copies: int,
               moving: Replica | None = None) -> list[Slot]:
        """Slots on the endpoint's instances that the runtime has now, beside every other copy there."""
        ep = self.endpoints[endpoint]
        holders = [Holder(c.spec.name, r.slot) for c in self.members(endpoint) for r in c.replicas + c.leaving
                   if r is not moving]
        count, gone = self.runtime.instances(ep.instance_type, ep.instance_count)
        if count == 0 and copies and (hint := self.runtime.missing_instances_hint(ep.instance_type)):
            raise invalid(f"copy 1 of {component} cannot be placed: {hint}")
        try:
            return place(instance_type(ep.instance_type), count, holders, component, spec.compute, copies, gone)
        except PlacementError as exc:
            raise invalid(str(exc)) from None

    async def update_component(self, name: str, update: ComponentUpdate) -> ComponentView:
        comp = self.component(name)
        if comp.status == Status.DELETING:
            raise conflict(f"Inference component \"{name}\" is being deleted.")
        if update.env is not None and update.env != comp.spec.env:
            self.check_engine(comp.spec.model_copy(update={"env": update.env}))
        if update.copies is not None and update.copies != len(comp.replicas):
            comp.phase = Status.UPDATING
            self._scale(comp, update.copies)
        if update.env is not None and update.env != comp.spec.env:
            comp.phase = Status.UPDATING
            comp.spec = comp.spec.model_copy(update={"env": update.env})
            self._publish(comp)
            if comp.rolling:
                comp.rolling.cancel()
            comp.rolling = asyncio.create_task(self._roll(comp))
        comp.spec = comp.spec.model_copy(update={"copies": len(comp.replicas)})
        self.store.put_component(comp.spec)
        return self.component_view(name)

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
            await self.supervisor.stop(comp, replica, drain=True)
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
        await asyncio.gather(*(self.supervisor.stop(comp, r, drain=True) for r in comp.replicas))
        self.components.pop(name, None)
        self.table.close_pool(name)
        self.store.delete_component(name)

    # -- copies -------------------------------------------------------------------------
    def _start_replica(self, comp: Component, slot: Slot) -> Replica:
        replica = Replica(id=f"{comp.spec.name}-{comp.next_index}", component=comp.spec.name, slot=slot)
        comp.next_index += 1
        comp.replicas.append(replica)
        instance = self.endpoints[comp.spec.endpoint].instance_type
        replica.task = asyncio.create_task(self.supervisor.run(comp, replica, instance,
                                                               lambda r: self._relocate(comp, r)))
        return replica

    def _relocate(self, comp: Component, replica: Replica) -> bool:
        """Move a copy whose instance is gone onto the capacity that is left; False if none is."""
        try:
            replica.slot = self._place(comp.spec.endpoint, comp.spec.name, comp.spec, 1, moving=replica)[0]
        except ApiError as exc:
            self.supervisor.fail(comp, replica, f"lost its instance and cannot be re-placed: {exc.message}")
            return False
        log.warning("%s re-placed on instance %d", replica.id, replica.slot.instance)
        return True
