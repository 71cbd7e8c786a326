"""The console's load history: every `interval_s` (2 s) one sample of every component and copy, kept in a
bounded ring (15 minutes), so a page that opens has the recent past at once and the browser never scrapes.

What one sample costs: the gateway's own counters (a pool's requests, queue and in-flight counts, the
request-duration and first-byte histograms, the per-copy request counter) are read where they are, in
memory: the gateway's hot path is unchanged. A copy's engine figures (tokens/s, prefix-cache hits, its
own queue, batch and request durations) come from its /metrics, one small GET per copy per sample, and
only while a console is open (a page asked for state or history in the last `watch_s` seconds); CPU from
the copy's process times on the local runtime. Rates and percentiles are over the last `window_s` seconds.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psutil

from shoal.control.controller import Controller
from shoal.control.models import CopyStatus
from shoal.control.state import Replica
from shoal.gateway import metrics
from shoal.runtime.local import LocalCopy
from shoal.webconsole.figures import Buckets, bucket_delta, engine_figures, merged, quantile, rate, ratio, rounded

log = logging.getLogger(__name__)
INTERVAL_S = 2.0
KEEP_S = 15 * 60.0
WINDOW_S = 10.0
WATCH_S = 10.0
SCRAPE_TIMEOUT_S = 1.0


@dataclass
class _Component:
    invocations: int
    errors: int
    latency: Buckets | None
    ttft: Buckets | None


@dataclass
class _Copy:
    component: str
    served: float | None
    cpu_s: float | None
    engine: dict[str, float] = field(default_factory=dict)
    latency: Buckets | None = None


@dataclass
class _Reading:
    """Cumulative counters at one moment (kept only for the window: samples carry what they give)."""

    at: float  # monotonic
    components: dict[str, _Component]
    copies: dict[str, _Copy]


def _histograms(metric: Any) -> dict[str, Buckets]:
    """A gateway histogram's buckets per component, read in memory."""
    out: dict[str, list[tuple[float, float]]] = {}
    for family in metric.collect():
        for s in family.samples:
            if s.name.endswith("_bucket"):
                out.setdefault(s.labels["component"], []).append((float(s.labels["le"]), s.value))
    return {component: tuple(sorted(b)) for component, b in out.items()}


def _served() -> dict[tuple[str, str], float]:
    return {(s.labels["component"], s.labels["copy"]): s.value for family in metrics.SERVED.collect()
            for s in family.samples if s.name.endswith("_total")}


