"""The gateway's request path, top-down, the same for every front door:

  door.parse      which component, what is asked, the body parsed once     -> RequestContext
  door.call       the component's engine adapter: the request as its copies take it  -> EngineCall
  upstreams.send  the pool: admission (queue, 429), the router's choice among copies with room, one HTTP
                  exchange (another copy if one fails before answering), the router's sent/done hooks
  door.encode     the copy's answer as the door's clients read it (JSON, server-sent events, AWS event stream)
  door.error      any refusal on the way, in the door's own words

then metrics, one log line, and one `Finished` record to the observers (CloudWatch's metrics, usage per key).
A `gate` (per-key limits) may refuse a request before it is sent: 429 with Retry-After, in the door's words.
"""
from __future__ import annotations

import logging
import time

import orjson
from aiohttp import web

from shoal import tracing
from shoal.engines.adapters import Asked
from shoal.errors import ApiError
from shoal.gateway import metrics
from shoal.gateway.context import RequestContext
from shoal.gateway.doors.base import FIRST_BYTE, TOKENS, Door, request_id
from shoal.gateway.upstream import Answer, Upstreams
from shoal.http import Handler
from shoal.observability.hooks import Finished, Gate, Observer, Throttled
from shoal.security.middleware import KEY_NAME

log = logging.getLogger(__name__)
ACCESS = logging.getLogger("shoal.access")  # one line per request (shoal.cli sets its level)
RID = "rid"  # request state: the request id, stamped on every answer


class Pipeline:
    def __init__(self, upstreams: Upstreams, observers: tuple[Observer, ...] = (), gate: Gate | None = None) -> None:
        self.upstreams = upstreams
        self.observers = observers  # each hears every finished request (kept cheap: they queue it)
        self.gate = gate

    def handler(self, door: Door, asked: Asked) -> Handler:
        """The aiohttp handler of one gateway route: `asked` of a copy, through `door`."""
        async def handle(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            request[RID] = request_id(request)
            context: RequestContext | None = None
            answer: Answer | None = None
            refusal: ApiError | None = None
            with tracing.server_span(f"{request.method} {request.path}", request.headers,
                                     {"shoal.door": door.name, "shoal.request_id": request[RID]}) as span:
                try:
                    context = await door.parse(request, asked)
                    context.rid, context.arrived = request[RID], started
                    tracing.set_attributes(span, **{"shoal.component": context.pool.name,
                                                    "shoal.adapter": context.adapter})
                    if self.gate is not None:
                        self.gate.admit(request.get(KEY_NAME))
                    call = door.call(context)
                    async with self.upstreams.send(context, call) as answer:
                        response = await door.encode(request, context, call, answer)
                except ApiError as exc:
                    response, refusal = door.error(exc), exc
                    if isinstance(exc, Throttled):
                        response.headers["Retry-After"] = str(exc.retry_after_s)
                tracing.set_attributes(span, **{"http.response.status_code": response.status})
                trace_id = tracing.trace_id(span)
            ended = time.perf_counter()
            _observe(request, door, context, response, ended - started, trace_id)
            if self.observers:
                self._tell(request, door, context, answer, refusal, response.status, started, ended)
            return response
        return handle

    def _tell(self, request: web.Request, door: Door, context: RequestContext | None, answer: Answer | None,
              refusal: ApiError | None, status: int, started: float, ended: float) -> None:
        first = request.get(FIRST_BYTE)
        pool = context.pool if context else None
        done = Finished(
            at=time.time() - (ended - started), door=door.name, status=status, total_s=ended - started,
            key=request.get(KEY_NAME), endpoint=pool.config.endpoint if pool else None,
            component=pool.name if pool else None, adapter=context.adapter if context else None,
            copies=sum(not b.draining for b in pool.backends) if pool else 0,
            copy_status=answer.status if answer else None, model_s=ended - answer.sent if answer else None,
            first_byte_s=first - started if first else None, tokens=request.get(TOKENS),
            error=refusal.error_type if refusal else None)
        for observer in self.observers:
            observer(done)


def _observe(request: web.Request, door: Door, context: RequestContext | None, response: web.StreamResponse,
             seconds: float, trace_id: str | None = None) -> None:
    component = context.pool.name if context else "-"
    metrics.REQUESTS.labels(component, door.name, str(response.status)).inc()
    metrics.LATENCY.labels(component).observe(seconds)
    level = logging.WARNING if response.status >= 500 else logging.INFO
    if ACCESS.isEnabledFor(level):  # the access log: on with --log-format json or --log-level debug
        fields = {"request_id": request[RID], "trace_id": trace_id, "route": door.name, "path": request.path,
                  "component": component, "adapter": context.adapter if context else None,
                  "status": response.status, "ms": round(seconds * 1000, 2)}
        ACCESS.log(level, "%s", orjson.dumps(fields).decode(), extra={"fields": fields})


async def stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Every gateway answer, streamed or not, carries its request id (set just before headers go out)."""
    if rid := request.get(RID):
        response.headers["x-request-id"] = rid
        response.headers["x-amzn-RequestId"] = rid
