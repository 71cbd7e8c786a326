"""PREFIX_AFFINITY: cache-aware routing. A request goes to the copy that most likely holds the longest
prefix of its prompt in its prefix cache, unless that copy has more than `bound` requests in flight above
the least loaded copy (the load bound: one hot prefix cannot pile onto one copy).

What a copy holds is learned from what it was sent (`sent`, once the request went out on a connection the
copy accepted: a copy that refused it, and a retry, teach nothing): the prompt (the first `KEY_CHARS`
characters) is cut into `chunk`-byte pieces, each hashed with all before it, so a hash names a whole
prefix; each copy keeps the hashes it was taught, least recently used out past `capacity`. A request's
match on a copy is the longest of its prefixes whose hash the copy knows. Among the copies within the
bound, the longest match wins; ties (no match anywhere included) go to the least loaded of them, and among
those to the prompt's home, the first of the copies in an order the hash of its first `home_chunks` chunks
gives them (rendezvous hashing).

A spill does not teach its copy what the busy copy holds, only what the request added to it (a
conversation's new turns, so its next turn follows it). So each of many prefixes keeps one copy and goes
back to it once its load allows, and when the copies' caches together hold more than one of them can, each
caches its own share instead of all of them caching everything (measured in docs/benchmarks.md, "Prefix
caching"). Two exceptions keep that partition fair: a prefix with a share s of the last `SHARE_WINDOW`
requests needs ceil(s x copies) copies, and its spills teach until it has them (a hot prefix is then
shared by load); and a spill moves the prefix to its new copy (the busy one forgets it) when that evens out
the recent requests the copies' prefixes bring them. A restarted copy starts empty, as its cache does, and
its prefixes find new copies.

Settings: SHOAL_PREFIX_AFFINITY_BOUND, in a component's environment (its engine ignores it) or the server's
(default 1): requests in flight a copy may have above the least loaded and still get its prefixes (0: only
the least loaded copies are considered; cache-awareness then breaks their ties).
"""
from __future__ import annotations

import math
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from shoal.gateway.metrics import PREFIX_SPILLS
from shoal.gateway.routing.base import C, Candidate, Pick, RoutingRequest, Settings, Strategy, whole_number
from shoal.gateway.routing.least_outstanding import LeastOutstanding

KEY_CHARS = 8192  # how much of a prompt the gateway reads for it (characters; ~2000 tokens)
BOUND_ENV = "SHOAL_PREFIX_AFFINITY_BOUND"
SHARE_WINDOW = 256  # the requests whose prefixes' shares decide how many copies a prefix needs


@dataclass(frozen=True)
class _Memo:
    hashes: list[int]
    home: int  # the hash of the prompt's first chunks: the same for every prompt on this prefix
    candidates: tuple[Candidate, ...]


