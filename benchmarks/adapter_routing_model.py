"""A model of adapter-aware routing (docs/benchmarks.md, "LoRA adapters"): shoal's own routers and the
engine's own group rule on simulated time, so load bounds and traffic mixes that would take hours to
measure take seconds, and the measured ones check the model.

Each copy is one engine: a step runs one adapter group (llama.cpp applies an adapter to the whole context),
chosen by the engine's `Turns`; a step costs `fixed + per_sequence x sequences + per_prompt_token x prompt
tokens`, plus `switch` when its adapter differs from the last step's (llama.cpp re-plans its graph): the
runner's costs as `benchmarks/adapter_step_cost.py` measured them (`--step-cost`, its results file). Closed-loop
users send one request after another (64-token prompt, 32 new tokens), each naming an adapter drawn from
the scenario's traffic shares; the gateway's routers (`LeastOutstanding`, `AdapterAffinity`) choose the
copy, as in the gateway. A model, not a measurement: its ratios are checked against the measured ones
(`benchmarks/adapters.py`) in the same table.

    python benchmarks/adapter_routing_model.py --out docs/results/adapter_routing_model.json
"""
from __future__ import annotations

import json
import random
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from shoal.engine.lora import Turns  # noqa: E402
from shoal.gateway.pool import Backend  # noqa: E402
from shoal.gateway.routing.adapter_affinity import AdapterAffinity  # noqa: E402
from shoal.gateway.routing.base import Pick, Router  # noqa: E402
from shoal.gateway.routing.least_outstanding import LeastOutstanding  # noqa: E402

console = Console(width=150)
PROMPT_TOKENS, NEW_TOKENS = 64, 32


@dataclass(frozen=True)
class StepCost:
    fixed_s: float
    per_sequence_s: float
    per_prompt_token_s: float
    switch_s: float

    @classmethod
    def measured(cls, path: Path) -> StepCost:
        """The costs benchmarks/adapter_step_cost.py wrote to `path`."""
        data = json.loads(path.read_text())
        return cls(data["fixed_s"], data["per_sequence_s"], data["per_prompt_token_s"], data["switch_s"])

    def of(self, sequences: int, prompt_tokens: int, switched: bool) -> float:
        return (self.fixed_s + self.per_sequence_s * sequences + self.per_prompt_token_s * prompt_tokens
                + self.switch_s * switched)


@dataclass(frozen=True)
class Ask:
    """A request as a router reads it."""

    adapter: str
    prefix_key: bytes | None = None


@dataclass(eq=False)
class Request:
    user: int
    adapter: str
    pick: Pick[Backend]
    started: float
    left: int = NEW_TOKENS
    prefilled: bool = False


@dataclass(eq=False)
class Copy:
    """One engine: its running requests, when its current step ends, and the adapter its last step ran."""

    backend: Backend
    running: list[Request] = field(default_factory=list)
    free_at: float = 0.0
    turns: Turns[str] = field(default_factory=Turns)
    active: str | None = None
    switches: int = 0

    def step(self, cost: StepCost) -> list[Request]:
        """Run one step from `free_at` (one adapter group); the requests it finished."""
        groups: dict[str, list[Request]] = {}
        for request in self.running:
            groups.setdefault(request.adapter, []).append(request)
        adapter = self.turns.choose({a: len(g) for a, g in groups.items()})
        self.turns.ran(adapter)
        group, switched = groups[adapter], adapter != self.active
        self.switches += switched
        self.active = adapter
        self.free_at += cost.of(len(group), PROMPT_TOKENS * sum(not r.prefilled for r in group), switched)
        for request in group:
            request.prefilled, request.left = True, request.left - 1
        done = [r for r in group if r.left == 0]
        self.running = [r for r in self.running if r.left > 0]
        return done


@dataclass(frozen=True)
class Scenario:
    name: str
    copies: int
    users: int
    shares: tuple[float, ...]  # each adapter's share of the requests


def simulate(scenario: Scenario, router: Callable[[Callable[[], float]], Router], cost: StepCost, seconds: float,
             seed: int) -> dict[str, float]:
    """Requests/s, adapter switches per request and p99 latency of one closed-loop run."""
    rng = random.Random(seed)
    now = 0.0
    chooser = router(lambda: now)
    copies = [Copy(Backend(f"copy-{i}", "simulated")) for i in range(scenario.copies)]
    by_backend = {id(c.backend): c for c in copies}
    adapters = [f"adapter-{i}" for i in range(len(scenario.shares))]
    latencies: list[float] = []

    def send(user: int) -> None:
        adapter = rng.choices(adapters, weights=scenario.shares)[0]
        pick = chooser.choose(Ask(adapter), [c.backend for c in copies])
        chooser.sent(pick)
        pick.copy.in_flight += 1
        copy = by_backend[id(pick.copy)]
        copy.free_at = max(copy.free_at, now)
        copy.running.append(Request(user, adapter, pick, now))

    for user in range(scenario.users):
        send(user)
    while (copy := min((c for c in copies if c.running), key=lambda c: c.free_at)).free_at < seconds:
        for request in copy.step(cost):
            now = copy.free_at
            copy.backend.in_flight -= 1
            chooser.done(request.pick)
            latencies.append(now - request.started)
            send(request.user)
    return {"req_per_s": len(latencies) / seconds,
            "switches_per_request": sum(c.switches for c in copies) / max(len(latencies), 1),
            "latency_p99_s": statistics.quantiles(latencies, n=100)[98]}


