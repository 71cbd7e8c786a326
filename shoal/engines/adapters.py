"""How the gateway speaks to a copy of an engine kind: each kind's adapter turns a request, as a front door
parsed it, into the call its copies take, and their answer back into what was asked.

- `PassThrough`: engines that speak TGI (shoal's own, TGI): TGI, SageMaker and OpenAI requests go as they
  are, answers come back as they are.
- `Translating`: engines that speak only OpenAI (vLLM, SGLang, llama.cpp's server): OpenAI requests go as they
  are; TGI and SageMaker requests are translated to the engine's completion route in its dialect
  (shoal.engines.translate), and its answers back to TGI's JSON and stream events.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import orjson

from shoal.engines.translate import Dialect, TgiCall, TgiLimits, engine_error
from shoal.errors import ApiError, validation_error
from shoal.protocol.requests import GenerateRequest, parse_data

JSON = "application/json"


class Asked(Enum):
    """What a front door asks of a copy, which decides the shape of the answer."""

    GENERATE = "/generate"  # TGI: one JSON object
    GENERATE_STREAM = "/generate_stream"  # TGI: server-sent events
    COMPAT = "/invocations"  # TGI's `/` and SageMaker's container route: [object], or events when `stream`
    TOKENIZE = "/tokenize"
    CHAT = "/v1/chat/completions"  # OpenAI
    COMPLETIONS = "/v1/completions"

    @property
    def openai(self) -> bool:
        return self in (Asked.CHAT, Asked.COMPLETIONS)


@dataclass(frozen=True)
class EngineRequest:
    """One request as its front door parsed it: what is asked, the JSON body (parsed once) and its bytes, and
    the LoRA adapter it names (an adapter inference component of the base; its place in the base's list)."""

    asked: Asked
    data: dict[str, Any]
    raw: bytes
    stream: bool  # the answer is a stream of events
    content_type: str = JSON
    adapter: str | None = None
    adapter_index: int = 0
    adapter_count: int = 0  # adapters the base's copies hold (llama.cpp's server is told each one's scale)


@dataclass(frozen=True)
class EngineCall:
    """What one copy is sent, and how its answer becomes the answer to what was asked. Without a
    `translation`, the answer is what was asked already."""

    path: str
    body: bytes
    content_type: str = JSON
    translation: TgiCall | None = None
    wrap: bool = False  # the asked answer is a one-element list of the engine's object (TGI `/`, SageMaker)

    def whole(self, raw: bytes) -> bytes:
        """The engine's whole answer, as asked."""
        if self.translation is None:
            return raw
        result = self.translation.answer(raw)
        return orjson.dumps([result] if self.wrap else result)

    def events(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The engine's stream, as the asked server-sent events."""
        return chunks if self.translation is None else self.translation.events(chunks)

    def refusal(self, status: int, raw: bytes) -> ApiError | None:
        """An engine's error answer in TGI's words, where the engine speaks another protocol (None: as it is)."""
        return None if self.translation is None else engine_error(status, raw)


class ProtocolAdapter(Protocol):
    def call(self, request: EngineRequest, limits: TgiLimits) -> EngineCall: ...


@dataclass(frozen=True)
class PassThrough:
    """For engines that serve TGI's routes (and OpenAI's): every request as it is; one naming an adapter
    with it as TGI's `adapter_id` or OpenAI's `model`."""

    def call(self, request: EngineRequest, limits: TgiLimits) -> EngineCall:
        body = request.raw if request.adapter is None else orjson.dumps(_naming(request.asked, request.data,
                                                                                   request.adapter))
        return EngineCall(request.asked.value, body, request.content_type)


@dataclass(frozen=True)
class Translating:
    """For engines that serve only OpenAI's routes: TGI requests in the engine's `dialect`."""

    engine: str
    dialect: Dialect

    def call(self, request: EngineRequest, limits: TgiLimits) -> EngineCall:
        adapter = self.dialect.adapter_fields(request.adapter, request.adapter_index, request.adapter_count)
        if request.asked.openai:
            body = orjson.dumps({**request.data, **adapter}) if adapter else request.raw
            return EngineCall(request.asked.value, body, request.content_type)
        if request.asked is Asked.TOKENIZE:
            raise validation_error(f"/tokenize is not supported by this inference component's engine "
                                   f"({self.engine})")
        translation = TgiCall(parse_data(request.data, GenerateRequest), self.dialect, self.engine, limits,
                              request.stream, adapter)
        return EngineCall(self.dialect.path, translation.payload(), JSON, translation,
                          wrap=request.asked is Asked.COMPAT)


def _naming(asked: Asked, data: dict[str, Any], adapter: str) -> dict[str, Any]:
    """The body, naming `adapter` as each protocol does: OpenAI's `model`, TGI's `parameters.adapter_id`."""
    if asked.openai:
        return {**data, "model": adapter}
    parameters = data.get("parameters") if isinstance(data.get("parameters"), dict) else {}
    return {**data, "parameters": {**parameters, "adapter_id": adapter}}
