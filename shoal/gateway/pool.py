"""The gateway's view of the copies: per component, one long-lived pool of backends to route requests to.

The controller feeds it (a component is published, a copy in service is added, a copy leaving is
withdrawn, drained, removed) and reads load from it; the gateway counts requests on it. A publish (an
update, a rollback, another routing strategy) changes a pool in place: its queue, its requests' counts and
its router's state stay. The gateway never sees the controller's objects: what it needs comes in as plain
values and callbacks.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from shoal.engines.adapters import ProtocolAdapter
from shoal.engines.translate import TgiLimits
from shoal.gateway import metrics
from shoal.gateway.admission import Admission
from shoal.gateway.metrics import ComponentStats
from shoal.gateway.routing import DEFAULT_STRATEGY, Router, build_router

log = logging.getLogger(__name__)
DEFAULT_COPY_LIMIT = 128  # TGI's MAX_CONCURRENT_REQUESTS


def _set_event() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


@dataclass(eq=False)
class Backend:
    """One copy as the gateway sees it: where it is, how busy, and how busy it may be."""

    id: str
    address: str
    limit: int = DEFAULT_COPY_LIMIT  # requests it takes at once (its MAX_CONCURRENT_REQUESTS)
    token: str = field(default="", repr=False)  # its credential: sent as a Bearer token with every request
    in_flight: int = 0
    draining: bool = False
    adapters: frozenset[str] = frozenset()  # the adapter inference components it has loaded
    unreachable_until: float = 0.0  # it refused a connection: no requests until then (or re-added)
    idle: asyncio.Event = field(default_factory=_set_event)

    def usable(self, now: float) -> bool:
        return not self.draining and self.unreachable_until <= now

    @property
    def has_room(self) -> bool:
        return self.in_flight < self.limit

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
    engine: str  # the engine kind, for messages
    adapter: ProtocolAdapter  # how its copies are spoken to (shoal.engines.adapters)
    limits: TgiLimits  # what TGI's rules check requests against, where the gateway translates them
    routing_settings: Mapping[str, str] = field(default_factory=dict)  # its routing strategy's settings
    adapters: tuple[str, ...] = ()  # its adapter inference components, in the order its copies load them


@dataclass(frozen=True)
class ColdStart:
    """How a component with no copy in service gets one on demand (scale from zero): a request waits in
    the queue (at most `timeout_s`) after `wake()` asked for a copy; `why_not()` says why none can start
    now (None: one can), without asking for one."""

    why_not: Callable[[], str | None]
    wake: Callable[[], None]
    timeout_s: float


@dataclass(frozen=True)
class Load:
    """A pool's load, as the autoscaler reads it."""

    in_flight: int  # sent to copies
    queued: int  # waiting for a copy with room
    invocations: int  # requests sent to copies so far


def _no_op(_copy_id: str) -> None:
    return None


class Pool:
    """One component behind the gateway: its copies, its router and its admission queue."""

    def __init__(self, config: PoolConfig, strategy: str, admission: Admission,
                 status: Callable[[], str] = lambda: "InService",
                 on_suspect: Callable[[str], None] = _no_op) -> None:
        self.config = config
        self.strategy = strategy
        self.router: Router = build_router(strategy, config.name, config.routing_settings)
        self.admission = admission
        self.status = status  # the component's status, for error messages
        self.on_suspect = on_suspect  # a copy kept a request waiting too long: probe it now
        self.backends: list[Backend] = []
        self.stats = ComponentStats(config.endpoint, config.name)  # SageMaker's per-component counts
        self.cold_start: ColdStart | None = None  # scale from zero: a request that finds no copy waits for one

    @property
    def name(self) -> str:
        return self.config.name

    # -- read by the gateway -------------------------------------------------------------------------
    def serving(self, adapter: str | None = None) -> list[Backend]:
        """The copies that take requests now (naming `adapter`: those that have loaded it)."""
        now = time.monotonic()
        return [b for b in self.backends if b.usable(now) and (adapter is None or adapter in b.adapters)]

    def capacity(self) -> int:
        """Requests the copies in service take at once."""
        return sum(b.limit for b in self.serving())

    def backend(self, copy_id: str) -> Backend | None:
        return next((b for b in self.backends if b.id == copy_id), None)

    def load(self) -> Load:
        return Load(self.admission.in_flight, self.admission.queued, self.stats.invocations)

    def wake(self) -> None:
        """Admit queued requests while copies have room (new copies, a copy reachable again)."""
        self.admission.wake(self.capacity())

    def wake_later(self, delay_s: float) -> None:
        asyncio.get_running_loop().call_later(delay_s, self.wake)

    # -- changed by the controller -------------------------------------------------------------------
    def update(self, config: PoolConfig, strategy: str, status: Callable[[], str],
               on_suspect: Callable[[str], None]) -> None:
        """A publish: new settings in place; the router is rebuilt only if its strategy or settings changed."""
        if (strategy, dict(config.routing_settings)) != (self.strategy, dict(self.config.routing_settings)):
            self.router = build_router(strategy, config.name, config.routing_settings)
            self.router.copies_changed(self.backends)
            log.info("%s routes with %s now", config.name, strategy)
        self.config, self.strategy, self.status, self.on_suspect = config, strategy, status, on_suspect

    def set_backends(self, backends: list[Backend]) -> None:
        self.backends = backends
        self.router.copies_changed(backends)
        self.wake()  # queued requests go to a new copy first


