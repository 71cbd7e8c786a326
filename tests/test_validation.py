"""The request rules table (shoal/protocol/rules.py): every rule, broken and kept, with its exact words."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from shoal.errors import ApiError
from shoal.protocol.requests import ChatCompletionRequest, CompletionRequest, GenerateParameters
from shoal.protocol.rules import OPENAI_RULES, TGI_RULES, check_openai, check_parameters


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
}
OPENAI_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "n": ({"n": 2}, "`n` must be 1: shoal returns one choice per request"),
    "temperature": ({"temperature": 2.5}, "`temperature` must be >= 0 and <= 2"),
    "top_p": ({"top_p": 0}, "`top_p` must be > 0 and <= 1"),
    "max_tokens": ({"max_tokens": 0}, "`max_tokens` must be strictly positive"),
    "frequency_penalty": ({"frequency_penalty": -2.1}, "`frequency_penalty` must be >= -2.0 and <= 2.0"),
    "presence_penalty": ({"presence_penalty": 2.1}, "`presence_penalty` must be >= -2.0 and <= 2.0"),
}


def test_every_rule_in_the_tables_has_a_case() -> None:
    assert {r.name for r in TGI_RULES} == set(TGI_CASES)
    assert {r.name for r in OPENAI_RULES} == set(OPENAI_CASES)


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
