"""TGI requests for OpenAI-speaking engines, through each engine kind's adapter, and their answers back (pure
units; the llama-server tests run the llama.cpp dialect end to end against the real server)."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from shoal.engines import Deployment, engine_kind
from shoal.engines.adapters import Asked, EngineRequest, PassThrough
from shoal.engines.translate import TgiCall, TgiLimits, engine_error
from shoal.errors import ApiError


def call(engine: str, parameters: dict, stream: bool | None = None, inputs: str = "Hi") -> TgiCall:
    """The translation of a TGI request by engine kind `engine`'s adapter (`openai-server`: any OpenAI server,
    run by the `command` engine)."""
    d = Deployment("c", "m", {}, options={"command": "server {port}", "protocol": "openai"})
    kind = engine_kind("command" if engine == "openai-server" else engine)
    data = {"inputs": inputs, "parameters": parameters}
    asked = Asked.GENERATE_STREAM if stream else Asked.GENERATE
    engine_call = kind.adapter(d).call(EngineRequest(asked, data, orjson.dumps(data), bool(stream)), TgiLimits(4096))
    assert engine_call.translation is not None
    return engine_call.translation


def test_engines_that_speak_tgi_get_requests_as_they_are() -> None:
    request = EngineRequest(Asked.COMPAT, {"inputs": "Hi"}, b'{"inputs": "Hi"}', False)
    for engine in ("shoal", "tgi"):
        assert isinstance(engine_kind(engine).adapter(Deployment("c", "m", {})), PassThrough)
        sent = engine_kind(engine).adapter(Deployment("c", "m", {})).call(request, TgiLimits(4096))
        assert (sent.path, sent.body, sent.translation) == ("/invocations", b'{"inputs": "Hi"}', None)
    openai = EngineRequest(Asked.CHAT, {"model": "c"}, b'{"model": "c"}', False)
    assert engine_kind("vllm").adapter(Deployment("c", "m", {})).call(openai, TgiLimits(4096)).translation is None


def test_greedy_and_the_seed_sampling_parameters_for_vllm() -> None:
    greedy = orjson.loads(call("vllm", {"max_new_tokens": 5}).payload())
    assert greedy == {"prompt": "Hi", "max_tokens": 5, "stream": False, "temperature": 0.0}
    seed = {"do_sample": True, "top_p": 0.6, "temperature": 0.9, "top_k": 50, "max_new_tokens": 50,
            "repetition_penalty": 1.03, "return_full_text": False, "seed": 7}
    body = orjson.loads(call("vllm", seed).payload())
    assert body == {"prompt": "Hi", "max_tokens": 50, "stream": False, "temperature": 0.9, "top_p": 0.6,
                    "seed": 7, "top_k": 50, "repetition_penalty": 1.03}


def test_llama_server_is_asked_on_its_own_route_with_neutral_samplers() -> None:
    c = call("llama-server", {"max_new_tokens": 3, "stop": ["\n"], "details": True, "repetition_penalty": 1.1})
    body = orjson.loads(c.payload())
    assert c.path == "/completion"
    assert body["n_predict"] == 3 and body["temperature"] == 0.0 and body["min_p"] == 0.0
    assert body["repeat_penalty"] == 1.1 and body["stop"] == ["\n"] and body["n_probs"] == 1


@pytest.mark.parametrize(("engine", "parameter", "value"), [
    ("vllm", "typical_p", 0.5), ("sglang", "truncate", 10), ("llama-server", "truncate", 10),
    ("vllm", "decoder_input_details", True), ("vllm", "watermark", True), ("openai-server", "top_k", 5),
])
def test_parameters_an_engine_cannot_take_are_422_naming_them(engine: str, parameter: str, value: object) -> None:
    with pytest.raises(ApiError) as err:
        call(engine, {parameter: value})
    assert err.value.status == 422 and f"`{parameter}` is not supported" in err.value.message


def test_tgi_rules_apply_before_translation() -> None:
    with pytest.raises(ApiError, match="`top_p` must be > 0.0 and < 1.0"):
        call("vllm", {"top_p": 1.0})
    with pytest.raises(ApiError, match=r"`best_of` must be > 0 and <= 1"):
        call("vllm", {"best_of": 2, "do_sample": True})
    with pytest.raises(ApiError, match="`stop` supports up to 4 stop sequences"):
        call("vllm", {"stop": list("abcde")})


def test_answers_come_back_in_tgi_shape_with_tgi_finish_reasons() -> None:
    c = call("vllm", {"stop": ["."], "details": True, "return_full_text": True}, inputs="Say: ")
    vllm = {"choices": [{"text": "hello", "finish_reason": "stop", "stop_reason": ".",
                         "logprobs": {"tokens": ["hel", "lo"], "token_logprobs": [-0.5, -0.25]}}],
            "usage": {"completion_tokens": 3}}
    out = c.answer(orjson.dumps(vllm))
    assert out["generated_text"] == "Say: hello."  # TGI keeps the stop sequence and, here, the inputs
    assert out["details"]["finish_reason"] == "stop_sequence" and out["details"]["generated_tokens"] == 3
    assert [t["text"] for t in out["details"]["tokens"]] == ["hel", "lo"]
    sglang = {"choices": [{"text": "x", "finish_reason": "stop", "matched_stop": 1}]}
    assert call("sglang", {"details": True}).answer(orjson.dumps(sglang))["details"]["finish_reason"] == "eos_token"
    llama = {"content": "a b", "stop": True, "stop_type": "limit", "tokens_predicted": 2, "tokens": [1, 2]}
    assert call("llama-server", {"details": True}).answer(orjson.dumps(llama))["details"]["finish_reason"] == "length"


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _events(c: TgiCall, *parts: bytes) -> list[dict]:
    async def run() -> list[bytes]:
        return [e async for e in c.events(_chunks(*parts))]
    return [orjson.loads(e[5:]) for e in asyncio.run(run())]


def test_a_stream_becomes_tgi_events_whatever_the_chunking() -> None:
    lines = [b'data: {"choices":[{"text":"Hel","finish_reason":null}]}\n\n',
             b'data: {"choices":[{"text":"lo","finish_reason":null}]}\n\n',
             b'data: {"choices":[{"text":"","finish_reason":"length"}],"usage":{"completion_tokens":2}}\n\n',
             b"data: [DONE]\n\n"]
    whole = b"".join(lines)
    for parts in ([whole], [whole[:7], whole[7:50], whole[50:]], lines):
        events = _events(call("vllm", {"details": True}, stream=True), *parts)
        assert [e["token"]["text"] for e in events] == ["Hel", "lo"]
        assert events[0]["generated_text"] is None and events[-1]["generated_text"] == "Hello"
        assert events[-1]["details"] == {"finish_reason": "length", "generated_tokens": 2, "seed": None}


def test_a_stream_cut_short_or_failing_ends_with_an_error_event() -> None:
    cut = _events(call("vllm", {}, stream=True), b'data: {"choices":[{"text":"a","finish_reason":null}]}\n\n')
    assert cut[-1]["error_type"] == "generation"
    failed = _events(call("vllm", {}, stream=True), b'data: {"error": {"message": "CUDA out of memory"}}\n\n')
    assert failed == [{"error": "CUDA out of memory", "error_type": "generation"}]


def test_engine_refusals_become_tgi_errors() -> None:
    refused = engine_error(400, b'{"error": {"message": "max_tokens is too large", "type": "BadRequestError"}}')
    assert (refused.status, refused.message, refused.error_type) == (422, "max_tokens is too large", "validation")
    assert engine_error(429, b"busy").status == 429
    assert engine_error(500, b"boom").error_type == "generation"


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.mark.parametrize(("engine", "grammar", "fields"), [
    ("vllm", {"type": "json", "value": SCHEMA}, {"structured_outputs": {"json": SCHEMA}}),
    ("vllm", {"type": "regex", "value": "[0-9]+"}, {"structured_outputs": {"regex": "[0-9]+"}}),
    ("vllm", {"type": "json_schema", "value": {"name": "c", "schema": SCHEMA}}, {"structured_outputs": {"json": SCHEMA}}),
    ("sglang", {"type": "json_object", "value": orjson.dumps(SCHEMA).decode()},
     {"json_schema": orjson.dumps(SCHEMA).decode()}),
    ("sglang", {"type": "regex", "value": "(yes|no)"}, {"regex": "(yes|no)"}),
    ("llama-server", {"type": "json", "value": SCHEMA}, {"json_schema": SCHEMA}),
])
def test_tgi_grammar_becomes_each_engines_constraint(engine: str, grammar: dict, fields: dict) -> None:
    body = orjson.loads(call(engine, {"grammar": grammar, "max_new_tokens": 5}).payload())
    assert {k: body[k] for k in fields} == fields


@pytest.mark.parametrize(("engine", "grammar", "words"), [
    ("llama-server", {"type": "regex", "value": "[0-9]+"}, "`grammar` of type `regex` is not supported"),
    ("openai-server", {"type": "json", "value": SCHEMA}, "`grammar` of type `json` is not supported"),
    ("vllm", {"type": "regex", "value": 5}, "`grammar.value` must be a regular expression"),
    ("vllm", {"type": "json", "value": "{not json"}, "`grammar.value` is not a JSON Schema"),
])
def test_a_grammar_an_engine_cannot_take_is_422_naming_it(engine: str, grammar: dict, words: str) -> None:
    with pytest.raises(ApiError, match=words) as err:
        call(engine, {"grammar": grammar})
    assert err.value.status == 422


def test_logit_bias_and_adapters_where_engines_have_them() -> None:
    assert orjson.loads(call("vllm", {"logit_bias": {"5": 1.0}}).payload())["logit_bias"] == {"5": 1.0}
    with pytest.raises(ApiError, match="`logit_bias` is not supported by this inference component's engine"):
        call("llama-server", {"logit_bias": {"5": 1.0}})
    with pytest.raises(ApiError, match="`adapter_id` is not supported"):
        call("vllm", {"adapter_id": "french"})
