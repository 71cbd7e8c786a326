"""Sweeps: every load point (VUs or rates) for every configuration, deploying each configuration when asked."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from shoal.bench import timeline
from shoal.bench.loadgen import Record, Run, Workload, closed_loop, open_loop, scheduled_arrivals, scheduled_users
from shoal.bench.schedule import Schedule
from shoal.bench.stats import PointStats, Slo, summarize

_CONFIG_KEYS = {"copies", "cpus", "routing", "memory", "min_copies", "max_copies", "target_concurrency",
                "target_invocations", "scale_in_cooldown", "scale_out_cooldown"}


@dataclass
class Config:
    """A deployment to measure: `name:copies=2,cpus=1,routing=ROUND_ROBIN,env.MAX_BATCH_TOTAL_TOKENS=8192`;
    autoscaled with `max_copies=4,min_copies=0,target_concurrency=2,scale_in_cooldown=30` (and optionally
    target_invocations, scale_out_cooldown); `copies` is then where it starts."""

    name: str
    copies: int = 1
    cpus: float = 1.0
    memory: int = 1024
    routing: str = "LEAST_OUTSTANDING_REQUESTS"
    env: dict[str, str] = field(default_factory=dict)
    min_copies: int | None = None
    max_copies: int | None = None
    target_concurrency: float | None = None
    target_invocations: float | None = None
    scale_in_cooldown: int = 300
    scale_out_cooldown: int = 0

    @property
    def autoscaled(self) -> bool:
        return self.max_copies is not None

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
                kind = {"min_copies": int, "max_copies": int, "target_concurrency": float,
                        "target_invocations": float}.get(key) or type(getattr(config, key))
                setattr(config, key, kind(value))
            else:
                raise ValueError(f"unknown configuration key '{key}' (known: {sorted(_CONFIG_KEYS)}, env.NAME)")
        return config


@dataclass
class Load:
    vus: int | None = None
    rate: float | None = None
    poisson: bool = False
    schedule: Schedule | None = None  # users over time, or arrivals per second over time with `of_rate`
    of_rate: bool = False

    @property
    def label(self) -> str:
        if self.schedule is not None:
            return f"{'rate' if self.of_rate else 'vus'}~{self.schedule.text}"
        return f"vus={self.vus}" if self.vus is not None else f"rate={self.rate:g}/s"


async def run_point(workload: Workload, load: Load, duration_s: float, grace_s: float,
                    on_record: Callable[[Record], None]) -> Run:
    if load.schedule is not None:
        sched = load.schedule
        if load.of_rate:
            return await scheduled_arrivals(workload, sched.at, sched.duration, load.poisson, grace_s=grace_s,
                                            on_record=on_record)
        return await scheduled_users(workload, sched.at, int(sched.peak + 0.5), sched.duration, grace_s, on_record)
    if load.vus is not None:
        return await closed_loop(workload, load.vus, duration_s, grace_s, on_record)
    assert load.rate is not None
    return await open_loop(workload, load.rate, duration_s, load.poisson, grace_s=grace_s, on_record=on_record)


async def sweep(workload: Workload, config: str, loads: list[Load], duration_s: float, grace_s: float,
                slo: Slo | None, progress: Progress, copies_url: str | None = None) -> list[PointStats]:
    """Run each load point in turn, with a live line per point; `copies_url` (a shoal component's describe
    route) is polled during scheduled runs to record its copies over time."""
    return [await _point(workload, config, load, duration_s, grace_s, slo, progress, copies_url) for load in loads]


async def _point(workload: Workload, config: str, load: Load, duration_s: float, grace_s: float,
                 slo: Slo | None, progress: Progress, copies_url: str | None = None) -> PointStats:
    duration_s = load.schedule.duration if load.schedule else duration_s
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
    poller = timeline.CopyPoller(copies_url) if copies_url and load.schedule else None
    if poller:
        poller.start(time.monotonic())
    try:
        run = await run_point(workload, load, duration_s, grace_s, seen)
    finally:
        ticker.cancel()
        samples = await poller.stop() if poller else []
    progress.update(task, completed=duration_s)
    stats = summarize(run, config, load.label, slo)
    if load.schedule:
        stats.timeline = timeline.build(run, load.schedule, samples)
    if samples:
        stats.copy_seconds = timeline.copy_seconds(samples, run.duration_s)
        stats.mean_copies = stats.copy_seconds / run.duration_s
        stats.peak_copies = max(s.desired + s.draining for s in samples)
        cold = timeline.cold_start_requests(run, samples)
        stats.cold_starts = len(cold)
        stats.cold_start_ttfts_s = [r.ttft for r in cold if r.ok and r.ttft is not None]
        stats.cold_start_s = stats.cold_start_ttfts_s[0] if stats.cold_start_ttfts_s else None
    return stats


def progress_display() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[status]}"))
