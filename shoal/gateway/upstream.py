"""Sending one request to one copy of a component, in layers: admission → choosing a copy (and another
if it fails before answering) → one HTTP exchange bounded by the first-byte timeout. The router hears
`sent` once the request went out on a connection the copy accepted (a refused connection, and a retry on
the same copy, teach it nothing) and `done` when the answer has ended."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
from prometheus_client import REGISTRY

from shoal import tracing
from shoal.engines.adapters import EngineCall
from shoal.errors import ApiError
from shoal.gateway import metrics
from shoal.gateway.context import RequestContext
from shoal.gateway.metrics import register_live_gauges
from shoal.gateway.pool import Backend, Pool, RoutingTable
from shoal.gateway.routing import Pick

log = logging.getLogger(__name__)
UNREACHABLE_S = 2.0  # a copy that refused a connection gets no requests for this long (or until restarted)
MAX_DROPS = 3  # connections a copy may drop before one request's answer before the request goes elsewhere
SSE = "text/event-stream"


@dataclass
class GatewaySettings:
    max_queue: int = 256
    queue_timeout_s: float = 30.0
    first_byte_timeout_s: float = 120.0  # a copy must start answering within this, or the client hears why


class NoCapacity(ApiError):
    """No copy in service can take the request and none can start for it now (503; SageMaker's door words it
    as AWS does)."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message, "unavailable")

    @classmethod
    def no_copy(cls, pool: Pool, why_not: str | None) -> NoCapacity:
        """The component has no copy in service and cannot start one on demand (`why_not`)."""
        return cls(f"inference component \"{pool.name}\" has no copy in service (status {pool.status()})"
                   + (f": {why_not}" if why_not else ""))

    @classmethod
    def adapter_not_loaded(cls, pool: Pool, adapter: str) -> NoCapacity:
        """No copy of the base in service has loaded the adapter yet (it is being created: a copy loads it beside
        its requests, or is replaced by one that does)."""
        return cls(f"inference component \"{adapter}\" is not loaded on a copy of its base \"{pool.name}\" yet "
                   f"(it is being created): retry shortly")


class FirstByteTimeout(ApiError):
    """A copy took the request and said nothing for too long."""

    def __init__(self, copy_id: str, seconds: float) -> None:
        super().__init__(504, f"copy {copy_id} sent no answer within the first-byte timeout of {seconds:g}s",
                         "timeout")
        self.copy_id = copy_id


@dataclass(eq=False)
class Answer:
    """A copy's answer: status and headers, and its body, the first chunk of a stream already read."""

    backend: Backend
    response: aiohttp.ClientResponse
    first: bytes = b""
    pick: Pick[Any] | None = None  # the router's choice that sent it here
    sent: float = 0.0  # time.perf_counter() when the request went to a copy (SageMaker's ModelLatency starts)

    @property
    def status(self) -> int:
        return self.response.status

    @property
    def content_type(self) -> str:
        return self.response.content_type

    @property
    def streaming(self) -> bool:
        return self.content_type == SSE

    async def read(self) -> bytes:
        return self.first + await self.response.read()

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.first:
            yield self.first
        async for chunk in self.response.content.iter_any():
            yield chunk


