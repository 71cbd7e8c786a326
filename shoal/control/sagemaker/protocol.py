"""AWS's JSON 1.1 protocol on the server's port: `POST /` with `X-Amz-Target: <Service>.<Operation>`.

One door for every JSON 1.1 service shoal serves (SageMaker's control plane, Application Auto Scaling): it
parses the body, picks the service by the target's prefix, and answers JSON with a request id (boto3's
`ResponseMetadata`), or an error as AWS shapes it: `{"__type": code, "message": ...}`, status 400 unless
the error says otherwise. Timestamps are epoch seconds, as JSON 1.1 carries them.
"""
from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from shoal.http import Handler

log = logging.getLogger(__name__)
Body = dict[str, Any]
JSON_11 = "application/x-amz-json-1.1"
TARGET_HEADER = "X-Amz-Target"
ACCOUNT = "000000000000"  # the fixed local account in every ARN
DEFAULT_REGION = "us-east-1"
_SCOPE = re.compile(r"Credential=[^/,]+/\d{8}/([a-z0-9-]+)/")


class AwsError(Exception):
    """An answer other than success: AWS's error code (`__type`), its message, the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status

    def body(self) -> Body:
        return {"__type": self.code, "message": self.message}


def validation(message: str) -> AwsError:
    return AwsError("ValidationException", message)


@dataclass(frozen=True)
class Caller:
    """Who is asking, as far as answers depend on it: the region their client signs for (ARNs name it)."""

    region: str = DEFAULT_REGION

    @classmethod
    def of(cls, request: web.Request) -> Caller:
        scope = _SCOPE.search(request.headers.get("Authorization", ""))
        return cls(scope.group(1) if scope else DEFAULT_REGION)


# A service: (operation, request body, caller) -> answer body; AwsError for anything but success.
Service = Callable[[str, Body, Caller], Body]


class AwsJsonDoor:
    """`POST /` with an `X-Amz-Target` header, for the services registered by their target prefix."""

    def __init__(self, services: dict[str, Service]) -> None:
        self.services = services

    def middleware(self):  # type: ignore[no-untyped-def]
        """Takes `POST /` when it carries `X-Amz-Target` (else it is another route's, e.g. TGI's `POST /`)."""
        @web.middleware
        async def aws_json(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await (self.handle(request) if self.claims(request) else handler(request))
        return aws_json

    @staticmethod
    def claims(request: web.Request) -> bool:
        return request.method == "POST" and request.path == "/" and TARGET_HEADER in request.headers

    async def handle(self, request: web.Request) -> web.Response:
        rid = str(uuid.uuid4())
        prefix, _, operation = request.headers[TARGET_HEADER].partition(".")
        try:
            service = self.services.get(prefix)
            if service is None:
                raise AwsError("UnknownOperationException", f"shoal serves no operation {prefix}.{operation} "
                                                            f"(services: {', '.join(self.services)})")
            answer = service(operation, _parse(await request.read()), Caller.of(request))
            return _respond(answer, 200, rid)
        except AwsError as exc:
            log.info("%s.%s refused (%s): %s", prefix, operation, exc.code, exc.message)
            return _respond(exc.body(), exc.status, rid, {"x-amzn-ErrorType": f"{exc.code}:"})
        except Exception:  # a bug: AWS's shape still, without a traceback for the client
            log.exception("%s.%s failed", prefix, operation)
            return _respond({"__type": "InternalFailure", "message": "internal error"}, 500, rid)


def _parse(raw: bytes) -> Body:
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise AwsError("SerializationException", "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise AwsError("SerializationException", "Start of structure or map expected.")
    return body


def _respond(body: Body, status: int, rid: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=JSON_11,
                        headers={"x-amzn-RequestId": rid, **(headers or {})})
