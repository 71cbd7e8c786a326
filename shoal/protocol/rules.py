"""Every rule a generation request must keep, in one table, with the words each rule answers in.

TGI's parameter rules carry TGI's own messages (router/src/validation.rs); OpenAI's carry OpenAI-style
ones. The built-in engine applies them, and so does the gateway when it translates a TGI request for an
engine that speaks OpenAI, so a request is judged the same whichever engine serves it. Rules that need
the tokenizer (prompt length, `inputs` + `max_new_tokens`) live in Engine.prepare and take their
messages from here.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from shoal.errors import validation_error
from shoal.protocol.requests import (
    MAX_CHOICES,
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    GenerateParameters,
    NamedToolChoice,
)

T = TypeVar("T")


class ParameterLimits(Protocol):
    max_best_of: int
    max_stop_sequences: int
    max_top_n_tokens: int
    max_input_length: int


@dataclass(frozen=True)
class Check:
    """What a rule sees: the parameters, the server's limits, and whether the request streams."""

    p: GenerateParameters
    limits: ParameterLimits
    stream: bool


@dataclass(frozen=True)
class Rule(Generic[T]):
    """A request breaks the rule when `broken` says so; it is then answered 422 with `message`."""

    name: str
    broken: Callable[[T], bool]
    message: Callable[[T], str]


def _sampling_asked(p: GenerateParameters) -> bool:
    return bool(p.do_sample or p.temperature or p.top_k or p.top_p or p.typical_p)


def _outside(value: float | None, low: float, high: float, open_ends: bool = False) -> bool:
    if value is None:
        return False
    return not (low < value < high) if open_ends else not (low <= value <= high)


TGI_RULES: tuple[Rule[Check], ...] = (
    Rule("finite numbers", lambda c: _not_finite(c.p) is not None,
         lambda c: f"`{_not_finite(c.p)}` must be a finite number"),
    Rule("best_of range", lambda c: c.p.best_of is not None and not 0 < c.p.best_of <= c.limits.max_best_of,
         lambda c: f"`best_of` must be > 0 and <= {c.limits.max_best_of}. Given: {c.p.best_of}"),
    Rule("best_of needs sampling", lambda c: (c.p.best_of or 1) > 1 and not _sampling_asked(c.p),
         lambda c: "you must use sampling when `best_of` is > 1"),
    Rule("best_of without seed", lambda c: (c.p.best_of or 1) > 1 and c.p.seed is not None,
         lambda c: "`seed` must not be set when `best_of` > 1"),
    Rule("best_of not streamed", lambda c: (c.p.best_of or 1) > 1 and c.stream,
         lambda c: "`best_of` != 1 is not supported when streaming tokens"),
    Rule("temperature", lambda c: c.p.temperature is not None and c.p.temperature <= 0,
         lambda c: "`temperature` must be strictly positive"),
    Rule("repetition_penalty", lambda c: c.p.repetition_penalty is not None and c.p.repetition_penalty <= 0,
         lambda c: "`repetition_penalty` must be strictly positive"),
    Rule("frequency_penalty", lambda c: _outside(c.p.frequency_penalty, -2.0, 2.0),
         lambda c: "`frequency_penalty` must be >= -2.0 and <= 2.0"),
    Rule("presence_penalty", lambda c: _outside(c.p.presence_penalty, -2.0, 2.0),
         lambda c: "`presence_penalty` must be >= -2.0 and <= 2.0"),
    Rule("top_p", lambda c: _outside(c.p.top_p, 0.0, 1.0, open_ends=True),
         lambda c: "`top_p` must be > 0.0 and < 1.0"),
    Rule("typical_p", lambda c: _outside(c.p.typical_p, 0.0, 1.0, open_ends=True),
         lambda c: "`typical_p` must be > 0.0 and < 1.0"),
    Rule("top_k", lambda c: c.p.top_k is not None and c.p.top_k <= 0, lambda c: "`top_k` must be strictly positive"),
    Rule("max_new_tokens", lambda c: c.p.max_new_tokens is not None and c.p.max_new_tokens <= 0,
         lambda c: "`max_new_tokens` must be strictly positive"),
    Rule("seed", lambda c: c.p.seed is not None and not 0 <= c.p.seed < 2**64,
         lambda c: f"`seed` must be >= 0 and < 2^64. Given: {c.p.seed}"),
    Rule("stop count", lambda c: len(c.p.stop) > c.limits.max_stop_sequences,
         lambda c: f"`stop` supports up to {c.limits.max_stop_sequences} stop sequences. Given: {len(c.p.stop)}"),
    Rule("top_n_tokens", lambda c: not 0 <= (c.p.top_n_tokens or 0) <= c.limits.max_top_n_tokens,
         lambda c: f"`top_n_tokens` must be >= 0 and <= {c.limits.max_top_n_tokens}. Given: {c.p.top_n_tokens}"),
    Rule("decoder_input_details not streamed", lambda c: c.p.decoder_input_details and c.stream,
         lambda c: "`decoder_input_details` == true is not supported when streaming tokens"),
    Rule("truncate", lambda c: c.p.truncate is not None and not 0 < c.p.truncate < c.limits.max_input_length,
         lambda c: f"`truncate` must be strictly positive and less than {c.limits.max_input_length}. "
                   f"Given: {c.p.truncate}"),
    Rule("logit_bias key", lambda c: any(not _token_id(k) for k in c.p.logit_bias or {}),
         lambda c: f"Invalid key in `logit_bias`: {next(k for k in c.p.logit_bias or {} if not _token_id(k))!r} "
                   "is not a token id"),
    Rule("logit_bias value", lambda c: any(_outside(v, -100.0, 100.0) for v in (c.p.logit_bias or {}).values()),
         lambda c: "`logit_bias` values must be >= -100 and <= 100"),
)


