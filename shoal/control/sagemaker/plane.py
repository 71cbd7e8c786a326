"""SageMaker's control plane over shoal's controller: what the operations share.

The controller stays the one source of truth for endpoints and components (an endpoint or component made
through shoal's API is SageMaker's too, and the other way round). What only SageMaker has lives beside it:
models and endpoint configurations (documents in the store), notes on endpoints and components (their
model, variant and configuration names), and an endpoint's own lifecycle (Creating, Updating, Deleting,
Failed), which SageMaker shows apart from its components'.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import orjson

from shoal.control.controller import Controller
from shoal.control.models import EndpointSpec
from shoal.control.sagemaker.protocol import ACCOUNT, Body, Caller, validation
from shoal.control.state import Component
from shoal.control.store import ENDPOINT, StateStore

log = logging.getLogger(__name__)
MODEL, CONFIG = "sagemaker-model", "sagemaker-endpoint-config"  # document kinds in the store
DEFAULT_VARIANT = "AllTraffic"


def arn(caller: Caller, kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{caller.region}:{ACCOUNT}:{kind}/{name.lower()}"


@dataclass(frozen=True)
class Phase:
    """An endpoint's own state while it is not simply InService."""

    status: str  # Creating | Updating | Deleting | Failed
    reason: str | None = None
    of: EndpointSpec | None = None  # the endpoint as it was then (one deleted and made again starts afresh)


class SageMakerPlane:
    def __init__(self, controller: Controller) -> None:
        self.c = controller
        self.store: StateStore = controller.store
        self.phases: dict[str, Phase] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- documents: models and endpoint configurations -----------------------------------------------------
    def document(self, kind: str, name: str) -> Body | None:
        raw = self.store.document(kind, name)
        return None if raw is None else orjson.loads(raw)

    def documents(self, kind: str) -> list[Body]:
        return [orjson.loads(raw) for raw in self.store.documents(kind)]

    def put_document(self, kind: str, name: str, body: Body) -> None:
        self.store.put_document(kind, name, orjson.dumps({**body, "CreationTime": time.time()}).decode())

    def model(self, name: str) -> Body:
        if (model := self.document(MODEL, name)) is None:
            raise validation(f"Could not find model \"{name}\".")
        return model

    def config(self, name: str) -> Body:
        if (config := self.document(CONFIG, name)) is None:
            raise validation(f"Could not find endpoint configuration \"{name}\".")
        return config

    # -- endpoints and components, as the controller has them --------------------------------------------------
    def endpoint(self, name: str) -> EndpointSpec:
        if name not in self.c.endpoints:
            raise validation(f"Could not find endpoint \"{name}\".")
        return self.c.endpoints[name]

    def component(self, name: str) -> Component:
        if name not in self.c.components:
            raise validation(f"Could not find inference component \"{name}\".")
        return self.c.components[name]

    def endpoint_status(self, name: str) -> Phase:
        phase = self.phases.get(name)
        return phase if phase and phase.of is self.c.endpoints.get(name) else Phase("InService")

    def variant_name(self, endpoint: str) -> str:
        variant = self.store.meta(ENDPOINT, endpoint).notes.get("Variant") or {}
        return variant.get("VariantName", DEFAULT_VARIANT)

    # -- an endpoint's lifecycle ---------------------------------------------------------------------------------
    def settle(self, endpoint: str, status: str) -> None:
        """`status` (Creating, Updating) now; InService, or Failed with the runtime's reason, once it has looked."""
        self.phases[endpoint] = Phase(status, of=self.c.endpoints[endpoint])
        self.spawn(self._settle(endpoint))

    async def _settle(self, endpoint: str) -> None:
        await asyncio.sleep(0)  # answer the request first, as SageMaker does
        problem = self.c.instance_problem(endpoint) if endpoint in self.c.endpoints else None
        if problem:
            self.phases[endpoint] = Phase("Failed", problem, self.c.endpoints[endpoint])
        else:
            self.phases.pop(endpoint, None)

    def delete_endpoint(self, endpoint: str) -> None:
        self.phases[endpoint] = Phase("Deleting", of=self.c.endpoints[endpoint])
        self.spawn(self._delete_endpoint(endpoint))

    async def _delete_endpoint(self, endpoint: str) -> None:
        try:
            await self.c.delete_endpoint(endpoint)
        finally:
            self.phases.pop(endpoint, None)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()):
            log.error("SageMaker background work failed: %s", exc)
