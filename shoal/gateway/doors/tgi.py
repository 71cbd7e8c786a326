"""TGI's front door: `/generate`, `/generate_stream`, `/`, `/invocations` and `/tokenize` on the default
component (the only one, or the server's --default-component). Errors in TGI's shape."""
from __future__ import annotations

from aiohttp import web

from shoal.engines.adapters import Asked, EngineCall
from shoal.errors import ApiError
from shoal.gateway.context import RequestContext, parse_json_object
from shoal.gateway.doors.base import engine_call, relay
from shoal.gateway.pool import Pool, RoutingTable
from shoal.gateway.upstream import Answer
from shoal.http import json_response


def tgi_error(exc: ApiError) -> web.Response:
    headers = {"Retry-After": "1"} if exc.status == 429 else None
    return json_response(exc.body(), exc.status, headers)


class TgiDoor:
    name = "tgi"

    def __init__(self, table: RoutingTable, default_component: str | None = None) -> None:
        self.table = table
        self.default_component = default_component

    async def parse(self, request: web.Request, asked: Asked) -> RequestContext:
        pool = self.default_pool()
        raw = await request.read()
        data = parse_json_object(raw)
        stream = asked is Asked.GENERATE_STREAM or (asked is Asked.COMPAT and data.get("stream") is True)
        return RequestContext(self.name, pool, asked, data, raw, stream, request.content_type or "application/json",
                              self.adapter(pool, data))

    def adapter(self, pool: Pool, data: dict) -> str | None:
        """TGI's `parameters.adapter_id`: one of the default component's adapter inference components."""
        parameters = data.get("parameters")
        adapter = parameters.get("adapter_id") if isinstance(parameters, dict) else None
        if adapter is None:
            return None
        if not isinstance(adapter, str) or self.table.adapters.get(adapter) != pool.name:
            known = ", ".join(a for a, base in self.table.adapters.items() if base == pool.name) or "none"
            raise ApiError(422, f"`adapter_id` {adapter!r} is not an adapter of inference component {pool.name} "
                                f"(its adapters: {known})", "validation")
        return adapter

    def call(self, context: RequestContext) -> EngineCall:
        return engine_call(context)

    async def encode(self, request: web.Request, context: RequestContext, call: EngineCall,
                     answer: Answer) -> web.StreamResponse:
        if answer.status >= 400 and (refusal := call.refusal(answer.status, await answer.read())):
            raise refusal
        return await relay(request, context, call, answer)

    def error(self, exc: ApiError) -> web.Response:
        return tgi_error(exc)

    def default_pool(self) -> Pool:
        if self.default_component:
            if self.default_component not in self.table.pools:
                raise ApiError(404, f"Could not find inference component \"{self.default_component}\".",
                               "not_found")
            return self.table.pools[self.default_component]
        if len(self.table.pools) == 1:
            return next(iter(self.table.pools.values()))
        raise ApiError(400, "the TGI routes need one default inference component: deploy one, start the server "
                            "with --default-component, or use /endpoints/{name}/invocations", "validation")
