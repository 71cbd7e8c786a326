"""LoRA adapters (docs/benchmarks.md, "LoRA adapters"): the four shipped adapters of gemma-3-270m
(shoal/models/adapters) as adapter inference components of one base, mixed traffic (each request names one of
the four, evenly, in a seeded order), 64-token prompts (all different), 32 new tokens, closed-loop users for
`--seconds` after `--warmup` seconds of the same load; each system deployed in turn on one shoal server, the
order rotated each of `--runs` repetitions; medians and same-run ratios.

1. routing:  2 copies of 1 core serving all four adapters, 16 users: LEAST_OUTSTANDING_REQUESTS vs
             ADAPTER_AFFINITY (each adapter's requests to the copies that hold it hot, within a load bound:
             the default, 8 and 16).
2. merged:   one copy per adapter of a model with that adapter merged into its weights (4 copies of 0.5
             core; `--merged-dir`, made by benchmarks/make_adapters.py --merged) vs the adapters on shoal's
             copies: 4 copies of 0.5 core (the same memory, about) and 2 copies of 1 core; plus the copies'
             resident memory (VmRSS) and the memory an adapter adds to a copy.
3. peer:     llama.cpp's server (engine `llama-server`, xllamacpp: the four adapters loaded at start, each
             request naming its own with `lora`) vs shoal's engine, both 2 copies of 1 core behind shoal's
             gateway with ADAPTER_AFFINITY.
4. per copy: one copy of 1 core, 8 users (what each copy of `routing` runs): one adapter, two mixed (what
             perfect affinity leaves a copy) and four mixed (what least-outstanding leaves it): routing's ceiling.
5. mixing:   one copy of 2 cores, 16 users: the base model alone, one adapter, and the four mixed (what
             one-adapter-per-step batching costs the engine).

    python benchmarks/adapters.py --runs 3 --seconds 40 --merged-dir /tmp/merged --out docs/results/adapters.json
"""
from __future__ import annotations

import asyncio
import json
import math
import random
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import free_port, labelled_metric, wait_healthy  # noqa: E402

from shoal.bench.loadgen import Workload, closed_loop  # noqa: E402
from shoal.bench.stats import summarize  # noqa: E402
from shoal.bench.workload import PromptMaker, Target  # noqa: E402
from shoal.hardware import describe_cpu  # noqa: E402
from shoal.models.registry import shipped_adapters  # noqa: E402
from shoal.sdk import Model, Predictor, ResourceRequirements, Session  # noqa: E402

console = Console(width=150)
MODEL = "gemma-3-270m"
USERS = 16
PROMPT_TOKENS = 64
NEW_TOKENS = 32
LIMITS = {"MAX_TOTAL_TOKENS": "512", "MAX_BATCH_TOTAL_TOKENS": "8192"}
ENDPOINT = "lora-bench"
BASE = "base"


@dataclass(frozen=True)
class System:
    name: str
    copies: int
    cpus: float
    asks: int = 4  # how many of the four adapters the requests name, evenly (0: none, the base model)
    engine: str = "shoal"
    routing: str = "LEAST_OUTSTANDING_REQUESTS"
    merged: bool = False  # one component per adapter, its model the merged GGUF
    bound: int | None = None  # ADAPTER_AFFINITY's load bound (SHOAL_ADAPTER_AFFINITY_BOUND), else its default

    @property
    def adapters(self) -> int:
        return 0 if self.merged or not self.asks else 4


@dataclass
class Experiment:
    name: str
    systems: list[System]
    users: int = USERS


