"""Which computed prompt prefixes the engine keeps, and which one a new request can reuse.

`PrefixCache` is plain data and pure logic; `PrefixReuse` applies it to a model runner on the model
thread (copying cells to a sequence, removing an entry's cells). An entry is the token sequence of a
finished request (its prompt and the tokens it generated, all but the last, whose KV was never computed),
held in the KV cells of a llama.cpp sequence id of its own. Entries live in cells that running requests
do not count on: the context is sized MAX_BATCH_TOTAL_TOKENS + `capacity_tokens`, and the entries together
never hold more than `capacity_tokens` cells (a segmented LRU: entries nobody reused go first; `_victim`),
so the budget promised to running requests never shrinks.

Shared cells count once: a request that reused an entry's prefix holds that entry's very cells
(`llama_memory_seq_cp` shares cells, it does not copy them), and so does the entry kept from it. Each entry
remembers that parent and how many leading cells they share, and costs only the cells after those; a
dropped parent's shared cells pass to one heir among its children, which its siblings then share them with
(a conservative count: never fewer than llama.cpp holds, and never more after a drop than before). So
eight conversations on one system prompt hold the system prompt once, and dropping an old one of them frees
only its own tail.

Held cells are not free: llama.cpp attends over every cell up to the highest one in use (masking the
others), so a full cache slows every step (with 4-8k cells held: prefill 1.24-1.30x, decode 1.05x;
benchmarks/cache_footprint.py). So the cache holds cells in proportion to its use: while fewer than
`full_reuse` of the prompt tokens of the last `REUSE_WINDOW` lookups came from it, it keeps at most that
share of its capacity (at least `idle_share` of it, and always the newest entry, so reuse that starts is
noticed). All-unique traffic then keeps about one entry; repeated prompts or shared prefixes open it.

Blocks: llama.cpp's numbers for a token depend on what was computed with it in one pass, not only on
the tokens. A prompt that runs alone is computed in position-aligned blocks of `block` tokens, one pass
each, and its last token in a pass of its own (shoal.engine.scheduler), the same pieces every time; so
reusing whole blocks (or the whole prompt of an entry whose prompt was the same) leaves a hit computing
what a miss would (where the KV cells sit can still move the numbers: docs/architecture.md).
"""
from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from shoal.engine import metrics
from shoal.engine.runners.base import ModelRunner

MIN_REUSE = 4  # tokens: a shorter shared prefix is computed again
REUSE_WINDOW = 64  # lookups whose reuse sizes the cache (see the module's notes)


@dataclass(eq=False)
class Entry:
    seq_id: int  # the llama.cpp sequence whose cells hold this prefix's KV
    tokens: np.ndarray  # positions 0..len-1
    body: int  # the leading tokens computed as prompt chunks (its prompt but the last token)
    last_used: int = 0
    reused: bool = False  # a request reused its cells since it was kept
    parent: Entry | None = None  # the entry whose cells this one's first `shared` tokens are
    shared: int = 0
    namespace: int = 0  # the LoRA adapter its KV was computed with (0: the base model); reused only within it

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def cost(self) -> int:
        """The cells only this entry (of those held) accounts for."""
        return len(self) - (self.shared if self.parent is not None else 0)


@dataclass
class Stored:
    """What `store` decided: fill `entry` (None: nothing to keep) after dropping `evicted`."""

    entry: Entry | None
    evicted: list[Entry] = field(default_factory=list)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(differ[0]) if differ.size else n


