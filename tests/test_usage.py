"""Usage per API key against a real keyed server with real clients: the counts equal the tokens the answers
report (OpenAI's usage, TGI's headers and details, SageMaker's), streams included; per-key limits answer 429
with Retry-After in each front door's words; `shoal usage`; CloudWatch signed for `monitoring`. Then the pieces
alone: the stream meter, the limiter's windows, key files with and without limits."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.config
import httpx
import openai
import pytest
from botocore.exceptions import ClientError
from helpers import server_process

from shoal.observability.hooks import Finished, Throttled
from shoal.observability.limits import KeyLimiter, Limits
from shoal.observability.tokens import StreamMeter, Tokens
from shoal.sdk import Model, ResourceRequirements, Session
from shoal.security.keys import KeyLimits, Scope, append_key, load_keys, new_key

NO_RETRIES = botocore.config.Config(retries={"max_attempts": 0})
PROMPT = "The three primary colours are"


def secret(key) -> str:  # type: ignore[no-untyped-def]
    return key.secret.get_secret_value()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A server with keys (admin `ops`; invoke `app`; `tight`: 2 requests a minute; `thrifty`: 10 tokens a
    minute) and one copy of the default model."""
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    keys = {"ops": new_key("ops", Scope.ADMIN), "app": new_key("app", Scope.INVOKE),
            "tight": new_key("tight", Scope.INVOKE, KeyLimits(requests_per_minute=2)),
            "thrifty": new_key("thrifty", Scope.INVOKE, KeyLimits(tokens_per_minute=10))}
    for key in keys.values():
        append_key(path, key)
    with server_process(tmp_path_factory.mktemp("usage"), "--api-keys", str(path)) as url:
        Model("gemma-3-270m", name="gem", session=Session(url, api_key=secret(keys["ops"]))).deploy(
            "usage", resources=ResourceRequirements(requests={"copies": 1, "num_cpus": 1, "memory": 1024}))
        yield {"url": url, **keys}


def _usage(keyed: dict, requests: int = 0, **query: str) -> list[dict]:
    """The usage rows; with `requests`, once they count that many (a request is counted as its handler ends,
    which may be just after its client read the last byte)."""
    deadline = time.monotonic() + 5
    while True:
        answer = httpx.get(f"{keyed['url']}/api/usage", params=query,
                           headers={"Authorization": f"Bearer {secret(keyed['ops'])}"})
        assert answer.status_code == 200, answer.text
        rows = answer.json()["rows"]
        if sum(r["requests"] for r in rows) >= requests or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def _runtime(keyed: dict, name: str):  # type: ignore[no-untyped-def]
    key = keyed[name]
    return boto3.client("sagemaker-runtime", endpoint_url=keyed["url"], region_name="us-east-1", config=NO_RETRIES,
                        aws_access_key_id=key.access_key_id, aws_secret_access_key=secret(key))


