"""Gateway overhead: req/s and added latency through shoal's gateway vs calling the copy directly,
with Ray Serve's HTTP proxy in front of the same upstream as the peer.

The copy is trivial (a fixed JSON answer, a component with engine `command`, started by shoal's local runtime),
so the numbers are the proxies' own cost. Load comes from
k6 (`constant-vus`: each virtual user sends its next request as soon as the last one returns) at 1
and 32 virtual users. The targets are measured in rotating order, `--runs` times; medians.
`--baseline-rev REV` also runs the gateway of an earlier commit (a git worktree of REV, its own copy)
in the same rotation: a change's before and after in one run. `--traced` also runs two gateways that trace
(`--otlp-endpoint`, exporting to a sink in this script that answers 200): every request, and one in ten
(`--trace-sample-ratio 0.1`): tracing's cost.

    python benchmarks/gateway.py main --runs 3 --seconds 10 --out docs/results/gateway.json
    python benchmarks/gateway.py main --no-ray-peer --baseline-rev 5a42acb --out results/gateway-before-after.json
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer
from aiohttp import web
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import free_port, wait_healthy  # noqa: E402

from shoal.sdk import Model, ResourceRequirements, Session  # noqa: E402

console = Console()
app = typer.Typer(add_completion=False)
ANSWER = b'[{"generated_text": "ok"}]'
BODY = '{"inputs": "Hello", "parameters": {"max_new_tokens": 1}}'
K6_SCRIPT = """
import http from 'k6/http';
const params = {headers: {'Content-Type': 'application/json',
                          'X-Amzn-SageMaker-Inference-Component': 'trivial'}};
export default function () { http.post(__ENV.URL, __ENV.BODY, params); }
"""


# -- the copy: a TGI-shaped server that answers at once ------------------------------------------
@app.command()
def upstream(host: str = "127.0.0.1", port: int = 0) -> None:
    """Started by shoal's local runtime as a `command` engine, like any engine."""
    async def answer(_request: web.Request) -> web.Response:
        return web.Response(body=ANSWER, content_type="application/json")

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    server = web.Application()
    server.router.add_post("/invocations", answer)
    server.router.add_post("/v1/traces", answer)  # as an OTLP sink (--traced): takes the spans, reads nothing
    server.router.add_get("/health", health)
    web.run_app(server, host=host, port=port, access_log=None, print=None)


# -- the measurement ------------------------------------------------------------------------------
def _k6(url: str, vus: int, seconds: int, script: Path, out: Path) -> dict[str, float]:
    k6 = shutil.which("k6") or str(Path(sys.executable).parent / "k6")
    subprocess.run([k6, "run", "--quiet", "--vus", str(vus), "--duration", f"{seconds}s",
                    "--summary-trend-stats", "med,p(99)", "--summary-export", str(out),
                    "-e", f"URL={url}", "-e", f"BODY={BODY}", str(script)],
                   check=True, capture_output=True)
    m = json.loads(out.read_text())["metrics"]
    failed = m.get("http_req_failed", {}).get("value", 0)
    return {"rps": m["http_reqs"]["rate"], "p50_ms": m["http_req_duration"]["med"],
            "p99_ms": m["http_req_duration"]["p(99)"], "failed": failed}


def _start_ray_serve(upstream_url: str, port: int) -> None:
    import aiohttp
    import ray
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import Response

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})

    @serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)  # default 5 would queue
    class Forward:
        def __init__(self, target: str) -> None:
            self.target = target
            self.session: aiohttp.ClientSession | None = None

        async def __call__(self, request: Request) -> Response:
            if self.session is None:
                self.session = aiohttp.ClientSession()
            async with self.session.post(self.target, data=await request.body(),
                                         headers={"Content-Type": "application/json"}) as r:
                return Response(await r.read(), media_type="application/json")

    serve.run(Forward.bind(f"{upstream_url}/invocations"), route_prefix="/")


