"""Locked doors, over real HTTP with real clients: API keys and scopes, AWS SigV4 as boto3 signs it,
a non-loopback bind that refuses to run open, environment variables and model paths a component may not
use."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.config
import httpx
import openai
import psutil
import pytest
from botocore import UNSIGNED
from helpers import free_port, server_process
from text_generation import Client

from shoal.sdk import Model, ResourceRequirements, Session, ShoalApiError
from shoal.security.keys import Scope, append_key, new_key

BODY = {"inputs": "The capital of France is", "parameters": {"max_new_tokens": 4}}
ONE = ResourceRequirements(requests={"copies": 1, "num_cpus": 1, "memory": 512})


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    admin, invoke = new_key("ops", Scope.ADMIN), new_key("app", Scope.INVOKE)
    append_key(path, admin)
    append_key(path, invoke)
    return {"path": path, "admin": admin, "invoke": invoke}


def secret(key) -> str:  # type: ignore[no-untyped-def]
    return key.secret.get_secret_value()


@pytest.fixture(scope="module")
def locked(keys: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with keys and one real copy, deployed with the admin key."""
    state = tmp_path_factory.mktemp("locked")
    with server_process(state, "--api-keys", str(keys["path"])) as url:
        Model("gemma-3-270m", name="gemma", session=Session(url, api_key=secret(keys["admin"]))).deploy(
            "locked", resources=ONE)
        yield url
    log = "".join(p.read_text() for p in state.rglob("*.log"))
    for key in (keys["admin"], keys["invoke"]):
        assert secret(key) not in log  # keys never reach a log


def _runtime(url: str, key=None, unsigned: bool = False):  # type: ignore[no-untyped-def]
    config = botocore.config.Config(retries={"max_attempts": 0}, signature_version=UNSIGNED if unsigned else None)
    creds = {"aws_access_key_id": key.access_key_id, "aws_secret_access_key": secret(key)} if key else \
        {"aws_access_key_id": "SHOALNOSUCHKEY0000", "aws_secret_access_key": "not-a-real-secret-at-all"}
    return boto3.client("sagemaker-runtime", endpoint_url=url, region_name="us-east-1", config=config, **creds)


def _invoke(runtime) -> dict:  # type: ignore[no-untyped-def]
    body = runtime.invoke_endpoint(EndpointName="locked", ContentType="application/json", Body=json.dumps(BODY))
    return json.loads(body["Body"].read())


def test_health_stays_open(locked: str) -> None:
    assert httpx.get(f"{locked}/health").status_code == 200
    assert httpx.get(f"{locked}/openapi.json").status_code == 200


def test_boto3_signed_with_a_key_works_and_without_one_is_refused_as_aws_does(locked: str, keys: dict) -> None:
    assert _invoke(_runtime(locked, keys["invoke"]))[0]["generated_text"]
    with pytest.raises(Exception) as err:
        _invoke(_runtime(locked))  # an access key id the server does not know
    assert err.value.response["Error"]["Code"] == "UnrecognizedClientException"  # type: ignore[attr-defined]
    forged = new_key("forged", Scope.ADMIN).model_copy(update={"access_key_id": keys["invoke"].access_key_id})
    with pytest.raises(Exception) as err:
        _invoke(_runtime(locked, forged))  # the right id, the wrong secret
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"  # type: ignore[attr-defined]
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403  # type: ignore[attr-defined]
    with pytest.raises(Exception) as err:
        _invoke(_runtime(locked, unsigned=True))
    assert err.value.response["Error"]["Code"] == "MissingAuthenticationTokenException"  # type: ignore[attr-defined]