class PrefixCache:
    def __init__(self, capacity_tokens: int, seq_ids: Sequence[int], block: int = 64, min_tokens: int = 16,
                 idle_share: float = 1.0, full_reuse: float = 0.1, protected_share: float = 0.8) -> None:
        self.capacity_tokens = capacity_tokens
        self.protected_share = protected_share  # the most of the limit reused entries keep from one-offs
        self.idle_share = idle_share  # the least share of the capacity it may use (1.0: always all of it)
        self.full_reuse = full_reuse  # the reuse (cached / prompt tokens) at which it may use all of it
        self._recent: deque[tuple[int, int]] = deque(maxlen=REUSE_WINDOW)  # (cached, prompt) tokens
        self.block = block  # tokens per micro-batch: reuse is in whole blocks (see the module's notes)
        self.min_tokens = min_tokens  # shorter sequences are not worth an entry
        self.entries: list[Entry] = []
        self._free_ids = list(seq_ids)
        self._clock = itertools.count(1)
        self.evictions = 0

    @property
    def held_tokens(self) -> int:
        """KV cells the entries hold, shared cells counted once."""
        return sum(e.cost for e in self.entries)

    def note(self, cached: int, prompt: int) -> None:
        """Record a lookup's outcome: `cached` of its `prompt` tokens came from the cache."""
        self._recent.append((cached, prompt))

    @property
    def limit_tokens(self) -> int:
        """The cells the cache may hold now, given its recent reuse."""
        prompt = sum(p for _, p in self._recent)
        reuse = sum(c for c, _ in self._recent) / prompt if prompt else 0.0
        share = min(1.0, max(self.idle_share, reuse / self.full_reuse))
        return int(self.capacity_tokens * share)

    def lookup(self, tokens: Sequence[int], namespace: int = 0) -> tuple[Entry | None, int]:
        """The entry (of `namespace`) that lets a prompt of `tokens` reuse the most, and how many tokens (0: none)."""
        query = np.asarray(tokens, dtype=np.int32)
        best, best_len = None, 0
        for entry in self.entries:
            n = self.reusable(entry, query) if entry.namespace == namespace else 0
            if n > best_len:
                best, best_len = entry, n
        if best is not None:
            best.last_used = next(self._clock)
            best.reused = True
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

    def store(self, tokens: Sequence[int], body: int, source: Entry | None = None, shared: int = 0,
              namespace: int = 0) -> Stored:
        """Make room for `tokens` (the first `body` computed as prompt chunks; the first `shared` in the cells
        of entry `source`, if any; computed in `namespace`) and name the entry to fill with them; an entry that
        already holds them (or more) is only touched, and one they extend is replaced."""
        new = np.asarray(tokens, dtype=np.int32)
        if len(new) < self.min_tokens or len(new) > self.capacity_tokens:
            return Stored(None)
        evicted = []
        for entry in [e for e in self.entries if e.namespace == namespace]:
            common = common_prefix(entry.tokens, new)
            if common == len(new):  # already held
                entry.last_used = next(self._clock)
                return Stored(None)
            if common == len(entry):  # the new sequence extends it: keep only the longer one
                evicted.append(self._drop(entry))
        pending = Entry(-1, new, body, next(self._clock), namespace=namespace)
        if source in self.entries and shared > 0:
            pending.parent, pending.shared = source, shared
        limit = max(self.limit_tokens, len(new))  # the newest entry always fits
        while self.entries and (self.held_tokens + pending.cost > limit or not self._free_ids):
            evicted.append(self._drop(self._victim(), pending))
            self.evictions += 1
        if not self._free_ids:
            return Stored(None, evicted)
        pending.seq_id = self._free_ids.pop()
        self.entries.append(pending)
        return Stored(pending, evicted)

    def _victim(self) -> Entry:
        """The entry to drop for room: the least recently used of those no request reused since they were
        kept (a question's own tail, a one-off prompt), while the reused ones hold at most `protected_share`
        of the limit; past that, the least recently used reused one (segmented LRU)."""
        reused = [e for e in self.entries if e.reused]
        once = [e for e in self.entries if not e.reused]
        if once and sum(e.cost for e in reused) <= self.protected_share * self.limit_tokens:
            return min(once, key=lambda e: e.last_used)
        return min(reused or once, key=lambda e: e.last_used)

    def forget(self, entry: Entry) -> None:
        """Drop an entry that turned out unusable (its cells are gone)."""
        if entry in self.entries:
            self._drop(entry)

    def forget_namespace(self, namespace: int) -> list[Entry]:
        """Drop every entry of a namespace (its adapter is gone); the dropped entries."""
        return [self._drop(e) for e in [e for e in self.entries if e.namespace == namespace]]

    def _drop(self, entry: Entry, pending: Entry | None = None) -> Entry:
        """Remove `entry`. The cells its children share with it stay theirs: the child sharing the most
        (`pending` included) inherits them, and its siblings share them with it from now on."""
        self.entries.remove(entry)
        self._free_ids.append(entry.seq_id)
        children = [c for c in [*self.entries, pending] if c is not None and c.parent is entry]
        if children:
            heir = max(children, key=lambda c: c.shared)
            for child in children:
                if child is not heir:
                    child.parent, child.shared = heir, min(child.shared, heir.shared)
            heir.parent = entry.parent
            heir.shared = min(heir.shared, entry.shared) if entry.parent is not None else 0
        return entry


