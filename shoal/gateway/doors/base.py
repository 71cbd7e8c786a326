"""What every front door shares: the pipeline's door interface, and relaying a copy's answer (whole, or
streamed as it arrives) with the headers clients read."""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import aiohttp
from aiohttp import web

from shoal.engines.adapters import Asked, EngineCall
from shoal.errors import ApiError
from shoal.gateway import metrics
from shoal.gateway.context import RequestContext
from shoal.gateway.upstream import Answer
from shoal.http import sse
from shoal.observability.tokens import USAGE_HEADER, StreamMeter, from_body, from_headers

log = logging.getLogger(__name__)
COPY_HEADER = "x-shoal-copy"  # which copy served the request
# The copy's headers a client sees (TGI's token counts and timings).
PASSED_HEADERS = ("x-prompt-tokens", "x-generated-tokens", "x-cached-tokens", "x-queue-time", "x-inference-time",
                  "x-total-time", "X-Amzn-SageMaker-Custom-Attributes")
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
TOKENS = "tokens"  # request state: the answer's token counts (shoal.observability.tokens.Tokens), where reported
FIRST_BYTE = "first_byte"  # request state: time.perf_counter() when a stream's first chunk went to the client


class Door(Protocol):
    """One front door: how its requests become a RequestContext, how answers and errors look to its clients."""

    name: str  # in metrics and logs

    async def parse(self, request: web.Request, asked: Asked) -> RequestContext: ...

    def call(self, context: RequestContext) -> EngineCall: ...

    async def encode(self, request: web.Request, context: RequestContext, call: EngineCall,
                     answer: Answer) -> web.StreamResponse: ...

    def error(self, exc: ApiError) -> web.Response: ...


def request_id(request: web.Request) -> str:
    return request.headers.get("X-Request-Id") or uuid.uuid4().hex


def engine_call(context: RequestContext) -> EngineCall:
    """What the component's engine is sent for this request (its adapter's call). A stream asks the copy for its
    token counts at the end (the built-in engine's trailer, which `stream_out` takes out)."""
    if context.stream:
        context.forward = {**context.forward, USAGE_HEADER: "1"}
    config = context.pool.config
    return config.adapter.call(context.engine_request(), config.limits)


def copy_headers(answer: Answer, extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {h: answer.response.headers[h] for h in PASSED_HEADERS if h in answer.response.headers}
    return {**headers, COPY_HEADER: answer.backend.id, **(extra or {})}


async def relay(request: web.Request, context: RequestContext, call: EngineCall, answer: Answer,
                extra: dict[str, str] | None = None) -> web.StreamResponse:
    """The answer to what was asked: whole, or streamed through as it arrives."""
    if not streams(call, answer):
        raw = await answer.read()
        if answer.status < 400:
            request[TOKENS] = from_headers(answer.response.headers) or from_body(raw)
        body = call.whole(raw) if answer.status < 400 else raw
        return web.Response(status=answer.status, body=body, headers=copy_headers(answer, extra),
                            content_type=answer.content_type if call.translation is None else "application/json")
    out = web.StreamResponse(status=answer.status, headers={**copy_headers(answer, extra), **SSE_HEADERS})
    return await stream_out(request, context, call.events(answer.chunks()), out)


def streams(call: EngineCall, answer: Answer) -> bool:
    return call.translation.stream if call.translation is not None else answer.streaming


async def stream_out(request: web.Request, context: RequestContext, chunks: AsyncIterator[bytes],
                     out: web.StreamResponse, frame: Callable[[bytes], bytes] = lambda chunk: chunk,
                     cut: Callable[[str], bytes] | None = None) -> web.StreamResponse:
    """Write `chunks` to the client as they come (each `frame`d); a copy that dies mid-stream ends it with an
    error event (`cut`, or TGI's error event). The stream's token counts are read on the way (`TOKENS`)."""
    await out.prepare(request)
    started, first = context.arrived, True  # time to first token: from the request's arrival
    meter = StreamMeter()
    try:
        async for chunk in chunks:
            if not (chunk := meter.chunk(chunk)):
                continue
            if first:
                request[FIRST_BYTE] = now = time.perf_counter()
                metrics.TTFB.labels(context.pool.name).observe(now - started)
                first = False
            await out.write(frame(chunk))
    except aiohttp.ClientPayloadError as exc:
        log.warning("request %s: copy ended the stream early: %s", context.rid, exc)
        message = "the copy serving this stream stopped"
        await out.write(cut(message) if cut else sse({"error": message, "error_type": "generation"}))
    if rest := meter.end():
        await out.write(frame(rest))
    request[TOKENS] = meter.tokens
    await out.write_eof()
    return out
