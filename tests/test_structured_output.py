"""Structured output on the real engine, with real clients: TGI `grammar` (text-generation's Grammar), OpenAI
`response_format` (the openai package's `parse`), n choices, stop strings held back in streams, and the
fields the built-in engine refuses by name. Every JSON answer is checked with a JSON Schema validator."""
from __future__ import annotations

import json
import re
from typing import Annotated, Any

import httpx
import jsonschema
import openai
import pytest
from helpers import until_idle
from pydantic import BaseModel, Field
from test_engine_routes import sse_events
from text_generation import Client
from text_generation.errors import ValidationError
from text_generation.types import Grammar, GrammarType

PERSON = {"type": "object", "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 20},
    "age": {"type": "integer", "minimum": 0, "maximum": 120},
    "email": {"type": "string", "format": "email"}},
    "required": ["name", "age"], "additionalProperties": False}
ORDER = {"type": "object", "properties": {
    "status": {"enum": ["pending", "paid", "shipped"]},
    "lines": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"$ref": "#/$defs/line"}},
    "note": {"anyOf": [{"type": "string", "maxLength": 10}, {"type": "null"}]}},
    "required": ["status", "lines", "note"], "additionalProperties": False,
    "$defs": {"line": {"type": "object", "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}[0-9]{2}$"},
                                                          "qty": {"type": "integer", "minimum": 1, "maximum": 9}},
                       "required": ["sku", "qty"], "additionalProperties": False}}}
PROMPT = "Here is a JSON record of a customer:\n"


def post(url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=300)


def valid(text: str, schema: dict[str, Any]) -> Any:
    value = json.loads(text)
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(value)
    return value


@pytest.fixture(scope="module")
def oai(engine_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{engine_url}/v1", api_key="unused", max_retries=0, timeout=300)


# -- TGI's grammar, with TGI's own client -----------------------------------------------------------------------
def test_text_generation_grammar_json_and_regex_generate_and_stream(engine_url: str) -> None:
    client = Client(engine_url, timeout=300)
    json_grammar = Grammar(type=GrammarType.Json, value=PERSON)
    whole = client.generate(PROMPT, max_new_tokens=60, grammar=json_grammar)
    assert whole.details.finish_reason.value == "eos_token"  # the grammar completed
    valid(whole.generated_text, PERSON)
    until_idle(engine_url)
    streamed = [r for r in client.generate_stream(PROMPT, max_new_tokens=60, grammar=json_grammar)]
    assert streamed[-1].generated_text == whole.generated_text  # greedy: the same answer
    phone = Grammar(type=GrammarType.Regex, value=r"\(\d{3}\) \d{3}-\d{4}")
    for text in (client.generate("Call us at", max_new_tokens=20, grammar=phone).generated_text,
                 "".join(r.token.text for r in client.generate_stream("Call us at", max_new_tokens=20, grammar=phone))):
        assert re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}", text)


def test_tgi_grammar_types_and_sampling(engine_url: str) -> None:
    """`json` with the schema as a string, TGI's `json_object` alias and TGI 3's `json_schema`; sampled, best_of."""
    cases = [({"type": "json", "value": json.dumps(ORDER)}, {"do_sample": True, "seed": 7, "temperature": 1.2}),
             ({"type": "json_object", "value": ORDER}, {"do_sample": True, "best_of": 2, "details": True}),
             ({"type": "json_schema", "value": {"name": "order", "schema": ORDER}}, {"repetition_penalty": 1.2})]
    for grammar, parameters in cases:
        r = post(engine_url, "/generate", {"inputs": "An order as JSON:", "parameters": {
            "max_new_tokens": 80, "grammar": grammar, **parameters}})
        assert r.status_code == 200, r.text
        valid(r.json()["generated_text"], ORDER)
    for path in ("/", "/invocations"):
        r = post(engine_url, path, {"inputs": PROMPT, "parameters": {
            "max_new_tokens": 60, "grammar": {"type": "json", "value": PERSON}}})
        valid(r.json()[0]["generated_text"], PERSON)


