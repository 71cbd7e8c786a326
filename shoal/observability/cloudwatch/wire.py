"""CloudWatch's three wire protocols on the server's port, as botocore speaks them:

- Smithy RPC v2 CBOR (boto3 >= 1.40's default for `cloudwatch`): `POST /service/GraniteServiceVersion20100801/
  operation/<Operation>`, header `smithy-protocol: rpc-v2-cbor`, CBOR bodies both ways (timestamps: tag 1).
- AWS JSON 1.0: `POST /` with `X-Amz-Target: GraniteServiceVersion20100801.<Operation>`.
- The query protocol (older SDKs, Grafana's): `POST /` with a form body `Action=<Operation>&Version=2010-08-01&...`
  (members flattened as botocore's model names them), XML answers. A form `POST /` that is not one goes on to
  TGI's `POST /`.

Errors carry CloudWatch's query-compatible codes: `__type` `com.amazonaws.cloudwatch#<Shape>` plus
`x-amzn-query-error: <Code>;Sender` (botocore reports the code, e.g. `InvalidParameterValue`), or the query
protocol's `<ErrorResponse>`. Requests are signed for the service `monitoring` (checked by
shoal.security when the server has keys).
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from enum import Enum
from functools import cache
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import cbor2
import orjson
from aiohttp import web

from shoal.http import Handler
from shoal.observability.cloudwatch.operations import Body, CloudWatch, CloudWatchError

log = logging.getLogger(__name__)
TARGET_PREFIX = "GraniteServiceVersion20100801"
CBOR_PATH = f"/service/{TARGET_PREFIX}/operation/{{operation}}"
SIGNING_NAME = "monitoring"  # SigV4's service name for CloudWatch
VERSION = "2010-08-01"
XML_NAMESPACE = "http://monitoring.amazonaws.com/doc/2010-08-01/"
FORM = "application/x-www-form-urlencoded"


class Wire(Enum):
    CBOR = "rpc-v2-cbor"
    JSON = "json"
    QUERY = "query"


def wire_of(request: web.Request) -> Wire | None:
    """Which CloudWatch protocol a request speaks, from its method, path and headers alone (None: not
    CloudWatch's). A query-protocol request is told by its form body too (`CloudWatchDoor.middleware`)."""
    if request.method != "POST":
        return None
    if request.path.startswith(f"/service/{TARGET_PREFIX}/operation/"):
        return Wire.CBOR
    if request.path != "/":
        return None
    if (target := request.headers.get("X-Amz-Target")) is not None:
        return Wire.JSON if target.startswith(TARGET_PREFIX + ".") else None
    if request.content_type == FORM and not request.headers.get("Authorization", "").startswith("Bearer "):
        return Wire.QUERY
    return None


def claims(request: web.Request) -> bool:
    """The requests `POST /` that are CloudWatch's (the key middleware's header door)."""
    return wire_of(request) in (Wire.JSON, Wire.QUERY)


class CloudWatchDoor:
    def __init__(self, cloudwatch: CloudWatch) -> None:
        self.cloudwatch = cloudwatch

    async def cbor(self, request: web.Request) -> web.StreamResponse:
        """The RPC v2 CBOR route."""
        return await self._answer(request, Wire.CBOR, request.match_info["operation"], await request.read())

    def middleware(self):  # type: ignore[no-untyped-def]
        """Takes `POST /` when it is CloudWatch's (JSON 1.0, or a query form); else the route's handler runs."""
        @web.middleware
        async def cloudwatch(request: web.Request, handler: Handler) -> web.StreamResponse:
            wire = wire_of(request)
            if wire is Wire.JSON:
                target = request.headers["X-Amz-Target"]
                return await self._answer(request, wire, target.partition(".")[2], await request.read())
            if wire is Wire.QUERY:
                raw = await request.read()
                form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
                if form.get("Version") == VERSION and "Action" in form:
                    return await self._answer(request, wire, form["Action"], form)
            return await handler(request)
        return cloudwatch

    async def _answer(self, request: web.Request, wire: Wire, operation: str, raw: Any) -> web.Response:
        rid = str(uuid.uuid4())
        try:
            body = _decode(wire, operation, raw)
            answer = await self.cloudwatch(operation, body)
            return _encode(wire, operation, answer, rid)
        except CloudWatchError as exc:
            log.info("CloudWatch %s refused (%s): %s", operation, exc.code, exc.message)
            return error_response(wire, exc, rid)
        except Exception:  # a bug: CloudWatch's shape still, no traceback for the client
            log.exception("CloudWatch %s failed", operation)
            return error_response(wire, CloudWatchError("InternalServiceError", "internal error", 500), rid)


def refusal(request: web.Request, status: int, code: str, message: str) -> web.Response:
    """The key middleware's refusal (unknown key, bad signature, ...) in the request's own protocol."""
    return error_response(wire_of(request) or Wire.JSON, CloudWatchError(code, message, status), str(uuid.uuid4()))


# -- decoding ---------------------------------------------------------------------------------------------------
def _decode(wire: Wire, operation: str, raw: Any) -> Body:
    if wire is Wire.QUERY:
        shape = _input_shape(operation)
        return (_from_form(shape, raw, "") or {}) if shape is not None else {}
    try:
        body = (cbor2.loads(raw) if wire is Wire.CBOR else orjson.loads(raw)) if raw else {}
    except (cbor2.CBORDecodeError, orjson.JSONDecodeError, ValueError):
        raise CloudWatchError("SerializationException", f"the request body is not {wire.value}") from None
    if not isinstance(body, dict):
        raise CloudWatchError("SerializationException", "Start of structure or map expected.")
    return body


@cache
def _model() -> Any:
    from botocore.loaders import Loader
    from botocore.model import ServiceModel
    return ServiceModel(Loader().load_service_model("cloudwatch", "service-2"), "cloudwatch")


def _input_shape(operation: str) -> Any:
    if operation not in _model().operation_names:
        return None  # the operation's own refusal says which exist
    return _model().operation_model(operation).input_shape


def _present(form: dict[str, str], prefix: str) -> bool:
    return any(k == prefix or k.startswith(prefix + ".") for k in form)


def _from_form(shape: Any, form: dict[str, str], prefix: str) -> Any:
    """A query-protocol form into the structure botocore's model describes (lists as `Name.member.N`)."""
    kind = shape.type_name
    if kind == "structure":
        out = {}
        for name, member in shape.members.items():
            key = member.serialization.get("name", name)
            value = _from_form(member, form, f"{prefix}.{key}" if prefix else key)
            if value is not None:
                out[name] = value
        return out if out or not prefix else None
    if kind == "list":
        items = []
        base = prefix if shape.serialization.get("flattened") else \
            f"{prefix}.{shape.member.serialization.get('name', 'member')}"
        while _present(form, f"{base}.{len(items) + 1}"):
            items.append(_from_form(shape.member, form, f"{base}.{len(items) + 1}"))
        return items if items or prefix in form else None
    if prefix not in form:
        return None
    text = form[prefix]
    try:
        if kind in ("integer", "long"):
            return int(text)
        if kind in ("double", "float"):
            return float(text)
    except ValueError:
        raise CloudWatchError("InvalidParameterValue", f"The parameter {prefix} is not a number.") from None
    if kind == "boolean":
        return text.lower() == "true"
    return text


# -- encoding ---------------------------------------------------------------------------------------------------
def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    raise TypeError(type(value))


def _encode(wire: Wire, operation: str, answer: Body, rid: str) -> web.Response:
    if wire is Wire.CBOR:
        return web.Response(body=cbor2.dumps(answer, datetime_as_timestamp=True), content_type="application/cbor",
                            headers={"smithy-protocol": "rpc-v2-cbor", "x-amzn-RequestId": rid})
    if wire is Wire.JSON:
        return web.Response(body=orjson.dumps(answer, default=_json_default, option=orjson.OPT_PASSTHROUGH_DATETIME),
                            content_type="application/x-amz-json-1.0", headers={"x-amzn-RequestId": rid})
    shape = _model().operation_model(operation).output_shape
    members = "".join(_xml(m, answer[name], m.serialization.get("name", name))
                      for name, m in shape.members.items() if answer.get(name) is not None)
    xml = (f'<{operation}Response xmlns="{XML_NAMESPACE}"><{operation}Result>{members}</{operation}Result>'
           f"<ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata></{operation}Response>")
    return web.Response(text=xml, content_type="text/xml", headers={"x-amzn-RequestId": rid})


def _xml(shape: Any, value: Any, name: str) -> str:
    kind = shape.type_name
    if kind == "structure":
        inner = "".join(_xml(m, value[k], m.serialization.get("name", k))
                        for k, m in shape.members.items() if value.get(k) is not None)
    elif kind == "list":
        inner = "".join(_xml(shape.member, v, shape.member.serialization.get("name", "member")) for v in value)
    elif kind == "map":
        inner = "".join(f"<entry>{_xml(shape.key, k, 'key')}{_xml(shape.value, v, 'value')}</entry>"
                        for k, v in value.items() if v is not None)
    elif kind == "timestamp":
        inner = value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    elif kind == "boolean":
        inner = "true" if value else "false"
    else:
        inner = escape(repr(float(value)) if kind in ("double", "float") else str(value))
    return f"<{name}>{inner}</{name}>"


def error_response(wire: Wire, exc: CloudWatchError, rid: str) -> web.Response:
    fault = "Sender" if exc.sender else "Receiver"
    if wire is Wire.QUERY:
        xml = (f'<ErrorResponse xmlns="{XML_NAMESPACE}"><Error><Type>{fault}</Type><Code>{escape(exc.code)}</Code>'
               f"<Message>{escape(exc.message)}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>")
        return web.Response(text=xml, status=exc.status, content_type="text/xml", headers={"x-amzn-RequestId": rid})
    modeled = exc.code in CloudWatchError.SHAPES
    body = {"__type": f"com.amazonaws.cloudwatch#{exc.shape}" if modeled else exc.code, "message": exc.message}
    headers = {"x-amzn-RequestId": rid, "x-amzn-ErrorType": f"{exc.code}:"}
    if modeled:
        headers["x-amzn-query-error"] = f"{exc.code};{fault}"
    if wire is Wire.CBOR:
        return web.Response(body=cbor2.dumps(body), status=exc.status, content_type="application/cbor",
                            headers={**headers, "smithy-protocol": "rpc-v2-cbor"})
    return web.Response(body=orjson.dumps(body), status=exc.status, content_type="application/x-amz-json-1.0",
                        headers=headers)