class PrefixAffinity:
    def __init__(self, bound: int = 1, chunk: int = 64, capacity: int = 4096,
                 on_spill: Callable[[], None] | None = None) -> None:
        self.bound = bound
        self.on_spill = on_spill  # called for each request sent past a copy that holds more of its prefix
        self.chunk = chunk
        self.capacity = capacity  # prefix hashes remembered per copy (64 bytes each: ~256 KB of prompt text)
        self.home_chunks = 4  # a prompt's home is decided by its first 4 chunks (256 bytes)
        self._seen: dict[Candidate, OrderedDict[int, None]] = {}
        self._recent: deque[int] = deque(maxlen=SHARE_WINDOW)  # the homes of the last requests
        self._counts: Counter[int] = Counter()
        self._fallback = LeastOutstanding()

    # -- the router's hooks ----------------------------------------------------------------------------
    def choose(self, request: RoutingRequest, candidates: Sequence[C]) -> Pick[C]:
        key = request.prefix_key
        if not key:
            return Pick(self._fallback.least_loaded(candidates))
        hashes = self.prefix_hashes(key)
        home = hashes[min(len(hashes), self.home_chunks) - 1]
        matches = [self.match(r, hashes) for r in candidates]
        least = min(r.in_flight for r in candidates)
        within = [(r, m) for r, m in zip(candidates, matches) if r.in_flight <= least + self.bound]
        longest = max(m for _, m in within)
        tied = [r for r, m in within if m == longest]
        fewest = min(r.in_flight for r in tied)
        best = max((r for r in tied if r.in_flight == fewest), key=lambda r: hash((home, r.id)))
        return Pick(best, _Memo(hashes, home, tuple(candidates)))

    def sent(self, pick: Pick[Any]) -> None:
        """The copy took the request: count its prefix among the recent ones, and teach the copy."""
        memo: _Memo | None = pick.memo
        if memo is None:
            return
        self._note(memo.home)
        copies = memo.candidates
        matches = [self.match(r, memo.hashes) for r in copies]
        held = max(matches, default=0)
        if self.match(pick.copy, memo.hashes) == held:
            self._remember(pick.copy, memo.hashes)
        else:
            holders = [r for r, m in zip(copies, matches) if m == held]
            self._spilled(pick.copy, holders, len(copies), memo.hashes, held, memo.home)

    def done(self, pick: Pick[Any]) -> None:
        return None

    def copies_changed(self, copies: Sequence[Candidate]) -> None:
        """Forget copies that left (a restarted copy comes back as a new one, its cache empty)."""
        present = set(map(id, copies))
        for gone in [c for c in self._seen if id(c) not in present]:
            del self._seen[gone]

    # -- what the copies hold ----------------------------------------------------------------------------
    def prefix_hashes(self, key: bytes) -> list[int]:
        hashes, h = [], 0
        for at in range(0, len(key), self.chunk):
            h = hash((h, key[at:at + self.chunk]))
            hashes.append(h)
        return hashes

    def match(self, replica: Candidate, hashes: list[int]) -> int:
        """How many leading chunks of the request `replica` was taught (its longest known prefix)."""
        seen = self._seen.get(replica)
        if not seen:
            return 0
        return max((n for n, h in enumerate(hashes, 1) if h in seen), default=0)

    def _spilled(self, to: Candidate, holders: list[Candidate], copies: int, hashes: list[int], held: int,
                 home: int) -> None:
        """Teach copy `to`, which got a request past the `holders` of its first `held` chunks (see the module's
        notes): all of it if that prefix needs more copies, or if moving the prefix there from its busiest holder
        evens out the traffic the copies' prefixes bring them; else only what the request added to the prefix."""
        if self.on_spill:
            self.on_spill()
        requests = self._counts[home]
        if len(holders) < math.ceil(requests / max(len(self._recent), SHARE_WINDOW // 8) * copies):
            self._remember(to, hashes)  # a hot prefix: one more copy
            return
        owner = max(holders, key=self._owned)
        if requests < self._owned(owner) - self._owned(to):
            self._forget(owner, hashes[:held])
            self._remember(to, hashes)  # moved
            return
        self._remember(to, hashes[held:])

    def _note(self, home: int) -> None:
        """Count a request on the prefix `home` among the last `SHARE_WINDOW`."""
        if len(self._recent) == self._recent.maxlen:
            oldest = self._recent[0]
            self._counts[oldest] -= 1
            if not self._counts[oldest]:
                del self._counts[oldest]
        self._recent.append(home)
        self._counts[home] += 1

    def _owned(self, replica: Candidate) -> int:
        """The recent requests on the prefixes `replica` holds."""
        seen = self._seen.get(replica) or {}
        return sum(n for home, n in self._counts.items() if home in seen)

    def _remember(self, replica: Candidate, hashes: list[int]) -> None:
        seen = self._seen.get(replica)
        if seen is None:
            seen = self._seen[replica] = OrderedDict()
        for h in hashes:
            seen[h] = None
            seen.move_to_end(h)
        while len(seen) > self.capacity:
            seen.popitem(last=False)

    def _forget(self, replica: Candidate, hashes: list[int]) -> None:
        seen = self._seen.get(replica, {})
        for h in hashes:
            seen.pop(h, None)


def _build(component: str, settings: Settings) -> PrefixAffinity:
    return PrefixAffinity(bound=whole_number(settings, BOUND_ENV, 1),
                          on_spill=lambda: PREFIX_SPILLS.labels(component).inc())


STRATEGY = Strategy("PREFIX_AFFINITY", _build, "the copy that holds the longest prefix of the prompt in its "
                                               "prefix cache, within a load bound", (BOUND_ENV,))
