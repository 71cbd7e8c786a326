"""Request bodies of the engine's routes: TGI's and OpenAI's. Unknown keys are ignored, as TGI does."""
from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shoal.errors import ApiError, validation_error

BodyT = TypeVar("BodyT", bound=BaseModel)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


def documented(**bounds: float) -> Any:
    """Bounds for the OpenAPI document only: the rules table (shoal.protocol.rules) enforces them, in
    TGI's and OpenAI's own words, which pydantic's would not be."""
    return Field(None, json_schema_extra=bounds)  # type: ignore[arg-type]


class GenerateParameters(_Body):
    best_of: int | None = documented(minimum=1)
    decoder_input_details: bool = False
    details: bool = False
    do_sample: bool = False
    frequency_penalty: float | None = documented(minimum=-2, maximum=2)
    presence_penalty: float | None = documented(minimum=-2, maximum=2)  # OpenAI's, for the OpenAI routes
    max_new_tokens: int | None = documented(minimum=1)
    repetition_penalty: float | None = documented(exclusiveMinimum=0)
    return_full_text: bool | None = None
    seed: int | None = documented(minimum=0, maximum=2**64 - 1)
    stop: list[str] = Field([], json_schema_extra={"maxItems": 4})
    temperature: float | None = documented(exclusiveMinimum=0)
    top_k: int | None = documented(minimum=1)
    top_n_tokens: int | None = documented(minimum=0, maximum=5)
    top_p: float | None = documented(exclusiveMinimum=0, exclusiveMaximum=1)
    truncate: int | None = documented(minimum=1)
    typical_p: float | None = documented(exclusiveMinimum=0, exclusiveMaximum=1)
    watermark: bool = False


class GenerateRequest(_Body):
    inputs: str = Field(json_schema_extra={"minLength": 1})
    parameters: GenerateParameters = GenerateParameters()
    stream: bool = False


class TokenizeRequest(_Body):
    inputs: str
    parameters: dict[str, Any] = {}  # accepted as TGI's clients send it, and unused


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # OpenAI content parts: keep the text ones
            return "".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")
        return self.content or ""


class StreamOptions(_Body):
    include_usage: bool = False


class _OpenAICommon(_Body):
    model: str | None = None
    max_tokens: int | None = documented(minimum=1)
    temperature: float | None = documented(minimum=0, maximum=2)
    top_p: float | None = documented(exclusiveMinimum=0, maximum=1)
    stop: str | list[str] | None = Field(None, json_schema_extra={"maxItems": 4})
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = documented(minimum=0, maximum=2**64 - 1)
    n: int = Field(1, json_schema_extra={"minimum": 1, "maximum": 1})
    frequency_penalty: float | None = documented(minimum=-2, maximum=2)
    presence_penalty: float | None = documented(minimum=-2, maximum=2)

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ChatCompletionRequest(_OpenAICommon):
    messages: list[ChatMessage] = Field(json_schema_extra={"minItems": 1})
    max_completion_tokens: int | None = documented(minimum=1)
    logprobs: bool = False
    top_logprobs: int | None = documented(minimum=0, maximum=5)


class CompletionRequest(_OpenAICommon):
    prompt: str | list[str] = Field(json_schema_extra={"minLength": 1, "minItems": 1, "maxItems": 1})
    echo: bool = False
    logprobs: int | None = documented(minimum=0, maximum=5)
    max_tokens: int | None = Field(16, json_schema_extra={"minimum": 1})  # OpenAI's default for completions

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise validation_error("`prompt` must be a string or a list of exactly one string")
        return self.prompt[0]


def parse_body(raw: bytes, model: type[BodyT]) -> BodyT:
    """Parse a JSON body into `model` strictly, as TGI's serde does (a string or 1.5 is not an integer),
    answering 422 with a readable message as TGI does."""
    try:
        return model.model_validate_json(raw or b"null", strict=True)
    except ValidationError as exc:
        raise _refusal(exc) from None


def parse_data(data: object, model: type[BodyT]) -> BodyT:
    """`parse_body` for a body already parsed from JSON (the gateway parses each request once)."""
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise _refusal(exc) from None


def _refusal(exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return ApiError(422, f"Failed to parse the request body as JSON: {first['msg']}", "validation")
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return ApiError(422, f"Failed to deserialize the JSON body into the target type: {where}: {first['msg']}",
                    "validation")
