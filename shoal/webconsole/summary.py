"""What the console's pages show in one answer: endpoints with their instances (accelerators, cores,
memory), components (model, engine, adapters, copies desired / in service, status, routing strategy,
autoscaling and its recent activities) and every copy where it runs (its slot), including copies starting,
draining and failed, with their reasons. Read from the controller, the gateway's routing table and the
autoscaler as they are now; nothing is stored."""
from __future__ import annotations

from typing import Any

from shoal import __version__
from shoal.control.autoscaling.scaler import Autoscaler
from shoal.control.controller import Controller
from shoal.control.models import CopyStatus
from shoal.control.resources import CATALOG, instance_type
from shoal.control.state import Component, Replica
from shoal.engines import DEFAULT_ENGINE, ENGINES
from shoal.gateway.routing import DEFAULT_STRATEGY, STRATEGIES
from shoal.models.registry import DEFAULT_MODEL
from shoal.runtime.base import log_tail

RECENT_ACTIVITIES = 20  # per component; the whole history is the autoscaling API's


def _copy(name: str, replica: Replica, role: str, comp: Component, controller: Controller) -> dict[str, Any]:
    pool = controller.table.pools.get(name)
    backend = pool.backend(replica.id) if pool else None
    slot = replica.slot
    status = CopyStatus.DRAINING.value if role == "leaving" and replica.status == CopyStatus.IN_SERVICE \
        else replica.status.value
    return {"id": replica.id, "component": name, "status": status, "role": role,
            "instance": slot.instance, "accelerators": list(slot.accelerators), "cores": list(slot.cores),
            "cpu_share": slot.cpu_share, "memory_mb": slot.memory_mb, "address": replica.address,
            "pid": replica.handle.pid if replica.handle else None, "restarts": replica.restarts,
            "reason": replica.reason, "in_flight": backend.in_flight if backend else 0,
            "limit": backend.limit if backend else None,
            "current_spec": replica.spec.model_dump(exclude={"copies"}) == comp.spec.model_dump(exclude={"copies"})}


def _component(name: str, comp: Component, controller: Controller, scaler: Autoscaler | None) -> dict[str, Any]:
    view = controller.component_view(name)
    spec = view.spec
    pool = controller.table.pools.get(name)
    load = pool.load() if pool else None
    copies = [_copy(name, r, role, comp, controller) for role, replicas in
              (("serving", comp.replicas), ("incoming", comp.incoming), ("leaving", comp.leaving)) for r in replicas]
    return {
        "name": name, "endpoint": spec.endpoint, "model_id": spec.model_id, "engine": spec.engine,
        "base": spec.base, "adapters": view.adapters, "status": view.status.value, "reason": view.reason,
        "desired": view.desired_copies, "current": view.current_copies, "draining": view.draining_copies,
        "routing": controller.endpoints[spec.endpoint].routing if spec.endpoint in controller.endpoints else None,
        "compute": spec.compute.model_dump(), "env": spec.env, "startup_timeout_s": spec.startup_timeout_s,
        "in_flight": load.in_flight if load else 0, "queued": load.queued if load else 0,
        "capacity": pool.capacity() if pool else 0, "copies": copies, "autoscaling": _autoscaling(name, scaler),
    }


def _autoscaling(name: str, scaler: Autoscaler | None) -> dict[str, Any] | None:
    """The component's policy (as the form edits it), its summary and its latest activities, newest first."""
    policy = scaler.get(name) if scaler else None
    view = scaler.view(name) if scaler else None
    if scaler is None or policy is None or view is None:
        return None
    return {"policy": policy.model_dump(mode="json"), "view": view.model_dump(mode="json"),
            "activities": [a.model_dump(mode="json") for a in scaler.history(name)[:RECENT_ACTIVITIES]]}


def state(controller: Controller, scaler: Autoscaler | None, keys: bool) -> dict[str, Any]:
    endpoints = []
    for name, spec in list(controller.endpoints.items()):
        shape = instance_type(spec.instance_type)
        endpoints.append({
            "name": name, "status": controller.endpoint_view(name).status.value,
            "instance_type": spec.instance_type, "instance_count": spec.instance_count, "routing": spec.routing,
            "instance": {"vcpus": shape.vcpus, "accelerators": shape.accelerators,
                         "accelerator_name": shape.accelerator_name,
                         "accelerator_memory_gib": shape.accelerator_memory_gib, "memory_mib": shape.memory_mib},
            "components": [c.spec.name for c in controller.members(name)]})
    components = [_component(name, comp, controller, scaler) for name, comp in list(controller.components.items())]
    return {"version": __version__, "runtime": type(controller.runtime).__name__, "keys": keys,
            "endpoints": endpoints, "components": components,
            "choices": {"instance_types": ["local", *CATALOG], "routing": list(STRATEGIES),
                        "default_routing": DEFAULT_STRATEGY, "engines": list(ENGINES),
                        "default_engine": DEFAULT_ENGINE, "default_model": DEFAULT_MODEL}}


def copy_log(controller: Controller, copy_id: str, lines: int = 40) -> dict[str, Any] | None:
    """The last lines of a copy's log, or None when no copy has that id."""
    for comp in list(controller.components.values()):
        for replica in comp.replicas + comp.incoming + comp.leaving:
            if replica.id == copy_id:
                path = controller.supervisor.log_path(replica)
                return {"id": copy_id, "path": str(path), "lines": log_tail(path, lines, 64 * 1024),
                        "status": replica.status.value, "reason": replica.reason}
    return None
