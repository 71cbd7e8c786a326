"""The control API (`/api/...`): create, describe, list, update and delete endpoints and components."""
from __future__ import annotations

from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from shoal.control.controller import Controller
from shoal.control.models import ComponentSpec, ComponentUpdate, EndpointSpec
from shoal.errors import ApiError

SpecT = TypeVar("SpecT", bound=BaseModel)


async def _body(request: web.Request, model: type[SpecT]) -> SpecT:
    try:
        return model.model_validate(orjson.loads(await request.read()))
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not JSON: {exc}", "ValidationException") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors())
        raise ApiError(400, problems, "ValidationException") from None


def _json(data: BaseModel | list[Any], status: int = 200) -> web.Response:
    payload = [d.model_dump(mode="json") for d in data] if isinstance(data, list) else data.model_dump(mode="json")
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


class ControlApi:
    def __init__(self, controller: Controller) -> None:
        self.c = controller

    async def create_endpoint(self, request: web.Request) -> web.StreamResponse:
        return _json(self.c.create_endpoint(await _body(request, EndpointSpec)), 201)

    async def list_endpoints(self, _request: web.Request) -> web.StreamResponse:
        return _json([self.c.endpoint_view(name) for name in self.c.endpoints])

    async def describe_endpoint(self, request: web.Request) -> web.StreamResponse:
        return _json(self.c.endpoint_view(request.match_info["name"]))

    async def delete_endpoint(self, request: web.Request) -> web.StreamResponse:
        cascade = request.query.get("cascade", "false").lower() in ("1", "true", "yes")
        await self.c.delete_endpoint(request.match_info["name"], cascade)
        return web.Response(status=204)

    async def create_component(self, request: web.Request) -> web.StreamResponse:
        return _json(self.c.create_component(await _body(request, ComponentSpec)), 201)

    async def list_components(self, request: web.Request) -> web.StreamResponse:
        return _json(self.c.list_components(request.query.get("endpoint")))

    async def describe_component(self, request: web.Request) -> web.StreamResponse:
        return _json(self.c.component_view(request.match_info["name"]))

    async def update_component(self, request: web.Request) -> web.StreamResponse:
        update = await _body(request, ComponentUpdate)
        return _json(await self.c.update_component(request.match_info["name"], update))

    async def delete_component(self, request: web.Request) -> web.StreamResponse:
        await self.c.delete_component(request.match_info["name"])
        return web.Response(status=204)

    def add_to(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/api/endpoints", self.create_endpoint)
        r.add_get("/api/endpoints", self.list_endpoints)
        r.add_get("/api/endpoints/{name}", self.describe_endpoint)
        r.add_delete("/api/endpoints/{name}", self.delete_endpoint)
        r.add_post("/api/inference-components", self.create_component)
        r.add_get("/api/inference-components", self.list_components)
        r.add_get("/api/inference-components/{name}", self.describe_component)
        r.add_patch("/api/inference-components/{name}", self.update_component)
        r.add_delete("/api/inference-components/{name}", self.delete_component)