def test_grammar_meets_max_new_tokens_stop_and_prefix_cache(engine_url: str) -> None:
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 10 + "A story:"  # whole cache blocks
    grammar = {"type": "json", "value": {"type": "object", "properties": {"story": {"type": "string"}},
                                         "required": ["story"]}}
    cut = post(engine_url, "/generate", {"inputs": long_prompt, "parameters": {
        "max_new_tokens": 6, "grammar": grammar, "details": True}}).json()
    assert cut["details"]["finish_reason"] == "length" and cut["details"]["generated_tokens"] == 6
    assert cut["generated_text"].startswith('{"story":"')  # what it wrote obeys the grammar, unfinished
    again = post(engine_url, "/generate", {"inputs": long_prompt, "parameters": {
        "max_new_tokens": 6, "grammar": grammar, "details": True}}).json()
    assert again["generated_text"] == cut["generated_text"] and again["details"]["cached_tokens"] > 0
    stopped = post(engine_url, "/generate", {"inputs": long_prompt, "parameters": {
        "max_new_tokens": 6, "grammar": grammar, "stop": ["story"], "details": True}}).json()
    assert stopped["details"]["finish_reason"] == "stop_sequence" and stopped["generated_text"] == '{"story'


def test_bad_grammars_are_422_in_tgi_words(engine_url: str) -> None:
    client = Client(engine_url, timeout=60)
    with pytest.raises(ValidationError, match="(?s)Invalid `grammar`: .*unclosed character class"):
        client.generate("x", max_new_tokens=2, grammar=Grammar(type=GrammarType.Regex, value="[0-9"))
    cases = [("json", {"type": "objectx"}, "Invalid `grammar`: Invalid type: objectx"),
             ("json", "{not json", "Invalid `grammar`: the JSON Schema is not JSON: "),
             ("regex", 5, "Invalid `grammar`: a `regex` grammar's value must be a string")]
    for kind, value, message in cases:
        r = post(engine_url, "/generate", {"inputs": "x", "parameters": {"grammar": {"type": kind, "value": value}}})
        assert r.status_code == 422 and r.json()["error_type"] == "validation"
        assert r.json()["error"].startswith(message), r.json()


def test_tgi_parameters_the_engine_cannot_honour_are_422(engine_url: str) -> None:
    r = post(engine_url, "/generate", {"inputs": "x", "parameters": {"watermark": True}})
    assert (r.status_code, r.json()) == (422, {"error": "`watermark` is not supported by this engine",
                                               "error_type": "validation"})
    r = post(engine_url, "/generate", {"inputs": "x", "parameters": {"adapter_id": "my-lora"}})
    assert (r.status_code, r.json()) == (422, {"error": "adapter_id: adapter `my-lora` is not loaded on this engine "
                                                        "(loaded: none)", "error_type": "validation"})


# -- OpenAI's response_format, with OpenAI's client --------------------------------------------------------------
class City(BaseModel):
    name: Annotated[str, Field(max_length=20)]
    country: Annotated[str, Field(max_length=20)]
    population: Annotated[int, Field(ge=0, le=100_000_000)]


