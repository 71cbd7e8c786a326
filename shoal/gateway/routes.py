"""The gateway's routes, each declared once with its front door, the key scope it needs, its request model
and its answers (shoal.apidoc: routing, keys and the OpenAPI document read the same table). Adding a
route is one `Op` here, handled by the pipeline through one of the doors (shoal/gateway/doors/)."""
from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from shoal.apidoc import ApiDoc, Door, Op, Param, Reply
from shoal.engines.adapters import Asked
from shoal.gateway.doors.openai import OpenAIDoor
from shoal.gateway.doors.sagemaker import DEFAULT_VARIANT, SageMakerDoor
from shoal.gateway.doors.tgi import TgiDoor
from shoal.gateway.pipeline import Pipeline, stamp_request_id
from shoal.gateway.pool import RoutingTable
from shoal.gateway.upstream import Upstreams
from shoal.observability.hooks import Gate, Observer
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
from shoal.security.keys import Scope

_TGI_ERRORS = tuple(Reply(s, ErrorBody) for s in (400, 404, 422, 424, 429, 503, 504))
_OPENAI_ERRORS = tuple(Reply(s, OpenAIError) for s in (400, 404, 422, 429, 503, 504))
_SAGEMAKER_ERRORS = (Reply(400), Reply(424, description="ModelError: the engine refused or failed"), Reply(429),
                     Reply(503))
_TGI_EVENTS = (TgiStreamEvent, ErrorBody)


def add_gateway_routes(app: web.Application, doc: ApiDoc, table: RoutingTable, upstreams: Upstreams,
                       default_component: str | None = None,
                       variant_of: Callable[[str], str] = lambda _endpoint: DEFAULT_VARIANT,
                       observers: tuple[Observer, ...] = (), gate: Gate | None = None) -> None:
    """The gateway's routes; `variant_of(endpoint)` names an endpoint's production variant (SageMaker's);
    `observers` hear every finished request, `gate` may refuse one (per-key limits)."""
    app.on_response_prepare.append(stamp_request_id)
    pipeline = Pipeline(upstreams, observers, gate)
    sagemaker = SageMakerDoor(table, variant_of)
    openai, tgi = OpenAIDoor(table), TgiDoor(table, default_component)
    endpoint = Param("endpoint", description="endpoint name")
    invoke = {"scope": Scope.INVOKE}
    for op in (
        Op("POST", "/endpoints/{endpoint}/invocations", pipeline.handler(sagemaker, Asked.COMPAT),
           "SageMaker InvokeEndpoint (header X-Amzn-SageMaker-Inference-Component picks the component)",
           "sagemaker", GenerateRequest, (Reply(200, GenerateResponse, many=True, events=_TGI_EVENTS),
                                          *_SAGEMAKER_ERRORS), (endpoint,), Door.SAGEMAKER, **invoke),
        Op("POST", "/endpoints/{endpoint}/invocations-response-stream",
           pipeline.handler(sagemaker, Asked.GENERATE_STREAM), "SageMaker InvokeEndpointWithResponseStream (AWS "
           "event stream)", "sagemaker", GenerateRequest,
           (Reply(200, media_type="application/vnd.amazon.eventstream"), *_SAGEMAKER_ERRORS), (endpoint,),
           Door.SAGEMAKER, **invoke),
        Op("POST", "/endpoints/{endpoint}/async-invocations", sagemaker.async_invocations, "SageMaker "
           "InvokeEndpointAsync: refused in SageMaker's words (shoal serves real-time inference)", "sagemaker",
           replies=(Reply(400, description="ValidationError"),), params=(endpoint,), door=Door.SAGEMAKER, **invoke),
        Op("POST", "/v1/chat/completions", pipeline.handler(openai, Asked.CHAT), "OpenAI chat completions; `model` "
           "names the inference component", "openai", ChatCompletionRequest,
           (Reply(200, ChatCompletion, events=(ChatCompletionChunk, ErrorBody), done=True), *_OPENAI_ERRORS),
           door=Door.OPENAI, **invoke),
        Op("POST", "/v1/completions", pipeline.handler(openai, Asked.COMPLETIONS), "OpenAI completions", "openai",
           CompletionRequest, (Reply(200, Completion, events=(Completion, ErrorBody), done=True), *_OPENAI_ERRORS),
           door=Door.OPENAI, **invoke),
        Op("GET", "/v1/models", openai.models, "The inference components, as OpenAI models", "openai",
           replies=(Reply(200, ModelList),), door=Door.OPENAI, **invoke),
        Op("POST", "/generate", pipeline.handler(tgi, Asked.GENERATE), "TGI generate, on the default component",
           "tgi", GenerateRequest, (Reply(200, GenerateResponse), *_TGI_ERRORS), door=Door.TGI, **invoke),
        Op("POST", "/generate_stream", pipeline.handler(tgi, Asked.GENERATE_STREAM), "TGI generate_stream "
           "(server-sent events)", "tgi", GenerateRequest, (Reply(200, events=_TGI_EVENTS), *_TGI_ERRORS),
           door=Door.TGI, **invoke),
        Op("POST", "/", pipeline.handler(tgi, Asked.COMPAT), "TGI compat route: a list, or events when `stream`",
           "tgi", GenerateRequest, (Reply(200, GenerateResponse, many=True, events=_TGI_EVENTS), *_TGI_ERRORS),
           door=Door.TGI, **invoke),
        Op("POST", "/invocations", pipeline.handler(tgi, Asked.COMPAT), "SageMaker container route on the default "
           "component", "tgi", GenerateRequest,
           (Reply(200, GenerateResponse, many=True, events=_TGI_EVENTS), *_TGI_ERRORS), door=Door.TGI, **invoke),
        Op("POST", "/tokenize", pipeline.handler(tgi, Asked.TOKENIZE), "TGI tokenize", "tgi", TokenizeRequest,
           (Reply(200, TokenizedPiece, many=True), *_TGI_ERRORS), door=Door.TGI, **invoke),
    ):
        doc.add(app, op)