class RoutingTable:
    """Endpoints and their components' pools, as the controller last described them."""

    def __init__(self, max_queue: int = 256, queue_timeout_s: float = 30.0) -> None:
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.endpoints: dict[str, str] = {}  # endpoint -> routing strategy
        self.pools: dict[str, Pool] = {}
        self.adapters: dict[str, str] = {}  # adapter inference component -> its base

    # -- fed by the controller -------------------------------------------------------------------------
    def set_endpoint(self, name: str, strategy: str = DEFAULT_STRATEGY) -> None:
        """An endpoint and its routing strategy; its components' pools follow a new strategy at once."""
        self.endpoints[name] = strategy
        for pool in self.members(name):
            pool.update(pool.config, strategy, pool.status, pool.on_suspect)

    def drop_endpoint(self, name: str) -> None:
        self.endpoints.pop(name, None)

    def publish(self, config: PoolConfig, status: Callable[[], str],
                on_suspect: Callable[[str], None] = _no_op) -> Pool:
        """A component as it is now: its pool is made once and updated in place after (copies, queue, counts
        and routing state stay); a component moved to another endpoint gets a new pool."""
        strategy = self.endpoints[config.endpoint]
        pool = self.pools.get(config.name)
        if pool is not None and pool.config.endpoint == config.endpoint:
            pool.update(config, strategy, status, on_suspect)
            return pool
        pool = Pool(config, strategy, Admission(self.max_queue, self.queue_timeout_s), status, on_suspect)
        self.pools[config.name] = pool
        return pool

    def add_adapter(self, adapter: str, base: str) -> None:
        """An adapter inference component: requests naming it go to its base's copies, with it."""
        self.adapters[adapter] = base

    def remove_adapter(self, adapter: str) -> None:
        self.adapters.pop(adapter, None)

    def set_cold_start(self, component: str, cold_start: ColdStart | None) -> None:
        """Let requests that find no copy in service start one and wait for it (None: answer 503 at once)."""
        if pool := self.pools.get(component):
            pool.cold_start = cold_start

    def close_pool(self, name: str) -> None:
        if (pool := self.pools.pop(name, None)) is not None:
            metrics.forget_component(pool.config.endpoint, name)

    def add_backend(self, component: str, copy_id: str, address: str, limit: int = DEFAULT_COPY_LIMIT,
                    token: str = "", adapters: Iterable[str] = ()) -> None:
        """A copy came into service (a restarted copy comes back as a new backend: its cache is empty)."""
        pool = self.pools[component]
        copy = Backend(copy_id, address, limit, token, adapters=frozenset(adapters))
        pool.set_backends([b for b in pool.backends if b.id != copy_id] + [copy])

    def set_copy_adapters(self, component: str, copy_id: str, adapters: Iterable[str]) -> None:
        """The adapters a copy in service has loaded now: requests naming one go only to copies that have it."""
        pool = self.pools.get(component)
        if pool and (copy := pool.backend(copy_id)):
            copy.adapters = frozenset(adapters)

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
        except TimeoutError:
            log.warning("%s still had %d requests after %ss; stopping it anyway", copy_id, backend.in_flight,
                        timeout_s)
        self.remove_backend(component, copy_id)
        return backend.in_flight

    def remove_backend(self, component: str, copy_id: str) -> None:
        if (pool := self.pools.get(component)) and pool.backend(copy_id):
            pool.set_backends([b for b in pool.backends if b.id != copy_id])
            metrics.forget_copy(component, copy_id)

    def in_flight(self, component: str, copy_id: str) -> int:
        pool = self.pools.get(component)
        backend = pool.backend(copy_id) if pool else None
        return backend.in_flight if backend else 0

    # -- read by the gateway -----------------------------------------------------------------------------
    def members(self, endpoint: str) -> list[Pool]:
        return [p for p in self.pools.values() if p.config.endpoint == endpoint]

    def named(self, name: str) -> tuple[Pool, str | None] | None:
        """The pool that serves the component `name`, and the adapter it names (None: a base component)."""
        if (pool := self.pools.get(name)) is not None:
            return pool, None
        if (base := self.adapters.get(name)) is not None and (pool := self.pools.get(base)) is not None:
            return pool, name
        return None

    def names(self) -> list[str]:
        """Every component requests may name: bases and adapters."""
        return [*self.pools, *self.adapters]
