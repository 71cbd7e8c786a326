"""Sweeps: every load point (VUs or rates) for every configuration, deploying each configuration when asked."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from shoal.bench.loadgen import Record, Run, Workload, closed_loop, open_loop
from shoal.bench.stats import PointStats, Slo, summarize

_CONFIG_KEYS = {"copies", "cpus", "routing", "memory"}


@dataclass
class Config:
    """A deployment to measure: `name:copies=2,cpus=1,routing=ROUND_ROBIN,env.MAX_BATCH_TOTAL_TOKENS=8192`."""

    name: str
    copies: int = 1
    cpus: float = 1.0
    memory: int = 1024
    routing: str = "LEAST_OUTSTANDING_REQUESTS"
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Config:
        name, _, settings = text.partition(":")
        config = cls(name=name.strip())
        for item in filter(None, (s.strip() for s in settings.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"expected key=value in '{item}'")
            if key.startswith("env."):
                config.env[key[4:]] = value
            elif key in _CONFIG_KEYS:
                setattr(config, key, type(getattr(config, key))(value))
            else:
                raise ValueError(f"unknown configuration key '{key}' (known: {sorted(_CONFIG_KEYS)}, env.NAME)")
        return config


@dataclass
class Load:
    vus: int | None = None
    rate: float | None = None
    poisson: bool = False

    @property
    def label(self) -> str:
        return f"vus={self.vus}" if self.vus is not None else f"rate={self.rate:g}/s"


async def run_point(workload: Workload, load: Load, duration_s: float, grace_s: float,
                    on_record: Callable[[Record], None]) -> Run:
    if load.vus is not None:
        return await closed_loop(workload, load.vus, duration_s, grace_s, on_record)
    assert load.rate is not None
    return await open_loop(workload, load.rate, duration_s, load.poisson, grace_s=grace_s, on_record=on_record)


async def sweep(workload: Workload, config: str, loads: list[Load], duration_s: float, grace_s: float,
                slo: Slo | None, progress: Progress) -> list[PointStats]:
    """Run each load point in turn, with a live line per point."""
    return [await _point(workload, config, load, duration_s, grace_s, slo, progress) for load in loads]


async def _point(workload: Workload, config: str, load: Load, duration_s: float, grace_s: float,
                 slo: Slo | None, progress: Progress) -> PointStats:
    task = progress.add_task(f"{config} {load.label}", total=duration_s, status="")
    counts = {"ok": 0, "err": 0}

    def seen(record: Record) -> None:
        counts["ok" if record.ok else "err"] += 1
        progress.update(task, status=f"{counts['ok']} ok, {counts['err']} failed")

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.5)
            progress.advance(task, 0.5)

    ticker = asyncio.create_task(tick())
    try:
        run = await run_point(workload, load, duration_s, grace_s, seen)
    finally:
        ticker.cancel()
    progress.update(task, completed=duration_s)
    return summarize(run, config, load.label, slo)


def progress_display() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[status]}"))
