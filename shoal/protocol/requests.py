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


class Grammar(_Body):
    """TGI's `grammar`: `json` (alias `json_object`: a JSON Schema, as an object or a string), `regex`, and
    TGI 3's `json_schema` (`{"name"?, "schema"}`)."""

    type: Literal["json", "json_object", "regex", "json_schema"]
    value: Any


class GenerateParameters(_Body):
    adapter_id: str | None = None  # TGI's LoRA adapter (an adapter inference component's name)
    best_of: int | None = documented(minimum=1)
    decoder_input_details: bool = False
    details: bool = False
    do_sample: bool = False
    frequency_penalty: float | None = documented(minimum=-2, maximum=2)
    grammar: Grammar | None = None
    presence_penalty: float | None = documented(minimum=-2, maximum=2)  # OpenAI's, for the OpenAI routes
    logit_bias: dict[str, float] | None = None  # OpenAI's (token id -> bias), for the OpenAI routes
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


class FunctionCall(_Body):
    name: str
    arguments: str  # JSON text, as OpenAI sends it


class ToolCall(_Body):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # an assistant's calls, earlier in the conversation
    tool_call_id: str | None = None  # a tool's answer: to which call

    def text(self) -> str:
        if isinstance(self.content, list):  # OpenAI content parts: keep the text ones
            return "".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")
        return self.content or ""


class StreamOptions(_Body):
    include_usage: bool = False
    continuous_usage_stats: bool = False  # vLLM's: usage on every chunk (refused: see shoal.protocol.rules)


class JsonSchemaFormat(_Body):
    name: str
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class FunctionDefinition(_Body):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON Schema; none: no arguments
    strict: bool | None = None


class Tool(_Body):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Body):
    name: str


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: NamedFunction


MAX_CHOICES = 16  # OpenAI's `n`: each choice is a sequence of its own in the batch


class _OpenAICommon(_Body):
    """OpenAI's fields. Fields with no bearing on what is generated (`user`, `metadata`, `store`,
    `service_tier`) are not declared: ignored, as any unknown key. Known fields the built-in engine cannot
    honour are declared so that shoal.protocol.rules can refuse them by name."""

    model: str | None = None
    max_tokens: int | None = documented(minimum=1)
    temperature: float | None = documented(minimum=0, maximum=2)
    top_p: float | None = documented(exclusiveMinimum=0, maximum=1)
    stop: str | list[str] | None = Field(None, json_schema_extra={"maxItems": 4})
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = documented(minimum=0, maximum=2**64 - 1)
    n: int = Field(1, json_schema_extra={"minimum": 1, "maximum": MAX_CHOICES})
    frequency_penalty: float | None = documented(minimum=-2, maximum=2)
    presence_penalty: float | None = documented(minimum=-2, maximum=2)
    logit_bias: dict[str, float] | None = None
    top_k: int | None = documented(minimum=1)  # vLLM's and SGLang's extension
    repetition_penalty: float | None = documented(exclusiveMinimum=0)  # vLLM's and SGLang's extension
    min_p: float | None = None  # vLLM's extension: refused by the built-in engine

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ChatCompletionRequest(_OpenAICommon):
    messages: list[ChatMessage] = Field(json_schema_extra={"minItems": 1})
    max_completion_tokens: int | None = documented(minimum=1)
    logprobs: bool = False
    top_logprobs: int | None = documented(minimum=0, maximum=5)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # known, and refused by the built-in engine when set (see shoal.protocol.rules)
    functions: list[dict[str, Any]] | None = None
    function_call: Any = None
    audio: dict[str, Any] | None = None
    modalities: list[str] | None = None
    prediction: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    web_search_options: dict[str, Any] | None = None


class CompletionRequest(_OpenAICommon):
    prompt: str | list[str] = Field(json_schema_extra={"minLength": 1, "minItems": 1, "maxItems": 1})
    echo: bool = False
    logprobs: int | None = documented(minimum=0, maximum=5)
    best_of: int | None = None  # refused by the built-in engine unless 1
    suffix: str | None = None  # refused by the built-in engine unless empty
    response_format: ResponseFormat | None = None  # vLLM's extension of completions
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
