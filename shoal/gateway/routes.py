"""The gateway's front doors: SageMaker runtime, OpenAI and TGI, in front of every copy.

Engines that speak TGI get TGI and SageMaker requests as they are; engines that speak OpenAI get them
translated (shoal.gateway.translate). OpenAI requests pass through to every engine. Each front door
answers errors in its own clients' shape.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable

import aiohttp
import orjson
from aiohttp import web

from shoal.apidoc import ApiDoc, Op, Param, Reply
from shoal.engines.base import EngineProtocol
from shoal.errors import ApiError
from shoal.gateway import metrics
from shoal.gateway.eventstream import model_stream_error, payload_part
from shoal.gateway.pool import Pool, RoutingTable
from shoal.gateway.routing import KEY_CHARS
from shoal.gateway.translate import TgiCall, engine_error
from shoal.gateway.upstream import Answer, Upstreams
from shoal.http import Handler, json_response, openai_error_response, sse
from shoal.protocol.requests import ChatCompletionRequest, CompletionRequest, GenerateRequest, TokenizeRequest
from shoal.protocol.responses import (
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    ErrorBody,
    GenerateResponse,
    ModelList,
    OpenAIError,
    TgiStreamEvent,
    TokenizedPiece,
)

log = logging.getLogger(__name__)
COMPONENT_HEADER = "X-Amzn-SageMaker-Inference-Component"
COPY_HEADER = "x-shoal-copy"  # which copy served the request
ACCOUNT = "000000000000"
_SAGEMAKER_ERRORS = {400: "ValidationError", 404: "ValidationError", 409: "ValidationError",
                     424: "ModelError", 429: "ThrottlingException", 503: "ServiceUnavailable"}
_PASSED_HEADERS = ("Content-Type", "x-prompt-tokens", "x-generated-tokens", "x-cached-tokens", "x-queue-time",
                   "x-inference-time", "x-total-time")
JSON = "application/json"


# -- errors, one shape per front door ------------------------------------------------------------
def sagemaker_error(status: int, message: str, extra: dict | None = None) -> web.Response:
    kind = _SAGEMAKER_ERRORS.get(status, "InternalFailure")
    headers = {"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazonaws.sagemaker.runtime/"}
    if status == 429:
        headers["Retry-After"] = "1"
    return json_response({"message": message, **(extra or {})}, status, headers)


def model_error(copy_id: str, status: int, body: bytes) -> web.Response:
    """An engine error, as SageMaker reports it: 424 ModelError with the original status and message."""
    original = body.decode("utf-8", "replace")
    kind = "client" if status < 500 else "server"
    message = f"Received {kind} error ({status}) from {copy_id} with message \"{original}\". "
    return sagemaker_error(424, message, {"OriginalStatusCode": status, "OriginalMessage": original,
                                          "ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL"})


def _sagemaker_on_error(exc: ApiError) -> web.Response:
    if exc.error_type == "timeout":  # as SageMaker words a container that does not answer in time
        copy_id = getattr(exc, "copy_id", "primary")
        return model_error(copy_id, 0, f"Your invocation timed out while waiting for a response from container "
                                       f"{copy_id}: {exc.message}".encode())
    return sagemaker_error(exc.status, exc.message)


def tgi_error(exc: ApiError) -> web.Response:
    headers = {"Retry-After": "1"} if exc.status == 429 else None
    return json_response(exc.body(), exc.status, headers)


def _route(name: str, on_error: Callable[[ApiError], web.Response]) -> Callable[[Handler], Handler]:
    """Request id, metrics and the route family's error shape around a handler."""
    def wrap(handler: Handler) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            rid = request.headers.get("X-Request-Id") or uuid.uuid4().hex
            request["rid"] = rid
            started = time.perf_counter()
            try:
                response = await handler(request)
            except ApiError as exc:
                response = on_error(exc)
            component = request.get("component", "-")
            seconds = time.perf_counter() - started
            metrics.REQUESTS.labels(component, name, str(response.status)).inc()
            metrics.LATENCY.labels(component).observe(seconds)
            level = logging.WARNING if response.status >= 500 else logging.DEBUG  # --log-level debug: all
            if log.isEnabledFor(level):
                log.log(level, orjson.dumps({"request_id": rid, "route": name, "path": request.path,
                                             "component": component, "status": response.status,
                                             "ms": round(seconds * 1000, 2)}).decode())
            return response
        return run
    return wrap


