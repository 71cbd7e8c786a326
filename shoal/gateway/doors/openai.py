"""OpenAI's front door: `/v1/chat/completions`, `/v1/completions` (`model` names the inference component)
and `/v1/models`. Every engine kind serves OpenAI's routes: requests and answers pass through. Errors in
OpenAI's shape."""
from __future__ import annotations

from aiohttp import web

from shoal.engines.adapters import Asked, EngineCall
from shoal.errors import ApiError
from shoal.gateway.context import RequestContext, parse_json_object
from shoal.gateway.doors.base import engine_call, relay
from shoal.gateway.pool import Pool, RoutingTable
from shoal.gateway.upstream import Answer
from shoal.http import json_response, openai_error_response


def named_pool(table: RoutingTable, name: object) -> tuple[Pool, str | None]:
    """OpenAI's `model`: the name of an inference component, or of an adapter one (GET /v1/models lists
    them); its pool, and the adapter."""
    if not isinstance(name, str) or not name:
        raise ApiError(400, "you must provide a model parameter", "missing_model")
    if (found := table.named(name)) is None:
        known = ", ".join(table.names()) or "none deployed"
        raise ApiError(404, f"The model `{name}` does not exist or you do not have access to it. "
                            f"Inference components: {known}.", "model_not_found")
    return found


class OpenAIDoor:
    name = "openai"

    def __init__(self, table: RoutingTable) -> None:
        self.table = table

    async def parse(self, request: web.Request, asked: Asked) -> RequestContext:
        raw = await request.read()
        data = parse_json_object(raw)
        pool, adapter = named_pool(self.table, data.get("model"))
        return RequestContext(self.name, pool, asked, data, raw, data.get("stream") is True,
                              request.content_type or "application/json", adapter)

    def call(self, context: RequestContext) -> EngineCall:
        return engine_call(context)

    async def encode(self, request: web.Request, context: RequestContext, call: EngineCall,
                     answer: Answer) -> web.StreamResponse:
        return await relay(request, context, call, answer)

    def error(self, exc: ApiError) -> web.Response:
        return openai_error_response(exc)

    async def models(self, _request: web.Request) -> web.StreamResponse:
        """The components, and their adapters (`parent`: the base whose copies serve it)."""
        bases = [{"id": name, "object": "model", "created": 0, "owned_by": "shoal", "root": p.config.model_id,
                  "parent": None} for name, p in self.table.pools.items()]
        adapters = [{"id": name, "object": "model", "created": 0, "owned_by": "shoal", "root": name, "parent": base}
                    for name, base in self.table.adapters.items()]
        return json_response({"object": "list", "data": bases + adapters})
