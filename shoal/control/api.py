"""The control API (`/api/...`): create, describe, list, update and delete endpoints and components."""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from shoal.apidoc import ApiDoc, Op, Param, Reply
from shoal.control.autoscaling.policy import AutoscalingSpec, AutoscalingState
from shoal.control.autoscaling.scaler import Autoscaler
from shoal.control.controller import Controller
from shoal.control.models import ComponentSpec, ComponentUpdate, ComponentView, EndpointSpec, EndpointView
from shoal.errors import ApiError
from shoal.observability.usage import UsageReport
from shoal.protocol.responses import ErrorBody

SpecT = TypeVar("SpecT", bound=BaseModel)
# (start, end, key, component, by) -> usage rows (shoal.observability.service.Observability.usage_report)
UsageQuery = Callable[[float, float, "str | None", "str | None", "str | None"], Awaitable[UsageReport]]


async def _body(request: web.Request, model: type[SpecT]) -> SpecT:
    """The request body as `model`, strictly typed (a string is not a number); 400 saying what is wrong."""
    try:
        return model.model_validate_json(await request.read() or b"null", strict=True)
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid":
            raise ApiError(400, f"the request body is not JSON: {exc.errors()[0]['msg']}", "ValidationException") \
                from None
        raise ApiError(400, problems(exc), "ValidationException") from None


