"""TGI's validation errors: status 422, error_type validation, TGI's message."""
from __future__ import annotations

import httpx
import pytest

PROMPT = "Hello there"

CASES = [
    ({"temperature": 0}, "`temperature` must be strictly positive"),
    ({"temperature": -1.0}, "`temperature` must be strictly positive"),
    ({"repetition_penalty": 0}, "`repetition_penalty` must be strictly positive"),
    ({"frequency_penalty": 3.0}, "`frequency_penalty` must be >= -2.0 and <= 2.0"),
    ({"top_p": 1.0}, "`top_p` must be > 0.0 and < 1.0"),
    ({"top_p": 0.0}, "`top_p` must be > 0.0 and < 1.0"),
    ({"typical_p": 1.5}, "`typical_p` must be > 0.0 and < 1.0"),
    ({"top_k": 0}, "`top_k` must be strictly positive"),
    ({"max_new_tokens": 0}, "`max_new_tokens` must be strictly positive"),
    ({"max_new_tokens": 1022}, "`inputs` tokens + `max_new_tokens` must be <= 1024. Given: 3 `inputs` tokens "
                               "and 1022 `max_new_tokens`"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "`stop` supports up to 4 stop sequences. Given: 5"),
    ({"top_n_tokens": 6}, "`top_n_tokens` must be >= 0 and <= 5. Given: 6"),
    ({"truncate": 0}, "`truncate` must be strictly positive and less than 512. Given: 0"),
    ({"truncate": 600}, "`truncate` must be strictly positive and less than 512. Given: 600"),
    ({"best_of": 3, "do_sample": True}, "`best_of` must be > 0 and <= 2. Given: 3"),
    ({"best_of": 2}, "you must use sampling when `best_of` is > 1"),
    ({"best_of": 2, "do_sample": True, "seed": 1}, "`seed` must not be set when `best_of` > 1"),
    ({"temperature": "hot"}, "Failed to deserialize the JSON body into the target type: parameters.temperature"),
]


@pytest.mark.parametrize("params,message", CASES, ids=[c[1][:40] for c in CASES])
def test_parameter_errors(engine_url: str, params: dict, message: str) -> None:
    r = httpx.post(f"{engine_url}/generate", json={"inputs": PROMPT, "parameters": params}, timeout=30)
    assert r.status_code == 422
    assert r.json()["error_type"] == "validation"
    assert r.json()["error"].startswith(message)


def test_input_errors(engine_url: str) -> None:
    empty = httpx.post(f"{engine_url}/generate", json={"inputs": ""})
    assert (empty.status_code, empty.json()["error"]) == (422, "`inputs` cannot be empty")
    too_long = httpx.post(f"{engine_url}/generate", json={"inputs": "word " * 600})
    assert too_long.status_code == 422
    assert too_long.json()["error"].startswith("`inputs` must have less than 512 tokens. Given: 60")
    missing = httpx.post(f"{engine_url}/generate", json={"parameters": {}})
    assert missing.status_code == 422 and "inputs" in missing.json()["error"]
    not_json = httpx.post(f"{engine_url}/generate", content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["error_type"] == "validation"


def test_stream_only_errors(engine_url: str) -> None:
    for params, message in (({"decoder_input_details": True},
                             "`decoder_input_details` == true is not supported when streaming tokens"),
                            ({"best_of": 2, "do_sample": True},
                             "`best_of` != 1 is not supported when streaming tokens")):
        r = httpx.post(f"{engine_url}/generate_stream", json={"inputs": PROMPT, "parameters": params})
        assert (r.status_code, r.json()["error"]) == (422, message)


def test_unknown_parameters_are_ignored(engine_url: str) -> None:
    r = httpx.post(f"{engine_url}/generate", json={"inputs": PROMPT, "parameters": {"max_new_tokens": 2,
                                                                                    "no_such_knob": 1}})
    assert r.status_code == 200


def test_openai_errors_in_openais_shape(engine_url: str) -> None:
    r = httpx.post(f"{engine_url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}],
                                                              "n": 17})
    assert r.status_code == 422 and "`n` must be >= 1 and <= 16" in r.json()["error"]["message"]
    assert r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(f"{engine_url}/v1/chat/completions", json={"messages": [{"role": "wizard", "content": "x"}]})
    assert r.status_code == 422 and "messages.0.role" in r.json()["error"]["message"]
    r = httpx.post(f"{engine_url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}],
                                                              "max_tokens": 5000})
    assert r.status_code == 422 and "must be <= 1024" in r.json()["error"]["message"]


def test_unknown_route_is_404_json(engine_url: str) -> None:
    r = httpx.get(f"{engine_url}/nope")
    assert r.status_code == 404 and r.json()["error_type"] == "http"