async def _stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Every gateway answer, streamed or not, carries its request id (set just before headers go out)."""
    if rid := request.get("rid"):
        response.headers["x-request-id"] = rid
        response.headers["x-amzn-RequestId"] = rid


# -- choosing the component ---------------------------------------------------------------------
def sagemaker_pool(table: RoutingTable, endpoint: str, header: str | None) -> Pool:
    if endpoint not in table.endpoints:
        raise ApiError(400, f"Endpoint {endpoint} of account {ACCOUNT} not found.", "validation")
    if header:
        pool = table.pools.get(header)
        if pool is None or pool.config.endpoint != endpoint:
            raise ApiError(400, f"Inference Component {header} not found for endpoint {endpoint}.", "validation")
        return pool
    members = table.members(endpoint)
    if len(members) == 1:
        return members[0]
    raise ApiError(400, "Inference Component Name header is required for endpoints to which you plan to deploy "
                        "inference components. Please include Inference Component Name header or consider using "
                        "SageMaker models.", "validation")


def named_pool(table: RoutingTable, name: object) -> Pool:
    """OpenAI's `model`: the name of an inference component (GET /v1/models lists them)."""
    if not isinstance(name, str) or not name:
        raise ApiError(400, "you must provide a model parameter", "missing_model")
    if name not in table.pools:
        known = ", ".join(table.pools) or "none deployed"
        raise ApiError(404, f"The model `{name}` does not exist or you do not have access to it. "
                            f"Inference components: {known}.", "model_not_found")
    return table.pools[name]


def _prefix_key(body: bytes) -> bytes | None:
    """The prompt's first KEY_CHARS characters (TGI inputs, OpenAI prompt or messages), for PREFIX_AFFINITY."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    text = data.get("inputs") or data.get("prompt") or data.get("messages")
    if not text:
        return None
    return (text if isinstance(text, str) else orjson.dumps(text).decode())[:KEY_CHARS].encode()


# -- relaying -----------------------------------------------------------------------------------------
async def _relay(request: web.Request, answer: Answer, pool: Pool) -> web.StreamResponse:
    """The copy's answer, unchanged: streamed through as it arrives, or whole."""
    headers = {h: answer.response.headers[h] for h in _PASSED_HEADERS if h in answer.response.headers}
    headers[COPY_HEADER] = answer.backend.id
    if not answer.streaming:
        return web.Response(status=answer.status, body=await answer.read(), headers=headers)
    return await _stream_out(request, answer.chunks(), pool, web.StreamResponse(
        status=answer.status, headers={**headers, "Cache-Control": "no-cache"}))


async def _stream_out(request: web.Request, chunks: AsyncIterator[bytes], pool: Pool, out: web.StreamResponse,
                      frame: Callable[[bytes], bytes] = lambda chunk: chunk) -> web.StreamResponse:
    """Write `chunks` to the client as they come; a copy that dies mid-stream ends it with an error event."""
    await out.prepare(request)
    started, first = time.perf_counter(), True
    try:
        async for chunk in chunks:
            if first:
                metrics.TTFB.labels(pool.name).observe(time.perf_counter() - started)
                first = False
            await out.write(frame(chunk))
    except aiohttp.ClientPayloadError as exc:
        log.warning("request %s: copy ended the stream early: %s", request.get("rid"), exc)
        message = "the copy serving this stream stopped"
        await out.write(model_stream_error(message) if frame is payload_part
                        else sse({"error": message, "error_type": "generation"}))
    await out.write_eof()
    return out


def _sse_response(pool: Pool, copy_id: str, extra: dict[str, str] | None = None) -> web.StreamResponse:
    return web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       COPY_HEADER: copy_id, **(extra or {})})