def experiments(merged_dir: Path | None) -> list[Experiment]:
    affinity = "ADAPTER_AFFINITY"
    merged = [System("merged models, 4 x 0.5 core", 4, 0.5, merged=True)] if merged_dir else []
    return [
        Experiment("routing", [System("least outstanding", 2, 1), System("adapter affinity", 2, 1, routing=affinity),
                               System("affinity bound 8", 2, 1, routing=affinity, bound=8),
                               System("affinity bound 16", 2, 1, routing=affinity, bound=16)]),
        Experiment("merged", [*merged, System("adapters, 4 x 0.5 core", 4, 0.5, routing=affinity),
                              System("adapters, 2 x 1 core", 2, 1, routing=affinity)]),
        Experiment("peer", [System("shoal engine", 2, 1, routing=affinity),
                            System("llama-server", 2, 1, engine="llama-server", routing=affinity)]),
        Experiment("per copy", [System("one adapter", 1, 1, asks=1), System("two adapters mixed", 1, 1, asks=2),
                                System("four adapters mixed", 1, 1)], users=USERS // 2),
        Experiment("mixing", [System("base only", 1, 2, asks=0), System("one adapter", 1, 2, asks=1),
                              System("four adapters mixed", 1, 2)]),
    ]


@dataclass
class Mixed(Workload):
    """Each request names one of `components` (adapters, or merged models), in a seeded order."""

    components: list[str] = field(default_factory=list)

    def request(self, n: int) -> tuple[str, dict, bytes]:
        chosen = self.components[random.Random(n).randrange(len(self.components))]
        return replace(self.target, component=chosen).request(self.prompts[n % len(self.prompts)],
                                                              self.max_new_tokens, False, None)


def deploy(session: Session, system: System, merged_dir: Path | None) -> list[str]:
    """Deploy `system` on ENDPOINT; the components its requests name."""
    adapters = shipped_adapters()
    resources = ResourceRequirements(requests={"copies": system.copies, "num_cpus": system.cpus, "memory": 512})
    if system.merged:
        assert merged_dir is not None
        names = []
        for i, name in enumerate(adapters):
            path = merged_dir / f"{name}-merged.gguf"
            Model(str(path), env=LIMITS, name=f"merged-{i}", session=session).deploy(
                ENDPOINT, resources=ResourceRequirements(requests={"copies": 1, "num_cpus": system.cpus,
                                                                   "memory": 512}), routing_strategy=system.routing)
            names.append(f"merged-{i}")
        return names
    env = {**LIMITS, **({"SHOAL_ADAPTER_AFFINITY_BOUND": str(system.bound)} if system.bound is not None else {})}
    Model(MODEL, env=env, name=BASE, session=session, engine=system.engine).deploy(
        ENDPOINT, resources=resources, routing_strategy=system.routing)
    if not system.asks:
        return [BASE]
    names = [f"lora-{i}" for i in range(len(adapters))]
    for name, adapter in zip(names, adapters):
        Model(adapter, name=name, adapter_of=BASE, session=session).deploy(ENDPOINT)
    return names[:system.asks]


def rss_mb(session: Session, components: list[str]) -> list[float]:
    """Resident memory of each copy (MB), from /proc."""
    out = []
    for name in {BASE} | set(components):
        try:
            copies = session.component(name)["copies"]
        except Exception:  # an adapter component has no copies of its own
            continue
        for copy in copies:
            status = Path(f"/proc/{copy['pid']}/status").read_text()
            out.append(int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024)
    return out


def switches(url: str) -> float:
    """Adapter switches of the base's copies so far, from the server's one scrape (each copy's engine metrics,
    labelled with its component)."""
    return sum(value for labels, value in labelled_metric(url, "shoal_lora_adapter_switches_total").items()
               if f'component="{BASE}"' in labels)


def measure(url: str, system: System, prompts: list[str], seconds: float, warmup: float, users: int,
            merged_dir: Path | None) -> dict:
    session = Session(url)
    components = deploy(session, system, merged_dir)
    try:
        target = Target("shoal", url, ENDPOINT)
        half = len(prompts) // 2
        asyncio.run(closed_loop(Mixed(target, prompts[half:], NEW_TOKENS, components=components), users, warmup))
        before = switches(url) if system.engine == "shoal" and not system.merged else None
        run = asyncio.run(closed_loop(Mixed(target, prompts[:half], NEW_TOKENS, components=components), users,
                                      seconds))
        row = summarize(run, system.name, f"vus={users}").row()
        row["rss_mb"] = rss_mb(session, components)
        if before is not None:
            row["switches_per_request"] = (switches(url) - before) / max(row["requests"], 1)
        return row
    finally:
        Predictor(ENDPOINT, None, session).delete_endpoint(cascade=True)  # waits until its copies are gone


def main(runs: int = 3, seconds: float = 40.0, warmup: float = 10.0, only: str = "routing,peer,per copy,mixing,merged",
         merged_dir: Path | None = typer.Option(None, help="Where the merged GGUFs are (make_adapters.py --merged)"),
         out: Path = Path("docs/results/adapters.json")) -> None:
    maker = PromptMaker(MODEL)
    prompts = [maker.make(PROMPT_TOKENS, 1 + i) for i in range(400)]
    chosen = [e for name in only.split(",") for e in experiments(merged_dir) if e.name == name]  # in that order
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    results: dict[str, dict[str, list[dict]]] = {e.name: {s.name: [] for s in e.systems} for e in chosen}
    model_dirs = ["--model-dir", str(merged_dir)] if merged_dir else []
    with tempfile.TemporaryDirectory(prefix="shoal-adapter-bench-") as state:
        server = subprocess.Popen([sys.executable, "-m", "shoal.cli", "server", "--port", str(port), "--state-dir",
                                   state, "--log-level", "warning", *model_dirs])
        try:
            wait_healthy(url, server, path="/live")
            with Progress(console=console) as progress:
                task = progress.add_task("adapter benchmark", total=runs * sum(len(e.systems) for e in chosen))
                for rep in range(runs):
                    for experiment in chosen:
                        k = rep % len(experiment.systems)
                        for system in experiment.systems[k:] + experiment.systems[:k]:
                            progress.update(task, description=f"run {rep + 1}: {experiment.name} / {system.name}")
                            results[experiment.name][system.name].append(
                                measure(url, system, prompts, seconds, warmup, experiment.users, merged_dir))
                            progress.advance(task)
                            out.parent.mkdir(parents=True, exist_ok=True)  # the samples so far, whatever follows
                            out.write_text(json.dumps({"samples": results}, indent=2))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
    summary = summarize_all(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "seconds": seconds, "warmup": warmup, "users": USERS,
                               "prompt_tokens": PROMPT_TOKENS, "new_tokens": NEW_TOKENS, "cpu": describe_cpu(),
                               "adapters": list(shipped_adapters()), "summary": summary, "samples": results},
                              indent=2))
    show(summary)
    console.print(f"wrote {out}")


