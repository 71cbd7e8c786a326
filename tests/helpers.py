"""Helpers for tests: real engine processes serving the real gemma-3-270m model on loopback."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import psutil

from shoal.runtime.local import free_port  # noqa: F401  (re-exported for the tests)


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120, path: str = "/health") -> None:
    """Until `url`+`path` answers 200 (an engine's /health: its model is loaded; a server's /live: it is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before it was healthy")
        try:
            if httpx.get(f"{url}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not healthy after {timeout}s")


@contextmanager
def shoal_process(command: str, args: list[str], log_dir: Path, env: dict[str, str] | None = None,
                  stop_timeout: float = 30, ready_path: str = "/health") -> Iterator[str]:
    """Run `shoal COMMAND --port PORT ARGS...` until the block ends; yields its base URL once healthy."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{command}-{port}.log").open("a") as log:
        proc = subprocess.Popen([sys.executable, "-m", "shoal.cli", command, "--port", str(port), *args],
                                env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, proc, path=ready_path)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()


def engine_process(tmp: Path, **env: str | int) -> AbstractContextManager[str]:
    """`shoal engine` with TGI env settings."""
    return shoal_process("engine", [], tmp, {k: str(v) for k, v in env.items()})


def server_process(state_dir: Path, *args: str, env: dict[str, str] | None = None) -> AbstractContextManager[str]:
    """`shoal server` with its state in `state_dir` (and `env` added to its environment)."""
    return shoal_process("server", ["--state-dir", str(state_dir), *args], state_dir, env, ready_path="/live")


def wait_for_component(session, name: str, ok, timeout: float = 90) -> dict:  # type: ignore[no-untyped-def]
    """Poll `describe` of component `name` until `ok(view)`; the view, or AssertionError with the last one."""
    deadline = time.monotonic() + timeout
    while True:
        view = session.component(name)
        if ok(view):
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} never got there: {view}")
        time.sleep(0.2)


def metric(url: str, name: str) -> float:
    """The value of an unlabelled Prometheus sample from `url`/metrics."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def copy_info(copy: dict) -> dict:
    """A copy's /info, asked as its gateway asks: with the copy's credential (from the copy's environment)."""
    token = psutil.Process(copy["pid"]).environ().get("SHOAL_COPY_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{copy['address']}/info", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def until_idle(url: str, timeout: float = 120) -> None:
    """Until the engine at `url` runs and queues no request: greedy answers compared with each other must not
    share a batch with another test's leftovers (a batch's shape can move a near-tie of the logits)."""
    deadline = time.monotonic() + timeout
    while (busy := metric(url, "tgi_batch_current_size") + metric(url, "tgi_queue_size")) > 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} still runs or queues {busy:g} requests after {timeout:g}s")
        time.sleep(0.2)


def labelled_metric(url: str, name: str) -> dict[str, float]:
    """Samples of a labelled Prometheus metric: {'a="x",b="y"': value}."""
    out = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1:].rsplit("} ", 1)
            out[labels] = float(value)
    return out


def greedy_logits(runner, prompts: list[str], steps: int = 8) -> list:  # type: ignore[no-untyped-def]
    """Decode `prompts` together, greedily (each prefilled alone first, so only decoding is batched);
    returns the first sequence's logits at every step."""
    import numpy as np

    from shoal.engine.runners.base import BatchItem

    seqs = list(range(len(prompts)))
    tokens = {s: runner.tokenize(p) for s, p in zip(seqs, prompts)}
    out = {s: [int(np.argmax(runner.step([BatchItem(s, tokens[s], 0)])[0]))] for s in seqs}
    rows = []
    for _ in range(steps):
        logits = runner.step([BatchItem(s, [out[s][-1]], len(tokens[s]) + len(out[s]) - 1) for s in seqs])
        rows.append(np.array(logits[0]))
        for s in seqs:
            out[s].append(int(np.argmax(logits[s])))
    for s in seqs:
        runner.release(s)
    return rows
