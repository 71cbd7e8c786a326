"""A server's first and last minutes, with real copies: readiness follows the copies in service, and
SIGTERM / Ctrl-C drain the requests in flight before the copies stop, leaving no process behind."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
from helpers import free_port, server_process, wait_healthy

from shoal.sdk import Model, Predictor, ResourceRequirements, Session

LONG = {"inputs": "Once upon a time", "parameters": {"max_new_tokens": 96, "details": True}}


def _health(url: str) -> tuple[int, dict]:
    answer = httpx.get(f"{url}/health", timeout=5)
    return answer.status_code, answer.json()


def _until(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.1)


def test_health_is_ready_only_while_every_component_has_a_copy_in_service(tmp_path: Path) -> None:
    with server_process(tmp_path) as url:
        assert _health(url) == (200, {"status": "ready", "ready": 0, "total": 0, "components": []})
        assert httpx.get(f"{url}/live").text == "ok"
        session = Session(url)
        predictor = Model("gemma-3-270m", name="ready", session=session).deploy(
            "ready", resources=ResourceRequirements(requests={"copies": 1, "num_cpus": 1}), wait=False)
        status, body = _health(url)  # the copy is still loading: requests would get 503 now
        assert status == 503 and body["status"] == "unavailable"
        assert body["components"][0]["name"] == "ready" and body["components"][0]["copies_in_service"] == 0
        assert "no copy is in service" in body["components"][0]["reason"]
        _until(lambda: _health(url)[0] == 200)
        assert predictor.predict({"inputs": "Hi", "parameters": {"max_new_tokens": 2}})[0]["generated_text"]
        assert httpx.get(f"{url}/health", params={"component": "ready"}).json()["components"][0]["ready"]
        assert httpx.get(f"{url}/health", params={"component": "nope"}).status_code == 404
        predictor.update(copies=0)
        status, body = _health(url)
        assert status == 503 and body["components"][0]["copies_in_service"] == 0
        predictor.delete_inference_component()
        assert _health(url)[0] == 200


def _stream_in_background(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[threading.Thread,
                                                                                                 dict, threading.Event]:
    """A streamed generation in a thread; `started` is set once its first token arrived."""
    result: dict = {}
    started = threading.Event()

    def run() -> None:
        with httpx.Client(timeout=120) as client, client.stream("POST", f"{url}{path}", json=LONG,
                                                                headers=headers) as answer:
            result["status"] = answer.status_code
            events = []
            for line in answer.iter_lines():
                if line.startswith("data:"):
                    events.append(line)
                    started.set()
            result["events"] = events

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result, started


def _finished(events: list[str]) -> bool:
    """The stream ran to its end: the last event carries the whole text and why it finished."""
    last = json.loads(events[-1].removeprefix("data:"))
    return last["details"]["finish_reason"] in ("length", "eos_token") and bool(last["generated_text"])


def _copy_pids(url: str, component: str) -> list[int]:
    return [c["pid"] for c in Session(url).component(component)["copies"]]


def _gone(pids: list[int]) -> bool:
    return not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)


def test_sigterm_lets_a_request_in_flight_finish_then_stops_every_copy(tmp_path: Path) -> None:
    with server_process(tmp_path) as url:
        Model("gemma-3-270m", name="drain", session=Session(url)).deploy(
            "drain", resources=ResourceRequirements(requests={"copies": 2, "num_cpus": 1}))
        pids = _copy_pids(url, "drain")
        server = psutil.Process(pids[0]).parent()
        thread, result, started = _stream_in_background(url, "/generate_stream")
        assert started.wait(60), result
        server.send_signal(signal.SIGTERM)
        thread.join(120)
        assert result["status"] == 200 and _finished(result["events"])
        assert server.wait(60) == 0
        assert _gone(pids)


def test_serve_on_ctrl_c_finishes_the_stream_and_leaves_no_copy(tmp_path: Path) -> None:
    """`shoal serve` in a terminal: Ctrl-C sends SIGINT to its whole process group."""
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        serve = subprocess.Popen([sys.executable, "-m", "shoal.cli", "serve", "gemma-3-270m", "--copies", "2",
                                  "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                 env={**os.environ, "COLUMNS": "200"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, serve)
        _until(lambda: "copies in service" in log.read_text())
        pids = [c.pid for c in psutil.Process(serve.pid).children()]
        assert len(pids) == 2
        thread, result, started = _stream_in_background(url, "/generate_stream")
        assert started.wait(60), result
        os.killpg(serve.pid, signal.SIGINT)
        thread.join(120)
        assert result["status"] == 200 and _finished(result["events"])
        assert serve.wait(60) == 0, log.read_text()
        assert _gone(pids)
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)


def test_the_in_service_line_comes_only_once_a_request_succeeds(tmp_path: Path) -> None:
    """By the time `shoal serve` says its copies are in service, a request through the gateway works."""
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        serve = subprocess.Popen([sys.executable, "-m", "shoal.cli", "serve", "gemma-3-270m", "--copies", "1",
                                  "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                 env={**os.environ, "COLUMNS": "200"})
    try:
        _until(lambda: "copies in service" in log.read_text() or serve.poll() is not None, 120)
        answer = Predictor("default", "gemma-3-270m", Session(f"http://127.0.0.1:{port}")).predict(
            {"inputs": "Hello", "parameters": {"max_new_tokens": 3}})
        assert answer[0]["generated_text"]
    finally:
        serve.terminate()
        serve.wait(60)