def _gateway(tmp: Path, name: str, pythonpath: Path | None = None,
             args: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str, str]:
    """A shoal server (the code in `pythonpath`, else this checkout's) with the trivial copy deployed: the
    process, its SageMaker invocation URL and the copy's URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **({"PYTHONPATH": str(pythonpath)} if pythonpath else {})}
    proc = subprocess.Popen([sys.executable, "-m", "shoal.cli", "server", "--port", str(port),
                             "--state-dir", str(tmp / f"state-{name}"), "--log-level", "warning",
                             "--allow-command-engine", *args], env=env,
                            stdout=(tmp / f"{name}.log").open("w"), stderr=subprocess.STDOUT)
    wait_healthy(url, proc, path="/openapi.json")
    command = f"{sys.executable} {Path(__file__).resolve()} upstream --host {{host}} --port {{port}}"
    predictor = Model("trivial", name="trivial", session=Session(url), engine="command",
                      engine_command=command).deploy(
        "bench", resources=ResourceRequirements(requests={"copies": 1, "num_cpus": 2, "memory": 64}))
    return proc, f"{url}/endpoints/bench/invocations", predictor.describe()["copies"][0]["address"]


def _worktree(rev: str, tmp: Path) -> Path:
    where = tmp / f"shoal-{rev}"
    root = Path(__file__).resolve().parent.parent
    subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(where), rev], check=True,
                   capture_output=True)
    return where


@app.command()
def main(runs: int = 3, seconds: int = 10, out: Path = Path("docs/results/gateway.json"),
         ray_peer: bool = True, baseline_rev: Optional[str] = None, traced: bool = False) -> None:
    ray_port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="shoal-gw-bench-"))
    script = tmp / "load.js"
    script.write_text(K6_SCRIPT)
    gateway, gw_target, up_url = _gateway(tmp, "shoal")
    processes = [gateway]
    targets = {"direct": f"{up_url}/invocations", "shoal": gw_target}
    if baseline_rev:
        before, before_target, _ = _gateway(tmp, "baseline", _worktree(baseline_rev, tmp))
        processes.append(before)
        targets[f"shoal@{baseline_rev}"] = before_target
    if traced:
        sink_port = free_port()
        processes.append(subprocess.Popen([sys.executable, __file__, "upstream", "--port", str(sink_port)]))
        for label, ratio in (("shoal traced", "1"), ("shoal traced 1/10", "0.1")):
            tracing, tracing_target, _ = _gateway(tmp, label.replace(" ", "-").replace("/", "of"), args=(
                "--otlp-endpoint", f"http://127.0.0.1:{sink_port}/v1/traces", "--trace-sample-ratio", ratio))
            processes.append(tracing)
            targets[label] = tracing_target
    if ray_peer:
        _start_ray_serve(up_url, ray_port)
        targets["ray_serve"] = f"http://127.0.0.1:{ray_port}/"
    results: dict[str, dict[int, list[dict[str, float]]]] = {t: {1: [], 32: []} for t in targets}
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("gateway benchmark", total=runs * 2 * len(targets))
            for rep in range(runs):
                names = list(targets)
                names = names[rep % len(names):] + names[:rep % len(names)]
                for vus in (1, 32):
                    for name in names:
                        results[name][vus].append(_k6(targets[name], vus, seconds, script, tmp / "k6.json"))
                        progress.advance(task)
    finally:
        for proc in processes:
            proc.terminate()
            proc.wait(60)
        if ray_peer:
            import ray
            ray.shutdown()
        if baseline_rev:
            subprocess.run(["git", "worktree", "remove", "--force", str(tmp / f"shoal-{baseline_rev}")],
                           cwd=Path(__file__).resolve().parent.parent, capture_output=True)
    report(results, runs, seconds, out)


def report(results: dict[str, dict[int, list[dict[str, float]]]], runs: int, seconds: int, out: Path) -> None:
    med = {name: {vus: {k: statistics.median(s[k] for s in samples) for k in samples[0]}
                  for vus, samples in per.items()} for name, per in results.items()}
    table = Table(title=f"Trivial upstream, k6 constant-vus {seconds}s, median of {runs}")
    for col in ("target", "VUs", "req/s", "p50 ms", "p99 ms", "added p50 ms", "failed"):
        table.add_column(col, justify="right")
    for name, per in med.items():
        for vus, m in per.items():
            added = m["p50_ms"] - med["direct"][vus]["p50_ms"]
            table.add_row(name, str(vus), f"{m['rps']:.0f}", f"{m['p50_ms']:.2f}", f"{m['p99_ms']:.2f}",
                          "-" if name == "direct" else f"{added:+.2f}", f"{m['failed']:.1%}")
    console.print(table)
    for other in (name for name in med if name not in ("direct", "shoal")):
        console.print(f"shoal / {other} req/s: " + ", ".join(
            f"{vus} VUs {med['shoal'][vus]['rps'] / med[other][vus]['rps']:.2f}x" for vus in (1, 32)))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "seconds": seconds, "samples": results, "median": med}, indent=2))


if __name__ == "__main__":
    app()