class PrefixReuse:
    """The prefix cache at work on a model runner (called on the model thread): copies a cached prefix
    into a new sequence, and keeps a finished sequence's cells as an entry."""

    def __init__(self, cache: PrefixCache, runner: ModelRunner) -> None:
        self.cache = cache
        self.runner = runner
        self.window = runner.sliding_window
        self.lookups = self.hits = 0
        self._sources: dict[int, tuple[Entry, int]] = {}  # sequence id -> the entry whose cells it reused

    def reuse(self, seq_id: int, prompt: Sequence[int], namespace: int = 0) -> int:
        """Copy the longest reusable cached prefix of `prompt` (computed in `namespace`) into `seq_id`; how many
        tokens it covers.
        A prefix is valid only while the sliding-window layers still hold the window of cells before its end."""
        self.lookups += 1
        metrics.PREFIX_LOOKUPS.inc()
        metrics.PREFIX_PROMPT_TOKENS.inc(len(prompt))
        entry, reused = self.cache.lookup(prompt, namespace)
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
        self._sources.pop(seq_id, None)
        if reused > 0:
            self.runner.copy_prefix(entry.seq_id, seq_id, reused)  # type: ignore[union-attr]
            self._sources[seq_id] = (entry, reused)  # type: ignore[assignment]
            self.hits += 1
            metrics.PREFIX_HITS.inc()
            metrics.PREFIX_CACHED_TOKENS.inc(reused)
        metrics.PREFIX_HIT_RATE.set(self.hits / self.lookups)
        self.cache.note(reused, len(prompt))
        return reused

    def keep(self, seq_id: int, tokens: Sequence[int], body: int, namespace: int = 0) -> None:
        """Keep the cells of a finished sequence (`tokens`: those whose KV it computed, the first `body` of
        them as prompt chunks, in `namespace`) as an entry."""
        evictions = self.cache.evictions
        stored = self.cache.store(tokens, body, *self._sources.get(seq_id, (None, 0)), namespace=namespace)
        for old in stored.evicted:  # first: the new entry may take an evicted entry's sequence id
            self.runner.release(old.seq_id)
        if stored.entry is not None:
            self.runner.copy_prefix(seq_id, stored.entry.seq_id, len(stored.entry))
        metrics.PREFIX_EVICTIONS.inc(self.cache.evictions - evictions)
        metrics.PREFIX_ENTRIES.set(len(self.cache.entries))
        metrics.PREFIX_HELD_TOKENS.set(self.cache.held_tokens)

    def forget_namespace(self, namespace: int) -> None:
        """Release the cells of every entry computed with an adapter that is gone."""
        for entry in self.cache.forget_namespace(namespace):
            self.runner.release(entry.seq_id)
        metrics.PREFIX_ENTRIES.set(len(self.cache.entries))
        metrics.PREFIX_HELD_TOKENS.set(self.cache.held_tokens)
