"""One endpoint, two engines: the built-in `shoal` engine and llama.cpp's own server (`llama-server`,
from the xllamacpp wheel) behind the same front doors, with real clients."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator

import boto3
import botocore.config
import httpx
import openai
import pytest
from helpers import labelled_metric, server_process
from text_generation import Client

from shoal.sdk import Model, ResourceRequirements, Session

COMPONENT_HEADER = "X-Amzn-SageMaker-Inference-Component"
BODY = {"inputs": "The capital of France is", "parameters": {"max_new_tokens": 8}}
HALF_CORE = {"num_cpus": 0.5, "memory": 512}
ENGINES = {"builtin": "shoal", "llamacpp": "llama-server"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with server_process(tmp_path_factory.mktemp("mixed"), "--default-component", "llamacpp") as url:
        session = Session(url)
        env = {"MAX_TOTAL_TOKENS": "1024", "MAX_BATCH_TOTAL_TOKENS": "4096"}
        Model("gemma-3-270m", name="builtin", env=env, session=session).deploy(
            "mixed", resources=ResourceRequirements(requests={"copies": 1, **HALF_CORE}))
        Model("gemma-3-270m", name="llamacpp", env=env, session=session, engine="llama-server").deploy(
            "mixed", resources=ResourceRequirements(requests={"copies": 2, **HALF_CORE}))
        yield url


def _runtime(url: str):  # type: ignore[no-untyped-def]
    return boto3.client("sagemaker-runtime", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=botocore.config.Config(retries={"max_attempts": 0}))


@pytest.mark.parametrize("component", ENGINES)
def test_boto3_invoke_and_response_stream(gateway: str, component: str) -> None:
    runtime = _runtime(gateway)
    whole = json.loads(runtime.invoke_endpoint(EndpointName="mixed", InferenceComponentName=component,
                                               ContentType="application/json", Body=json.dumps(BODY))["Body"].read())
    response = runtime.invoke_endpoint_with_response_stream(
        EndpointName="mixed", InferenceComponentName=component, ContentType="application/json",
        Body=json.dumps(BODY))
    payload = b"".join(event["PayloadPart"]["Bytes"] for event in response["Body"])
    events = [json.loads(line[5:]) for line in payload.decode().splitlines() if line.startswith("data:")]
    assert whole[0]["generated_text"] and events[-1]["generated_text"] == whole[0]["generated_text"]  # greedy
    assert "".join(e["token"]["text"] for e in events) == whole[0]["generated_text"]
    assert events[-1]["index"] == len(events) <= 8


@pytest.mark.parametrize("component", ENGINES)
def test_text_generation_client(gateway: str, component: str) -> None:
    client = Client(f"{gateway}/endpoints/mixed/invocations", headers={COMPONENT_HEADER: component}, timeout=60)
    response = client.generate("The capital of France is", max_new_tokens=6)  # always asks for details
    streamed = list(client.generate_stream("The capital of France is", max_new_tokens=6))
    assert "".join(s.token.text for s in streamed) == response.generated_text
    assert response.details.finish_reason.value == "length" and response.details.generated_tokens == 6
    assert all(t.logprob is not None and t.logprob <= 0 for t in response.details.tokens)


def test_tgi_stop_sequences_and_eos_on_llama_server(gateway: str) -> None:
    stopped = httpx.post(f"{gateway}/generate", timeout=60, json={
        "inputs": "1, 2, 3, 4,", "parameters": {"max_new_tokens": 20, "stop": [" 7"], "details": True}}).json()
    assert stopped["generated_text"] == " 5, 6, 7"  # as TGI: the stop sequence is part of the text
    assert stopped["details"]["finish_reason"] == "stop_sequence"
    refused = httpx.post(f"{gateway}/generate", json={"inputs": "x", "parameters": {"truncate": 5}})
    assert refused.status_code == 422 and "`truncate` is not supported" in refused.json()["error"]


SCHEMA = {"type": "object", "properties": {"capital": {"type": "string", "maxLength": 20}}, "required": ["capital"],
          "additionalProperties": False}


@pytest.mark.parametrize("component", ENGINES)
def test_tgi_grammar_and_openai_response_format_on_both_engines(gateway: str, component: str) -> None:
    """TGI's grammar reaches llama-server as its json_schema (the built-in engine applies it itself); OpenAI's
    response_format passes through to both. Every answer is the schema's."""
    jsonschema = pytest.importorskip("jsonschema")
    tgi = httpx.post(f"{gateway}/endpoints/mixed/invocations", timeout=120, headers={COMPONENT_HEADER: component},
                     json={"inputs": "The capital of France as JSON:", "parameters": {
                         "max_new_tokens": 40, "grammar": {"type": "json", "value": SCHEMA}}})
    assert tgi.status_code == 200, tgi.text
    jsonschema.validate(json.loads(tgi.json()[0]["generated_text"]), SCHEMA)
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key="unused")
    chat = client.chat.completions.create(
        model=component, messages=[{"role": "user", "content": "The capital of France as JSON"}], max_tokens=40,
        temperature=0, response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": SCHEMA}})
    jsonschema.validate(json.loads(chat.choices[0].message.content), SCHEMA)
    if component == "llamacpp":  # llama.cpp's server has no regex field: refused by name, not ignored
        regex = httpx.post(f"{gateway}/generate", json={"inputs": "x", "parameters": {
            "grammar": {"type": "regex", "value": "[0-9]+"}}})
        assert regex.status_code == 422 and "`grammar` of type `regex` is not supported" in regex.json()["error"]


@pytest.mark.parametrize("component", ENGINES)
def test_openai_client(gateway: str, component: str) -> None:
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key="unused")
    completion = client.completions.create(model=component, prompt="The capital of France is", max_tokens=6,
                                           temperature=0)
    streamed = client.completions.create(model=component, prompt="The capital of France is", max_tokens=6,
                                         temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == completion.choices[0].text
    chat = client.chat.completions.create(model=component, messages=[{"role": "user", "content": "Hi"}],
                                          max_tokens=4, temperature=0)
    assert chat.choices[0].message.content is not None and chat.usage.completion_tokens <= 4


def test_kill_9_of_a_llama_server_copy_under_load_is_retried(gateway: str) -> None:
    session = Session(gateway)
    victim = session.component("llamacpp")["copies"][0]
    retries = sum(labelled_metric(gateway, "shoal_gateway_retries_total").values() or [0])
    codes: list[int] = []
    deadline = time.monotonic() + 5

    def user() -> None:
        with httpx.Client(timeout=60) as client:
            while time.monotonic() < deadline:
                codes.append(client.post(f"{gateway}/endpoints/mixed/invocations", json=BODY,
                                         headers={COMPONENT_HEADER: "llamacpp"}).status_code)

    users = [threading.Thread(target=user) for _ in range(4)]
    for u in users:
        u.start()
    time.sleep(1)
    os.kill(victim["pid"], signal.SIGKILL)
    for u in users:
        u.join()
    assert codes and set(codes) == {200}, f"{codes.count(200)} of {len(codes)} succeeded"
    assert sum(labelled_metric(gateway, "shoal_gateway_retries_total").values()) > retries
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        copy = next(c for c in session.component("llamacpp")["copies"] if c["id"] == victim["id"])
        if copy["status"] == "InService" and copy["restarts"] == 1:
            break
        time.sleep(0.2)
    assert copy["restarts"] == 1 and copy["status"] == "InService"