def test_openai_client_needs_a_key(locked: str, keys: dict) -> None:
    good = openai.OpenAI(base_url=f"{locked}/v1", api_key=secret(keys["invoke"]))
    assert good.completions.create(model="gemma", prompt="Hi", max_tokens=2, temperature=0).choices[0].text
    bad = openai.OpenAI(base_url=f"{locked}/v1", api_key="sk-not-a-shoal-key-000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.models.list()
    assert err.value.status_code == 401 and err.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as missing:
        good.completions.create(model="nope", prompt="Hi", max_tokens=2)
    assert missing.value.code == "model_not_found"  # not answered by some other component


def test_tgi_client_and_shoal_api_take_bearer_keys_with_scopes(locked: str, keys: dict) -> None:
    headers = {"Authorization": f"Bearer {secret(keys['invoke'])}"}
    assert Client(locked, headers=headers, timeout=60).generate("Hi", max_new_tokens=2).generated_text is not None
    assert httpx.post(f"{locked}/generate", json=BODY).status_code == 401
    refused = httpx.get(f"{locked}/api/endpoints", headers=headers)  # an invoke key on the control API
    assert refused.status_code == 403 and "needs an admin key" in refused.json()["error"]
    assert httpx.get(f"{locked}/metrics", headers=headers).status_code == 403
    admin = {"Authorization": f"Bearer {secret(keys['admin'])}"}
    assert httpx.get(f"{locked}/api/endpoints", headers=admin).status_code == 200


def test_a_route_the_table_does_not_declare_needs_an_admin_key(locked: str, keys: dict) -> None:
    """Door and scope come from the route table, not from the path's look: an unknown path is not invoke's."""
    invoke = {"Authorization": f"Bearer {secret(keys['invoke'])}"}
    for path in ("/nope", "/v1/nope", "/endpoints/locked/nope"):
        assert httpx.post(f"{locked}{path}", headers=invoke, json=BODY).status_code == 403, path  # not its 404
    admin = {"Authorization": f"Bearer {secret(keys['admin'])}"}
    assert httpx.post(f"{locked}/nope", headers=admin).status_code == 404
    assert httpx.get(f"{locked}/live").status_code == 200  # declared open


def test_shoal_bench_sends_the_key_from_the_environment(locked: str, keys: dict, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "shoal.cli", "bench", "--url", locked, "--endpoint", "locked", "--vus", "1",
               "--duration", "2", "--prompt-tokens", "16", "--max-new-tokens", "2", "--out", str(tmp_path)]
    env = {**os.environ, "SHOAL_API_KEY": secret(keys["invoke"])}
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=120)
    point = json.loads((tmp_path / "results.json").read_text())["points"][0]
    assert point["requests"] > 0 and point["success_pct"] == 100


def test_an_unauthenticated_caller_cannot_start_a_copy(locked: str, keys: dict) -> None:
    spec = {"InferenceComponentName": "intruder", "EndpointName": "locked", "ModelId": "gemma-3-270m"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {secret(keys['invoke'])}"}):
        assert httpx.post(f"{locked}/api/inference-components", json=spec, headers=headers).status_code in (401, 403)
    with pytest.raises(ShoalApiError, match="404"):
        Session(locked, api_key=secret(keys["admin"])).component("intruder")


def test_a_non_loopback_bind_refuses_to_run_open(tmp_path: Path, keys: dict) -> None:
    port = free_port("0.0.0.0")
    command = [sys.executable, "-m", "shoal.cli", "server", "--host", "0.0.0.0", "--port", str(port),
               "--state-dir", str(tmp_path)]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60,
                             env={k: v for k, v in os.environ.items() if not k.startswith("SHOAL_API_KEYS")})
    assert refused.returncode == 2 and "exposes the control API to the network" in refused.stderr
    with server_process(tmp_path / "keyed", "--host", "0.0.0.0", "--api-keys", str(keys["path"])) as url:
        answer = httpx.post(f"{url}/api/endpoints", json={"EndpointName": "x"})
        assert answer.status_code == 401
        port = int(url.rsplit(":", 1)[1])
        server = psutil.Process(next(c.pid for c in psutil.net_connections("tcp")
                                     if c.laddr and c.laddr.port == port and c.status == "LISTEN"))
        assert not server.children()  # no copy was started
    with server_process(tmp_path / "open", "--host", "0.0.0.0", "--insecure") as url:
        assert httpx.get(f"{url}/api/endpoints").status_code == 200


def test_environment_that_changes_what_a_copy_runs_is_refused(tmp_path: Path) -> None:
    with server_process(tmp_path) as url:
        session = Session(url)
        session.call("POST", "/api/endpoints", {"EndpointName": "env"})
        spec = {"InferenceComponentName": "c", "EndpointName": "env", "ModelId": "gemma-3-270m"}
        for env in ({"LD_PRELOAD": "/tmp/evil.so"}, {"PYTHONPATH": "/tmp"}, {"LD_AUDIT": "x", "HF_TOKEN": "ok"},
                    {"PYTHONSTARTUP": "/tmp/x.py"}, {"PATH": "/tmp"}, {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}):
            with pytest.raises(ShoalApiError) as err:
                session.call("POST", "/api/inference-components", {**spec, "Environment": env})
            bad = sorted(k for k in env if k != "HF_TOKEN")
            assert err.value.status == 400 and f"Environment may not set {', '.join(bad)}" in err.value.message
        assert session.components("env") == []


def test_model_files_must_sit_under_the_model_directories(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "escape.gguf").symlink_to("/etc/passwd")
    with server_process(tmp_path / "state", "--model-dir", str(models)) as url:
        session = Session(url)
        session.call("POST", "/api/endpoints", {"EndpointName": "files"})
        for model_id in ("/etc/shadow", str(models / "escape.gguf"), "../../../../etc/passwd", "~/secret.gguf"):
            with pytest.raises(ShoalApiError) as err:
                session.call("POST", "/api/inference-components",
                             {"InferenceComponentName": "f", "EndpointName": "files", "ModelId": model_id})
            assert err.value.status == 400
            assert err.value.message == (f"model {model_id!r} is outside the server's model directories ({models}); "
                                         f"put it under one of them or start the server with --model-dir")
        assert "root:" not in json.dumps(session.components())