class GatewayRoutes:
    def __init__(self, table: RoutingTable, upstreams: Upstreams, default_component: str | None = None) -> None:
        self.table = table
        self.upstreams = upstreams
        self.default_component = default_component

    def _key(self, pool: Pool, body: bytes) -> bytes | None:
        return _prefix_key(body) if pool.router.needs_key else None

    # -- SageMaker runtime ---------------------------------------------------------------------
    def _sagemaker_pool(self, request: web.Request) -> Pool:
        pool = sagemaker_pool(self.table, request.match_info["endpoint"], request.headers.get(COMPONENT_HEADER))
        request["component"] = pool.name
        return pool

    async def invocations(self, request: web.Request) -> web.StreamResponse:
        pool = self._sagemaker_pool(request)
        body = await request.read()
        variant = {"X-Amzn-Invoked-Production-Variant": pool.name}
        if pool.config.protocol is EngineProtocol.OPENAI:
            return await self._translated_sagemaker(request, pool, body, None, variant)
        async with self.upstreams.send(pool, "/invocations", body, request.content_type or JSON,
                                       self._key(pool, body)) as answer:
            if answer.status >= 400:
                return model_error(answer.backend.id, answer.status, await answer.read())
            if answer.streaming:  # a body with "stream": true
                return await _relay(request, answer, pool)
            return web.Response(body=await answer.read(), content_type=answer.content_type,
                                headers={**variant, COPY_HEADER: answer.backend.id})

    async def invocations_stream(self, request: web.Request) -> web.StreamResponse:
        pool = self._sagemaker_pool(request)
        body = await request.read()
        headers = {"Content-Type": "application/vnd.amazon.eventstream",
                   "X-Amzn-SageMaker-Content-Type": "text/event-stream",
                   "X-Amzn-Invoked-Production-Variant": pool.name}
        if pool.config.protocol is EngineProtocol.OPENAI:
            return await self._translated_sagemaker(request, pool, body, headers)
        body = _with_stream_flag(body)
        async with self.upstreams.send(pool, "/invocations", body, JSON, self._key(pool, body)) as answer:
            if answer.status >= 400:
                return model_error(answer.backend.id, answer.status, await answer.read())
            out = web.StreamResponse(headers={**headers, COPY_HEADER: answer.backend.id})
            return await _stream_out(request, answer.chunks(), pool, out, payload_part)

    async def _translated_sagemaker(self, request: web.Request, pool: Pool, body: bytes,
                                    eventstream: dict[str, str] | None,
                                    variant: dict[str, str] | None = None) -> web.StreamResponse:
        """SageMaker's TGI request for an OpenAI engine; `eventstream`: answer as a response stream."""
        try:
            call = TgiCall(body, pool.config, stream=True if eventstream else None)
        except ApiError as exc:  # the container would have refused it: SageMaker says ModelError
            return model_error(pool.name, exc.status, orjson.dumps(exc.body()))
        async with self.upstreams.send(pool, call.path, call.payload(), JSON, self._key(pool, body)) as answer:
            if answer.status >= 400:
                return model_error(answer.backend.id, answer.status, await answer.read())
            if eventstream:
                out = web.StreamResponse(headers={**eventstream, COPY_HEADER: answer.backend.id})
                return await _stream_out(request, call.events(answer.chunks()), pool, out, payload_part)
            if call.stream:
                out = _sse_response(pool, answer.backend.id, variant)
                return await _stream_out(request, call.events(answer.chunks()), pool, out)
            try:
                result = call.answer(await answer.read())
            except ApiError as exc:
                return model_error(answer.backend.id, exc.status, orjson.dumps(exc.body()))
            return json_response([result], headers={**(variant or {}), COPY_HEADER: answer.backend.id})

    # -- OpenAI -----------------------------------------------------------------------------------
    async def openai(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            model = orjson.loads(body).get("model")
        except (orjson.JSONDecodeError, AttributeError):
            raise ApiError(422, "the request body is not a JSON object", "validation") from None
        pool = named_pool(self.table, model)
        request["component"] = pool.name
        async with self.upstreams.send(pool, request.path, body, request.content_type or JSON,
                                       self._key(pool, body)) as answer:
            return await _relay(request, answer, pool)

    async def models(self, _request: web.Request) -> web.StreamResponse:
        return json_response({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "shoal", "root": p.config.model_id}
            for name, p in self.table.pools.items()]})

    # -- TGI, on the default component --------------------------------------------------------------
    async def tgi(self, request: web.Request) -> web.StreamResponse:
        pool = self._default()
        request["component"] = pool.name
        body = await request.read()
        if pool.config.protocol is EngineProtocol.OPENAI:
            return await self._translated_tgi(request, pool, body)
        async with self.upstreams.send(pool, request.path, body, request.content_type or JSON,
                                       self._key(pool, body)) as answer:
            return await _relay(request, answer, pool)

    async def _translated_tgi(self, request: web.Request, pool: Pool, body: bytes) -> web.StreamResponse:
        path = request.path
        if path == "/tokenize":
            raise ApiError(422, f"/tokenize is not supported by this inference component's engine "
                                f"({pool.config.engine})", "validation")
        call = TgiCall(body, pool.config, stream={"/generate": False, "/generate_stream": True}.get(path))
        async with self.upstreams.send(pool, call.path, call.payload(), JSON, self._key(pool, body)) as answer:
            if answer.status >= 400:
                raise engine_error(answer.status, await answer.read())
            if call.stream:
                return await _stream_out(request, call.events(answer.chunks()), pool,
                                         _sse_response(pool, answer.backend.id))
            result = call.answer(await answer.read())
            return json_response(result if path == "/generate" else [result],
                                 headers={COPY_HEADER: answer.backend.id})

    def _default(self) -> Pool:
        if self.default_component:
            if self.default_component not in self.table.pools:
                raise ApiError(404, f"Could not find inference component \"{self.default_component}\".",
                               "not_found")
            return self.table.pools[self.default_component]
        if len(self.table.pools) == 1:
            return next(iter(self.table.pools.values()))
        raise ApiError(400, "the TGI routes need one default inference component: deploy one, start the server "
                            "with --default-component, or use /endpoints/{name}/invocations", "validation")

    def add_to(self, app: web.Application, doc: ApiDoc) -> None:
        app.on_response_prepare.append(_stamp_request_id)
        sagemaker = _route("sagemaker", _sagemaker_on_error)
        openai = _route("openai", openai_error_response)
        tgi = _route("tgi", tgi_error)
        tgi_errors = tuple(Reply(s, ErrorBody) for s in (400, 404, 422, 424, 429, 503, 504))
        openai_errors = tuple(Reply(s, OpenAIError) for s in (400, 404, 422, 429, 503, 504))
        sagemaker_errors = (Reply(400), Reply(424, description="ModelError: the engine refused or failed"),
                            Reply(429), Reply(503))
        tgi_events = (TgiStreamEvent, ErrorBody)
        endpoint = Param("endpoint", description="endpoint name")
        for op in (
            Op("POST", "/endpoints/{endpoint}/invocations", sagemaker(self.invocations), "SageMaker InvokeEndpoint "
               "(header X-Amzn-SageMaker-Inference-Component picks the component)", "sagemaker", GenerateRequest,
               (Reply(200, GenerateResponse, many=True, events=tgi_events), *sagemaker_errors), (endpoint,)),
            Op("POST", "/endpoints/{endpoint}/invocations-response-stream", sagemaker(self.invocations_stream),
               "SageMaker InvokeEndpointWithResponseStream (AWS event stream)", "sagemaker", GenerateRequest,
               (Reply(200, media_type="application/vnd.amazon.eventstream"), *sagemaker_errors), (endpoint,)),
            Op("POST", "/v1/chat/completions", openai(self.openai), "OpenAI chat completions; `model` names the "
               "inference component", "openai", ChatCompletionRequest,
               (Reply(200, ChatCompletion, events=(ChatCompletionChunk, ErrorBody), done=True), *openai_errors)),
            Op("POST", "/v1/completions", openai(self.openai), "OpenAI completions", "openai", CompletionRequest,
               (Reply(200, Completion, events=(Completion, ErrorBody), done=True), *openai_errors)),
            Op("GET", "/v1/models", openai(self.models), "The inference components, as OpenAI models", "openai",
               replies=(Reply(200, ModelList),)),
            Op("POST", "/generate", tgi(self.tgi), "TGI generate, on the default component", "tgi", GenerateRequest,
               (Reply(200, GenerateResponse), *tgi_errors)),
            Op("POST", "/generate_stream", tgi(self.tgi), "TGI generate_stream (server-sent events)", "tgi",
               GenerateRequest, (Reply(200, events=tgi_events), *tgi_errors)),
            Op("POST", "/", tgi(self.tgi), "TGI compat route: a list, or events when `stream`", "tgi",
               GenerateRequest, (Reply(200, GenerateResponse, many=True, events=tgi_events), *tgi_errors)),
            Op("POST", "/invocations", tgi(self.tgi), "SageMaker container route on the default component", "tgi",
               GenerateRequest, (Reply(200, GenerateResponse, many=True, events=tgi_events), *tgi_errors)),
            Op("POST", "/tokenize", tgi(self.tgi), "TGI tokenize", "tgi", TokenizeRequest,
               (Reply(200, TokenizedPiece, many=True), *tgi_errors)),
        ):
            doc.add(app, op)


def _with_stream_flag(body: bytes) -> bytes:
    """The response-stream route streams: ask the engine for SSE even if the body did not say so."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if isinstance(data, dict) and data.get("stream", False) is False:  # a bad value is the engine's to refuse
        data["stream"] = True
        return orjson.dumps(data)
    return body
