"""Endpoints, components and copies with real engine processes on the real model."""
from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from helpers import copy_info, server_process

from shoal.sdk import Model, Predictor, ResourceRequirements, Session, ShoalApiError

BODY = {"inputs": "The capital of France is", "parameters": {"max_new_tokens": 4}}


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shoal-state")


@pytest.fixture(scope="module")
def server(state_dir: Path) -> Iterator[str]:
    with server_process(state_dir) as url:
        yield url


def _pids(session: Session, name: str) -> list[int]:
    return [c["pid"] for c in session.component(name)["copies"]]


def test_two_copies_one_core_each_with_affinity_and_env(server: str, state_dir: Path) -> None:
    session = Session(server)
    resources = ResourceRequirements(requests={"copies": 2, "num_cpus": 1, "memory": 1024})
    predictor = Model("gemma-3-270m", env={"MAX_TOTAL_TOKENS": "512", "HF_TOKEN": "hf_secret"}, name="pinned",
                      session=session).deploy("affinity", "local", resources=resources)
    try:
        view = predictor.describe()
        assert view["status"] == "InService"
        cores = []
        for copy in view["copies"]:
            proc = psutil.Process(copy["pid"])
            assert proc.cpu_affinity() == list(copy["slot"]["cores"])
            env = proc.environ()
            assert env["SHOAL_NUM_THREADS"] == "1" and env["CUDA_VISIBLE_DEVICES"] == ""
            assert env["HF_MODEL_ID"] == "gemma-3-270m" and env["MAX_TOTAL_TOKENS"] == "512"
            assert copy_info(copy)["max_total_tokens"] == 512
            cores += copy["slot"]["cores"]
        assert sorted(cores) == [0, 1]
        assert predictor.predict(BODY)[0]["generated_text"]
        described = httpx.get(f"{server}/api/inference-components/pinned").json()
        assert described["spec"]["env"]["HF_TOKEN"] == "***"
        logs = "".join(p.read_text() for p in state_dir.rglob("*.log"))
        assert "hf_secret" not in logs
    finally:
        predictor.delete_inference_component()
        predictor.delete_endpoint()


def test_scale_with_requests_flowing(server: str) -> None:
    session = Session(server)
    resources = ResourceRequirements(requests={"copies": 2, "num_cpus": 0.5, "memory": 512})
    predictor = Model("gemma-3-270m", name="scaled", session=session).deploy("scaling", resources=resources)
    codes: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                r = client.post(f"{server}/endpoints/scaling/invocations", json=BODY,
                                headers={"X-Amzn-SageMaker-Inference-Component": "scaled"})
                codes.append(r.status_code)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        assert len(predictor.update(copies=3)["copies"]) == 3
        time.sleep(1)
        view = predictor.update(copies=1)
        assert len(view["copies"]) == 1 and view["status"] == "InService"
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join()
        predictor.delete_inference_component()
        predictor.delete_endpoint()
    assert codes and set(codes) == {200}, f"{len(codes)} requests, codes {set(codes)}"


def test_env_update_replaces_copies_one_at_a_time(server: str) -> None:
    session = Session(server)
    predictor = Model("gemma-3-270m", env={"MAX_TOTAL_TOKENS": "512"}, name="rolling", session=session).deploy(
        "rolling", resources=ResourceRequirements(requests={"copies": 2, "num_cpus": 0.5, "memory": 512}))
    try:
        before = _pids(session, "rolling")
        view = predictor.update(env={"MAX_TOTAL_TOKENS": "768"})
        assert view["status"] == "InService" and set(_pids(session, "rolling")).isdisjoint(before)
        for copy in view["copies"]:
            assert copy_info(copy)["max_total_tokens"] == 768
        assert predictor.predict(BODY)[0]["generated_text"]
    finally:
        predictor.delete_endpoint(cascade=True)


def test_killed_copy_comes_back(server: str) -> None:
    session = Session(server)
    predictor = Model("gemma-3-270m", name="phoenix", session=session).deploy(
        "crash", resources=ResourceRequirements(requests={"copies": 1, "num_cpus": 1}))
    try:
        old = _pids(session, "phoenix")[0]
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            copy = session.component("phoenix")["copies"][0]
            if copy["restarts"] == 1 and copy["status"] == "InService":
                break
            time.sleep(0.2)
        assert copy["restarts"] == 1 and copy["status"] == "InService" and copy["pid"] != old
        assert predictor.predict(BODY)[0]["generated_text"]
    finally:
        predictor.delete_endpoint(cascade=True)


