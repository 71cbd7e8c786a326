"""Usage per API key and inference component: requests, errors, throttled requests, prompt, cached and generated
tokens, counted by the hour.

Counted in memory as requests finish and added to SQLite (the `usage` table of observability.db) by the same
flushes as the metrics; rows are kept for a year (`USAGE_RETENTION_DAYS`). A request on a server without keys
counts under no key (`key` null); one refused before its component was known, under no component.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, fields

from pydantic import BaseModel, Field

from shoal.observability.hooks import Finished

HOUR = 3600
USAGE_RETENTION_DAYS = 400
_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (hour INTEGER NOT NULL, key TEXT NOT NULL, component TEXT NOT NULL,
                                  requests INTEGER NOT NULL, errors INTEGER NOT NULL, throttled INTEGER NOT NULL,
                                  prompt_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL,
                                  generated_tokens INTEGER NOT NULL, PRIMARY KEY (hour, key, component)) WITHOUT ROWID;
"""
_COUNTS = ("requests", "errors", "throttled", "prompt_tokens", "cached_tokens", "generated_tokens")


@dataclass(slots=True)
class Counts:
    requests: int = 0
    errors: int = 0  # answered 4xx or 5xx
    throttled: int = 0  # refused by the key's limits (counted in errors too)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0

    def add(self, other: Counts) -> None:
        for f in _COUNTS:
            setattr(self, f, getattr(self, f) + getattr(other, f))


class UsageRow(BaseModel):
    """One API key's use of one inference component over a time range (or one hour or day of it)."""

    key: str | None = Field(description="the API key's name; null: requests on a server without keys")
    component: str | None = Field(description="the inference component named (an adapter's own name); null: "
                                              "refused before one was known")
    start: float | None = Field(None, description="epoch seconds: the hour or day this row counts (grouped rows)")
    requests: int
    errors: int = Field(description="answered 4xx or 5xx")
    throttled: int = Field(description="refused with 429 by the key's limits")
    prompt_tokens: int
    cached_tokens: int = Field(description="prompt tokens served from the prefix cache")
    generated_tokens: int
    total_tokens: int


class UsageReport(BaseModel):
    start: float = Field(description="epoch seconds, inclusive (rounded down to the hour)")
    end: float = Field(description="epoch seconds, exclusive")
    rows: list[UsageRow]


class UsageBook:
    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db, self._lock = db, lock
        with self._lock:
            self._db.executescript(_SCHEMA)
        self._memory: dict[tuple[int, str, str], Counts] = {}
        self._flushing: dict[tuple[int, str, str], Counts] = {}

    def add(self, f: Finished) -> None:
        item = (int(f.at // HOUR) * HOUR, f.key or "", f.invoked or "")
        counts = self._memory.get(item)
        if counts is None:
            counts = self._memory[item] = Counts()
        counts.requests += 1
        if f.status >= 400:
            counts.errors += 1
        if f.throttled:
            counts.throttled += 1
        if (t := f.tokens) is not None:
            counts.prompt_tokens += t.prompt
            counts.cached_tokens += t.cached
            counts.generated_tokens += t.generated

    # -- flushing: `take` and `written` on the event loop, `write` in a worker thread ------------------------
    def take(self) -> dict[tuple[int, str, str], Counts]:
        taken, self._memory = self._memory, {}
        self._flushing.update(taken)
        return taken

    def written(self, taken: dict[tuple[int, str, str], Counts]) -> None:
        for item in taken:
            self._flushing.pop(item, None)

    def write(self, taken: dict[tuple[int, str, str], Counts]) -> None:
        adds = ", ".join(f"{f} = {f} + excluded.{f}" for f in _COUNTS)
        with self._lock:
            self._db.executemany(f"INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT "
                                 f"(hour, key, component) DO UPDATE SET {adds}",
                                 [(*item, *(getattr(c, f) for f in _COUNTS)) for item, c in taken.items()])

    def prune(self, now: float | None = None) -> None:
        with self._lock:
            self._db.execute("DELETE FROM usage WHERE hour < ?", ((now or time.time()) - USAGE_RETENTION_DAYS * 86400,))

    # -- reading: `held` on the event loop, `stored` in a worker thread ----------------------------------------
    def held(self) -> dict[tuple[int, str, str], Counts]:
        out: dict[tuple[int, str, str], Counts] = {}
        for held in (self._flushing, self._memory):
            for item, counts in held.items():
                out.setdefault(item, Counts()).add(counts)
        return out

    def stored(self, start: float, end: float) -> dict[tuple[int, str, str], Counts]:
        with self._lock:
            rows = self._db.execute(f"SELECT hour, key, component, {', '.join(_COUNTS)} FROM usage "
                                    f"WHERE hour >= ? AND hour < ?", (start, end)).fetchall()
        return {(hour, key, component): Counts(*counts) for hour, key, component, *counts in rows}


def report(stored: dict[tuple[int, str, str], Counts], held: dict[tuple[int, str, str], Counts], start: float,
           end: float, key: str | None = None, component: str | None = None, by: str | None = None) -> UsageReport:
    """Rows per key and component (and per hour or day with `by`), most tokens first; `start` is rounded down to
    the hour."""
    start = int(start // HOUR) * HOUR
    group = {"hour": HOUR, "day": 86400}.get(by or "", 0)
    totals: dict[tuple[int, str, str], Counts] = {}
    for source in (stored, held):
        for (hour, k, c), counts in source.items():
            if not start <= hour < end or (key is not None and k != key) or (component is not None and c != component):
                continue
            bucket = int(hour // group) * group if group else 0
            totals.setdefault((bucket, k, c), Counts()).add(counts)
    rows = [UsageRow(key=k or None, component=c or None, start=float(bucket) if group else None,
                     **{f.name: getattr(counts, f.name) for f in fields(Counts)},
                     total_tokens=counts.prompt_tokens + counts.generated_tokens)
            for (bucket, k, c), counts in totals.items()]
    rows.sort(key=lambda r: (-(r.start or 0), -r.total_tokens, -r.requests, r.key or "", r.component or ""))
    return UsageReport(start=float(start), end=float(end), rows=rows)
