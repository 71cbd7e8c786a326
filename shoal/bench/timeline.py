"""A run against a load schedule, second by second: the load asked for, requests in flight, latency, and
the component's copies (polled from the shoal server's describe every second while the run lasts)."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import numpy as np

from shoal.bench.loadgen import Run
from shoal.bench.schedule import Schedule


@dataclass(frozen=True)
class CopySample:
    t: float  # seconds since the run started
    desired: int
    current: int  # in service
    draining: int


class CopyPoller:
    """Polls `GET /api/inference-components/{name}` every `interval_s` until stopped; silent when the target
    has no such route (not a shoal server)."""

    def __init__(self, url: str, interval_s: float = 1.0) -> None:
        self.url = url
        self.interval_s = interval_s
        self.samples: list[CopySample] = []
        self._task: asyncio.Task | None = None

    def start(self, started: float) -> None:
        self._task = asyncio.create_task(self._poll(started))

    async def stop(self) -> list[CopySample]:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return self.samples

    async def _poll(self, started: float) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            while True:
                try:
                    async with session.get(self.url) as response:
                        if response.status != 200:
                            return
                        view = await response.json()
                    self.samples.append(CopySample(time.monotonic() - started, view.get("desired_copies", 0),
                                                   view.get("current_copies", 0), view.get("draining_copies", 0)))
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                    pass
                await asyncio.sleep(self.interval_s)


def copies_at(samples: list[CopySample], t: float) -> CopySample | None:
    """The last sample taken at or before `t`."""
    before = [s for s in samples if s.t <= t]
    return before[-1] if before else None


def copy_seconds(samples: list[CopySample], until: float) -> float:
    """∫ (desired + draining) dt from the first sample to `until`, holding each sample until the next."""
    total = 0.0
    for a, b in zip(samples, [*samples[1:], None]):
        end = min(b.t if b else until, until)
        if end > a.t:
            total += (a.desired + a.draining) * (end - a.t)
    return total


def zero_spells(samples: list[CopySample], until: float) -> list[tuple[float, float]]:
    """The spans with no copy in service, as polled ([start, end) in seconds; the first from the run's start)."""
    spells: list[tuple[float, float]] = []
    start: float | None = None
    for i, s in enumerate(samples):
        if s.current == 0 and start is None:
            start = 0.0 if i == 0 else s.t
        elif s.current > 0 and start is not None:
            spells.append((start, s.t))
            start = None
    if start is not None:
        spells.append((start, until))
    return spells


def cold_start_requests(run: Run, samples: list[CopySample]) -> list:  # type: ignore[type-arg]
    """The first request of each spell with no copy in service, oldest first: the request that found zero
    copies and had to wait for one to start (polling is once a second, so later requests of the same
    spell may have found the copy already serving; they are not counted)."""
    out = []
    records = sorted(run.records, key=lambda r: r.start)
    for a, b in zero_spells(samples, run.elapsed_s):
        first = next((r for r in records if a <= r.start - run.started < b), None)
        if first is not None:
            out.append(first)
    return out


def build(run: Run, schedule: Schedule, samples: list[CopySample], bucket_s: float = 1.0) -> list[dict]:
    """One row per `bucket_s`: load asked for, requests started / in flight / failed, median latency of those
    started in the bucket, and the copies."""
    rows = []
    n = int(np.ceil(max(run.elapsed_s, schedule.duration) / bucket_s))
    for i in range(n):
        lo, hi = i * bucket_s, (i + 1) * bucket_s
        started = [r for r in run.records if lo <= r.start - run.started < hi]
        mid = run.started + lo + bucket_s / 2
        copies = copies_at(samples, lo + bucket_s / 2)
        latencies = [r.latency for r in started if r.ok]
        rows.append({"t": lo, "load": round(schedule.at(lo + bucket_s / 2), 3),
                     "in_flight": sum(r.start <= mid < r.end for r in run.records),
                     "started": len(started), "failed": sum(not r.ok for r in started),
                     "latency_p50_s": float(np.median(latencies)) if latencies else None,
                     "desired": copies.desired if copies else None, "current": copies.current if copies else None,
                     "draining": copies.draining if copies else None})
    return rows
