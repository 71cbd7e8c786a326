"""The route table of shoal's HTTP API: every route is registered through `ApiDoc.add` with its front
door (the clients it serves, whose words its refusals use), the key scope it needs, its request model and
its answers. One table serves routing (aiohttp's router), authentication (shoal.security.middleware asks
`ApiDoc.declared` which door and scope a request has: anything not declared needs an admin key) and the
OpenAPI 3.1 document, generated from the pydantic models and served at /openapi.json, so a route cannot
exist undocumented."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shoal import __version__
from shoal.http import Handler, json_response
from shoal.security.keys import Scope

_REF = "#/components/schemas/{model}"
SSE = "text/event-stream"
JSON = "application/json"


class Door(Enum):
    """Which clients a route serves, so its answers and refusals come in the shape those clients read."""

    AWS_JSON = "aws-json"  # SageMaker's control plane, Application Auto Scaling (POST / with X-Amz-Target)
    SAGEMAKER = "sagemaker"  # SageMaker runtime (/endpoints/...)
    CLOUDWATCH = "cloudwatch"  # CloudWatch's query API (RPC v2 CBOR, JSON 1.0, query; shoal.observability.cloudwatch)
    OPENAI = "openai"
    TGI = "tgi"  # TGI's routes
    SHOAL = "shoal"  # shoal's own API and operations routes: TGI's error shape


@dataclass(frozen=True)
class Declared:
    """What the table says of a request's route: its door, the scope it needs, whether it needs a key."""

    door: Door
    scope: Scope
    open: bool = False


UNDECLARED = Declared(Door.SHOAL, Scope.ADMIN)  # not in the table: only an admin key gets as far as its 404


@dataclass(frozen=True)
class HeaderDoor:
    """A door chosen by a header rather than a path (AWS's JSON 1.1 protocol: `POST /` with X-Amz-Target)."""

    claims: Callable[[web.Request], bool]
    declared: Declared


@dataclass(frozen=True)
class Reply:
    """One documented answer: a status, its JSON model (`many`: a list of it), and/or a stream of
    server-sent events, each one of `events` (OpenAI's streams end with a `[DONE]` string: `done`)."""

    status: int
    model: type[BaseModel] | None = None
    many: bool = False
    events: tuple[type[BaseModel], ...] = ()
    done: bool = False
    media_type: str | None = None  # another answer type, described only by name (binary, text)
    description: str = ""


@dataclass(frozen=True)
class Param:
    name: str
    where: str = "path"  # path | query
    description: str = ""
    type: str = "string"


@dataclass(frozen=True)
class Op:
    method: str
    path: str  # aiohttp's pattern: /api/endpoints/{name}
    handler: Handler
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    replies: tuple[Reply, ...] = ()
    params: tuple[Param, ...] = ()
    door: Door = Door.SHOAL
    scope: Scope = Scope.ADMIN  # the key scope it needs
    open: bool = False  # no key needed

    @property
    def declared(self) -> Declared:
        return Declared(self.door, self.scope, self.open)

    @property
    def operation_id(self) -> str:
        words = re.sub(r"[{}]", "", self.path).strip("/").replace("-", "_").replace("/", "_") or "root"
        return f"{self.method.lower()}_{words}"


