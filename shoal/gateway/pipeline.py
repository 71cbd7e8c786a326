"""The gateway's request path, top-down, the same for every front door:

  door.parse      which component, what is asked, the body parsed once     -> RequestContext
  door.call       the component's engine adapter: the request as its copies take it  -> EngineCall
  upstreams.send  the pool: admission (queue, 429), the router's choice among copies with room, one HTTP
                  exchange (another copy if one fails before answering), the router's sent/done hooks
  door.encode     the copy's answer as the door's clients read it (JSON, server-sent events, AWS event stream)
  door.error      any refusal on the way, in the door's own words

then metrics and one log line per request.
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
from shoal.gateway.doors.base import Door, request_id
from shoal.gateway.upstream import Upstreams
from shoal.http import Handler

log = logging.getLogger(__name__)
ACCESS = logging.getLogger("shoal.access")  # one line per request (shoal.cli sets its level)
RID = "rid"  # request state: the request id, stamped on every answer


class Pipeline:
    def __init__(self, upstreams: Upstreams) -> None:
        self.upstreams = upstreams

    def handler(self, door: Door, asked: Asked) -> Handler:
        """The aiohttp handler of one gateway route: `asked` of a copy, through `door`."""
        async def handle(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            request[RID] = request_id(request)
            context: RequestContext | None = None
            with tracing.server_span(f"{request.method} {request.path}", request.headers,
                                     {"shoal.door": door.name, "shoal.request_id": request[RID]}) as span:
                try:
                    context = await door.parse(request, asked)
                    context.rid, context.arrived = request[RID], started
                    tracing.set_attributes(span, **{"shoal.component": context.pool.name,
                                                    "shoal.adapter": context.adapter})
                    call = door.call(context)
                    async with self.upstreams.send(context, call) as answer:
                        response = await door.encode(request, context, call, answer)
                except ApiError as exc:
                    response = door.error(exc)
                tracing.set_attributes(span, **{"http.response.status_code": response.status})
                trace_id = tracing.trace_id(span)
            _observe(request, door, context, response, time.perf_counter() - started, trace_id)
            return response
        return handle


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
