"""Sending one request to one copy of a component: admission, routing, retry, in-flight accounting."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from prometheus_client import REGISTRY

from shoal.control.controller import Component, Controller, Replica
from shoal.errors import ApiError
from shoal.gateway import metrics
from shoal.gateway.admission import Admission
from shoal.gateway.metrics import register_live_gauges
from shoal.gateway.routing import Router, make_router

log = logging.getLogger(__name__)
UNREACHABLE_S = 2.0  # a copy that refused a connection gets no requests for this long (or until restarted)
DEFAULT_COPY_CONCURRENCY = 128  # the engine's MAX_CONCURRENT_REQUESTS default


@dataclass
class GatewaySettings:
    max_queue: int = 256
    queue_timeout_s: float = 30.0


@dataclass(eq=False)
class _ComponentGate:
    router: Router
    admission: Admission


class Upstreams:
    """The gateway's side of every component: one router and one admission queue each."""

    def __init__(self, controller: Controller, settings: GatewaySettings | None = None) -> None:
        self.controller = controller
        self.settings = settings or GatewaySettings()
        self._gates: dict[str, _ComponentGate] = {}
        self._session: aiohttp.ClientSession | None = None
        self._collector = register_live_gauges(self._live)

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                              timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))

    async def close(self) -> None:
        REGISTRY.unregister(self._collector)
        if self._session:
            await self._session.close()

    def _gate(self, comp: Component) -> _ComponentGate:
        gate = self._gates.get(comp.spec.name)
        if gate is None:
            strategy = self.controller.endpoints[comp.spec.endpoint].routing
            limit = int(comp.spec.env.get("MAX_CONCURRENT_REQUESTS", DEFAULT_COPY_CONCURRENCY))
            gate = self._gates[comp.spec.name] = _ComponentGate(
                make_router(strategy), Admission(limit, self.settings.max_queue, self.settings.queue_timeout_s))
        return gate

    def wants_key(self, comp: Component) -> bool:
        return self._gate(comp).router.needs_key

    @asynccontextmanager
    async def send(self, comp: Component, path: str, body: bytes, content_type: str,
                   key: bytes | None = None) -> AsyncIterator[tuple[Replica, aiohttp.ClientResponse]]:
        """POST `body` to `path` on one live copy. A copy that fails before answering is left out and
        the request goes to another; once a copy answers, what it says is the answer."""
        gate = self._gate(comp)
        copies = len(comp.serving())
        if not copies:
            raise ApiError(503, f"inference component \"{comp.spec.name}\" has no copy in service "
                                f"(status {comp.status.value})", "unavailable")
        gate.admission.wake(copies)  # copies that came into service take queued requests first
        try:
            await gate.admission.acquire(copies)
        except ApiError:
            metrics.REJECTED.labels(comp.spec.name).inc()
            raise
        try:
            tried: set[str] = set()
            while candidates := [r for r in comp.serving() if r.id not in tried]:
                replica = gate.router.choose(candidates, key)
                replica.in_flight += 1
                replica.idle.clear()
                try:
                    response = await self._post(replica, path, body, content_type)
                except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                    _finished(replica)
                    tried.add(replica.id)
                    replica.unreachable_until = time.monotonic() + UNREACHABLE_S
                    metrics.RETRIES.labels(comp.spec.name).inc()
                    log.warning("copy %s failed before answering (%s); retrying elsewhere", replica.id, exc)
                    continue
                metrics.SERVED.labels(comp.spec.name, replica.id).inc()
                try:
                    yield replica, response
                finally:
                    response.release()
                    _finished(replica)
                return
            raise ApiError(503, f"no copy of \"{comp.spec.name}\" could take the request "
                                f"({len(tried)} failed)", "unavailable")
        finally:
            gate.admission.release(max(1, len(comp.serving())))

    async def _post(self, replica: Replica, path: str, body: bytes, content_type: str) -> aiohttp.ClientResponse:
        assert self._session is not None and replica.address
        return await self._session.post(replica.address + path, data=body,
                                        headers={"Content-Type": content_type})

    def _live(self) -> tuple[list[tuple[str, str, int]], list[tuple[str, int]]]:
        copies = [(c.spec.name, r.id, r.in_flight) for c in self.controller.components.values()
                  for r in c.replicas]
        queues = [(name, gate.admission.queued) for name, gate in self._gates.items()]
        return copies, queues


def _finished(replica: Replica) -> None:
    replica.in_flight -= 1
    if replica.in_flight == 0:
        replica.idle.set()
