"""Metric samples by minute, in memory and then in SQLite, as CloudWatch keeps them.

A series is a namespace, a metric name and a set of dimensions (CloudWatch's identity of a metric: another
set of dimensions is another metric). Each minute of a series is one `Dist` (count, sum, minimum, maximum
and a histogram for percentiles). Samples are added in memory; `flush` moves every minute held in memory
to SQLite (merging with a minute already there, e.g. after a restart within the same minute), at a
regular interval and at shutdown, so the hot path never touches the disk. Queries read both. Minutes older
than the retention are deleted (CloudWatch keeps 1-minute data for 15 days; so does shoal by default).

Storage: the `observability.db` file beside the control state (`state.db`) in the state directory (0600),
tables `series` (one row per metric and dimension set, with its unit and when it last had data) and
`samples` (series, minute, count, sum, min, max, histogram). Usage per API key lives in the same file
(shoal.observability.usage).
"""
from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from shoal.observability.sketch import Dist

Dims = tuple[tuple[str, str], ...]  # (name, value) pairs sorted by name
MINUTE = 60
DEFAULT_RETENTION_DAYS = 15.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, namespace TEXT NOT NULL, metric TEXT NOT NULL,
                                   dims TEXT NOT NULL, unit TEXT NOT NULL, last_minute INTEGER NOT NULL,
                                   UNIQUE (namespace, metric, dims));
CREATE TABLE IF NOT EXISTS samples (series INTEGER NOT NULL, minute INTEGER NOT NULL, count INTEGER NOT NULL,
                                    sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
                                    histogram BLOB NOT NULL, PRIMARY KEY (series, minute)) WITHOUT ROWID;
