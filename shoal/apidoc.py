"""The OpenAPI 3.1 document of shoal's HTTP API, generated from the pydantic models the routes validate
requests with and describe answers with. Routes are registered through `ApiDoc.add`, so a route cannot
exist undocumented; the document is served at /openapi.json."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shoal import __version__
from shoal.http import Handler, json_response

_REF = "#/components/schemas/{model}"
SSE = "text/event-stream"
JSON = "application/json"


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
    open: bool = False  # no key needed

    @property
    def operation_id(self) -> str:
        words = re.sub(r"[{}]", "", self.path).strip("/").replace("-", "_").replace("/", "_") or "root"
        return f"{self.method.lower()}_{words}"


@dataclass
class ApiDoc:
    title: str = "shoal"
    ops: list[Op] = field(default_factory=list)
    _cache: dict[str, Any] | None = None

    def add(self, app: web.Application, op: Op) -> None:
        app.router.add_route(op.method, op.path, op.handler)
        self.ops.append(op)
        self._cache = None

    def serve(self, app: web.Application) -> None:
        async def openapi(_request: web.Request) -> web.StreamResponse:
            return json_response(self.document())
        app.router.add_get("/openapi.json", openapi)

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
