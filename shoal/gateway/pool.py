"""The gateway's view of the copies: per component, a pool of backends to route requests to.

The controller feeds it (a copy in service is added; a copy leaving is withdrawn, drained, removed)
and reads load from it; the gateway counts requests on it. The gateway never sees the controller's
objects: what it needs from the controller comes in as plain values and callbacks.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shoal.engines.base import EngineProtocol
from shoal.gateway.admission import Admission
from shoal.gateway.metrics import PREFIX_SPILLS, ComponentStats
from shoal.gateway.routing import Router, RoutingStrategy, make_router

log = logging.getLogger(__name__)


def _set_event() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


@dataclass(eq=False)
class Backend:
    """One copy as the gateway sees it: where it is and how busy."""

    id: str
    address: str
    in_flight: int = 0
    draining: bool = False
    unreachable_until: float = 0.0  # it refused a connection: no requests until then (or re-added)
    idle: asyncio.Event = field(default_factory=_set_event)

    def usable(self, now: float) -> bool:
        return not self.draining and self.unreachable_until <= now

    def begin(self) -> None:
        self.in_flight += 1
        self.idle.clear()

    def end(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self.idle.set()


@dataclass(frozen=True)
class PoolConfig:
    """What the gateway must know of a component to reach and speak to its copies."""

    name: str
    endpoint: str
    model_id: str
    engine: str  # engine kind: picks the OpenAI dialect for translated requests
    protocol: EngineProtocol
    per_copy_limit: int  # MAX_CONCURRENT_REQUESTS
    max_total_tokens: int = 2048
    max_stop_sequences: int = 4
    max_top_n_tokens: int = 5
    prefix_affinity_bound: int | None = None  # SHOAL_PREFIX_AFFINITY_BOUND in its environment (routing.py)


def _no_op(_copy_id: str) -> None:
    return None


@dataclass(frozen=True)
class ColdStart:
    """How a component with no copy in service gets one on demand (scale from zero): a request waits in
    the queue (at most `timeout_s`) after `wake()` asked for a copy; `why_not()` says why none can start
    now (None: one can), without asking for one."""

    why_not: Callable[[], "str | None"]
    wake: Callable[[], None]
    timeout_s: float


@dataclass(eq=False)
class Pool:
    """One component behind the gateway: its copies, router and admission queue."""

    config: PoolConfig
    router: Router
    admission: Admission
    status: Callable[[], str] = lambda: "InService"  # the component's status, for error messages
    on_suspect: Callable[[str], None] = _no_op  # a copy kept a request waiting too long: probe it now
    backends: list[Backend] = field(default_factory=list)
    stats: ComponentStats | None = None  # SageMaker's per-component counts (metrics)
    cold_start: ColdStart | None = None  # scale from zero: a request that finds no copy waits for one

    def __post_init__(self) -> None:
        if self.stats is None:
            self.stats = ComponentStats(self.config.endpoint, self.config.name)

    @property
    def name(self) -> str:
        return self.config.name

    def serving(self) -> list[Backend]:
        now = time.monotonic()
        return [b for b in self.backends if b.usable(now)]

    def backend(self, copy_id: str) -> Backend | None:
        return next((b for b in self.backends if b.id == copy_id), None)


class RoutingTable:
    """Endpoints and their components' pools, as the controller last described them."""

    def __init__(self, max_queue: int = 256, queue_timeout_s: float = 30.0) -> None:
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.endpoints: dict[str, RoutingStrategy] = {}
        self.pools: dict[str, Pool] = {}

    # -- fed by the controller -------------------------------------------------------------
    def set_endpoint(self, name: str, routing: RoutingStrategy) -> None:
        self.endpoints[name] = routing

    def drop_endpoint(self, name: str) -> None:
        self.endpoints.pop(name, None)

    def open_pool(self, config: PoolConfig, status: Callable[[], str],
                  on_suspect: Callable[[str], None] = _no_op) -> Pool:
        old = self.pools.get(config.name)
        router = make_router(self.endpoints[config.endpoint], config.prefix_affinity_bound,
                             on_spill=PREFIX_SPILLS.labels(config.name).inc)
        pool = Pool(config, router,
                    Admission(config.per_copy_limit, self.max_queue, self.queue_timeout_s), status, on_suspect,
                    old.backends if old else [])
        if old and old.config.endpoint == config.endpoint:  # re-published (an update): counts and scaling stay
            pool.stats, pool.cold_start = old.stats, old.cold_start
        self.pools[config.name] = pool
        return pool

    def set_cold_start(self, component: str, cold_start: ColdStart | None) -> None:
        """Let requests that find no copy in service start one and wait for it (None: answer 503 at once)."""
        if pool := self.pools.get(component):
            pool.cold_start = cold_start

    def close_pool(self, name: str) -> None:
        self.pools.pop(name, None)

    def add_backend(self, component: str, copy_id: str, address: str) -> None:
        pool = self.pools[component]
        pool.backends = [b for b in pool.backends if b.id != copy_id] + [Backend(copy_id, address)]
        pool.admission.wake(len(pool.serving()))  # queued requests go to the new copy first

    async def withdraw(self, component: str, copy_id: str, timeout_s: float) -> int:
        """No new requests for the copy; wait (at most `timeout_s`) for its requests to finish, then forget
        it. Returns how many were still running when it gave up."""
        pool = self.pools.get(component)
        backend = pool.backend(copy_id) if pool else None
        if backend is None:
            return 0
        backend.draining = True
        try:
            await asyncio.wait_for(backend.idle.wait(), timeout_s)
        except asyncio.TimeoutError:
            log.warning("%s still had %d requests after %ss; stopping it anyway", copy_id, backend.in_flight,
                        timeout_s)
        self.remove_backend(component, copy_id)
        return backend.in_flight

    def remove_backend(self, component: str, copy_id: str) -> None:
        if pool := self.pools.get(component):
            pool.backends = [b for b in pool.backends if b.id != copy_id]

    def in_flight(self, component: str, copy_id: str) -> int:
        pool = self.pools.get(component)
        backend = pool.backend(copy_id) if pool else None
        return backend.in_flight if backend else 0

    # -- read by the gateway ---------------------------------------------------------------
    def members(self, endpoint: str) -> list[Pool]:
        return [p for p in self.pools.values() if p.config.endpoint == endpoint]