"""


def dims_of(pairs: Iterable[tuple[str, str]]) -> Dims:
    return tuple(sorted(pairs))


@dataclass(frozen=True, slots=True)
class SeriesKey:
    namespace: str
    metric: str
    dims: Dims


def open_db(path: Path | str) -> sqlite3.Connection:
    """The observability database (created private to its owner), used from one thread at a time."""
    if str(path) != ":memory:":
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            file.touch(mode=0o600, exist_ok=True)
            file.chmod(0o600)
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


class MetricStore:
    def __init__(self, db: sqlite3.Connection, lock: threading.Lock,
                 retention_days: float = DEFAULT_RETENTION_DAYS) -> None:
        self._db, self._lock = db, lock
        self.retention_s = retention_days * 86400
        with self._lock:
            self._db.executescript(_SCHEMA)
            rows = self._db.execute("SELECT id, namespace, metric, dims, unit, last_minute FROM series").fetchall()
        self._ids: dict[SeriesKey, int] = {}
        self.units: dict[SeriesKey, str] = {}
        self.last_minute: dict[SeriesKey, int] = {}
        for sid, namespace, metric, dims, unit, last in rows:
            key = SeriesKey(namespace, metric, tuple(tuple(p) for p in orjson.loads(dims)))
            self._ids[key], self.units[key], self.last_minute[key] = sid, unit, last
        self._memory: dict[tuple[SeriesKey, int], Dist] = {}  # (series, minute) not yet in SQLite
        self._flushing: dict[tuple[SeriesKey, int], Dist] = {}  # taken out of memory, being written

    # -- adding (the event loop) -----------------------------------------------------------------------
    def add(self, key: SeriesKey, unit: str, value: float, at: float) -> None:
        minute = int(at // MINUTE) * MINUTE
        dist = self._memory.get((key, minute))
        if dist is None:
            dist = self._memory[(key, minute)] = Dist()
            if key not in self.units:
                self.units[key] = unit
            if self.last_minute.get(key, -1) < minute:
                self.last_minute[key] = minute
        dist.add(value)

    # -- flushing: `take` and `written` on the event loop, `write` in a worker thread ------------------------
    def take(self) -> dict[tuple[SeriesKey, int], Dist]:
        """What memory holds, for `write` (queries still see it until `written`)."""
        taken, self._memory = self._memory, {}
        self._flushing.update(taken)
        return taken

    def written(self, taken: dict[tuple[SeriesKey, int], Dist]) -> None:
        for item in taken:
            self._flushing.pop(item, None)

    def write(self, taken: dict[tuple[SeriesKey, int], Dist]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for (key, minute), dist in taken.items():
                    sid = self._series_id(key)
                    old = self._db.execute("SELECT count, sum, min, max, histogram FROM samples WHERE series = ? "
                                           "AND minute = ?", (sid, minute)).fetchone()
                    if old is not None:
                        merged = Dist.restore(*old)
                        merged.merge(dist)
                        dist = merged
                    self._db.execute("INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?, ?, ?, ?)",
                                     (sid, minute, dist.count, dist.total, dist.minimum, dist.maximum,
                                      dist.histogram()))
                for key in {k for k, _ in taken}:
                    self._db.execute("UPDATE series SET last_minute = max(last_minute, ?) WHERE id = ?",
                                     (self.last_minute[key], self._ids[key]))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def prune(self, now: float | None = None) -> list[SeriesKey]:
        """Delete minutes older than the retention, and series with none left (a worker thread); the series
        gone, for `forget` on the event loop."""
        cutoff = int(((now or time.time()) - self.retention_s) // MINUTE) * MINUTE
        with self._lock:
            self._db.execute("DELETE FROM samples WHERE minute < ?", (cutoff,))
            stale = self._db.execute("SELECT id, namespace, metric, dims FROM series WHERE last_minute < ?",
                                     (cutoff,)).fetchall()
            self._db.execute("DELETE FROM series WHERE last_minute < ?", (cutoff,))
            gone = [SeriesKey(namespace, metric, tuple(tuple(p) for p in orjson.loads(dims)))
                    for _sid, namespace, metric, dims in stale]
            for key in gone:
                self._ids.pop(key, None)
        return [key for key in gone if self.last_minute.get(key, 0) < cutoff]

    def forget(self, keys: list[SeriesKey]) -> None:
        for key in keys:
            if (key, self.last_minute.get(key, 0)) not in self._memory:
                self.units.pop(key, None)
                self.last_minute.pop(key, None)

    def _series_id(self, key: SeriesKey) -> int:
        if (sid := self._ids.get(key)) is None:
            cursor = self._db.execute("INSERT INTO series (namespace, metric, dims, unit, last_minute) VALUES "
                                      "(?, ?, ?, ?, ?)", (key.namespace, key.metric, orjson.dumps(key.dims).decode(),
                                                          self.units[key], self.last_minute[key]))
            sid = self._ids[key] = int(cursor.lastrowid)  # type: ignore[arg-type]
        return sid

    # -- reading: `held` on the event loop, `stored` in a worker thread ----------------------------------------
    def held(self, key: SeriesKey, start: int, end: int) -> dict[int, Dist]:
        """The series' minutes in [start, end) not yet in SQLite (copies: memory keeps changing)."""
        out: dict[int, Dist] = {}
        for held in (self._flushing, self._memory):
            for (k, minute), dist in held.items():
                if k == key and start <= minute < end:
                    out.setdefault(minute, Dist()).merge(dist)
        return out

    def stored(self, key: SeriesKey, start: int, end: int) -> dict[int, Dist]:
        """The series' minutes in [start, end) (epoch seconds) in SQLite."""
        with self._lock:
            if (sid := self._ids.get(key)) is None:
                return {}
            rows = self._db.execute("SELECT minute, count, sum, min, max, histogram FROM samples WHERE series = ? "
                                    "AND minute >= ? AND minute < ?", (sid, start, end)).fetchall()
        return {minute: Dist.restore(*stored) for minute, *stored in rows}

    def series(self) -> list[SeriesKey]:
        return list(self.units)