def _not_finite(p: GenerateParameters) -> str | None:
    """The first parameter holding NaN or an infinity (JSON has neither, but Python's parsers accept them)."""
    return next((name for name, value in p if isinstance(value, float) and not math.isfinite(value)), None)

OpenAIRequest = ChatCompletionRequest | CompletionRequest
OPENAI_RULES: tuple[Rule[OpenAIRequest], ...] = (
    Rule("n", lambda b: not 1 <= b.n <= MAX_CHOICES, lambda b: f"`n` must be >= 1 and <= {MAX_CHOICES}"),
    Rule("temperature", lambda b: _outside(b.temperature, 0.0, 2.0), lambda b: "`temperature` must be >= 0 and <= 2"),
    Rule("top_p", lambda b: _outside(b.top_p, 0.0, 1.0) or b.top_p == 0.0, lambda b: "`top_p` must be > 0 and <= 1"),
    Rule("max_tokens", lambda b: b.max_tokens is not None and b.max_tokens <= 0,
         lambda b: "`max_tokens` must be strictly positive"),
    Rule("frequency_penalty", lambda b: _outside(b.frequency_penalty, -2.0, 2.0),
         lambda b: "`frequency_penalty` must be >= -2.0 and <= 2.0"),
    Rule("presence_penalty", lambda b: _outside(b.presence_penalty, -2.0, 2.0),
         lambda b: "`presence_penalty` must be >= -2.0 and <= 2.0"),
    Rule("top_k", lambda b: b.top_k is not None and b.top_k <= 0, lambda b: "`top_k` must be strictly positive"),
    Rule("repetition_penalty", lambda b: b.repetition_penalty is not None and b.repetition_penalty <= 0,
         lambda b: "`repetition_penalty` must be strictly positive"),
    Rule("logit_bias key", lambda b: any(not _token_id(k) for k in b.logit_bias or {}),
         lambda b: f"Invalid key in `logit_bias`: {next(k for k in b.logit_bias or {} if not _token_id(k))!r} "
                   "is not a token id"),
    Rule("logit_bias value", lambda b: any(_outside(v, -100.0, 100.0) for v in (b.logit_bias or {}).values()),
         lambda b: "`logit_bias` values must be >= -100 and <= 100"),
    Rule("json_schema", lambda b: b.response_format is not None and b.response_format.type == "json_schema"
         and b.response_format.json_schema is None,
         lambda b: "`response_format.json_schema` is required when `response_format.type` is `json_schema`"),
)


def _token_id(key: str) -> bool:
    return key.isascii() and key.isdigit()


def _named_choice(b: ChatCompletionRequest) -> str | None:
    return b.tool_choice.function.name if isinstance(b.tool_choice, NamedToolChoice) else None


TOOL_RULES: tuple[Rule[ChatCompletionRequest], ...] = (
    Rule("tool_choice needs tools", lambda b: b.tool_choice not in (None, "none", "auto") and not b.tools,
         lambda b: "`tool_choice` is only allowed when `tools` are specified"),
    Rule("tool_choice names a tool", lambda b: _named_choice(b) is not None and b.tools is not None
         and _named_choice(b) not in {t.function.name for t in b.tools},
         lambda b: f"`tool_choice` names function {_named_choice(b)!r}, which is not in `tools`"),
    Rule("tool names unique", lambda b: len({t.function.name for t in b.tools or []}) != len(b.tools or []),
         lambda b: "`tools` must have distinct function names"),
)
MESSAGE_RULES: tuple[Rule[Sequence[ChatMessage]], ...] = (
    Rule("messages", lambda m: not m, lambda m: "`messages` cannot be empty"),
)