def test_copy_over_its_memory_limit_is_restarted_and_reported(server: str) -> None:
    session = Session(server)
    resources = ResourceRequirements(requests={"copies": 1, "num_cpus": 1, "memory": 100}, limits={"memory": 150})
    Model("gemma-3-270m", name="hungry", session=session).deploy("memory", resources=resources, wait=False)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            copy = session.component("hungry")["copies"][0]
            if copy["restarts"] >= 1:
                break
            time.sleep(0.2)
        assert copy["restarts"] >= 1 and "over MaxMemoryRequiredInMb=150" in copy["reason"]
    finally:
        Predictor("memory", session=session).delete_endpoint(cascade=True)


def test_startup_timeout_marks_failed(server: str) -> None:
    session = Session(server)
    with pytest.raises(Exception, match="failed: .*ContainerStartupHealthCheckTimeoutInSeconds=1"):
        Model("gemma-3-270m", name="slow", env={"MAX_BATCH_TOTAL_TOKENS": "262144", "MAX_TOTAL_TOKENS": "4096"},
              session=session).deploy("timeout", resources=ResourceRequirements(requests={"copies": 1}),
                                      container_startup_health_check_timeout=1)
    view = session.component("slow")
    assert view["status"] == "Failed" and view["copies"][0]["status"] == "Failed"
    assert session.endpoint("timeout")["status"] == "Failed"
    Predictor("timeout", session=session).delete_endpoint(cascade=True)


def test_bad_requests_are_clear_4xx(server: str) -> None:
    session = Session(server)

    def error(method: str, path: str, body: dict | None = None) -> ShoalApiError:
        with pytest.raises(ShoalApiError) as exc:
            session.call(method, path, body)
        return exc.value

    e = error("POST", "/api/endpoints", {"EndpointName": "x", "InstanceType": "ml.nope"})
    assert e.status == 400 and "unknown instance type 'ml.nope'" in e.message
    e = error("POST", "/api/endpoints", {"EndpointName": "bad_name!"})
    assert e.status == 400 and "String should match pattern" in e.message
    e = error("POST", "/api/endpoints", {"EndpointName": "neg", "InitialInstanceCount": -1})
    assert e.status == 400
    session.call("POST", "/api/endpoints", {"EndpointName": "small"})
    e = error("POST", "/api/endpoints", {"EndpointName": "small"})
    assert e.status == 409
    e = error("POST", "/api/inference-components", {"InferenceComponentName": "big", "EndpointName": "small",
                                                    "ModelId": "gemma-3-270m", "CopyCount": 5,
                                                    "ComputeResourceRequirements": {"NumberOfCpuCoresRequired": 1}})
    assert e.status == 400 and "copy 3 of big does not fit" in e.message and "CPU core" in e.message
    e = error("POST", "/api/inference-components", {"InferenceComponentName": "neg", "EndpointName": "small",
                                                    "ModelId": "gemma-3-270m", "CopyCount": -2})
    assert e.status == 400 and "CopyCount" in e.message
    e = error("POST", "/api/inference-components", {"InferenceComponentName": "orphan", "EndpointName": "nope",
                                                    "ModelId": "gemma-3-270m"})
    assert e.status == 404
    e = error("GET", "/api/inference-components/ghost")
    assert e.status == 404
    e = error("POST", "/api/endpoints", None)
    assert e.status == 400
    session.call("POST", "/api/inference-components", {"InferenceComponentName": "idle", "EndpointName": "small",
                                                       "ModelId": "gemma-3-270m", "CopyCount": 0})
    e = error("DELETE", "/api/endpoints/small")
    assert e.status == 409 and "idle" in e.message
    session.call("DELETE", "/api/endpoints/small?cascade=true")
    assert "small" not in [ep["spec"]["name"] for ep in session.endpoints()]


def test_restarting_the_server_brings_the_copies_back(tmp_path: Path) -> None:
    with server_process(tmp_path) as url:
        Model("gemma-3-270m", name="durable", session=Session(url)).deploy(
            "durable", resources=ResourceRequirements(requests={"copies": 2, "num_cpus": 1}))
        before = _pids(Session(url), "durable")
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in before)
    with server_process(tmp_path) as url:
        predictor = Predictor("durable", "durable", Session(url))
        view = predictor.wait(timeout_s=60)
        assert len(view["copies"]) == 2 and set(_pids(Session(url), "durable")).isdisjoint(before)
        assert predictor.predict(BODY)[0]["generated_text"]
