"""The server's observability, in one object: it hears every finished request (an observer of the gateway's
pipeline: the request is only queued on the hot path), samples the components every second, keeps metrics
and usage in memory, flushes them to SQLite every FLUSH_S seconds and at shutdown, and answers queries
(CloudWatch's operations, the usage route)."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from shoal.observability.catalog import SAMPLE_S, Catalog, ComponentReading
from shoal.observability.hooks import Finished, Observer
from shoal.observability.limits import KeyLimiter, Limits
from shoal.observability.sketch import Dist
from shoal.observability.store import (
    DEFAULT_RETENTION_DAYS,
    MetricStore,
    SeriesKey,
    open_db,
)
from shoal.observability.usage import HOUR, UsageBook, UsageReport, report

log = logging.getLogger(__name__)
DB_NAME = "observability.db"
FLUSH_S = 15.0
PRUNE_S = 3600.0


class Observability:
    def __init__(self, state_dir: Path | str, variant_of: Callable[[str], str] = lambda _e: "AllTraffic",
                 components: Callable[[bool], list[ComponentReading]] = lambda _full: [], limits: dict[str, Limits] | None = None,
                 retention_days: float = DEFAULT_RETENTION_DAYS) -> None:
        path = ":memory:" if str(state_dir) == ":memory:" else Path(state_dir) / DB_NAME
        self._db = open_db(path)
        lock = threading.Lock()  # one connection, used by one worker thread at a time
        self.metrics = MetricStore(self._db, lock, retention_days)
        self.usage = UsageBook(self._db, lock)
        self.catalog = Catalog(variant_of)
        self.components = components
        self.limiter = KeyLimiter(limits or {})
        self._pending: list[Finished] = []
        self._io = asyncio.Lock()  # a flush and a query never interleave (a minute is in memory or stored)
        self._task: asyncio.Task | None = None

    # -- what the gateway is given -----------------------------------------------------------------------
    @property
    def observers(self) -> list[Observer]:
        return [self._pending.append, *([self.limiter] if self.limiter else [])]

    @property
    def gate(self) -> KeyLimiter | None:
        return self.limiter if self.limiter else None

    # -- lifecycle -----------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Everything held in memory goes to SQLite, then the database closes."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._drain()
        await self.flush()
        self._db.close()

    async def _run(self) -> None:
        tick, last_flush, last_prune = 0, time.monotonic(), 0.0
        while True:
            await asyncio.sleep(1.0)
            tick += 1
            try:
                self.sample(full=tick % int(SAMPLE_S) == 0)
                if time.monotonic() - last_flush >= FLUSH_S:
                    last_flush = time.monotonic()
                    await self.flush()
                if time.monotonic() - last_prune >= PRUNE_S:
                    last_prune = time.monotonic()
                    async with self._io:
                        gone = await asyncio.to_thread(self.metrics.prune)
                        self.metrics.forget(gone)
                        await asyncio.to_thread(self.usage.prune)
            except Exception:  # one bad tick must not end the metrics
                log.exception("observability tick failed")

    # -- recording -----------------------------------------------------------------------------------------
    def _drain(self) -> None:
        pending, self._pending[:] = list(self._pending), []
        add = self.metrics.add
        for f in pending:
            for key, unit, value in self.catalog.request_samples(f):
                add(key, unit, value, f.at)
            self.usage.add(f)

    def sample(self, full: bool = True) -> None:
        """The queue of finished requests into metrics and usage; each component's concurrency, and with `full`
        its copies, CPU and memory."""
        self._drain()
        now = time.time()
        for reading in self.components(full):
            for key, unit, value in self.catalog.concurrency_samples(reading):
                self.metrics.add(key, unit, value, now)
            if full:
                for key, unit, value in self.catalog.component_samples(reading):
                    self.metrics.add(key, unit, value, now)

    async def flush(self) -> None:
        self._drain()
        async with self._io:
            taken, used = self.metrics.take(), self.usage.take()
            try:
                await asyncio.to_thread(self.metrics.write, taken)
                await asyncio.to_thread(self.usage.write, used)
            finally:
                self.metrics.written(taken)
                self.usage.written(used)

    # -- reading -------------------------------------------------------------------------------------------
    async def minutes(self, key: SeriesKey, start: int, end: int) -> dict[int, Dist]:
        """A series' minutes in [start, end), stored and held."""
        self._drain()
        async with self._io:
            held = self.metrics.held(key, start, end)
            out = await asyncio.to_thread(self.metrics.stored, key, start, end)
        for minute, dist in held.items():
            if minute in out:
                out[minute].merge(dist)
            else:
                out[minute] = dist
        return out

    def unit(self, key: SeriesKey) -> str | None:
        """A series' unit; None: no such series (no sample within the retention)."""
        self._drain()
        return self.metrics.units.get(key)

    def series(self) -> list[tuple[SeriesKey, str, int]]:
        """Every series with data within the retention: key, unit, last minute with data."""
        self._drain()
        return [(key, unit, self.metrics.last_minute.get(key, 0)) for key, unit in list(self.metrics.units.items())]

    async def usage_report(self, start: float, end: float, key: str | None = None, component: str | None = None,
                           by: str | None = None) -> UsageReport:
        self._drain()
        async with self._io:
            held = self.usage.held()
            stored = await asyncio.to_thread(self.usage.stored, start // HOUR * HOUR, end)
        return report(stored, held, start, end, key, component, by)
