"""One request as the gateway handles it: parsed once by its front door, read by every later stage
(admission, routing, the engine's adapter, the door's encoder, metrics and logs)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson

from shoal.engines.adapters import Asked, EngineRequest
from shoal.errors import ApiError
from shoal.gateway.pool import Pool
from shoal.gateway.routing.prefix_affinity import KEY_CHARS

JSON = "application/json"


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or 422 saying what is wrong with it."""
    try:
        data = orjson.loads(raw or b"null")
    except orjson.JSONDecodeError as exc:
        raise ApiError(422, f"Failed to parse the request body as JSON: {exc}", "validation") from None
    if not isinstance(data, dict):
        raise ApiError(422, "the request body is not a JSON object", "validation")
    return data


@dataclass(eq=False)
class RequestContext:
    """What a front door made of a request: which component, what is asked, the body (parsed once)."""

    door: str  # sagemaker | openai | tgi
    pool: Pool  # the component
    asked: Asked  # what is asked of a copy, which decides the answer's shape
    data: dict[str, Any]  # the JSON body
    raw: bytes  # the body as sent to the engine
    stream: bool  # the answer streams
    content_type: str = JSON
    adapter: str | None = None  # the adapter inference component it names (served by `pool`'s copies)
    forward: dict[str, str] = field(default_factory=dict)  # headers the copy is sent too
    rid: str = ""  # request id (X-Request-Id, else a new one): in answers, logs and metrics
    arrived: float = field(default_factory=time.perf_counter)

    @cached_property
    def prefix_key(self) -> bytes | None:
        """The prompt's first KEY_CHARS characters (TGI inputs, OpenAI prompt or messages), for cache-aware
        routing; read only by the strategies that ask for it."""
        text = self.data.get("inputs") or self.data.get("prompt") or self.data.get("messages")
        if not text:
            return None
        return (text if isinstance(text, str) else orjson.dumps(text).decode())[:KEY_CHARS].encode()

    def engine_request(self) -> EngineRequest:
        held = self.pool.config.adapters
        index = held.index(self.adapter) if self.adapter in held else 0
        return EngineRequest(self.asked, self.data, self.raw, self.stream, self.content_type, self.adapter, index,
                             len(held))
