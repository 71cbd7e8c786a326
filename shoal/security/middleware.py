"""Authentication on every route but the open ones, answered in each front door's own words.

Which door a request came through and which scope it needs are declared where its route is registered
(shoal.apidoc: one table for routing, keys and the OpenAPI document); a route the table does not declare
needs an admin key. Bearer keys (`Authorization: Bearer <secret>`) work everywhere; AWS SigV4 works on
SageMaker's, Application Auto Scaling's and CloudWatch's routes, which boto3 and the `sagemaker` SDK sign
(for the services `sagemaker`, `application-autoscaling`, `monitoring`). `invoke` keys
reach the inference routes; `admin` keys reach everything (control API, SageMaker's control plane, /metrics).
"""
from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from shoal.apidoc import ApiDoc, Door
from shoal.errors import ConfigError
from shoal.http import Handler, json_response, read_body
from shoal.security.keys import ApiKey, KeyRing
from shoal.security.sigv4 import ALGORITHM, SignatureError, SignedRequest, credential, verify

log = logging.getLogger(__name__)
KEY_NAME = "api_key_name"  # request state: the name of the key that was checked
_AWS = (Door.AWS_JSON, Door.SAGEMAKER, Door.CLOUDWATCH)
# A door whose refusals depend on the request itself (CloudWatch answers in the protocol it was asked in).
Refuse = Callable[[web.Request, int, str, str], web.Response]


def refusal(door: Door, status: int, code: str, message: str) -> web.Response:
    if door in _AWS:
        return json_response({"__type": code, "message": message}, status, {"x-amzn-ErrorType": f"{code}:"})
    if door is Door.OPENAI:
        return json_response({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                         "code": code}}, status, {"WWW-Authenticate": "Bearer"})
    return json_response({"error": message, "error_type": code}, status, {"WWW-Authenticate": "Bearer"})


@dataclass(frozen=True)
class KeyPolicy:
    """How requests prove who they are: the keys, the AWS region signatures must name (None: any), and how
    long a signed request's body may take to arrive (it is read only once its key is known)."""

    keys: KeyRing
    region: str | None = None
    body_timeout_s: float = 30.0
    refusals: Mapping[Door, Refuse] = field(default_factory=dict)  # doors that word refusals their own way

    def refuse(self, request: web.Request, door: Door, status: int, code: str, message: str) -> web.Response:
        if (words := self.refusals.get(door)) is not None:
            return words(request, status, code, message)
        return refusal(door, status, code, message)


def aws_service(request: web.Request, door: Door) -> str:
    """The signing name boto3 uses for the route's service."""
    if door is Door.AWS_JSON and request.headers.get("X-Amz-Target", "").startswith("AnyScaleFrontendService."):
        return "application-autoscaling"
    if door is Door.CLOUDWATCH:
        return "monitoring"
    return "sagemaker"


async def _identify(request: web.Request, policy: KeyPolicy, door: Door) -> ApiKey | web.Response:
    keys = policy.keys
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        key = keys.by_bearer(header[7:].strip())
        if key is None:
            code = "invalid_api_key" if door is Door.OPENAI else "UnrecognizedClientException"
            return policy.refuse(request, door, 403 if door in _AWS else 401, code,
                                 "Incorrect API key provided." if door is Door.OPENAI
                                 else "The security token included in the request is invalid.")
        return key
    if header.startswith(ALGORITHM) and door in _AWS:
        try:
            signer = credential(header, keys, aws_service(request, door), policy.region)  # before any body
            body = await read_body(request, policy.body_timeout_s)
            signed = SignedRequest(request.method, f"{request.scheme}://{request.host}{request.raw_path}",
                                   {k.lower(): v for k, v in request.headers.items()}, body)
            return verify(signed, signer)
        except SignatureError as exc:
            return policy.refuse(request, door, 403, exc.kind, exc.message)
    if door in _AWS:
        return policy.refuse(request, door, 403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    return policy.refuse(request, door, 401, "missing_api_key" if door is Door.OPENAI else "unauthorized",
                         "You didn't provide an API key: send `Authorization: Bearer <key>`.")


def require_keys(policy: KeyPolicy, routes: ApiDoc) -> web.middleware:  # type: ignore[valid-type]
    """The middleware: every request but those of open routes must carry a key whose scope allows the route."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        declared = routes.declared(request)
        if declared.open:
            return await handler(request)
        door, needed = declared.door, declared.scope
        key = await _identify(request, policy, door)
        if isinstance(key, web.Response):
            log.info("refused %s %s: %s", request.method, request.path, key.status)
            return key
        if not key.scope.allows(needed):
            return policy.refuse(request, door, 403, "AccessDeniedException" if door in _AWS else "forbidden",
                                 f"the key {key.name!r} has scope {key.scope.value}; this route needs an "
                                 f"{needed.value} key")
        request[KEY_NAME] = key.name  # for logs: the key's name, never its secret
        return await handler(request)

    return authenticate


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, keys: KeyRing, insecure: bool) -> None:
    """A server reachable from the network must have keys, unless its operator says otherwise."""
    if keys or is_loopback(host):
        return
    if not insecure:
        raise ConfigError(f"binding to {host} exposes the control API to the network, and anyone who reaches it "
                          f"could start processes on this machine: give API keys (--api-keys FILE or "
                          f"SHOAL_API_KEYS; `shoal keys create` makes one) or pass --insecure")
    log.warning("serving on %s without authentication (--insecure)", host)