def _tgi_stream(keyed: dict, key: str, body: dict) -> list[dict]:
    with httpx.stream("POST", f"{keyed['url']}/generate_stream", json=body,
                      headers={"Authorization": f"Bearer {secret(keyed[key])}"}) as response:
        text = b"".join(response.iter_bytes()).decode()
    assert "shoal-usage" not in text  # the engine's trailer is the gateway's, never the client's
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def test_usage_counts_equal_the_tokens_the_answers_report(keyed: dict) -> None:
    reported = []  # (prompt, cached, generated) as each answer says
    auth = {"Authorization": f"Bearer {secret(keyed['app'])}"}
    tgi = {"inputs": PROMPT, "parameters": {"max_new_tokens": 6, "details": True}}
    whole = httpx.post(f"{keyed['url']}/generate", json=tgi, headers=auth)
    prompt = int(whole.headers["x-prompt-tokens"])  # TGI's streams do not say it: the same inputs have as many
    reported.append((prompt, int(whole.headers["x-cached-tokens"]), whole.json()["details"]["generated_tokens"]))
    assert int(whole.headers["x-generated-tokens"]) == reported[-1][2]
    final = _tgi_stream(keyed, "app", tgi)[-1]["details"]
    reported.append((prompt, final["cached_tokens"], final["generated_tokens"]))

    client = openai.OpenAI(base_url=f"{keyed['url']}/v1", api_key=secret(keyed["app"]), max_retries=0)
    chat = client.chat.completions.create(model="gem", messages=[{"role": "user", "content": "Name a colour."}],
                                          max_tokens=5)
    u = chat.usage
    reported.append((u.prompt_tokens, u.prompt_tokens_details.cached_tokens, u.completion_tokens))
    chunks = list(client.completions.create(model="gem", prompt=PROMPT, max_tokens=7, stream=True,
                                            stream_options={"include_usage": True}))
    u = chunks[-1].usage
    reported.append((u.prompt_tokens, u.prompt_tokens_details.cached_tokens, u.completion_tokens))
    chunks = list(client.completions.create(model="gem", prompt=PROMPT, max_tokens=3, stream=True))
    reported.append((u.prompt_tokens, None, 3))  # no usage asked for: the same prompt; the gateway still counts it

    runtime = _runtime(keyed, "app")
    answer = runtime.invoke_endpoint(EndpointName="usage", ContentType="application/json", Body=json.dumps(tgi))
    headers = answer["ResponseMetadata"]["HTTPHeaders"]
    reported.append((int(headers["x-prompt-tokens"]), int(headers["x-cached-tokens"]),
                     json.loads(answer["Body"].read())[0]["details"]["generated_tokens"]))
    stream = runtime.invoke_endpoint_with_response_stream(EndpointName="usage", ContentType="application/json",
                                                          Body=json.dumps(tgi))
    payload = b"".join(event["PayloadPart"]["Bytes"] for event in stream["Body"]).decode()
    final = [json.loads(line[5:]) for line in payload.splitlines() if line.startswith("data:")][-1]["details"]
    reported.append((prompt, final["cached_tokens"], final["generated_tokens"]))

    (row,) = _usage(keyed, key="app", requests=len(reported))
    assert row["component"] == "gem" and row["requests"] == len(reported) and row["errors"] == 0
    assert row["prompt_tokens"] == sum(p for p, _, _ in reported)
    assert row["generated_tokens"] == sum(g for _, _, g in reported)
    known_cached = sum(c for _, c, _ in reported if c is not None)
    assert known_cached <= row["cached_tokens"] <= known_cached + prompt


