"""The shapes of the answers TGI's and OpenAI's routes give, as pydantic models: the OpenAPI document
(/openapi.json) is generated from them, and the fuzzing test checks every live answer against it."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")  # engines may add fields (usage details, timings)


class ErrorBody(_Answer):
    """TGI's error: 422 validation, 424 generation, 429 overloaded, 503 unavailable, 504 timeout."""

    error: str
    error_type: str


class TokenInfo(_Answer):
    id: int
    text: str
    logprob: float | None = None
    special: bool = False


class Details(_Answer):
    finish_reason: Literal["length", "eos_token", "stop_sequence"]
    generated_tokens: int
    seed: int | None = None
    cached_tokens: int | None = None  # shoal's: prompt tokens reused from the prefix cache
    prefill: list[TokenInfo] = []
    tokens: list[TokenInfo] = []
    top_tokens: list[list[TokenInfo]] = []


class GenerateResponse(_Answer):
    generated_text: str
    details: Details | None = None


class TokenizedPiece(_Answer):
    id: int
    text: str
    start: int
    stop: int


class OpenAIErrorDetail(_Answer):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(_Answer):
    error: OpenAIErrorDetail


class PromptTokensDetails(_Answer):
    cached_tokens: int = 0  # prompt tokens reused from the prefix cache


class Usage(_Answer):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class CompletionChoice(_Answer):
    index: int
    text: str
    logprobs: dict[str, Any] | None = None
    finish_reason: str | None = None


class _Envelope(_Answer):
    """What every OpenAI completion answer and stream chunk carries around its choices."""

    id: str
    object: str
    created: int
    model: str
    usage: Usage | None = None


class Completion(_Envelope):
    """A completion, and each chunk of a streamed one."""

    choices: list[CompletionChoice]


class ChatMessageOut(_Answer):
    role: str
    content: str | None = None


class ChatChoice(_Answer):
    index: int
    message: ChatMessageOut
    logprobs: dict[str, Any] | None = None
    finish_reason: str | None = None


class ChatCompletion(_Envelope):
    choices: list[ChatChoice]


class ModelCard(_Answer):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str


class ModelList(_Answer):
    object: str = "list"
    data: list[ModelCard]


class StreamDetails(_Answer):
    finish_reason: Literal["length", "eos_token", "stop_sequence"]
    generated_tokens: int
    seed: int | None = None
    cached_tokens: int | None = None


class TgiStreamEvent(_Answer):
    """One server-sent event of TGI's stream: a token; the last one also the text and, if asked, details."""

    index: int
    token: TokenInfo
    top_tokens: list[TokenInfo] | None = None
    generated_text: str | None = None
    details: StreamDetails | None = None


class ChatDelta(_Answer):
    role: str | None = None
    content: str | None = None


class ChatChunkChoice(_Answer):
    index: int
    delta: ChatDelta
    logprobs: dict[str, Any] | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(_Envelope):
    choices: list[ChatChunkChoice]
