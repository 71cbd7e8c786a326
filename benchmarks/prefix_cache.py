"""Prefix caching and cache-aware routing (docs/benchmarks.md, "Prefix caching"): four workloads, each
system deployed in turn on one shoal server (local runtime, loopback), closed-loop virtual users for
`--seconds` after `--warmup` seconds of the same load, the order of the systems rotated each of `--runs`
repetitions; medians and same-run ratios; for shoal's engine also the share of prompt tokens the copies'
caches supplied (their Prometheus counters over the measured window).

1. seed:    one 256-token prompt repeated, 32 new tokens, 8 users, one copy on 2 cores: cache on vs off.
2. shared:  8 system prompts of ~200 tokens, each followed by distinct ~30-token questions, 8 users,
            2 copies of 1 core: LEAST_OUTSTANDING_REQUESTS vs PREFIX_AFFINITY (cache-aware) with load bound
            1 (the default) and 3, cache on.
   shared-small: the same with 1536 cache cells per copy: room for the system prompts of 4 of the 8 (an
            entry holds its prompt and answer: 263 cells for a system prompt's first question, 71 for
            each next one), so the 8 fit in the two copies' caches together, not in one.
   hot:     workload 1's one prompt on 2 copies of 1 core: the load bound keeps one hot prefix off one copy.
3. unique:  every prompt different (256 tokens), as 1: what the cache costs when it never hits.
4. peer:    workload 1 on llama.cpp's own server (engine `llama-server`, xllamacpp, prompt cache on).

    python benchmarks/prefix_cache.py --runs 2 --seconds 40 --out docs/results/prefix_cache.json
"""
from __future__ import annotations

import asyncio
import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import free_port, labelled_metric, metric, wait_healthy  # noqa: E402

from shoal.bench.loadgen import Workload, closed_loop  # noqa: E402
from shoal.bench.stats import summarize  # noqa: E402
from shoal.bench.workload import PromptMaker, Target  # noqa: E402
from shoal.hardware import describe_cpu  # noqa: E402
from shoal.sdk import Model, ResourceRequirements, Session  # noqa: E402

console = Console(width=140)
MODEL = "gemma-3-270m"
USERS = 8
NEW_TOKENS = 32
# Room for 8 users of 512 tokens each; llama-server gets 16 slots of 512 tokens from the same two numbers.
LIMITS = {"MAX_TOTAL_TOKENS": "512", "MAX_BATCH_TOTAL_TOKENS": "8192"}
SHOAL_LIMITS = {**LIMITS, "MAX_INPUT_LENGTH": "480"}


@dataclass(frozen=True)
class System:
    name: str
    copies: int
    cpus: float
    env: dict[str, str] = field(default_factory=dict)
    engine: str = "shoal"
    routing: str = "LEAST_OUTSTANDING_REQUESTS"


@dataclass
class Experiment:
    name: str
    prompts: list[str]
    systems: list[System]


def experiments(maker: PromptMaker) -> list[Experiment]:
    on, off = {**SHOAL_LIMITS}, {**SHOAL_LIMITS, "SHOAL_PREFIX_CACHE": "false"}
    small = {**SHOAL_LIMITS, "SHOAL_PREFIX_CACHE_TOKENS": "1536"}
    seed_prompt = [maker.make(256)]
    system_prompts = [maker.make(200, v) for v in range(1, 9)]
    shared = [f"{system}\nQuestion: {maker.make(30, 100 * v + i)}"
              for v, system in enumerate(system_prompts, 1) for i in range(48)]
    random.Random(0).shuffle(shared)
    unique = [maker.make(256, 1000 + i) for i in range(400)]
    return [
        Experiment("seed", seed_prompt, [System("cache on", 1, 2, on), System("cache off", 1, 2, off),
                                         System("llama-server", 1, 2, LIMITS, engine="llama-server")]),
        Experiment("shared", shared, routing_systems(on)),
        Experiment("shared-small", shared, routing_systems(small)),
        Experiment("hot", seed_prompt, routing_systems(on)),
        Experiment("unique", unique, [System("cache on", 1, 2, on), System("cache off", 1, 2, off)]),
    ]


