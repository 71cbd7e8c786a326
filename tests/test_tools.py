"""OpenAI tool calling on the real engine with OpenAI's client: a call, its result in the conversation, the
final answer; named, required and auto choices; streamed tool-call deltas. Arguments always validate."""
from __future__ import annotations

import json
import re

import jsonschema
import openai
import pytest

from shoal.engine.tools import MARKER

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "minLength": 2, "maxLength": 20},
                                                    "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "The time now"}}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def oai(engine_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{engine_url}/v1", api_key="unused", max_retries=0, timeout=300)


def _check(call: object) -> None:
    tool = {"get_weather": WEATHER, "get_time": TIME}[call.function.name]  # type: ignore[attr-defined]
    schema = tool["function"].get("parameters") or {"type": "object", "maxProperties": 0}
    jsonschema.validate(json.loads(call.function.arguments), schema)  # type: ignore[attr-defined]


def test_call_then_tool_result_then_answer(oai: openai.OpenAI) -> None:
    first = oai.chat.completions.create(model="gemma", messages=QUESTION, tools=[WEATHER, TIME],
                                        tool_choice="required", parallel_tool_calls=False, max_tokens=40,
                                        temperature=0)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    _check(call)
    conversation = [*QUESTION, choice.message.model_dump(exclude_none=True),
                    {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 degrees"}]
    final = oai.chat.completions.create(model="gemma", messages=conversation, tools=[WEATHER, TIME],
                                        tool_choice="none", max_tokens=12, temperature=0).choices[0]
    assert final.finish_reason in {"stop", "length"} and final.message.content and not final.message.tool_calls


def test_named_function_and_parallel_calls(oai: openai.OpenAI) -> None:
    named = oai.chat.completions.create(model="gemma", messages=QUESTION, tools=[WEATHER, TIME], temperature=0,
                                        tool_choice={"type": "function", "function": {"name": "get_time"}},
                                        max_tokens=20).choices[0]
    assert [c.function.name for c in named.message.tool_calls] == ["get_time"]
    assert named.message.tool_calls[0].function.arguments == "{}"
    many = oai.chat.completions.create(model="gemma", messages=QUESTION, tools=[WEATHER], tool_choice="required",
                                       max_tokens=60, seed=5).choices[0]
    if many.finish_reason == "tool_calls":  # sampled calls can run past max_tokens: then it is "length"
        assert len(many.message.tool_calls) >= 1
        for call in many.message.tool_calls:
            _check(call)
    else:
        assert many.finish_reason == "length" and many.message.content.startswith(MARKER)


def test_auto_answers_text_or_valid_calls(oai: openai.OpenAI) -> None:
    for seed in range(3):
        choice = oai.chat.completions.create(model="gemma", messages=QUESTION, tools=[WEATHER], seed=seed,
                                             parallel_tool_calls=False, max_tokens=40).choices[0]
        if choice.message.tool_calls:
            assert choice.finish_reason == "tool_calls"
            _check(choice.message.tool_calls[0])
        else:
            assert not (choice.message.content or "").startswith(MARKER)


def test_streamed_tool_call_deltas(oai: openai.OpenAI) -> None:
    ask = {"model": "gemma", "messages": QUESTION, "tools": [WEATHER], "tool_choice": "required",
           "parallel_tool_calls": False, "max_tokens": 40, "temperature": 0}
    whole = oai.chat.completions.create(**ask).choices[0].message.tool_calls[0]
    deltas = [c.choices[0] for c in oai.chat.completions.create(**ask, stream=True)]
    calls = [d.delta.tool_calls[0] for d in deltas if d.delta.tool_calls]
    assert calls[0].index == 0 and calls[0].id.startswith("call_") and calls[0].function.name == "get_weather"
    assert "".join(c.function.arguments or "" for c in calls) == whole.function.arguments
    assert deltas[-1].finish_reason == "tool_calls" and not any(d.delta.content for d in deltas)


def test_tool_requests_refused_by_name(engine_url: str, oai: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError, match="`tool_choice` names function 'nope'"):
        oai.chat.completions.create(model="gemma", messages=QUESTION, tools=[WEATHER],
                                    tool_choice={"type": "function", "function": {"name": "nope"}})
    bad = {"type": "function", "function": {"name": "f", "parameters": {"type": "objectx"}}}
    with pytest.raises(openai.UnprocessableEntityError, match=re.escape("Invalid `tools[0].function.parameters`: Invalid type: objectx")):
        oai.chat.completions.create(model="gemma", messages=QUESTION, tools=[bad], tool_choice="required")
    with pytest.raises(openai.UnprocessableEntityError, match="`functions` is not supported by this engine"):
        oai.chat.completions.create(model="gemma", messages=QUESTION, functions=[{"name": "f"}])
