"""AWS Signature Version 4, checked by recomputing it with botocore's own signer.

boto3 and the `sagemaker` SDK sign every request with an access key id and secret; shoal finds the key
by its id, rebuilds the canonical request from what arrived (method, path, query, the headers the
client says it signed, the body), signs it again and compares in constant time. Errors are AWS's:
UnrecognizedClientException (unknown key id), InvalidSignatureException (bad or stale signature),
IncompleteSignatureException (a malformed Authorization header).
"""
from __future__ import annotations

import datetime as dt
import hmac
import re
from dataclasses import dataclass

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from shoal.security.keys import ApiKey, KeyRing

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = dt.timedelta(minutes=15)  # AWS's limit on the signing time
_AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
                   r"/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;._-]+), ?Signature=(?P<signature>[0-9a-f]{64})$")


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


def verify(request: SignedRequest, keys: KeyRing, now: dt.datetime | None = None) -> ApiKey:
    """The key that signed `request`, or SignatureError."""
    match = _AUTH.match(request.headers.get("authorization", ""))
    if not match:
        raise SignatureError("IncompleteSignatureException",
                             "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
                             "parameters of an AWS4-HMAC-SHA256 signature.")
    key = keys.by_access_key_id(match["id"])
    if key is None:
        raise SignatureError("UnrecognizedClientException", "The security token included in the request is invalid.")
    stamp = request.headers.get("x-amz-date", "")
    _check_time(stamp, match["date"], now or dt.datetime.now(dt.timezone.utc))
    expected = _signature(request, key, match["signed"].split(";"), match["region"], match["service"], stamp)
    if not hmac.compare_digest(expected, match["signature"]):
        raise SignatureError("InvalidSignatureException",
                             "The request signature we calculated does not match the signature you provided. "
                             "Check your AWS Secret Access Key and signing method. Consult the service "
                             "documentation for details.")
    return key


def _check_time(stamp: str, scope_date: str, now: dt.datetime) -> None:
    try:
        signed_at = dt.datetime.strptime(stamp, SIGV4_TIMESTAMP).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise SignatureError("IncompleteSignatureException", "Missing or malformed X-Amz-Date header.") from None
    if stamp[:8] != scope_date or abs(now - signed_at) > MAX_SKEW:
        raise SignatureError("InvalidSignatureException",
                             f"Signature expired: {stamp} is now earlier or later than the 15 minutes allowed "
                             f"around {now.strftime(SIGV4_TIMESTAMP)}.")


def _signature(request: SignedRequest, key: ApiKey, signed: list[str], region: str, service: str,
               stamp: str) -> str:
    headers = {name: request.headers.get(name, "") for name in signed}
    aws = AWSRequest(method=request.method, url=request.url, headers=headers, data=request.body)
    aws.context["timestamp"] = stamp
    auth = SigV4Auth(Credentials(key.access_key_id, key.secret.get_secret_value()), service, region)
    return auth.signature(auth.string_to_sign(aws, auth.canonical_request(aws)), aws)