def routing_systems(env: dict[str, str]) -> list[System]:
    """2 copies of 1 core: least-outstanding routing, then cache-aware with load bound 1 (the default) and 3
    (the component's own SHOAL_PREFIX_AFFINITY_BOUND)."""
    aware = "PREFIX_AFFINITY"
    return [System("least outstanding", 2, 1, env), System("cache-aware", 2, 1, env, routing=aware),
            System("cache-aware, bound 3", 2, 1, {**env, "SHOAL_PREFIX_AFFINITY_BOUND": "3"}, routing=aware)]


# Engine counters summed over a system's copies after its run (shoal's engine only).
ENGINE_COUNTERS = {"shoal_prefix_cache_prompt_tokens_total": "prompt_tokens",
                   "shoal_prefix_cache_cached_tokens_total": "cached_tokens",
                   "shoal_prefix_cache_lookups_total": "lookups", "shoal_prefix_cache_hits_total": "hits",
                   "shoal_prefix_cache_window_misses_total": "window_misses",
                   "shoal_prefix_cache_evictions_total": "evictions",
                   "tgi_request_queue_duration_sum": "queue_s", "tgi_request_queue_duration_count": "queued"}


def engine_counters(session: Session, component: str) -> dict[str, float]:
    """ENGINE_COUNTERS summed over the component's copies: where the prompt tokens came from."""
    addresses = [c["address"] for c in session.component(component)["copies"] if c.get("address")]
    return {key: sum(metric(a, name) for a in addresses) for name, key in ENGINE_COUNTERS.items()}


def spilled(url: str, component: str) -> float:
    """Requests cache-aware routing sent past the copy holding their prefix (the load bound), so far."""
    return labelled_metric(url, "shoal_gateway_prefix_affinity_spills_total").get(f'component="{component}"', 0.0)


def measure(url: str, system: System, prompts: list[str], seconds: float, warmup: float) -> dict:
    """One system's steady state: `warmup` seconds of the same load (on the other half of the prompts, so
    the measured requests are not repeats of it) fill the caches, then `seconds` are measured."""
    session = Session(url)
    model = Model(MODEL, env=system.env, name="bench", session=session, engine=system.engine)
    resources = ResourceRequirements(requests={"copies": system.copies, "num_cpus": system.cpus, "memory": 512})
    predictor = model.deploy("prefix-bench", resources=resources, routing_strategy=system.routing)
    try:
        target = Target("shoal", url, "prefix-bench", predictor.component_name)
        half = len(prompts) // 2
        asyncio.run(closed_loop(Workload(target, prompts[half:] + prompts[:half], NEW_TOKENS), USERS, warmup))
        before = engine_counters(session, predictor.component_name) if system.engine == "shoal" else {}
        spills = spilled(url, predictor.component_name)
        run = asyncio.run(closed_loop(Workload(target, prompts, NEW_TOKENS), USERS, seconds))
        row = summarize(run, system.name, f"vus={USERS}").row()
        row["spilled"] = spilled(url, predictor.component_name) - spills
        if before:
            after = engine_counters(session, predictor.component_name)
            row["engine"] = {k: after[k] - before[k] for k in after}
        return row
    finally:
        predictor.delete_endpoint(True)  # waits until its copies are gone


