"""The request rules table (shoal/protocol/rules.py): every rule, broken and kept, with its exact words."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from shoal.errors import ApiError
from shoal.protocol.requests import ChatCompletionRequest, CompletionRequest, GenerateParameters
from shoal.protocol.rules import (
    BUILTIN_OPENAI_REFUSALS,
    BUILTIN_TGI_REFUSALS,
    OPENAI_RULES,
    TGI_RULES,
    TOOL_RULES,
    check_openai,
    check_parameters,
    refuse_unsupported_openai,
    refuse_unsupported_tgi,
)


@dataclass
class Limits:
    max_best_of: int = 2
    max_stop_sequences: int = 4
    max_top_n_tokens: int = 5
    max_input_length: int = 1024


# rule name -> (parameters that break it, stream, exact message)
TGI_CASES: dict[str, tuple[dict[str, Any], bool, str]] = {
    "best_of range": ({"best_of": 3, "do_sample": True}, False, "`best_of` must be > 0 and <= 2. Given: 3"),
    "best_of needs sampling": ({"best_of": 2}, False, "you must use sampling when `best_of` is > 1"),
    "best_of without seed": ({"best_of": 2, "do_sample": True, "seed": 1}, False,
                             "`seed` must not be set when `best_of` > 1"),
    "best_of not streamed": ({"best_of": 2, "do_sample": True}, True,
                             "`best_of` != 1 is not supported when streaming tokens"),
    "temperature": ({"temperature": 0}, False, "`temperature` must be strictly positive"),
    "repetition_penalty": ({"repetition_penalty": 0}, False, "`repetition_penalty` must be strictly positive"),
    "frequency_penalty": ({"frequency_penalty": 2.5}, False, "`frequency_penalty` must be >= -2.0 and <= 2.0"),
    "presence_penalty": ({"presence_penalty": -3}, False, "`presence_penalty` must be >= -2.0 and <= 2.0"),
    "top_p": ({"top_p": 1.0}, False, "`top_p` must be > 0.0 and < 1.0"),
    "typical_p": ({"typical_p": 0.0}, False, "`typical_p` must be > 0.0 and < 1.0"),
    "top_k": ({"top_k": 0}, False, "`top_k` must be strictly positive"),
    "max_new_tokens": ({"max_new_tokens": 0}, False, "`max_new_tokens` must be strictly positive"),
    "seed": ({"seed": -1}, False, "`seed` must be >= 0 and < 2^64. Given: -1"),
    "stop count": ({"stop": ["a", "b", "c", "d", "e"]}, False, "`stop` supports up to 4 stop sequences. Given: 5"),
    "top_n_tokens": ({"top_n_tokens": 6}, False, "`top_n_tokens` must be >= 0 and <= 5. Given: 6"),
    "decoder_input_details not streamed": ({"decoder_input_details": True}, True,
                                           "`decoder_input_details` == true is not supported when streaming tokens"),
    "truncate": ({"truncate": 1024}, False, "`truncate` must be strictly positive and less than 1024. Given: 1024"),
    "finite numbers": ({"temperature": float("nan")}, False, "`temperature` must be a finite number"),
    "logit_bias key": ({"logit_bias": {"x": 1.0}}, False, "Invalid key in `logit_bias`: 'x' is not a token id"),
    "logit_bias value": ({"logit_bias": {"5": 101.0}}, False, "`logit_bias` values must be >= -100 and <= 100"),
}
OPENAI_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "n": ({"n": 17}, "`n` must be >= 1 and <= 16"),
    "temperature": ({"temperature": 2.5}, "`temperature` must be >= 0 and <= 2"),
    "top_p": ({"top_p": 0}, "`top_p` must be > 0 and <= 1"),
    "max_tokens": ({"max_tokens": 0}, "`max_tokens` must be strictly positive"),
    "frequency_penalty": ({"frequency_penalty": -2.1}, "`frequency_penalty` must be >= -2.0 and <= 2.0"),
    "presence_penalty": ({"presence_penalty": 2.1}, "`presence_penalty` must be >= -2.0 and <= 2.0"),
    "top_k": ({"top_k": 0}, "`top_k` must be strictly positive"),
    "repetition_penalty": ({"repetition_penalty": 0}, "`repetition_penalty` must be strictly positive"),
    "logit_bias key": ({"logit_bias": {"hello": 1}}, "Invalid key in `logit_bias`: 'hello' is not a token id"),
    "logit_bias value": ({"logit_bias": {"12": 101}}, "`logit_bias` values must be >= -100 and <= 100"),
    "json_schema": ({"response_format": {"type": "json_schema"}},
                    "`response_format.json_schema` is required when `response_format.type` is `json_schema`"),
}
WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
TOOL_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "tool_choice needs tools": ({"tool_choice": "required"}, "`tool_choice` is only allowed when `tools` are specified"),
    "tool_choice names a tool": ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
                                 "`tool_choice` names function 'x', which is not in `tools`"),
    "tool names unique": ({"tools": [WEATHER, WEATHER]}, "`tools` must have distinct function names"),
}
# what the built-in engine cannot honour: field -> (request fields that ask for it, chat or completion)
OPENAI_REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "min_p": ({"min_p": 0.1}, "chat"),
    "stream_options.continuous_usage_stats": ({"stream_options": {"continuous_usage_stats": True}}, "chat"),
    "best_of": ({"best_of": 2}, "completion"),
    "suffix": ({"suffix": "end"}, "completion"),
    "functions": ({"functions": [{"name": "f"}]}, "chat"),
    "function_call": ({"function_call": "auto"}, "chat"),
    "audio": ({"audio": {"voice": "alloy"}}, "chat"),
    "modalities": ({"modalities": ["text", "audio"]}, "chat"),
    "prediction": ({"prediction": {"type": "content", "content": "x"}}, "chat"),
    "reasoning_effort": ({"reasoning_effort": "low"}, "chat"),
    "web_search_options": ({"web_search_options": {}}, "chat"),
}
TGI_REFUSED: dict[str, dict[str, Any]] = {"watermark": {"watermark": True}}


def test_every_rule_in_the_tables_has_a_case() -> None:
    assert {r.name for r in TGI_RULES} == set(TGI_CASES)
    assert {r.name for r in OPENAI_RULES} == set(OPENAI_CASES)
    assert {r.name for r in TOOL_RULES} == set(TOOL_CASES)
    assert {r.name for r in BUILTIN_OPENAI_REFUSALS} == set(OPENAI_REFUSED)
    assert {r.name for r in BUILTIN_TGI_REFUSALS} == set(TGI_REFUSED)


@pytest.mark.parametrize("rule", TOOL_CASES)
def test_tool_rule_refuses(rule: str) -> None:
    fields, message = TOOL_CASES[rule]
    with pytest.raises(ApiError, match=re.escape(message)):
        check_openai(ChatCompletionRequest(messages=[{"role": "user", "content": "hi"}], **fields))


@pytest.mark.parametrize("field", OPENAI_REFUSED)
def test_builtin_engine_refuses_what_it_cannot_honour_by_name(field: str) -> None:
    fields, kind = OPENAI_REFUSED[field]
    body = (ChatCompletionRequest(messages=[{"role": "user", "content": "hi"}], **fields) if kind == "chat"
            else CompletionRequest(prompt="hi", **fields))
    with pytest.raises(ApiError) as err:
        refuse_unsupported_openai(body)
    assert (err.value.status, err.value.message) == (422, f"`{field}` is not supported by this engine")


@pytest.mark.parametrize("field", TGI_REFUSED)
def test_builtin_engine_refuses_tgi_parameters_it_cannot_honour(field: str) -> None:
    with pytest.raises(ApiError) as err:
        refuse_unsupported_tgi(GenerateParameters(**TGI_REFUSED[field]))
    assert err.value.message == f"`{field}` is not supported by this engine"


def test_fields_without_generation_semantics_are_ignored() -> None:
    body = ChatCompletionRequest(messages=[{"role": "user", "content": "hi"}], user="u1", metadata={"a": "b"},
                                 store=False, service_tier="auto", modalities=["text"], best_of=None)
    check_openai(body)
    refuse_unsupported_openai(body)


@pytest.mark.parametrize("rule", TGI_CASES)
def test_tgi_rule_refuses_with_tgis_words(rule: str) -> None:
    parameters, stream, message = TGI_CASES[rule]
    with pytest.raises(ApiError) as err:
        check_parameters(GenerateParameters(**parameters), Limits(), stream)
    assert (err.value.status, err.value.message, err.value.error_type) == (422, message, "validation")


def test_requests_within_every_tgi_rule_pass() -> None:
    seed = {"do_sample": True, "top_p": 0.6, "temperature": 0.9, "top_k": 50, "max_new_tokens": 50,
            "repetition_penalty": 1.03, "return_full_text": False}  # the seed's parameters
    for parameters in (seed, {}, {"best_of": 2, "do_sample": True}, {"stop": ["a"] * 4, "top_n_tokens": 5},
                       {"truncate": 1023, "decoder_input_details": True, "presence_penalty": 2.0}):
        check_parameters(GenerateParameters(**parameters), Limits(), stream=False)


@pytest.mark.parametrize("rule", OPENAI_CASES)
@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_openai_rule_refuses(rule: str, kind: str) -> None:
    fields, message = OPENAI_CASES[rule]
    body = (ChatCompletionRequest(messages=[{"role": "user", "content": "hi"}], **fields) if kind == "chat"
            else CompletionRequest(prompt="hi", **fields))
    with pytest.raises(ApiError, match=re.escape(message)):
        check_openai(body)


def test_chat_needs_messages_and_good_requests_pass() -> None:
    with pytest.raises(ApiError, match="`messages` cannot be empty"):
        check_openai(ChatCompletionRequest(messages=[]))
    check_openai(ChatCompletionRequest(messages=[{"role": "user", "content": "hi"}], temperature=0, top_p=1,
                                       presence_penalty=0.5, max_tokens=5))
    check_openai(CompletionRequest(prompt="hi", temperature=2.0))