def test_openai_parse_returns_the_pydantic_object(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.parse(model="gemma", messages=[
        {"role": "user", "content": "Describe Paris as JSON."}], response_format=City, max_tokens=60, temperature=0)
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and isinstance(choice.message.parsed, City)
    valid(choice.message.content, City.model_json_schema())


def test_openai_json_object_and_schema_on_both_routes_sampled_and_streamed(oai: openai.OpenAI, engine_url: str
                                                                           ) -> None:
    schema_format = {"type": "json_schema", "json_schema": {"name": "order", "schema": ORDER, "strict": True}}
    chat = oai.chat.completions.create(model="gemma", messages=[{"role": "user", "content": "An order as JSON"}],
                                       response_format=schema_format, max_tokens=80, seed=3, n=2)
    for choice in chat.choices:
        valid(choice.message.content, ORDER)
    text = oai.completions.create(model="gemma", prompt="An order as JSON:", max_tokens=80, temperature=0,
                                  extra_body={"response_format": schema_format}).choices[0].text
    valid(text, ORDER)
    question = 'Give the capital of France as JSON, like {"capital": "..."}.'
    ask = {"model": "gemma", "messages": [{"role": "user", "content": question}], "max_tokens": 40,
           "response_format": {"type": "json_object"}, "temperature": 0}
    until_idle(engine_url)
    whole = oai.chat.completions.create(**ask).choices[0]
    until_idle(engine_url)
    streamed = "".join(c.choices[0].delta.content or "" for c in oai.chat.completions.create(**ask, stream=True)
                       if c.choices)
    assert whole.finish_reason == "stop" and isinstance(json.loads(whole.message.content), dict), whole
    assert streamed == whole.message.content


def test_bad_response_format_is_422_in_openai_words(engine_url: str) -> None:
    r = post(engine_url, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objectx"}}}})
    error = r.json()["error"]
    assert r.status_code == 422 and error["message"] == "Invalid `response_format`: Invalid type: objectx"
    assert error["type"] == "invalid_request_error"


# -- n choices ---------------------------------------------------------------------------------------------------
def test_n_choices_each_sampled_with_usage_summed(oai: openai.OpenAI, engine_url: str) -> None:
    first = oai.completions.create(model="gemma", prompt="Once upon a time", max_tokens=8, n=3, seed=11)
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert len({c.text for c in first.choices}) > 1  # seeds 11, 12, 13: distinct sequences
    assert first.usage.completion_tokens == 24 and all(c.finish_reason == "length" for c in first.choices)
    with httpx.stream("POST", f"{engine_url}/v1/chat/completions", timeout=300, json={
            "messages": [{"role": "user", "content": "Hi"}], "n": 2, "max_tokens": 5, "stream": True,
            "stream_options": {"include_usage": True}}) as r:
        chunks = sse_events(r)
    ended = [c["choices"][0]["index"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert sorted(ended) == [0, 1] and chunks[-1]["usage"]["completion_tokens"] == 10


# -- streams send what the answer holds: stop strings held back --------------------------------------------------
def _stream_text(engine_url: str, path: str, body: dict[str, Any]) -> str:
    with httpx.stream("POST", f"{engine_url}{path}", json={**body, "stream": True}, timeout=300) as r:
        chunks = [c["choices"][0] for c in sse_events(r) if c["choices"]]
    return "".join(c.get("text") or (c.get("delta") or {}).get("content") or "" for c in chunks)


def _answer_and_stream(engine_url: str, path: str, body: dict[str, Any]) -> tuple[str, str]:
    """The text of the whole answer and of its stream, each run alone with the prompt's prefix already cached (a
    prompt computed in other chunks, or a request cut by its stop string still taking a step beside the next one,
    can move a near-tie of the logits)."""
    until_idle(engine_url)
    post(engine_url, path, body)  # caches the prompt's prefix for both compared requests
    until_idle(engine_url)
    answer = post(engine_url, path, body).json()["choices"][0]
    until_idle(engine_url)
    return answer.get("text", (answer.get("message") or {}).get("content")), _stream_text(engine_url, path, body)


def test_streamed_text_equals_answer_for_stop_strings(engine_url: str) -> None:
    tokens = post(engine_url, "/generate", {"inputs": "The capital of France is", "parameters": {
        "max_new_tokens": 16, "details": True}}).json()["details"]["tokens"]
    texts = [t["text"] for t in tokens]
    free = "".join(texts)
    boundary = len(texts[0]) + len(texts[1])
    spanning = free[boundary - 2:boundary + 2]  # the end of one token and the start of the next
    stops = [spanning, texts[3].strip() or texts[4], free[-3:], free[:5] + "never", "x" * 9]
    for stop in stops:
        for path, body in (("/v1/completions", {"prompt": "The capital of France is"}),
                           ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Paris is"}]})):
            body = {**body, "max_tokens": 16, "temperature": 0, "stop": [stop]}
            text, streamed = _answer_and_stream(engine_url, path, body)
            if streamed != text:  # once more: a held-back stop string fails every time, a near-tie of floats not
                text, streamed = _answer_and_stream(engine_url, path, body)
            assert stop not in text and streamed == text, (path, stop)


def test_langchain_with_structured_output(engine_url: str) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=f"{engine_url}/v1", api_key="unused", model="gemma", temperature=0, max_tokens=60,
                     max_retries=0, timeout=300)
    for method in ("json_schema", "function_calling"):  # response_format, and a named tool
        city = llm.with_structured_output(City, method=method).invoke("Describe Paris as JSON.")
        assert isinstance(city, City), method
        jsonschema.validate(city.model_dump(), City.model_json_schema())
