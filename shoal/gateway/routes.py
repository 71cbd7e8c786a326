"""The gateway's routes: SageMaker runtime, OpenAI and TGI, in front of the copies."""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

import aiohttp
import orjson
from aiohttp import web

from shoal.control.controller import Component, Controller
from shoal.errors import ApiError
from shoal.gateway import metrics
from shoal.gateway.eventstream import model_stream_error, payload_part
from shoal.gateway.upstream import Upstreams
from shoal.http import Handler, json_response

log = logging.getLogger(__name__)
COMPONENT_HEADER = "X-Amzn-SageMaker-Inference-Component"
COPY_HEADER = "x-shoal-copy"  # which copy served the request
_SAGEMAKER_ERRORS = {400: "ValidationError", 404: "ValidationError", 409: "ValidationError",
                     424: "ModelError", 429: "ThrottlingException", 503: "ServiceUnavailable"}
_PASSED_HEADERS = ("Content-Type", "x-prompt-tokens", "x-generated-tokens", "x-queue-time", "x-inference-time",
                   "x-total-time")


# -- errors ---------------------------------------------------------------------------------
def sagemaker_error(status: int, message: str, extra: dict | None = None) -> web.Response:
    kind = _SAGEMAKER_ERRORS.get(status, "InternalFailure")
    headers = {"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazonaws.sagemaker.runtime/"}
    if status == 429:
        headers["Retry-After"] = "1"
    return json_response({"message": message, **(extra or {})}, status, headers)


def model_error(replica_id: str, status: int, body: bytes) -> web.Response:
    """An engine error, as SageMaker reports it: 424 ModelError with the original status and message."""
    original = body.decode("utf-8", "replace")
    message = f"Received client error ({status}) from {replica_id} with message \"{original}\". "
    return sagemaker_error(424, message, {"OriginalStatusCode": status, "OriginalMessage": original,
                                          "ErrorCode": "CLIENT_ERROR_FROM_MODEL"})


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


def _sagemaker_on_error(exc: ApiError) -> web.Response:
    return sagemaker_error(exc.status, exc.message)


# -- choosing the component -----------------------------------------------------------------
def sagemaker_component(controller: Controller, endpoint: str, header: str | None) -> Component:
    if endpoint not in controller.endpoints:
        raise ApiError(400, f"Endpoint {endpoint} of account 000000000000 not found.", "validation")
    members = controller.members(endpoint)
    if header:
        comp = controller.components.get(header)
        if comp is None or comp.spec.endpoint != endpoint:
            raise ApiError(400, f"Inference Component {header} not found for endpoint {endpoint}.", "validation")
        return comp
    if len(members) == 1:
        return members[0]
    raise ApiError(400, "Inference Component Name header is required for endpoints to which you plan to deploy "
                        "inference components. Please include Inference Component Name header or consider using "
                        "SageMaker models.", "validation")


def named_component(controller: Controller, name: str | None) -> Component:
    """OpenAI's `model`: a component name; with one component, any name reaches it."""
    if name in controller.components:
        return controller.components[name]  # type: ignore[index]
    if len(controller.components) == 1:
        return next(iter(controller.components.values()))
    known = ", ".join(controller.components) or "none deployed"
    raise ApiError(404, f"model '{name}' not found; inference components: {known}", "not_found")


def _prefix_key(body: bytes) -> bytes | None:
    """The first 256 characters of the prompt (TGI inputs, OpenAI prompt or messages), for PREFIX_AFFINITY."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    text = data.get("inputs") or data.get("prompt") or data.get("messages")
    if not text:
        return None
    return (text if isinstance(text, str) else orjson.dumps(text).decode())[:256].encode()


# -- relaying ---------------------------------------------------------------------------------
async def _relay(request: web.Request, response: aiohttp.ClientResponse, component: str,
                 copy_id: str) -> web.StreamResponse:
    """The copy's answer, unchanged: streamed through as it arrives, or whole."""
    headers = {h: response.headers[h] for h in _PASSED_HEADERS if h in response.headers}
    headers[COPY_HEADER] = copy_id
    if not response.headers.get("Content-Type", "").startswith("text/event-stream"):
        return web.Response(status=response.status, body=await response.read(), headers=headers)
    out = web.StreamResponse(status=response.status, headers={**headers, "Cache-Control": "no-cache"})
    await out.prepare(request)
    await _pump(request, response, out, component, lambda chunk: chunk)
    return out


