"""API keys: each has a scope (`admin`: everything; `invoke`: inference routes only), an access key id
and a secret. The secret is the Bearer token (OpenAI, TGI and shoal routes); the id and secret are the
AWS credentials that boto3 and the `sagemaker` SDK sign SageMaker requests with (SigV4).

A key file (`--api-keys FILE`, or the same JSON in the SHOAL_API_KEYS variable):

    [{"name": "ops", "scope": "admin", "access_key_id": "SHOAL...", "secret": "..."},
     {"name": "app", "scope": "invoke", "access_key_id": "SHOAL...", "secret": "...",
      "limits": {"requests_per_minute": 60, "tokens_per_minute": 20000}}]

`limits` is optional (each of its two members too): past either, the key's inference requests are refused
with 429 and Retry-After (shoal.observability.limits). `shoal keys create NAME --scope invoke --file FILE`
makes one. Secrets never appear in logs, errors or
describe output.
"""
from __future__ import annotations

import hmac
import json
import os
import secrets
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, TypeAdapter, ValidationError

from shoal.errors import ConfigError

ENV_KEYS = "SHOAL_API_KEYS"
ENV_KEYS_FILE = "SHOAL_API_KEYS_FILE"


class Scope(str, Enum):
    ADMIN = "admin"  # control API, metrics, and everything invoke may do
    INVOKE = "invoke"  # inference routes only

    def allows(self, needed: Scope) -> bool:
        return self is Scope.ADMIN or needed is Scope.INVOKE


class KeyLimits(BaseModel):
    """Per minute, over a sliding minute; absent: no limit."""

    requests_per_minute: int | None = Field(None, gt=0)
    tokens_per_minute: int | None = Field(None, gt=0, description="prompt + generated tokens")


class ApiKey(BaseModel):
    name: str = Field(min_length=1)
    scope: Scope
    access_key_id: str = Field(pattern=r"^[A-Za-z0-9]{8,64}$")
    secret: SecretStr = Field(min_length=16)
    limits: KeyLimits | None = None


_KEY_LIST = TypeAdapter(list[ApiKey])


class KeyRing:
    """The configured keys, looked up in constant time per key."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = keys

    def __bool__(self) -> bool:
        return bool(self.keys)

    def by_bearer(self, token: str) -> ApiKey | None:
        found = None
        for key in self.keys:  # compare with every key, so timing says nothing about which matched
            if hmac.compare_digest(key.secret.get_secret_value().encode(), _raw(token)):
                found = key
        return found

    def by_access_key_id(self, access_key_id: str) -> ApiKey | None:
        return next((k for k in self.keys if hmac.compare_digest(k.access_key_id.encode(), _raw(access_key_id))),
                    None)


def _raw(header_value: str) -> bytes:
    """A header's text as the bytes that came (aiohttp keeps undecodable bytes as surrogates)."""
    return header_value.encode("utf-8", "surrogateescape")


def load_keys(path: Path | None = None) -> KeyRing:
    """Keys from `path`, else SHOAL_API_KEYS_FILE, else the JSON in SHOAL_API_KEYS; none if unset."""
    path = path or (Path(os.environ[ENV_KEYS_FILE]) if os.environ.get(ENV_KEYS_FILE) else None)
    if path is not None:
        try:
            text, where = path.read_text(), str(path)
        except OSError as exc:
            raise ConfigError(f"cannot read the API key file {path}: {exc.strerror}") from None
    elif os.environ.get(ENV_KEYS):
        text, where = os.environ[ENV_KEYS], ENV_KEYS
    else:
        return KeyRing([])
    try:
        keys = _KEY_LIST.validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"bad API keys in {where}: {problems}") from None  # messages never echo secrets
    ids = [k.access_key_id for k in keys]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"bad API keys in {where}: access_key_id must be unique")
    return KeyRing(keys)


def new_key(name: str, scope: Scope, limits: KeyLimits | None = None) -> ApiKey:
    return ApiKey(name=name, scope=scope, access_key_id="SHOAL" + secrets.token_hex(8).upper(),
                  secret=SecretStr(secrets.token_urlsafe(30)), limits=limits)


def append_key(path: Path, key: ApiKey) -> None:
    """Add `key` to the key file (created private to its owner)."""
    existing = load_keys(path).keys if path.exists() else []
    if any(k.name == key.name for k in existing):
        raise ConfigError(f"{path} already has a key named {key.name!r}")
    records = [{**k.model_dump(mode="json", exclude_none=True), "secret": k.secret.get_secret_value()}
               for k in [*existing, key]]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file that existed keeps its mode through O_CREAT: make it private too
    with os.fdopen(fd, "w") as f:
        json.dump(records, f, indent=2)