def test_limits_answer_429_with_retry_after_in_each_doors_words(keyed: dict) -> None:
    auth = {"Authorization": f"Bearer {secret(keyed['tight'])}"}
    body = {"inputs": "Hi", "parameters": {"max_new_tokens": 1}}
    for _ in range(2):
        assert httpx.post(f"{keyed['url']}/generate", json=body, headers=auth).status_code == 200
    refused = httpx.post(f"{keyed['url']}/generate", json=body, headers=auth)  # TGI
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["error_type"] == "rate_limit_exceeded"
    assert "2 requests per minute" in refused.json()["error"]

    client = openai.OpenAI(base_url=f"{keyed['url']}/v1", api_key=secret(keyed["tight"]), max_retries=0)
    with pytest.raises(openai.RateLimitError) as err:  # OpenAI
        client.completions.create(model="gem", prompt="Hi", max_tokens=1)
    assert err.value.code == "rate_limit_exceeded" and int(err.value.response.headers["retry-after"]) >= 1

    with pytest.raises(ClientError) as aws:  # SageMaker runtime
        _runtime(keyed, "tight").invoke_endpoint(EndpointName="usage", ContentType="application/json",
                                                 Body=json.dumps(body))
    assert aws.value.response["Error"]["Code"] == "ThrottlingException"
    assert int(aws.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"]) >= 1

    thrifty = {"Authorization": f"Bearer {secret(keyed['thrifty'])}"}
    first = httpx.post(f"{keyed['url']}/generate", json={"inputs": PROMPT, "parameters": {"max_new_tokens": 10}},
                       headers=thrifty)
    assert first.status_code == 200  # under its limit when it came; its tokens now count
    second = httpx.post(f"{keyed['url']}/generate", json=body, headers=thrifty)
    assert second.status_code == 429 and "10 tokens per minute" in second.json()["error"]

    (row,) = _usage(keyed, key="tight", requests=5)
    assert (row["requests"], row["errors"], row["throttled"]) == (5, 3, 3)


def test_shoal_usage_command(keyed: dict) -> None:
    env = {**os.environ, "SHOAL_API_KEY": secret(keyed["ops"])}
    run = subprocess.run([sys.executable, "-m", "shoal.cli", "usage", "--url", keyed["url"], "--json", "--key", "app"],
                         env=env, capture_output=True, text=True, check=True)
    (row,) = json.loads(run.stdout)["rows"]
    assert row["key"] == "app" and row["requests"] > 0
    table = subprocess.run([sys.executable, "-m", "shoal.cli", "usage", "--url", keyed["url"], "--since", "1h",
                            "--by", "hour"], env={**env, "COLUMNS": "200"}, capture_output=True, text=True, check=True)
    assert "app" in table.stdout and "thrifty" in table.stdout and "tight" in table.stdout
    assert httpx.get(f"{keyed['url']}/api/usage",  # an invoke key cannot read everyone's usage
                     headers={"Authorization": f"Bearer {secret(keyed['app'])}"}).status_code == 403


def test_cloudwatch_is_signed_for_monitoring(keyed: dict) -> None:
    def cloudwatch(name: str | None):  # type: ignore[no-untyped-def]
        key = keyed[name] if name else new_key("stranger", Scope.ADMIN)
        return boto3.client("cloudwatch", endpoint_url=keyed["url"], region_name="us-east-1", config=NO_RETRIES,
                            aws_access_key_id=key.access_key_id, aws_secret_access_key=secret(key))
    metrics = cloudwatch("ops").list_metrics(Namespace="AWS/SageMaker")["Metrics"]
    assert any(m["MetricName"] == "Invocations" for m in metrics)
    for name, code in (("app", "AccessDeniedException"), (None, "UnrecognizedClientException")):
        with pytest.raises(ClientError) as err:
            cloudwatch(name).list_metrics()
        assert err.value.response["Error"]["Code"] == code  # CBOR errors botocore reads


# -- the pieces alone -------------------------------------------------------------------------------------------
def test_stream_meter_takes_out_the_trailer_wherever_chunks_cut_it() -> None:
    events = b'data:{"token":{"id":1}}\n\ndata:{"token":{"id":2},"generated_text":"ab"}\n\n'
    stream = events + Tokens(12, 2, 5).trailer()
    for cut in range(1, len(stream)):
        meter = StreamMeter()
        out = meter.chunk(stream[:cut]) + meter.chunk(stream[cut:]) + meter.end()
        assert out == events and meter.tokens == Tokens(12, 2, 5), cut
    meter = StreamMeter()  # another engine's stream: OpenAI's usage chunk, passed through
    chunk = b'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}\n\ndata: [DONE]\n\n'
    assert meter.chunk(chunk) == chunk and meter.end() == b"" and meter.tokens == Tokens(4, 2, 0)
    meter = StreamMeter()  # comments that are not the trailer stay
    assert meter.chunk(b": keep-alive\n\n:") + meter.chunk(b" ping\n\n") + meter.end() == b": keep-alive\n\n: ping\n\n"


def test_limiter_windows_and_retry_after() -> None:
    now = [1000.0]
    limiter = KeyLimiter({"k": Limits(requests_per_minute=2, tokens_per_minute=100), "free": Limits()},
                         clock=lambda: now[0])
    limiter.admit("k")
    now[0] += 10
    limiter.admit("k")
    with pytest.raises(Throttled) as err:
        limiter.admit("k")
    assert err.value.retry_after_s == 50 and err.value.status == 429
    limiter.admit("free")  # no limits set: never refused
    limiter.admit(None)
    now[0] += 51  # the first request left the window
    limiter.admit("k")
    limiter(Finished(at=0, door="tgi", status=200, total_s=1, key="k", tokens=Tokens(70, 40)))
    now[0] += 30
    with pytest.raises(Throttled) as err:
        limiter.admit("k")  # 110 tokens in the last minute
    assert "100 tokens per minute" in err.value.message and err.value.retry_after_s == 30


def test_key_files_with_and_without_limits(tmp_path: Path) -> None:
    old = tmp_path / "old.json"  # a key file from before limits existed
    old.write_text(json.dumps([{"name": "ops", "scope": "admin", "access_key_id": "SHOALAAAAAAAAAAA",
                                "secret": "s" * 20}]))
    (key,) = load_keys(old).keys
    assert key.limits is None
    append_key(old, new_key("app", Scope.INVOKE, KeyLimits(tokens_per_minute=500)))
    records = json.loads(old.read_text())
    assert "limits" not in records[0] and records[1]["limits"] == {"tokens_per_minute": 500}
    assert load_keys(old).keys[1].limits == KeyLimits(tokens_per_minute=500)