def least_outstanding(_clock: Callable[[], float]) -> Router:
    return LeastOutstanding()


def affinity(bound: int) -> Callable[[Callable[[], float]], Router]:
    return lambda clock: AdapterAffinity(bound, clock=clock)


ROUTERS = {"least outstanding": least_outstanding, "affinity bound 4": affinity(4), "affinity bound 6": affinity(6),
           "affinity bound 8": affinity(8), "affinity bound 16": affinity(16)}
EVEN4 = (1.0, 1.0, 1.0, 1.0)
SCENARIOS = [
    Scenario("4 adapters even, 2 copies, 16 users (the benchmark's)", 2, 16, EVEN4),
    Scenario("one adapter, 2 copies, 16 users", 2, 16, (1.0,)),
    Scenario("4 adapters 70/10/10/10, 2 copies, 16 users", 2, 16, (7.0, 1.0, 1.0, 1.0)),
    Scenario("8 adapters even, 2 copies, 16 users", 2, 16, (1.0,) * 8),
    Scenario("4 adapters even, 4 copies, 32 users", 4, 32, EVEN4),
]
PER_COPY = [Scenario(f"one copy, 8 users, {n} adapter{'s' * (n > 1)} mixed", 1, 8, (1.0,) * n) for n in (1, 2, 4)]
# benchmarks/adapters.py, 2026-12-07 (docs/results/adapters_per_copy.json, adapters_routing.json): vs the first row
MEASURED_PER_COPY = {PER_COPY[1].name: 0.88, PER_COPY[2].name: 0.67}
MEASURED_ROUTING = {"affinity bound 4": 1.06, "affinity bound 8": 1.10, "affinity bound 16": 1.06}  # SCENARIOS[0]


def mean_run(scenario: Scenario, router: Callable[[Callable[[], float]], Router], cost: StepCost, seconds: float,
             seeds: int) -> dict[str, float]:
    runs = [simulate(scenario, router, cost, seconds, seed) for seed in range(seeds)]
    return {key: statistics.mean(r[key] for r in runs) for key in runs[0]}


def main(seconds: float = 600.0, seeds: int = 4, step_cost: Path = Path("docs/results/adapter_step_cost.json"),
         out: Path = Path("docs/results/adapter_routing_model.json")) -> None:
    cost = StepCost.measured(step_cost)
    per_copy = {s.name: mean_run(s, least_outstanding, cost, seconds, seeds) for s in PER_COPY}
    routing = {s.name: {name: mean_run(s, router, cost, seconds, seeds) for name, router in ROUTERS.items()}
               for s in SCENARIOS}
    show(per_copy, routing)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"step_cost": asdict(cost), "seconds": seconds, "seeds": seeds,
                               "per_copy": per_copy, "routing": routing}, indent=2))
    console.print(f"wrote {out}")


def show(per_copy: dict[str, dict[str, float]], routing: dict[str, dict[str, dict[str, float]]]) -> None:
    first = next(iter(per_copy.values()))["req_per_s"]
    table = Table(title="The model's ceiling: one copy (req/s vs one adapter; measured in brackets)")
    for col in ("scenario", "req/s", "vs one adapter", "switches/req"):
        table.add_column(col, justify="right")
    for name, r in per_copy.items():
        measured = f" ({MEASURED_PER_COPY[name]:.2f}x)" if name in MEASURED_PER_COPY else ""
        table.add_row(name, f"{r['req_per_s']:.2f}", f"{r['req_per_s'] / first:.2f}x{measured}",
                      f"{r['switches_per_request']:.1f}")
    console.print(table)
    table = Table(title="Routing in the model: req/s vs least outstanding (p99 latency; measured in brackets)")
    table.add_column("scenario")
    for name in ROUTERS:
        table.add_column(name, justify="right")
    for scenario, by_router in routing.items():
        base = by_router["least outstanding"]["req_per_s"]
        cells = []
        for name, r in by_router.items():
            measured = f" ({MEASURED_ROUTING[name]:.2f}x)" if scenario == SCENARIOS[0].name and name in \
                MEASURED_ROUTING else ""
            ratio = f"{r['req_per_s']:.2f} req/s" if name == "least outstanding" else f"{r['req_per_s'] / base:.2f}x"
            cells.append(f"{ratio}{measured} ({r['latency_p99_s']:.1f} s)")
        table.add_row(scenario, *cells)
    console.print(table)


if __name__ == "__main__":
    typer.run(main)