@dataclass
class ApiDoc:
    title: str = "shoal"
    ops: list[Op] = field(default_factory=list)
    header_doors: list[HeaderDoor] = field(default_factory=list)
    _routes: dict[web.AbstractRoute, Op] = field(default_factory=dict)
    _cache: dict[str, Any] | None = None

    def add(self, app: web.Application, op: Op) -> None:
        self._routes[app.router.add_route(op.method, op.path, op.handler)] = op
        self.ops.append(op)
        self._cache = None

    def add_header_door(self, door: HeaderDoor) -> None:
        self.header_doors.append(door)

    def declared(self, request: web.Request) -> Declared:
        """The door and scope of the route `request` reached; UNDECLARED when the table has none."""
        for door in self.header_doors:
            if door.claims(request):
                return door.declared
        op = self._routes.get(request.match_info.route)
        return op.declared if op else UNDECLARED

    def serve(self, app: web.Application) -> None:
        async def openapi(_request: web.Request) -> web.StreamResponse:
            return json_response(self.document())
        self.add(app, Op("GET", "/openapi.json", openapi, "This document (OpenAPI 3.1)", "operations",
                         replies=(Reply(200, description="the OpenAPI document"),), open=True))

    def document(self) -> dict[str, Any]:
        if self._cache is None:
            self._cache = self._build()
        return self._cache

    def _build(self) -> dict[str, Any]:
        requests = {op.body for op in self.ops if op.body}
        answers = {r.model for op in self.ops for r in op.replies if r.model}
        answers |= {e for op in self.ops for r in op.replies for e in r.events}
        schemas = _schemas(requests, answers)
        paths: dict[str, dict[str, Any]] = {}
        for op in self.ops:
            paths.setdefault(op.path, {})[op.method.lower()] = self._operation(op, schemas.names)
        return {"openapi": "3.1.0", "info": {"title": self.title, "version": __version__},
                "paths": paths, "components": {"schemas": schemas.defs, "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer",
                               "description": "an API key's secret (`shoal keys create`); required when the "
                                              "server has keys"}}}}

    @staticmethod
    def _operation(op: Op, names: dict[tuple[type[BaseModel], str], str]) -> dict[str, Any]:
        out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "tags": [op.tag],
                               "responses": {str(r.status): _reply(r, names) for r in op.replies}}
        if op.params:
            out["parameters"] = [{"name": p.name, "in": p.where, "required": p.where == "path",
                                  "description": p.description, "schema": {"type": p.type}} for p in op.params]
        if op.body:
            out["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(names[(op.body, "in")])}}}
        out["security"] = [] if op.open else [{"bearer": []}, {}]
        return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _reply(reply: Reply, names: dict[tuple[type[BaseModel], str], str]) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if reply.model:
        schema = _ref(names[(reply.model, "out")])
        content[JSON] = {"schema": {"type": "array", "items": schema} if reply.many else schema}
    if reply.events:
        content[SSE] = {"schema": _event_schema([_ref(names[(e, "out")]) for e in reply.events], reply.done)}
    if reply.media_type:
        content[reply.media_type] = {"schema": {"type": "string"}}
    out: dict[str, Any] = {"description": reply.description or ("OK" if reply.status < 400 else "error")}
    if content:
        out["content"] = content
    return out


def _event_schema(payloads: list[dict[str, str]], done: bool) -> dict[str, Any]:
    """One server-sent event: its `data` is JSON of one of `payloads` (or OpenAI's closing `[DONE]`)."""
    json_data = {"type": "string", "contentMediaType": JSON,
                 "contentSchema": payloads[0] if len(payloads) == 1 else {"anyOf": payloads}}
    data = {"anyOf": [{"const": "[DONE]"}, json_data]} if done else json_data
    return {"type": "object", "required": ["data"], "properties": {"data": data}}


@dataclass
class _Schemas:
    defs: dict[str, Any]
    names: dict[tuple[type[BaseModel], str], str]  # (model, "in" | "out") -> schema name


def _schemas(requests: set[type[BaseModel]], answers: set[type[BaseModel]]) -> _Schemas:
    """Request bodies as they are validated (field aliases, e.g. EndpointName), answers as they are sent
    (field names); a model that looks different the two ways gets two schemas, the answer's suffixed Out."""
    names: dict[tuple[type[BaseModel], str], str] = {}
    defs: dict[str, Any] = {}
    keys_in, defs_in = models_json_schema([(m, "validation") for m in requests], by_alias=True, ref_template=_REF)
    defs.update(defs_in.get("$defs", {}))
    keys_out, defs_out = models_json_schema([(m, "serialization") for m in answers], by_alias=False,
                                            ref_template=_REF + "Out")
    renamed = {}
    for name, schema in defs_out.get("$defs", {}).items():
        renamed[name] = name + "Out" if name in defs and defs[name] != _unsuffix(schema) else name
    for name, schema in defs_out.get("$defs", {}).items():
        defs[renamed[name]] = _rewrite_refs(schema, renamed)
    for (model, _mode), ref in keys_in.items():
        names[(model, "in")] = ref["$ref"].rsplit("/", 1)[-1]
    for (model, _mode), ref in keys_out.items():
        names[(model, "out")] = renamed[ref["$ref"].rsplit("/", 1)[-1].removesuffix("Out")]
    return _Schemas(defs, names)


def _unsuffix(schema: Any) -> Any:
    return _rewrite_refs(schema, None)


def _rewrite_refs(schema: Any, renamed: dict[str, str] | None) -> Any:
    """Point an answer schema's refs at the names chosen for answers (None: at the plain names)."""
    if isinstance(schema, dict):
        out = {}
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str) and value.endswith("Out"):
                plain = value.rsplit("/", 1)[-1].removesuffix("Out")
                value = _REF.format(model=plain if renamed is None else renamed[plain])
            out[key] = _rewrite_refs(value, renamed)
        return out
    if isinstance(schema, list):
        return [_rewrite_refs(v, renamed) for v in schema]
    return schema
