"""Slow clients: does `shoal server` keep answering others while hundreds of connections trickle their
headers or bodies, and does it let go of them (and their memory)?

On loopback, bounded: a server with a trivial copy (engine `command`, as benchmarks/gateway.py's), then
`--slow` connections (half trickle a request head a byte at a time, half send a head announcing a 1 MB body
and trickle it) held open while a well-behaved client sends requests one after another, timed; the server's
RSS before, while held, and after the slow connections were closed by its idle and body timeouts.

    python benchmarks/slowloris.py --slow 500 --out results/slowloris.json
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import typer
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import free_port, wait_healthy  # noqa: E402

from shoal.sdk import Model, ResourceRequirements, Session  # noqa: E402

console = Console()
UPSTREAM = Path(__file__).resolve().parent / "gateway.py"
BODY = {"inputs": "Hello", "parameters": {"max_new_tokens": 1}}


async def _trickle(host: str, port: int, at_once: bytes, slowly: bytes, every_s: float, closed: list[float],
                   started: float) -> None:
    """One slow client: `at_once`, then `slowly` a byte every `every_s`, until the server closes the connection
    or answers."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        closed.append(-1.0)
        return
    try:
        writer.write(at_once)
        for byte in slowly:
            writer.write(bytes([byte]))
            await writer.drain()
            if reader.at_eof():
                break
            try:
                if await asyncio.wait_for(reader.read(4096), every_s) == b"":
                    break  # the server closed it
            except asyncio.TimeoutError:
                continue
            break  # it answered (408): it is done with us
    except (ConnectionError, OSError):
        pass
    finally:
        closed.append(time.monotonic() - started)
        writer.close()


async def _timed_requests(url: str, seconds: float) -> list[float]:
    """A well-behaved client: one request after another for `seconds`; each one's latency in ms."""
    latencies = []
    headers = {"X-Amzn-SageMaker-Inference-Component": "trivial"}
    async with httpx.AsyncClient(timeout=30) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            answer = await client.post(f"{url}/endpoints/bench/invocations", json=BODY, headers=headers)
            answer.raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def _stats(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {"requests": len(ordered), "p50_ms": statistics.median(ordered),
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], "max_ms": ordered[-1]}


async def _run(url: str, server: psutil.Process, slow: int, idle_s: float) -> dict:
    host, port = url.removeprefix("http://").split(":")
    result: dict = {"before": _stats(await _timed_requests(url, 5)), "rss_before_mb": server.memory_info().rss / 2**20}
    head = b"POST /endpoints/bench/invocations HTTP/1.1\r\nHost: x\r\nX-Amzn-SageMaker-Inference-Component: trivial\r\n"
    slow_body_head = head + b"Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n"
    closed: list[float] = []
    started = time.monotonic()
    clients = [asyncio.create_task(_trickle(host, int(port), b"" if i % 2 else slow_body_head,
                                            head if i % 2 else b"x" * 1048576, 0.5, closed, started))
               for i in range(slow)]  # odd ones trickle their head, even ones their body
    await asyncio.sleep(1)
    held = await _timed_requests(url, max(2.0, idle_s - 2))
    result["while_held"] = _stats(held)
    result["connections_while_held"] = len(server.net_connections())
    result["rss_while_held_mb"] = server.memory_info().rss / 2**20
    await asyncio.wait(clients, timeout=4 * idle_s + 30)
    result["closed"] = len([c for c in closed if c >= 0])
    result["closed_after_s"] = statistics.median([c for c in closed if c >= 0]) if closed else None
    await asyncio.sleep(2)
    result["connections_after"] = len(server.net_connections())
    result["rss_after_mb"] = server.memory_info().rss / 2**20
    result["after"] = _stats(await _timed_requests(url, 5))
    return result


def main(slow: int = 500, idle_timeout: float = 5.0, body_timeout: float = 5.0,
         out: Path = Path("results/slowloris.json")) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    tmp = Path(tempfile.mkdtemp(prefix="shoal-slowloris-"))
    proc = subprocess.Popen([sys.executable, "-m", "shoal.cli", "server", "--port", str(port), "--state-dir",
                             str(tmp / "state"), "--log-level", "warning", "--allow-command-engine", "--idle-timeout",
                             str(idle_timeout), "--body-timeout", str(body_timeout)],
                            stdout=(tmp / "server.log").open("w"), stderr=subprocess.STDOUT)
    try:
        wait_healthy(url, proc, path="/live")
        command = f"{sys.executable} {UPSTREAM} upstream --host {{host}} --port {{port}}"
        Model("trivial", name="trivial", session=Session(url), engine="command", engine_command=command).deploy(
            "bench", resources=ResourceRequirements(requests={"copies": 1, "num_cpus": 1, "memory": 64}))
        result = asyncio.run(_run(url, psutil.Process(proc.pid), slow, max(idle_timeout, body_timeout)))
    finally:
        proc.terminate()
        proc.wait(60)
    result.update({"slow": slow, "idle_timeout_s": idle_timeout, "body_timeout_s": body_timeout,
                   "cpu_count": os.cpu_count()})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    table = Table(title=f"{slow} slow connections (idle timeout {idle_timeout:g}s, body timeout {body_timeout:g}s)")
    for col in ("phase", "requests", "p50 ms", "p99 ms", "max ms", "server RSS MB", "connections"):
        table.add_column(col, justify="right")
    for phase, rss, conns in (("before", "rss_before_mb", None), ("while_held", "rss_while_held_mb",
                                                                  "connections_while_held"),
                              ("after", "rss_after_mb", "connections_after")):
        s = result[phase]
        table.add_row(phase.replace("_", " "), str(s["requests"]), f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}",
                      f"{s['max_ms']:.2f}", f"{result[rss]:.0f}", str(result[conns]) if conns else "-")
    console.print(table)
    console.print(f"the server closed {result['closed']} of {slow} slow connections (median after "
                  f"{result['closed_after_s']:.1f}s)")


if __name__ == "__main__":
    typer.run(main)
