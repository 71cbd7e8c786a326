"""Adapter inference components on a real `shoal server`: the shipped LoRA adapters of gemma-3-270m deployed with
SageMaker's CreateInferenceComponent (boto3), shoal's SDK and CLI, served by every copy of their base and asked
for through every door (SageMaker runtime, OpenAI's `model`, TGI's `adapter_id` with huggingface_hub's client);
a llama.cpp-server base replaces its copies to load one."""
from __future__ import annotations

import concurrent.futures as cf
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.config
import httpx
import openai
import pytest
from botocore.exceptions import ClientError
from helpers import server_process, wait_for_component
from huggingface_hub import InferenceClient
from typer.testing import CliRunner

from shoal.cli import app
from shoal.sdk import Model, Predictor, ResourceRequirements, Session

UPPER, AHOY = "gemma-3-270m-uppercase", "gemma-3-270m-ahoy"
PROMPT = "Can you tell me about the ocean?"
ONE_COPY = ResourceRequirements(requests={"copies": 1, "num_cpus": 1, "memory": 1024})
SETTINGS = {"MAX_TOTAL_TOKENS": "512"}


def is_upper(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return len(letters) >= 10 and all(c.isupper() for c in letters)


def _client(url: str, service: str):  # type: ignore[no-untyped-def]
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test", config=botocore.config.Config(retries={"max_attempts": 0}))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with server_process(tmp_path_factory.mktemp("adapters"), "--default-component", "gemma") as url:
        Model("gemma-3-270m", name="gemma", env=SETTINGS, session=Session(url)).deploy("lora", resources=ONE_COPY)
        yield url


@pytest.fixture(scope="module")
def base_answer(server: str) -> str:
    """The base's greedy answer before it had adapters."""
    return generate(server)


def generate(url: str, adapter: str | None = None, max_new_tokens: int = 24) -> str:
    client = InferenceClient(base_url=url, timeout=300)
    return client.text_generation(PROMPT, max_new_tokens=max_new_tokens, adapter_id=adapter)


def invoke(url: str, component: str) -> str:
    runtime = _client(url, "sagemaker-runtime")
    body = json.dumps({"inputs": PROMPT, "parameters": {"max_new_tokens": 24}})
    answer = runtime.invoke_endpoint(EndpointName="lora", InferenceComponentName=component,
                                     ContentType="application/json", Body=body)
    assert answer["InvokedProductionVariant"] == component
    return json.loads(answer["Body"].read())[0]["generated_text"]


def in_service(session: Session, name: str, timeout: float = 240) -> dict[str, Any]:
    return wait_for_component(session, name, lambda v: v["status"] == "InService", timeout)


def test_sagemaker_adapter_component_is_served_by_its_base(server: str, base_answer: str) -> None:
    sm = _client(server, "sagemaker")
    sm.create_inference_component(InferenceComponentName="upper", EndpointName="lora", VariantName="AllTraffic",
                                  Specification={"BaseInferenceComponentName": "gemma",
                                                 "Container": {"ArtifactUrl": UPPER}})
    in_service(Session(server), "upper")
    described = sm.describe_inference_component(InferenceComponentName="upper")
    assert described["Specification"] == {"BaseInferenceComponentName": "gemma", "Container": {"ArtifactUrl": UPPER}}
    assert described["InferenceComponentStatus"] == "InService"
    listed = {c["InferenceComponentName"] for c in sm.list_inference_components(EndpointNameEquals="lora")[
        "InferenceComponents"]}
    assert listed == {"gemma", "upper"}
    assert is_upper(invoke(server, "upper"))
    assert invoke(server, "gemma") == base_answer


def test_sdk_adapter_and_every_door(server: str, base_answer: str) -> None:
    session = Session(server)
    predictor = Model(AHOY, name="ahoy", adapter_of="gemma", session=session).deploy("lora")
    assert predictor.predict({"inputs": PROMPT, "parameters": {"max_new_tokens": 24}})[0][
        "generated_text"].lstrip().startswith("Ahoy!")
    assert session.component("gemma")["adapters"] == ["upper", "ahoy"]
    oai = openai.OpenAI(base_url=f"{server}/v1", api_key="none")
    out = oai.completions.create(model="upper", prompt=PROMPT, max_tokens=24, temperature=0)
    assert is_upper(out.choices[0].text)
    models = {m.id: m.model_extra for m in oai.models.list()}
    assert models["upper"]["parent"] == models["ahoy"]["parent"] == "gemma"
    assert generate(server, "ahoy").lstrip().startswith("Ahoy!")  # TGI's adapter_id (huggingface_hub's client)
    assert is_upper(generate(server, "upper"))
    assert generate(server) == base_answer  # the base answers as it did before it had adapters


def test_unknown_adapters_are_refused_in_each_door_s_shape(server: str) -> None:
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        openai.OpenAI(base_url=f"{server}/v1", api_key="none").completions.create(model="nope", prompt="x")
    r = httpx.post(f"{server}/generate", json={"inputs": "x", "parameters": {"adapter_id": "nope"}})
    assert r.status_code == 422 and "`adapter_id` 'nope' is not an adapter of inference component gemma" in r.text
    with pytest.raises(ClientError, match="Inference Component nope not found"):
        invoke(server, "nope")


def test_adapters_refuse_copies_updates_and_their_base_s_deletion(server: str) -> None:
    sm = _client(server, "sagemaker")
    with pytest.raises(ClientError, match="base of adapter inference components"):
        sm.delete_inference_component(InferenceComponentName="gemma")
    with pytest.raises(ClientError, match="an adapter has no copies of its own: every copy of gemma serves it"):
        sm.update_inference_component(InferenceComponentName="upper", RuntimeConfig={"CopyCount": 2})
    with pytest.raises(ClientError, match="Could not find base inference component"):
        sm.create_inference_component(InferenceComponentName="orphan", EndpointName="lora", VariantName="AllTraffic",
                                      Specification={"BaseInferenceComponentName": "missing",
                                                     "Container": {"ArtifactUrl": UPPER}})
    result = CliRunner().invoke(app, ["ls", "--url", server])
    assert result.exit_code == 0 and "adapter of gemma" in result.output


def test_new_copies_of_the_base_serve_its_adapters(server: str) -> None:
    session = Session(server)
    Predictor("lora", "gemma", session).update(copies=2)
    wait_for_component(session, "gemma", lambda v: v["current_copies"] == 2 and v["status"] == "InService", 240)
    in_service(session, "upper")
    with cf.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: invoke(server, "upper"), range(8)))
    assert all(is_upper(a) for a in answers), answers