def problems(exc: ValidationError) -> str:
    """A pydantic error in a sentence: `where: what is wrong; ...`."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg'].removeprefix('Value error, ')}"
                     for e in exc.errors())


def _flag(request: web.Request, name: str) -> bool:
    """A boolean query parameter: true or false (400 otherwise, rather than a guess)."""
    value = request.query.get(name, "false").lower()
    if value not in ("true", "false"):
        raise ApiError(400, f"query parameter `{name}` must be true or false, not {value!r}", "ValidationException")
    return value == "true"


def _json(data: BaseModel | list[Any], status: int = 200) -> web.Response:
    payload = [d.model_dump(mode="json") for d in data] if isinstance(data, list) else data.model_dump(mode="json")
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


class ControlApi:
    def __init__(self, controller: Controller, scaler: Autoscaler | None = None,
                 usage: UsageQuery | None = None) -> None:
        self.c = controller
        self.scaler = scaler
        self.usage = usage

    async def create_endpoint(self, request: web.Request) -> web.StreamResponse:
        return _json(self.c.create_endpoint(await _body(request, EndpointSpec)), 201)

    async def list_endpoints(self, _request: web.Request) -> web.StreamResponse:
        return _json([self.c.endpoint_view(name) for name in self.c.endpoints])

    async def describe_endpoint(self, request: web.Request) -> web.StreamResponse:
        return _json(self.c.endpoint_view(request.match_info["name"]))

    async def delete_endpoint(self, request: web.Request) -> web.StreamResponse:
        cascade = _flag(request, "cascade")
        await self.c.delete_endpoint(request.match_info["name"], cascade)
        return web.Response(status=204)

    async def create_component(self, request: web.Request) -> web.StreamResponse:
        return _json(self._view(self.c.create_component(await _body(request, ComponentSpec))), 201)

    def _view(self, view: ComponentView) -> ComponentView:
        """A component as describe shows it: with its autoscaling policy and last activity, if it has one."""
        if self.scaler is None:
            return view
        return view.model_copy(update={"autoscaling": self.scaler.view(view.spec.name)})

    async def list_components(self, request: web.Request) -> web.StreamResponse:
        return _json([self._view(v) for v in self.c.list_components(request.query.get("endpoint"))])

    async def describe_component(self, request: web.Request) -> web.StreamResponse:
        return _json(self._view(self.c.component_view(request.match_info["name"])))

    async def update_component(self, request: web.Request) -> web.StreamResponse:
        update = await _body(request, ComponentUpdate)
        return _json(self._view(await self.c.update_component(request.match_info["name"], update)))

    async def delete_component(self, request: web.Request) -> web.StreamResponse:
        await self.c.delete_component(request.match_info["name"])
        return web.Response(status=204)

    # -- autoscaling ------------------------------------------------------------------------------------
    def _autoscaling(self, name: str) -> AutoscalingState:
        assert self.scaler is not None
        view = self.c.component_view(name)
        if (policy := self.scaler.get(name)) is None:
            raise ApiError(404, f"Inference component \"{name}\" has no autoscaling policy.", "ValidationException")
        return AutoscalingState(policy=policy, desired_copies=view.desired_copies, current_copies=view.current_copies,
                                activities=self.scaler.history(name))

    async def put_autoscaling(self, request: web.Request) -> web.StreamResponse:
        assert self.scaler is not None
        name, spec = request.match_info["name"], await _body(request, AutoscalingSpec)
        self.c.component(name)
        try:
            self.scaler.put(spec.policy(name))
        except ValidationError as exc:
            raise ApiError(400, problems(exc), "ValidationException") from None
        return _json(self._autoscaling(name))

    async def get_autoscaling(self, request: web.Request) -> web.StreamResponse:
        return _json(self._autoscaling(request.match_info["name"]))

    async def delete_autoscaling(self, request: web.Request) -> web.StreamResponse:
        assert self.scaler is not None
        self._autoscaling(request.match_info["name"])
        self.scaler.delete(request.match_info["name"])
        return web.Response(status=204)

    # -- usage per API key --------------------------------------------------------------------------------
    async def get_usage(self, request: web.Request) -> web.StreamResponse:
        assert self.usage is not None
        q = request.query
        end = _moment(q.get("end"), "end", time.time())
        start = _moment(q.get("start"), "start", 0.0)
        if q.get("by") not in (None, "hour", "day"):
            raise ApiError(400, f"by: hour or day, not {q['by']!r}", "ValidationException")
        return _json(await self.usage(start, end, q.get("key"), q.get("component"), q.get("by")))

    def add_to(self, app: web.Application, doc: ApiDoc) -> None:
        endpoint, component = Param("name", description="endpoint name"), Param("name", description="component name")
        errors = (Reply(400, ErrorBody, description="bad input, or copies that do not fit (what is short)"),
                  Reply(404, ErrorBody, description="no such endpoint or component"))
        conflict = Reply(409, ErrorBody, description="exists already, or still in use")
        for op in (
            Op("POST", "/api/endpoints", self.create_endpoint, "Create an endpoint", "control", EndpointSpec,
               (Reply(201, EndpointView), *errors, conflict)),
            Op("GET", "/api/endpoints", self.list_endpoints, "List endpoints", "control",
               replies=(Reply(200, EndpointView, many=True),)),
            Op("GET", "/api/endpoints/{name}", self.describe_endpoint, "Describe an endpoint", "control",
               replies=(Reply(200, EndpointView), *errors), params=(endpoint,)),
            Op("DELETE", "/api/endpoints/{name}", self.delete_endpoint, "Delete an endpoint", "control",
               replies=(Reply(204), *errors, conflict),
               params=(endpoint, Param("cascade", "query", "also delete its inference components", "boolean"))),
            Op("POST", "/api/inference-components", self.create_component, "Deploy an inference component",
               "control", ComponentSpec, (Reply(201, ComponentView), *errors, conflict)),
            Op("GET", "/api/inference-components", self.list_components, "List inference components", "control",
               replies=(Reply(200, ComponentView, many=True),),
               params=(Param("endpoint", "query", "only this endpoint's"),)),
            Op("GET", "/api/inference-components/{name}", self.describe_component, "Describe an inference "
               "component and its copies", "control", replies=(Reply(200, ComponentView), *errors),
               params=(component,)),
            Op("PATCH", "/api/inference-components/{name}", self.update_component, "Scale or update an inference "
               "component", "control", ComponentUpdate, (Reply(200, ComponentView), *errors, conflict),
               params=(component,)),
            Op("DELETE", "/api/inference-components/{name}", self.delete_component, "Delete an inference "
               "component (its copies drain first)", "control", replies=(Reply(204), *errors), params=(component,)),
        ):
            doc.add(app, op)
        if self.usage is not None:
            doc.add(app, Op("GET", "/api/usage", self.get_usage, "Usage per API key and inference component: requests, "
                            "errors, throttled requests, prompt, cached and generated tokens", "control",
                            replies=(Reply(200, UsageReport), Reply(400, ErrorBody)), params=(
                                Param("start", "query", "from (epoch seconds or ISO 8601; default: all kept)"),
                                Param("end", "query", "until (epoch seconds or ISO 8601; default: now)"),
                                Param("key", "query", "only this API key's (its name)"),
                                Param("component", "query", "only this inference component's"),
                                Param("by", "query", "rows per hour or day (default: one row per key and component)"))))
        if self.scaler is None:
            return
        for op in (
            Op("PUT", "/api/inference-components/{name}/autoscaling", self.put_autoscaling, "Set a component's "
               "autoscaling policy (min/max copies, targets, cooldowns)", "control", AutoscalingSpec,
               (Reply(200, AutoscalingState), *errors), params=(component,)),
            Op("GET", "/api/inference-components/{name}/autoscaling", self.get_autoscaling, "A component's "
               "autoscaling policy and scaling activities", "control", replies=(Reply(200, AutoscalingState), *errors),
               params=(component,)),
            Op("DELETE", "/api/inference-components/{name}/autoscaling", self.delete_autoscaling, "Stop autoscaling "
               "a component (its copies stay as they are)", "control", replies=(Reply(204), *errors),
               params=(component,)),
        ):
            doc.add(app, op)


def _moment(value: str | None, name: str, default: float) -> float:
    """A query parameter's time: epoch seconds or ISO 8601 (UTC unless it says otherwise)."""
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"{name}: epoch seconds or an ISO 8601 time, not {value!r}", "ValidationException") \
            from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).timestamp()