class LoadHistory:
    def __init__(self, controller: Controller, interval_s: float = INTERVAL_S, keep_s: float = KEEP_S,
                 window_s: float = WINDOW_S, watch_s: float = WATCH_S) -> None:
        self.c = controller
        self.interval_s = interval_s
        self.window_s = window_s
        self.watch_s = watch_s
        self.samples: deque[dict[str, Any]] = deque(maxlen=max(2, int(keep_s / interval_s)))
        self._readings: deque[_Reading] = deque(maxlen=int(window_s / interval_s) + 2)
        self._watched_until = 0.0
        self._processes: dict[int, psutil.Process] = {}
        self._http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task | None = None

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S))
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._http:
            await self._http.close()

    def watch(self) -> None:
        """A console is open: read the copies' engine figures too, for the next `watch_s` seconds."""
        self._watched_until = time.monotonic() + self.watch_s

    @property
    def watched(self) -> bool:
        return time.monotonic() < self._watched_until

    async def _run(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception:  # one bad sample must not end the history
                log.exception("console sample failed")
            await asyncio.sleep(self.interval_s)

    def since(self, t: float) -> list[dict[str, Any]]:
        """The samples taken after `t` (epoch seconds), oldest first."""
        out = []
        for sample in reversed(self.samples):
            if sample["t"] <= t:
                break
            out.append(sample)
        return out[::-1]

    # -- one sample -------------------------------------------------------------------------------------
    def _replicas(self) -> list[tuple[str, Replica]]:
        return [(name, r) for name, comp in list(self.c.components.items())
                for r in comp.replicas + comp.incoming + comp.leaving]

    async def _engine(self, replica: Replica) -> tuple[dict[str, float], dict[str, Buckets]]:
        if self._http is None or replica.handle is None or replica.status not in (CopyStatus.IN_SERVICE,
                                                                                  CopyStatus.DRAINING):
            return {}, {}
        try:
            async with self._http.get(f"{replica.handle.address}/metrics",
                                      headers={"Authorization": f"Bearer {replica.token}"}) as answer:
                if answer.status != 200:
                    return {}, {}
                return engine_figures(await answer.text())
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError):
            return {}, {}

    def _cpu_seconds(self, replica: Replica) -> float | None:
        """CPU seconds the copy's process has used (local runtime; psutil is stateless this way, so the
        autoscaler's own CPU readings are not disturbed)."""
        handle = replica.handle
        if not isinstance(handle, LocalCopy) or handle.pid is None:
            return None
        try:
            process = self._processes.get(handle.pid)
            if process is None:
                process = self._processes[handle.pid] = psutil.Process(handle.pid)
            times = process.cpu_times()
            return times.user + times.system
        except psutil.Error:
            self._processes.pop(handle.pid, None)
            return None

    async def sample(self) -> dict[str, Any]:
        now, wall = time.monotonic(), time.time()
        table = self.c.table
        latency, ttft, served = _histograms(metrics.LATENCY), _histograms(metrics.TTFB), _served()
        replicas = self._replicas()
        scraped = await asyncio.gather(*(self._engine(r) for _name, r in replicas)) if self.watched else \
            [({}, {})] * len(replicas)
        reading = _Reading(now, {}, {})
        for name, pool in list(table.pools.items()):
            stats = pool.stats
            reading.components[name] = _Component(stats.invocations, stats.errors_4xx + stats.errors_5xx,
                                                  latency.get(name), ttft.get(name))
        for (name, replica), (figures, histograms) in zip(replicas, scraped):
            reading.copies[replica.id] = _Copy(name, served.get((name, replica.id)), self._cpu_seconds(replica),
                                               figures, histograms.get("latency"))
        old = next((r for r in self._readings if r.at >= now - self.window_s - self.interval_s / 2), None)
        self._readings.append(reading)
        sample = self._figures(wall, reading, old, replicas)
        self.samples.append(sample)
        live = {r.handle.pid for _n, r in replicas if r.handle is not None}
        for pid in [p for p in self._processes if p not in live]:
            del self._processes[pid]
        return sample

    def _figures(self, wall: float, new: _Reading, old: _Reading | None,
                 replicas: list[tuple[str, Replica]]) -> dict[str, Any]:
        seconds = new.at - old.at if old else 0.0
        copies: dict[str, dict[str, Any]] = {}
        for name, replica in replicas:
            now_copy = new.copies[replica.id]
            was = old.copies.get(replica.id) if old else None
            engine_was = was.engine if was else {}
            pool = self.c.table.pools.get(name)
            backend = pool.backend(replica.id) if pool else None
            cpu = rate(now_copy.cpu_s, was.cpu_s if was else None, seconds)
            window = bucket_delta(now_copy.latency, was.latency if was else None) if was else None
            memory = replica.handle.memory_mb() if replica.handle is not None and \
                replica.status != CopyStatus.FAILED else None
            copies[replica.id] = {
                "component": name, "status": replica.status.value,
                "requests_per_s": rate(now_copy.served or 0.0, (was.served or 0.0) if was else None, seconds),
                "in_flight": backend.in_flight if backend else 0,
                "queue": now_copy.engine.get("queue"), "batch": now_copy.engine.get("batch"),
                "tokens_per_s": rate(now_copy.engine.get("tokens"), engine_was.get("tokens"), seconds),
                "prefix_hit_rate": _hit_rate([now_copy], [was]),
                "latency_p50_s": quantile(0.5, window), "latency_p95_s": quantile(0.95, window),
                "cpu_pct": None if cpu is None else 100.0 * cpu, "memory_mb": memory,
            }
        components: dict[str, dict[str, Any]] = {}
        for name, reading in new.components.items():
            comp, pool = self.c.components.get(name), self.c.table.pools.get(name)
            if comp is None or pool is None:
                continue
            was_c = old.components.get(name) if old else None
            load = pool.load()
            lat = bucket_delta(reading.latency, was_c.latency if was_c else None) if was_c else None
            first = bucket_delta(reading.ttft, was_c.ttft if was_c else None) if was_c else None
            mine = [(new.copies[r.id], old.copies.get(r.id) if old else None) for _n, r in replicas if _n == name]
            tokens = [copies[r.id]["tokens_per_s"] for _n, r in replicas if _n == name]
            components[name] = {
                "requests_per_s": rate(reading.invocations, was_c.invocations if was_c else None, seconds),
                "errors_per_s": rate(reading.errors, was_c.errors if was_c else None, seconds),
                "in_flight": load.in_flight, "queued": load.queued,
                "desired": len(comp.replicas), "draining": len(comp.leaving),
                "current": sum(r.status == CopyStatus.IN_SERVICE for r in comp.replicas),
                "latency_p50_s": quantile(0.5, lat), "latency_p95_s": quantile(0.95, lat),
                "latency_p99_s": quantile(0.99, lat),
                "ttft_p50_s": quantile(0.5, first), "ttft_p95_s": quantile(0.95, first),
                "tokens_per_s": sum(t for t in tokens if t is not None) if any(t is not None for t in tokens)
                else None,
                "prefix_hit_rate": _hit_rate([n for n, _w in mine], [w for _n, w in mine]),
                "copy_latency_p50_s": quantile(0.5, merged([bucket_delta(n.latency, w.latency) if w else None
                                                            for n, w in mine])),
            }
        return {"t": round(wall, 2), "components": {k: _round(v) for k, v in components.items()},
                "copies": {k: _round(v) for k, v in copies.items()}}


def _hit_rate(new: list[_Copy], old: list[_Copy | None]) -> float | None:
    """Share of the prompt tokens read from the prefix cache over the window, copies added up."""
    cached = [rate(n.engine.get("cached_tokens"), o.engine.get("cached_tokens") if o else None, 1.0)
              for n, o in zip(new, old)]
    prompt = [rate(n.engine.get("prompt_tokens"), o.engine.get("prompt_tokens") if o else None, 1.0)
              for n, o in zip(new, old)]
    return ratio(cached, prompt)


def _round(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: rounded(v) if isinstance(v, float) else v for k, v in figures.items()}