def first_broken(rules: Sequence[Rule[T]], subject: T) -> str | None:
    return next((rule.message(subject) for rule in rules if rule.broken(subject)), None)


def _enforce(rules: Sequence[Rule[T]], subject: T) -> None:
    if (message := first_broken(rules, subject)) is not None:
        raise validation_error(message)


def check_parameters(p: GenerateParameters, limits: ParameterLimits, stream: bool) -> None:
    """422 with TGI's message for the first TGI rule `p` breaks."""
    _enforce(TGI_RULES, Check(p, limits, stream))


def check_openai(body: OpenAIRequest) -> None:
    """422 for the first OpenAI rule `body` breaks (its messages too, for chat)."""
    _enforce(OPENAI_RULES, body)
    if isinstance(body, ChatCompletionRequest):
        _enforce(TOOL_RULES, body)
        _enforce(MESSAGE_RULES, body.messages)


# -- what the built-in engine cannot honour (other engine kinds may): a 422 naming the field ------------------
def unsupported(field: str) -> str:
    return f"`{field}` is not supported by this engine"


def _refusal(field: str, asked: Callable[[T], bool]) -> Rule[T]:
    return Rule(field, asked, lambda _: unsupported(field))


BUILTIN_TGI_REFUSALS: tuple[Rule[GenerateParameters], ...] = (
    _refusal("watermark", lambda p: p.watermark),
)
BUILTIN_OPENAI_REFUSALS: tuple[Rule[OpenAIRequest], ...] = (
    _refusal("min_p", lambda b: bool(b.min_p)),
    _refusal("stream_options.continuous_usage_stats",
             lambda b: bool(b.stream_options and b.stream_options.continuous_usage_stats)),
    _refusal("best_of", lambda b: getattr(b, "best_of", None) not in (None, 1)),
    _refusal("suffix", lambda b: bool(getattr(b, "suffix", None))),
    _refusal("functions", lambda b: bool(getattr(b, "functions", None))),
    _refusal("function_call", lambda b: getattr(b, "function_call", None) is not None),
    _refusal("audio", lambda b: getattr(b, "audio", None) is not None),
    _refusal("modalities", lambda b: getattr(b, "modalities", None) not in (None, ["text"])),
    _refusal("prediction", lambda b: getattr(b, "prediction", None) is not None),
    _refusal("reasoning_effort", lambda b: getattr(b, "reasoning_effort", None) is not None),
    _refusal("web_search_options", lambda b: getattr(b, "web_search_options", None) is not None),
)


def refuse_unsupported_tgi(p: GenerateParameters) -> None:
    """422 naming the first TGI parameter that the built-in engine cannot honour."""
    _enforce(BUILTIN_TGI_REFUSALS, p)


def refuse_unsupported_openai(body: OpenAIRequest) -> None:
    """422 naming the first OpenAI field that the built-in engine cannot honour."""
    _enforce(BUILTIN_OPENAI_REFUSALS, body)


def logit_bias_outside(token: int, vocab_size: int) -> str:
    return f"Invalid key in `logit_bias`: {token} is not a token id (0..{vocab_size - 1})"


def invalid_grammar(field: str, reason: str) -> str:
    """A grammar, schema or regex that the grammar library refused, in its words."""
    return f"Invalid `{field}`: {reason}"


def empty_inputs() -> str:
    return "`inputs` cannot be empty"


def inputs_too_long(max_input_length: int, given: int) -> str:
    return f"`inputs` must have less than {max_input_length} tokens. Given: {given}"


def total_too_long(max_total_tokens: int, prompt: int, max_new: int) -> str:
    return (f"`inputs` tokens + `max_new_tokens` must be <= {max_total_tokens}. "
            f"Given: {prompt} `inputs` tokens and {max_new} `max_new_tokens`")


def is_sampling(p: GenerateParameters) -> bool:
    """TGI samples when asked to, or when any sampling warper is set (NextTokenChooser)."""
    return bool(p.do_sample or p.temperature not in (None, 1.0) or p.top_k is not None or p.top_p is not None
                or p.typical_p is not None)