def _median(values: Iterable[float | None]) -> float | None:
    """The median of the values a run had (a run that answered nothing has no latency)."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize_all(results: dict[str, dict[str, list[dict]]]) -> dict[str, dict[str, dict]]:
    """Medians per system, each system's req/s relative to the first of its experiment (run by run), and
    memory: the median copy's RSS."""
    summary: dict[str, dict[str, dict]] = {}
    for experiment, by_system in results.items():
        first = next(iter(by_system.values()))
        summary[experiment] = {}
        for name, rows in by_system.items():
            rss = [statistics.median(r["rss_mb"]) for r in rows if r["rss_mb"]]
            summary[experiment][name] = {
                "req_per_s": statistics.median(r["req_per_s"] for r in rows),
                "req_per_s_vs_first": statistics.median(r["req_per_s"] / f["req_per_s"] if f["req_per_s"] else math.nan
                                                        for r, f in zip(rows, first)),
                "tokens_per_s": statistics.median(r["output_tokens_per_s"] for r in rows),
                "latency_p50_s": _median(r["latency_p50_s"] for r in rows),
                "latency_p99_s": _median(r["latency_p99_s"] for r in rows),
                "ttft_p50_s": _median(r["ttft_p50_s"] for r in rows),
                "success_pct": min(r["success_pct"] for r in rows),
                "copy_rss_mb": statistics.median(rss) if rss else None,
                "total_rss_mb": statistics.median(sum(r["rss_mb"]) for r in rows) if rss else None,
                "switches_per_request": statistics.median(s) if (s := [r["switches_per_request"] for r in rows
                                                                       if "switches_per_request" in r]) else None,
            }
    if "mixing" in summary:  # what four adapters add to a copy's memory, each, as a share of the copy
        base, mixed = summary["mixing"]["base only"]["copy_rss_mb"], summary["mixing"]["four adapters mixed"][
            "copy_rss_mb"]
        if base and mixed:
            summary["mixing"]["four adapters mixed"]["rss_per_adapter_pct"] = 100 * (mixed - base) / 4 / base
    return summary


def _seconds(value: float | None, scale: float = 1.0, unit: str = "s", digits: int = 2) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f} {unit}"


def show(summary: dict[str, dict[str, dict]]) -> None:
    table = Table(title=f"LoRA adapters: {USERS} users, {PROMPT_TOKENS}-token prompts, {NEW_TOKENS} new tokens, "
                        f"medians")
    for col in ("experiment", "system", "req/s", "vs first", "tokens/s", "TTFT p50", "latency p50", "latency p99",
                "success", "copy RSS", "all copies", "switches/req"):
        table.add_column(col, justify="right")
    for experiment, by_system in summary.items():
        for name, s in by_system.items():
            rss, total, sw = s["copy_rss_mb"], s["total_rss_mb"], s["switches_per_request"]
            table.add_row(experiment, name, f"{s['req_per_s']:.2f}", f"{s['req_per_s_vs_first']:.2f}x",
                          f"{s['tokens_per_s']:.0f}", _seconds(s["ttft_p50_s"], 1000, "ms", 0),
                          _seconds(s["latency_p50_s"]), _seconds(s["latency_p99_s"]), f"{s['success_pct']:.0f}%",
                          "-" if rss is None else f"{rss:.0f} MB", "-" if total is None else f"{total:.0f} MB",
                          "-" if sw is None else f"{sw:.1f}")
    console.print(table)
    mixed = summary.get("mixing", {}).get("four adapters mixed", {})
    if "rss_per_adapter_pct" in mixed:
        console.print(f"memory per adapter: {mixed['rss_per_adapter_pct']:.2f}% of a copy's RSS")


if __name__ == "__main__":
    typer.run(main)
