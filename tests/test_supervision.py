"""Copies that fail: crash loops, startup failures, hung or dead copies, first-byte timeouts, and what
the server refuses at deploy. Real engines where a real engine can be made to fail on demand; the
stand-in in faulty_engine.py where it cannot (tests say so in their names)."""
from __future__ import annotations

import json
import os
import signal
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
from helpers import free_port, server_process, wait_for_component

from shoal.errors import ShoalError
from shoal.sdk import Model, ResourceRequirements, Session, ShoalApiError

FAULTY = f"{sys.executable} {Path(__file__).parent / 'faulty_engine.py'} --host {{host}} --port {{port}}"
ONE_CORE = ResourceRequirements(requests={"copies": 1, "num_cpus": 1, "memory": 512})
BODY = {"inputs": "The capital of France is", "parameters": {"max_new_tokens": 4}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Quick probes and a low crash limit, so failures show in seconds."""
    with server_process(tmp_path_factory.mktemp("supervision"), "--allow-command-engine", "--probe-interval", "0.5",
                        "--model-dir", str(tmp_path_factory.getbasetemp()),
                        "--probe-timeout", "1", "--probe-failures", "2", "--crash-limit", "3",
                        "--first-byte-timeout", "3") as url:
        yield url


def _serving(view: dict) -> bool:
    return view["copies"][0]["status"] == "InService"


def test_a_copy_that_keeps_crashing_ends_failed_with_a_reason_to_act_on(server: str) -> None:
    session = Session(server)
    predictor = Model("gemma-3-270m", name="crashy", session=session).deploy("crashy", resources=ONE_CORE)
    try:
        for _ in range(3):  # a real engine, killed the way llama.cpp's AMX path kills it
            pid = wait_for_component(session, "crashy", _serving)["copies"][0]["pid"]
            os.kill(pid, signal.SIGSEGV)
            wait_for_component(session, "crashy",
                               lambda v, pid=pid: v["copies"][0]["pid"] != pid or v["status"] == "Failed")
        view = wait_for_component(session, "crashy", lambda v: v["status"] == "Failed")
        reason = view["reason"]
        assert "crashy-0: restarted 3 times" in reason
        assert "killed by signal 11 (SIGSEGV: Segmentation fault)" in reason
        assert "Last lines of its log" in reason and "crashy-0.log" in reason
        assert view["copies"][0]["status"] == "Failed"
        time.sleep(2)
        assert session.component("crashy")["copies"][0]["pid"] == view["copies"][0]["pid"]  # no more restarts
    finally:
        predictor.delete_endpoint(cascade=True)


def test_an_engine_that_fails_at_startup_says_why(server: str, tmp_path: Path) -> None:
    broken = tmp_path / "truncated.gguf"  # a GGUF header and nothing after it: llama.cpp cannot load it
    broken.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 32)
    with pytest.raises(ShoalError) as err:
        Model(str(broken), name="broken", session=Session(server)).deploy("broken", resources=ONE_CORE)
    message = str(err.value)
    assert "broken-0: engine exited with code 2 during startup" in message
    assert f"llama.cpp could not load {broken}" in message  # the engine's own words, from its log
    Session(server).call("DELETE", "/api/endpoints/broken?cascade=true")


def test_deploy_refuses_at_once_what_cannot_work(server: str, tmp_path: Path) -> None:
    session = Session(server)
    (tmp_path / "notes.gguf").write_text("not weights")
    session.call("POST", "/api/endpoints", {"EndpointName": "refusals"})
    spec = {"InferenceComponentName": "bad", "EndpointName": "refusals", "ModelId": "gemma-3-270m"}
    cases = [
        ({"ModelId": str(tmp_path / "notes.gguf")}, "is not a GGUF file"),
        ({"ModelId": "/etc/hostname"}, "'/etc/hostname' is outside the server's model directories"),
        ({"ModelId": "no-such-model"}, "is not on this machine"),
        ({"Engine": "nope"}, "unknown engine 'nope'; known: shoal, llama-server, vllm, sglang, tgi, command"),
        ({"Engine": "llama-server", "Environment": {"MAX_INPUT_LENGTH": "512"}},
         "engine llama-server cannot honour MAX_INPUT_LENGTH"),
        ({"Environment": {"MAX_INPUT_LENGTH": "512", "MAX_TOTAL_TOKENS": "512"}},
         "MAX_INPUT_LENGTH must be < MAX_TOTAL_TOKENS. Given: 512 and 512"),
        ({"Environment": {"SM_NUM_GPUS": "2"}}, "SM_NUM_GPUS=2 but each copy has 0 accelerator(s)"),
        ({"Environment": {"HF_MODEL_QUANTIZE": "gptq"}}, "a GGUF model is quantized when the file is made"),
        ({"Engine": "vllm", "ModelId": "meta-llama/Llama-2-13b-chat-hf",
          "Environment": {"HF_MODEL_QUANTIZE": "eetq"}}, "HF_MODEL_QUANTIZE=eetq has no equivalent in vllm"),
    ]
    try:
        for change, expected in cases:
            with pytest.raises(ShoalApiError) as err:
                session.call("POST", "/api/inference-components", {**spec, **change})
            assert err.value.status == 400 and expected in err.value.message, (change, err.value.message)
        assert session.components("refusals") == []
    finally:
        session.call("DELETE", "/api/endpoints/refusals")


def test_command_engine_is_off_unless_the_server_allows_it(tmp_path: Path) -> None:
    with server_process(tmp_path) as url:
        with pytest.raises(ShoalApiError, match="--allow-command-engine") as err:
            Model("x", name="cmd", session=Session(url), engine="command", engine_command=FAULTY).deploy(
                "cmd", resources=ONE_CORE)
        assert err.value.status == 400


def _fault(session: Session, name: str, **fault: str) -> dict:
    copy = session.component(name)["copies"][0]
    httpx.post(f"{copy['address']}/fault", json=fault, timeout=5)
    return copy


@pytest.mark.parametrize("fault", ["hang", "dead"])
def test_stand_in_copy_that_hangs_or_whose_model_loop_died_is_taken_out_and_restarted(server: str, fault: str) -> None:
    session = Session(server)
    name = f"sick-{fault}"
    predictor = Model("stand-in", name=name, session=session, engine="command", engine_command=FAULTY).deploy(
        name, resources=ONE_CORE)
    try:
        before = _fault(session, name, health=fault)
        view = wait_for_component(session, name, lambda v: v["copies"][0]["restarts"] == 1 and _serving(v), timeout=30)
        assert view["copies"][0]["pid"] != before["pid"]
        assert predictor.predict(BODY)[0]["generated_text"] == "stand-in answer"
    finally:
        predictor.delete_endpoint(cascade=True)


def test_stand_in_copy_that_never_answers_hits_the_first_byte_timeout_in_every_front_door(server: str) -> None:
    session = Session(server)
    predictor = Model("stand-in", name="mute", session=session, engine="command", engine_command=FAULTY).deploy(
        "mute", resources=ONE_CORE)
    try:
        _fault(session, "mute", answer="never")
        runtime = boto3.client("sagemaker-runtime", endpoint_url=server, region_name="us-east-1",
                               aws_access_key_id="test", aws_secret_access_key="test",
                               config=botocore.config.Config(retries={"max_attempts": 0}))
        started = time.monotonic()
        with pytest.raises(runtime.exceptions.ModelError, match="timed out while waiting for a response"):
            runtime.invoke_endpoint(EndpointName="mute", ContentType="application/json", Body=json.dumps(BODY))
        assert time.monotonic() - started < 10
        tgi = httpx.post(f"{server}/generate", json=BODY, timeout=30)  # the only component: TGI's default
        assert tgi.status_code == 504 and tgi.json()["error_type"] == "timeout"
        assert "first-byte timeout of 3s" in tgi.json()["error"]
        client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.APIStatusError) as err:
            client.completions.create(model="mute", prompt="x", max_tokens=2)
        assert err.value.status_code == 504 and "first-byte timeout" in err.value.message
        assert session.component("mute")["copies"][0]["status"] == "InService"  # slow, not sick: it stays
    finally:
        predictor.delete_endpoint(cascade=True)


def test_warm_up_decodes_before_health_says_200(tmp_path: Path) -> None:
    """The engine answers /health 503 until its model thread has decoded once."""
    port = free_port()
    log = tmp_path / "engine.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "shoal.cli", "engine", "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        answers: list[tuple[int, bool]] = []  # (status, warm-up logged by then)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (answers and answers[-1][0] == 200):
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code
                answers.append((status, "warm-up decode done" in log.read_text()))
            except httpx.HTTPError:
                time.sleep(0.01)
        assert answers and answers[-1] == (200, True)
        assert all(status == 503 for status, _ in answers[:-1])
    finally:
        proc.terminate()
        proc.wait(30)
