"""SageMaker runtime's front door: `POST /endpoints/{endpoint}/invocations` and
`.../invocations-response-stream` (AWS event stream), the component chosen by the header
X-Amzn-SageMaker-Inference-Component. What the container refuses or fails comes back as SageMaker says it:
424 ModelError with the original status and message; the gateway's own refusals in SageMaker's words."""
from __future__ import annotations

from collections.abc import Callable

import orjson
from aiohttp import web

from shoal.engines.adapters import Asked, EngineCall
from shoal.errors import ApiError
from shoal.gateway.context import RequestContext, parse_json_object
from shoal.gateway.doors.base import COPY_HEADER, engine_call, relay, stream_out
from shoal.gateway.eventstream import model_stream_error, payload_part
from shoal.gateway.pool import Pool, RoutingTable
from shoal.gateway.upstream import Answer, NoCapacity
from shoal.http import json_response

COMPONENT_HEADER = "X-Amzn-SageMaker-Inference-Component"
TARGET_VARIANT_HEADER = "X-Amzn-SageMaker-Target-Variant"
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"  # passed to the copy, and back from it
VARIANT_HEADER = "X-Amzn-Invoked-Production-Variant"
DEFAULT_VARIANT = "AllTraffic"
ACCOUNT = "000000000000"
NO_CAPACITY = ("Inference Component has no capacity to process this request. ApplicationAutoScaling may be "
               "in-progress (if configured) or try to increase the capacity by invoking "
               "UpdateInferenceComponentRuntimeConfig API.")  # AWS's words (a 400 ValidationError)
_ERRORS = {400: "ValidationError", 404: "ValidationError", 409: "ValidationError", 424: "ModelError",
           429: "ThrottlingException", 503: "ServiceUnavailable"}


def sagemaker_error(status: int, message: str, extra: dict | None = None) -> web.Response:
    kind = _ERRORS.get(status, "InternalFailure")
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


class ContainerRefusal(ApiError):
    """What the container would have answered (a body it cannot read, a parameter it refuses): a ModelError."""

    def __init__(self, component: str, refusal: ApiError) -> None:
        super().__init__(refusal.status, refusal.message, refusal.error_type)
        self.component, self.refusal = component, refusal


def sagemaker_pool(table: RoutingTable, endpoint: str, header: str | None) -> tuple[Pool, str | None]:
    """The component the header names (an adapter one: its base's pool, and the adapter), or the endpoint's
    only one."""
    if endpoint not in table.endpoints:
        raise ApiError(400, f"Endpoint {endpoint} of account {ACCOUNT} not found.", "validation")
    if header:
        found = table.named(header)
        if found is None or found[0].config.endpoint != endpoint:
            raise ApiError(400, f"Inference Component {header} not found for endpoint {endpoint}.", "validation")
        return found
    members = table.members(endpoint)
    if len(members) == 1:
        return members[0], None
    raise ApiError(400, "Inference Component Name header is required for endpoints to which you plan to deploy "
                        "inference components. Please include Inference Component Name header or consider using "
                        "SageMaker models.", "validation")


class SageMakerDoor:
    name = "sagemaker"

    def __init__(self, table: RoutingTable, variant_of: Callable[[str], str] = lambda _endpoint: DEFAULT_VARIANT) -> None:
        self.table = table
        self.variant_of = variant_of  # an endpoint's production variant (each endpoint has one)

    async def parse(self, request: web.Request, asked: Asked) -> RequestContext:
        """`asked` COMPAT: InvokeEndpoint (events when the body says `stream`); GENERATE_STREAM:
        InvokeEndpointWithResponseStream (events whatever the body says, framed as an AWS event stream)."""
        endpoint = request.match_info["endpoint"]
        pool, adapter = sagemaker_pool(self.table, endpoint, request.headers.get(COMPONENT_HEADER))
        if (target := request.headers.get(TARGET_VARIANT_HEADER)) is not None and target != self.variant_of(endpoint):
            raise ApiError(400, f"Target variant {target} not found for endpoint {endpoint}: its production variant "
                                f"is {self.variant_of(endpoint)}.", "validation")
        raw = await request.read()
        try:
            data = parse_json_object(raw)
        except ApiError as exc:
            raise ContainerRefusal(pool.name, exc) from None
        stream = asked is Asked.GENERATE_STREAM or data.get("stream") is True
        forward = {CUSTOM_ATTRIBUTES_HEADER: attributes} if (attributes := request.headers.get(
            CUSTOM_ATTRIBUTES_HEADER)) else {}
        return RequestContext(self.name, pool, asked, data, raw, stream, request.content_type or "application/json",
                              adapter, forward)

    def call(self, context: RequestContext) -> EngineCall:
        try:
            return engine_call(context)
        except ApiError as exc:  # the engine's rules, applied where the gateway translates
            raise ContainerRefusal(context.pool.name, exc) from None

    async def encode(self, request: web.Request, context: RequestContext, call: EngineCall,
                     answer: Answer) -> web.StreamResponse:
        if answer.status >= 400:
            return model_error(answer.backend.id, answer.status, await answer.read())
        variant = {VARIANT_HEADER: context.adapter or context.pool.name}
        if context.asked is Asked.GENERATE_STREAM:
            out = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream",
                                              "X-Amzn-SageMaker-Content-Type": "text/event-stream",
                                              COPY_HEADER: answer.backend.id, **variant})
            return await stream_out(request, context, call.events(answer.chunks()), out, payload_part,
                                    model_stream_error)
        return await relay(request, context, call, answer, variant)

    async def async_invocations(self, request: web.Request) -> web.StreamResponse:
        """InvokeEndpointAsync: shoal's endpoints are real-time ones, as SageMaker words such a refusal."""
        endpoint = request.match_info["endpoint"]
        if endpoint not in self.table.endpoints:
            return sagemaker_error(400, f"Endpoint {endpoint} of account {ACCOUNT} not found.")
        return sagemaker_error(400, f"Endpoint {endpoint} of account {ACCOUNT} is not an asynchronous inference "
                                    f"endpoint: shoal serves real-time inference (InvokeEndpoint, "
                                    f"InvokeEndpointWithResponseStream)")

    def error(self, exc: ApiError) -> web.Response:
        if isinstance(exc, ContainerRefusal):
            return model_error(exc.component, exc.status, orjson.dumps(exc.refusal.body()))
        if isinstance(exc, NoCapacity):
            return sagemaker_error(400, f"{NO_CAPACITY} ({exc.message})")
        if exc.error_type == "timeout":  # as SageMaker words a container that does not answer in time
            copy_id = getattr(exc, "copy_id", "primary")
            return model_error(copy_id, 0, f"Your invocation timed out while waiting for a response from container "
                                           f"{copy_id}: {exc.message}".encode())
        return sagemaker_error(exc.status, exc.message)