def main(runs: int = 3, seconds: float = 40.0, warmup: float = 15.0,
         only: str = "seed,shared,shared-small,hot,unique",
         out: Path = Path("docs/results/prefix_cache.json")) -> None:
    maker = PromptMaker(MODEL)
    chosen = [e for e in experiments(maker) if e.name in only.split(",")]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    results: dict[str, dict[str, list[dict]]] = {e.name: {s.name: [] for s in e.systems} for e in chosen}
    with tempfile.TemporaryDirectory(prefix="shoal-prefix-bench-") as state:
        server = subprocess.Popen([sys.executable, "-m", "shoal.cli", "server", "--port", str(port),
                                   "--state-dir", state, "--log-level", "warning"])
        try:
            wait_healthy(url, server)
            total = runs * sum(len(e.systems) for e in chosen)
            with Progress(console=console) as progress:
                task = progress.add_task("prefix cache benchmark", total=total)
                for rep in range(runs):
                    for experiment in chosen:
                        k = rep % len(experiment.systems)
                        for system in experiment.systems[k:] + experiment.systems[:k]:
                            progress.update(task, description=f"run {rep + 1}: {experiment.name} / {system.name}")
                            row = measure(url, system, experiment.prompts, seconds, warmup)
                            results[experiment.name][system.name].append(row)
                            progress.advance(task)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
    summary = summarize_all(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "seconds": seconds, "warmup": warmup, "users": USERS,
                               "new_tokens": NEW_TOKENS, "cpu": describe_cpu(), "summary": summary,
                               "samples": results}, indent=2))
    show(summary)
    console.print(f"wrote {out}")


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows if r[key] is not None)


def summarize_all(results: dict[str, dict[str, list[dict]]]) -> dict[str, dict[str, dict]]:
    """Medians per system, and each system's req/s relative to the first system of its run, run by run."""
    summary: dict[str, dict[str, dict]] = {}
    for experiment, by_system in results.items():
        first = next(iter(by_system.values()))
        summary[experiment] = {}
        for name, rows in by_system.items():
            shares = [max(r["copy_share"].values()) for r in rows if r["copy_share"]]
            summary[experiment][name] = {
                "req_per_s": _median(rows, "req_per_s"), "ttft_p50_s": _median(rows, "ttft_p50_s"),
                "latency_p50_s": _median(rows, "latency_p50_s"), "latency_p99_s": _median(rows, "latency_p99_s"),
                "success_pct": min(r["success_pct"] for r in rows),
                "tokens_per_s": _median(rows, "output_tokens_per_s"),
                "busiest_copy_share": statistics.median(shares) if shares else None,
                "cached_pct": _cached_pct(rows),
                "spilled_pct": statistics.median(100 * r.get("spilled", 0) / max(r["requests"], 1) for r in rows),
                "req_per_s_vs_first": statistics.median(r["req_per_s"] / f["req_per_s"] for r, f in zip(rows, first)),
                "ttft_vs_first": statistics.median(r["ttft_p50_s"] / f["ttft_p50_s"] for r, f in zip(rows, first)),
            }
    return summary


def _cached_pct(rows: list[dict]) -> float | None:
    """Median share of prompt tokens that came from the copies' caches (shoal's engine only)."""
    shares = [100 * r["engine"]["cached_tokens"] / r["engine"]["prompt_tokens"]
              for r in rows if r.get("engine") and r["engine"]["prompt_tokens"]]
    return statistics.median(shares) if shares else None


def show(summary: dict[str, dict[str, dict]]) -> None:
    table = Table(title=f"Prefix caching: {USERS} users, {NEW_TOKENS} new tokens, medians")
    for col in ("workload", "system", "req/s", "vs first", "TTFT p50", "TTFT vs first", "latency p50",
                "latency p99", "success", "busiest copy", "cached", "spilled"):
        table.add_column(col, justify="right")
    for experiment, by_system in summary.items():
        for name, s in by_system.items():
            share, cached = s["busiest_copy_share"], s["cached_pct"]
            table.add_row(experiment, name, f"{s['req_per_s']:.2f}", f"{s['req_per_s_vs_first']:.2f}x",
                          f"{s['ttft_p50_s'] * 1000:.0f} ms", f"{s['ttft_vs_first']:.0%}",
                          f"{s['latency_p50_s']:.2f} s", f"{s['latency_p99_s']:.2f} s", f"{s['success_pct']:.0f}%",
                          "-" if share is None else f"{share:.0%}", "-" if cached is None else f"{cached:.0f}%",
                          f"{s['spilled_pct']:.0f}%" if s["spilled_pct"] else "-")
    console.print(table)


if __name__ == "__main__":
    typer.run(main)