class Upstreams:
    """The gateway's side of every component: pooled keep-alive connections to the copies."""

    def __init__(self, table: RoutingTable, settings: GatewaySettings | None = None) -> None:
        self.table = table
        self.settings = settings or GatewaySettings()
        self._session: aiohttp.ClientSession | None = None
        self._collector = register_live_gauges(self._live)

    async def start(self) -> None:
        # Idle connections close after 4 s: before the copy closes them (llama.cpp's server and uvicorn
        # close idle keep-alive connections after 5 s), so the gateway does not write into a closing one.
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=4, enable_cleanup_closed=True)
        traces = aiohttp.TraceConfig()
        traces.on_request_headers_sent.append(_headers_sent)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False, trace_configs=[traces],
                                              timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))

    async def close(self) -> None:
        REGISTRY.unregister(self._collector)
        if self._session:
            await self._session.close()

    @asynccontextmanager
    async def send(self, request: RequestContext, call: EngineCall) -> AsyncIterator[Answer]:
        """Send `call` to one live copy of the request's component; yields its answer. A copy that fails
        before answering is left out and the request goes to another; once a copy answers, that is the answer."""
        pool = request.pool
        stats, answered = pool.stats, False
        try:
            if request.adapter and not pool.serving(request.adapter) and pool.serving():
                raise NoCapacity.adapter_not_loaded(pool, request.adapter)
            async with self._admitted(pool):
                sent = time.perf_counter()
                answer = await self._first_answer(request, call)
                answer.sent = sent
                try:
                    yield answer
                finally:
                    answer.response.release()
                    answer.backend.end()
                    if answer.pick is not None:
                        pool.router.done(answer.pick)
                    stats.answered(answer.status, request.arrived, sent, time.perf_counter())
                    answered = True
        except ApiError as exc:
            if answered:  # the door's own error about an answer already counted
                raise
            if isinstance(exc, FirstByteTimeout):
                stats.invocations += 1
                stats.model_errors += 1
            stats.failed(exc.status)
            raise

    @asynccontextmanager
    async def _admitted(self, pool: Pool) -> AsyncIterator[None]:
        with tracing.span("admission", {"shoal.queued_before": pool.admission.queued}):
            if not pool.serving():
                await self._copy_started(pool)
            else:
                try:
                    await pool.admission.acquire(pool.capacity())
                except ApiError:
                    metrics.REJECTED.labels(pool.name).inc()
                    raise
        try:
            yield
        finally:
            pool.admission.release(pool.capacity())

    async def _copy_started(self, pool: Pool) -> None:
        """No copy serves: wait in the queue for one to start if the component can start one (scale from
        zero), else 503 at once."""
        cold = pool.cold_start
        if cold is None:
            raise NoCapacity.no_copy(pool, None)
        if (why_not := cold.why_not()) is not None:
            raise NoCapacity.no_copy(pool, why_not)
        cold.wake()
        waited = time.perf_counter()
        await pool.admission.acquire(0, cold.timeout_s)
        metrics.COLD_START_WAIT.labels(pool.name).observe(time.perf_counter() - waited)

    async def _first_answer(self, request: RequestContext, call: EngineCall) -> Answer:
        pool = request.pool
        tried: set[str] = set()  # copies that cannot take it
        told: set[str] = set()  # copies the router heard it was sent to
        dropped: Counter[str] = Counter()  # connections each copy dropped in this request
        while candidates := [b for b in pool.serving(request.adapter) if b.id not in tried and b.has_room]:
            with tracing.span("route", {"shoal.strategy": pool.strategy, "shoal.candidates": len(candidates)}) as span:
                pick = pool.router.choose(request, candidates)
                tracing.set_attributes(span, **{"shoal.copy": pick.copy.id})
            backend = pick.copy
            backend.begin()
            try:
                answer = await self._exchange(backend, call, request.forward,
                                              _once(told, backend.id, lambda: pool.router.sent(pick)))
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                backend.end()
                metrics.RETRIES.labels(pool.name).inc()
                # A refused connection means the copy is down: others take the request and, for a while,
                # every request. A dropped one may be a kept-alive connection the copy was closing (it never
                # saw the request; llama.cpp's server does this under load): the copy may take it again on a
                # new connection; if it is down, that connection is refused.
                if isinstance(exc, aiohttp.ClientConnectorError):
                    tried.add(backend.id)
                    backend.unreachable_until = time.monotonic() + UNREACHABLE_S
                    pool.wake_later(UNREACHABLE_S)  # its share of the queue waits for it, or for others
                    log.warning("copy %s refused the connection (%s); retrying elsewhere", backend.id, exc)
                else:
                    dropped[backend.id] += 1
                    if dropped[backend.id] >= MAX_DROPS:
                        tried.add(backend.id)
                    log.info("copy %s dropped a connection before answering (%s); retrying", backend.id, exc)
                continue
            except FirstByteTimeout:
                backend.end()
                metrics.TIMEOUTS.labels(pool.name).inc()
                pool.on_suspect(backend.id)
                raise
            except BaseException:
                backend.end()
                raise
            metrics.SERVED.labels(pool.name, backend.id).inc()
            answer.pick = pick if backend.id in told else None
            return answer
        raise ApiError(503, f"no copy of \"{pool.name}\" could take the request ({len(tried)} failed)",
                       "unavailable")

    async def _exchange(self, backend: Backend, call: EngineCall, forward: dict[str, str],
                        on_sent: Callable[[], None]) -> Answer:
        """One POST (with the `forward`ed headers); its headers, and the first chunk of a stream, must come within
        the first-byte timeout. `on_sent` runs once its headers went out on a connection the copy accepted."""
        assert self._session is not None
        limit = self.settings.first_byte_timeout_s
        response: aiohttp.ClientResponse | None = None
        headers = {"Content-Type": call.content_type, **forward, **_credential(backend)}
        try:
            with tracing.span("first byte", {"shoal.copy": backend.id, "url.path": call.path}, client=True) as span:
                tracing.inject(headers)  # the copy's spans continue this one
                async with asyncio.timeout(limit):
                    response = await self._session.post(backend.address + call.path, data=call.body, headers=headers,
                                                        trace_request_ctx=SimpleNamespace(on_sent=on_sent))
                    first = await response.content.readany() if response.content_type == SSE else b""
                tracing.set_attributes(span, **{"http.response.status_code": response.status})
        except BaseException as exc:
            if response is not None:
                response.close()
            if isinstance(exc, TimeoutError):
                raise FirstByteTimeout(backend.id, limit) from None
            raise
        return Answer(backend, response, first)

    def in_flight(self) -> int:
        """Requests the gateway holds now: sent to a copy or queued for one."""
        return sum(p.admission.in_flight + p.admission.queued for p in self.table.pools.values())

    def _live(self) -> tuple[list[tuple[str, str, int]], list[tuple[str, int]]]:
        pools = list(self.table.pools.values())
        copies = [(p.name, b.id, b.in_flight) for p in pools for b in p.backends]
        queues = [(p.name, p.admission.queued) for p in pools]
        return copies, queues


def _credential(backend: Backend) -> dict[str, str]:
    return {"Authorization": f"Bearer {backend.token}"} if backend.token else {}


def _once(told: set[str], copy_id: str, hook: Callable[[], None]) -> Callable[[], None]:
    """The router's `sent` for this request on this copy, at most once (a retry on a dropped connection
    sends it again)."""
    def sent() -> None:
        if copy_id not in told:
            told.add(copy_id)
            hook()
    return sent


async def _headers_sent(_session: aiohttp.ClientSession, context: SimpleNamespace, _params: object) -> None:
    """aiohttp's trace: a request's headers went out on a connection (established: the copy accepted it)."""
    if (request := context.trace_request_ctx) is not None:
        request.on_sent()
