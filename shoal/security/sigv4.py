"""AWS Signature Version 4, checked by recomputing it with botocore's own signer.

boto3 and the `sagemaker` SDK sign every request with an access key id and secret. shoal reads the
Authorization header first and finds the key by its id before any body is read (`credential`); then it
rebuilds the canonical request from what arrived (method, path, query, the headers the client says it
signed, and the hash of the body that actually came: a signed `x-amz-content-sha256` that does not match
it is refused), signs it again and compares in constant time (`verify`). The signature must be for the
service the route belongs to, and for the server's region when it has one (`--aws-region`). Errors are
AWS's: UnrecognizedClientException (unknown key id), InvalidSignatureException (bad or stale signature,
another body, service or region), IncompleteSignatureException (a malformed Authorization header).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from shoal.security.keys import ApiKey, KeyRing

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = dt.timedelta(minutes=15)  # AWS's limit on the signing time
_AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=(?P<id>[A-Za-z0-9]{1,128})/(?P<date>\d{8})/(?P<region>[a-z0-9-]{1,32})"
                   r"/(?P<service>[a-z0-9-]{1,64})/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;._-]+), "
                   r"?Signature=(?P<signature>[0-9a-f]{64})$", re.ASCII)
CONTENT_HASH = "x-amz-content-sha256"


class SignatureError(Exception):
    """A request whose signature does not hold; `kind` is AWS's error code."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class SignedRequest:
    method: str
    url: str  # scheme://host + the path and query as they arrived
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class Credential:
    """What the Authorization header says: who signed, when, for which region and service, how."""

    key: ApiKey
    date: str
    region: str
    service: str
    signed: list[str]
    signature: str


def credential(authorization: str, keys: KeyRing, service: str, region: str | None = None) -> Credential:
    """The signer's key and signature scope from the Authorization header alone (no body is read before this
    says who it is), or SignatureError."""
    match = _AUTH.match(authorization)
    if not match:
        raise SignatureError("IncompleteSignatureException",
                             "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
                             "parameters of an AWS4-HMAC-SHA256 signature.")
    key = keys.by_access_key_id(match["id"])
    if key is None:
        raise SignatureError("UnrecognizedClientException", "The security token included in the request is invalid.")
    if match["service"] != service:
        raise SignatureError("InvalidSignatureException", f"Credential should be scoped to correct service: "
                                                          f"'{service}'.")
    if region is not None and match["region"] != region:
        raise SignatureError("InvalidSignatureException", f"Credential should be scoped to a valid region, not "
                                                          f"'{match['region']}'.")
    return Credential(key, match["date"], match["region"], service, match["signed"].split(";"), match["signature"])


def verify(request: SignedRequest, signer: Credential, now: dt.datetime | None = None) -> ApiKey:
    """The key that signed `request` (with the body that came), or SignatureError."""
    stamp = request.headers.get("x-amz-date", "")
    _check_time(stamp, signer.date, now or dt.datetime.now(dt.timezone.utc))
    body_hash = hashlib.sha256(request.body).hexdigest()
    claimed = request.headers.get(CONTENT_HASH)
    if claimed is not None and claimed != body_hash:
        raise SignatureError("InvalidSignatureException", "The provided 'x-amz-content-sha256' header does not match "
                                                          "what was computed.")
    expected = _signature(request, signer, stamp, body_hash)
    if not hmac.compare_digest(expected, signer.signature):
        raise SignatureError("InvalidSignatureException",
                             "The request signature we calculated does not match the signature you provided. "
                             "Check your AWS Secret Access Key and signing method. Consult the service "
                             "documentation for details.")
    return signer.key


def _check_time(stamp: str, scope_date: str, now: dt.datetime) -> None:
    try:
        signed_at = dt.datetime.strptime(stamp, SIGV4_TIMESTAMP).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise SignatureError("IncompleteSignatureException", "Missing or malformed X-Amz-Date header.") from None
    if stamp[:8] != scope_date or abs(now - signed_at) > MAX_SKEW:
        raise SignatureError("InvalidSignatureException",
                             f"Signature expired: {stamp} is now earlier or later than the 15 minutes allowed "
                             f"around {now.strftime(SIGV4_TIMESTAMP)}.")


def _signature(request: SignedRequest, signer: Credential, stamp: str, body_hash: str) -> str:
    """The signature of the canonical request rebuilt from what arrived; the payload hash is the body's own
    (botocore would otherwise trust a signed x-amz-content-sha256 header)."""
    headers = {name: request.headers.get(name, "") for name in signer.signed}
    if CONTENT_HASH in headers:
        headers[CONTENT_HASH] = body_hash
    aws = AWSRequest(method=request.method, url=request.url, headers=headers, data=request.body)
    aws.context["timestamp"] = stamp
    aws.context["payload_signing_enabled"] = True
    key = signer.key
    auth = SigV4Auth(Credentials(key.access_key_id, key.secret.get_secret_value()), signer.service, signer.region)
    return auth.signature(auth.string_to_sign(aws, auth.canonical_request(aws)), aws)