async def _pump(request: web.Request, response: aiohttp.ClientResponse, out: web.StreamResponse,
                component: str, frame: Callable[[bytes], bytes]) -> None:
    started, first = time.perf_counter(), True
    try:
        async for chunk in response.content.iter_any():
            if first:
                metrics.TTFB.labels(component).observe(time.perf_counter() - started)
                first = False
            await out.write(frame(chunk))
    except aiohttp.ClientPayloadError as exc:  # the copy died mid-stream: say so, then end
        log.warning("request %s: copy ended the stream early: %s", request.get("rid"), exc)
        error = orjson.dumps({"error": "the copy serving this stream stopped", "error_type": "generation"})
        await out.write(model_stream_error("the copy serving this stream stopped") if frame is payload_part
                        else b"data:" + error + b"\n\n")
    await out.write_eof()


class GatewayRoutes:
    def __init__(self, controller: Controller, upstreams: Upstreams, default_component: str | None = None) -> None:
        self.controller = controller
        self.upstreams = upstreams
        self.default_component = default_component

    def _key(self, comp: Component, body: bytes) -> bytes | None:
        return _prefix_key(body) if self.upstreams.wants_key(comp) else None

    async def _forward(self, request: web.Request, comp: Component, path: str, body: bytes) -> web.StreamResponse:
        request["component"] = comp.spec.name
        async with self.upstreams.send(comp, path, body, request.content_type or "application/json",
                                       self._key(comp, body)) as (replica, response):
            return await _relay(request, response, comp.spec.name, replica.id)

    # SageMaker runtime
    def _sagemaker_component(self, request: web.Request) -> Component:
        comp = sagemaker_component(self.controller, request.match_info["endpoint"],
                                   request.headers.get(COMPONENT_HEADER))
        request["component"] = comp.spec.name
        return comp

    async def invocations(self, request: web.Request) -> web.StreamResponse:
        comp = self._sagemaker_component(request)
        body = await request.read()
        async with self.upstreams.send(comp, "/invocations", body, request.content_type or "application/json",
                                       self._key(comp, body)) as (replica, response):
            if response.status >= 400:
                return model_error(replica.id, response.status, await response.read())
            if response.content_type == "text/event-stream":  # a body with "stream": true
                return await _relay(request, response, comp.spec.name, replica.id)
            data = await response.read()
            return web.Response(body=data, content_type=response.content_type,
                                headers={"X-Amzn-Invoked-Production-Variant": comp.spec.name,
                                         COPY_HEADER: replica.id})

    async def invocations_stream(self, request: web.Request) -> web.StreamResponse:
        comp = self._sagemaker_component(request)
        body = _with_stream_flag(await request.read())
        async with self.upstreams.send(comp, "/invocations", body, "application/json",
                                       self._key(comp, body)) as (replica, response):
            if response.status >= 400:
                return model_error(replica.id, response.status, await response.read())
            out = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream",
                                              "X-Amzn-SageMaker-Content-Type": response.content_type,
                                              "X-Amzn-Invoked-Production-Variant": comp.spec.name,
                                              COPY_HEADER: replica.id})
            await out.prepare(request)
            await _pump(request, response, out, comp.spec.name, payload_part)
            return out

    # OpenAI
    async def openai(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            model = orjson.loads(body).get("model")
        except (orjson.JSONDecodeError, AttributeError):
            raise ApiError(422, "the request body is not a JSON object", "validation") from None
        return await self._forward(request, named_component(self.controller, model), request.path, body)

    async def models(self, _request: web.Request) -> web.StreamResponse:
        return json_response({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "shoal", "root": c.spec.model_id}
            for name, c in self.controller.components.items()]})

    # TGI, on the default component
    async def tgi(self, request: web.Request) -> web.StreamResponse:
        return await self._forward(request, self._default(), request.path, await request.read())

    def _default(self) -> Component:
        if self.default_component:
            return self.controller.component(self.default_component)
        if len(self.controller.components) == 1:
            return next(iter(self.controller.components.values()))
        raise ApiError(400, "the TGI routes need one default inference component: deploy one, start the server "
                            "with --default-component, or use /endpoints/{name}/invocations", "validation")

    def add_to(self, app: web.Application) -> None:
        app.on_response_prepare.append(_stamp_request_id)
        sagemaker = _route("sagemaker", _sagemaker_on_error)
        openai = _route("openai", tgi_error)
        tgi = _route("tgi", tgi_error)
        app.router.add_post("/endpoints/{endpoint}/invocations", sagemaker(self.invocations))
        app.router.add_post("/endpoints/{endpoint}/invocations-response-stream", sagemaker(self.invocations_stream))
        app.router.add_post("/v1/chat/completions", openai(self.openai))
        app.router.add_post("/v1/completions", openai(self.openai))
        app.router.add_get("/v1/models", openai(self.models))
        for path in ("/", "/invocations", "/generate", "/generate_stream", "/tokenize"):
            app.router.add_post(path, tgi(self.tgi))


def _with_stream_flag(body: bytes) -> bytes:
    """The response-stream route streams: ask the engine for SSE even if the body did not say so."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if isinstance(data, dict) and not data.get("stream"):
        data["stream"] = True
        return orjson.dumps(data)
    return body