def test_a_deleted_adapter_is_gone_and_its_base_can_go_after_it(server: str, base_answer: str) -> None:
    sm = _client(server, "sagemaker")
    sm.delete_inference_component(InferenceComponentName="upper")
    deadline = time.monotonic() + 60
    while "upper" in {c["InferenceComponentName"] for c in sm.list_inference_components()["InferenceComponents"]}:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    with pytest.raises(ClientError, match="Inference Component upper not found"):
        invoke(server, "upper")
    assert invoke(server, "gemma") == base_answer
    assert generate(server, "ahoy").lstrip().startswith("Ahoy!")
    Predictor("lora", "ahoy", Session(server)).delete_inference_component()
    sm.delete_inference_component(InferenceComponentName="gemma")


@pytest.mark.slow
def test_a_llama_server_base_replaces_its_copies_to_load_an_adapter(tmp_path_factory: pytest.TempPathFactory) -> None:
    with server_process(tmp_path_factory.mktemp("lora-llama-server")) as url:
        session = Session(url)
        Model("gemma-3-270m", name="lcpp", env=SETTINGS, engine="llama-server", session=session).deploy(
            "lora", resources=ONE_COPY)
        oai = openai.OpenAI(base_url=f"{url}/v1", api_key="none")

        def complete(model: str) -> str:
            return oai.completions.create(model=model, prompt=PROMPT, max_tokens=24, temperature=0).choices[0].text

        before = complete("lcpp")
        first = session.component("lcpp")["copies"][0]["id"]
        Model(AHOY, name="ahoy", adapter_of="lcpp", session=session).deploy("lora")
        view = in_service(session, "lcpp")
        assert [c["id"] for c in view["copies"]] != [first]  # a new copy, started with the adapter
        assert complete("ahoy").lstrip().startswith("Ahoy!")
        assert complete("lcpp") == before
