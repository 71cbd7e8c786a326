"""Which computed prompt prefixes the engine keeps, and which one a new request can reuse.

`PrefixCache` is plain data and pure logic; `PrefixReuse` applies it to a model runner on the model
thread (copying cells to a sequence, removing an entry's cells). An entry is the token sequence of a
finished request (its prompt and the tokens it generated, all but the last, whose KV was never computed),
held in the KV cells of a llama.cpp sequence id of its own. Entries live in cells that running requests
do not count on: the context is sized MAX_BATCH_TOTAL_TOKENS + `capacity_tokens`, and the entries together
never hold more than `capacity_tokens` tokens (least recently used first out), so the budget promised to
running requests never shrinks.

Blocks: llama.cpp's numbers for a token depend on what was computed with it in one pass, not only on
the tokens. A prompt that runs alone is computed in position-aligned blocks of `block` tokens, one pass
each, and its last token in a pass of its own (shoal.engine.scheduler), the same pieces every time; so
reusing whole blocks (or the whole prompt of an entry whose prompt was the same) leaves a hit computing
what a miss would (where the KV cells sit can still move the numbers: docs/architecture.md).
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from shoal.engine import metrics
from shoal.engine.runners.base import ModelRunner

MIN_REUSE = 4  # tokens: a shorter shared prefix is computed again


@dataclass(eq=False)
class Entry:
    seq_id: int  # the llama.cpp sequence whose cells hold this prefix's KV
    tokens: np.ndarray  # positions 0..len-1
    body: int  # the leading tokens computed as prompt chunks (its prompt but the last token)
    last_used: int = 0

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class Stored:
    """What `store` decided: fill `entry` (None: nothing to keep) after dropping `evicted`."""

    entry: Entry | None
    evicted: list[Entry] = field(default_factory=list)


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if differ.size else n


class PrefixCache:
    def __init__(self, capacity_tokens: int, seq_ids: Sequence[int], block: int = 64, min_tokens: int = 16) -> None:
        self.capacity_tokens = capacity_tokens
        self.block = block  # tokens per micro-batch: reuse is in whole blocks (see the module's notes)
        self.min_tokens = min_tokens  # shorter sequences are not worth an entry
        self.entries: list[Entry] = []
        self._free_ids = list(seq_ids)
        self._clock = itertools.count(1)
        self.evictions = 0

    @property
    def held_tokens(self) -> int:
        return sum(len(e) for e in self.entries)

    def lookup(self, tokens: Sequence[int]) -> tuple[Entry | None, int]:
        """The entry that lets a prompt of `tokens` reuse the most, and how many tokens (0: none)."""
        query = np.asarray(tokens, dtype=np.int32)
        best, best_len = None, 0
        for entry in self.entries:
            n = self.reusable(entry, query)
            if n > best_len:
                best, best_len = entry, n
        if best is not None:
            best.last_used = next(self._clock)
        return best, best_len

    def reusable(self, entry: Entry, prompt: np.ndarray) -> int:
        """How much of `prompt`'s body (all but its last token, which is always computed) `entry` holds
        exactly as computing it again would: the whole body when the entry's prompt body was the same,
        else the whole blocks both bodies share."""
        body = len(prompt) - 1
        shared = common_prefix(entry.tokens, prompt)
        if shared >= body and entry.body == body:
            return body
        return min(shared, body, entry.body) // self.block * self.block

    def store(self, tokens: Sequence[int], body: int) -> Stored:
        """Make room for `tokens` (the first `body` computed as prompt chunks) and name the entry to fill
        with them; an entry that already holds them (or more) is only touched, and one they extend is
        replaced."""
        new = np.asarray(tokens, dtype=np.int32)
        if len(new) < self.min_tokens or len(new) > self.capacity_tokens:
            return Stored(None)
        evicted = []
        for entry in list(self.entries):
            shared = common_prefix(entry.tokens, new)
            if shared == len(new):  # already held
                entry.last_used = next(self._clock)
                return Stored(None)
            if shared == len(entry):  # the new sequence extends it: keep only the longer one
                evicted.append(self._drop(entry))
        while self.entries and (self.held_tokens + len(new) > self.capacity_tokens or not self._free_ids):
            evicted.append(self._drop(min(self.entries, key=lambda e: e.last_used)))
            self.evictions += 1
        if not self._free_ids:
            return Stored(None, evicted)
        entry = Entry(self._free_ids.pop(), new, body, next(self._clock))
        self.entries.append(entry)
        return Stored(entry, evicted)

    def forget(self, entry: Entry) -> None:
        """Drop an entry that turned out unusable (its cells are gone)."""
        if entry in self.entries:
            self._drop(entry)

    def _drop(self, entry: Entry) -> Entry:
        self.entries.remove(entry)
        self._free_ids.append(entry.seq_id)
        return entry


class PrefixReuse:
    """The prefix cache at work on a model runner (called on the model thread): copies a cached prefix
    into a new sequence, and keeps a finished sequence's cells as an entry."""

    def __init__(self, cache: PrefixCache, runner: ModelRunner) -> None:
        self.cache = cache
        self.runner = runner
        self.window = runner.sliding_window
        self.lookups = self.hits = 0

    def reuse(self, seq_id: int, prompt: Sequence[int]) -> int:
        """Copy the longest reusable cached prefix of `prompt` into `seq_id`; how many tokens it covers.
        A prefix is valid only while the sliding-window layers still hold the window of cells before its end."""
        self.lookups += 1
        metrics.PREFIX_LOOKUPS.inc()
        metrics.PREFIX_PROMPT_TOKENS.inc(len(prompt))
        entry, reused = self.cache.lookup(prompt)
        if reused < MIN_REUSE:  # a shared BOS or first word saves nothing
            reused = 0
        if entry is not None and reused > 0:
            kept = self.runner.kept_from(entry.seq_id)
            if kept < 0:  # its cells are gone: drop it
                self.cache.forget(entry)
                reused = 0
            elif self.window and kept > max(0, reused - self.window):
                metrics.PREFIX_SWA_MISSES.inc()
                reused = 0
        if reused > 0:
            self.runner.copy_prefix(entry.seq_id, seq_id, reused)  # type: ignore[union-attr]
            self.hits += 1
            metrics.PREFIX_HITS.inc()
            metrics.PREFIX_CACHED_TOKENS.inc(reused)
        metrics.PREFIX_HIT_RATE.set(self.hits / self.lookups)
        return reused

    def keep(self, seq_id: int, tokens: Sequence[int], body: int) -> None:
        """Keep the cells of a finished sequence (`tokens`: those whose KV it computed, the first `body` of
        them as prompt chunks) as an entry."""
        evictions = self.cache.evictions
        stored = self.cache.store(tokens, body)
        for old in stored.evicted:  # first: the new entry may take an evicted entry's sequence id
            self.runner.release(old.seq_id)
        if stored.entry is not None:
            self.runner.copy_prefix(seq_id, stored.entry.seq_id, len(stored.entry))
        metrics.PREFIX_EVICTIONS.inc(self.cache.evictions - evictions)
        metrics.PREFIX_ENTRIES.set(len(self.cache.entries))
        metrics.PREFIX_HELD_TOKENS.set(self.cache.held_tokens)
