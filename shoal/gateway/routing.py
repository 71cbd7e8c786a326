"""Routing strategies: which live copy serves the next request. One small class each, one interface."""
from __future__ import annotations

import itertools
import math
import os
import random
import weakref
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Protocol, TypeVar

# How much of a prompt the gateway reads for PREFIX_AFFINITY (characters; ~2000 tokens).
KEY_CHARS = 8192
# PREFIX_AFFINITY's load bound: requests in flight a copy may have above the least loaded and still get its
# prefixes (0: only the least loaded copies are considered; cache-awareness then breaks their ties). Set in the
# server's environment, or in a component's (its engine ignores it): that component's routing.
BOUND_ENV = "SHOAL_PREFIX_AFFINITY_BOUND"
# PREFIX_AFFINITY: the requests whose prefixes' shares decide how many copies a prefix needs.
SHARE_WINDOW = 256


class RoutingStrategy(str, Enum):
    LEAST_OUTSTANDING_REQUESTS = "LEAST_OUTSTANDING_REQUESTS"
    RANDOM = "RANDOM"
    ROUND_ROBIN = "ROUND_ROBIN"
    POWER_OF_TWO = "POWER_OF_TWO"
    PREFIX_AFFINITY = "PREFIX_AFFINITY"


class Candidate(Protocol):
    """What a strategy may read of a copy."""

    @property
    def id(self) -> str: ...

    @property
    def in_flight(self) -> int: ...


C = TypeVar("C", bound=Candidate)


class Router(Protocol):
    needs_key: bool  # whether choose() wants the request's prompt prefix

    def choose(self, replicas: Sequence[C], key: bytes | None = None) -> C: ...


class LeastOutstanding:
    """Fewest in-flight requests; ties rotate so equal copies share the load."""

    needs_key = False

    def __init__(self) -> None:
        self._turn = itertools.count()

    def choose(self, replicas: Sequence[C], key: bytes | None = None) -> C:
        start = next(self._turn) % len(replicas)
        best = replicas[start]
        for i in range(1, len(replicas)):
            r = replicas[(start + i) % len(replicas)]
            if r.in_flight < best.in_flight:
                best = r
        return best


class Random:
    needs_key = False

    def choose(self, replicas: Sequence[C], key: bytes | None = None) -> C:
        return random.choice(replicas)


class RoundRobin:
    needs_key = False

    def __init__(self) -> None:
        self._turn = itertools.count()

    def choose(self, replicas: Sequence[C], key: bytes | None = None) -> C:
        return replicas[next(self._turn) % len(replicas)]


class PowerOfTwo:
    """Two random copies, the less loaded one."""

    needs_key = False

    def choose(self, replicas: Sequence[C], key: bytes | None = None) -> C:
        if len(replicas) == 1:
            return replicas[0]
        a, b = random.sample(list(replicas), 2)
        return a if a.in_flight <= b.in_flight else b


class PrefixAffinity:
    """Cache-aware routing: a request goes to the copy that most likely holds the longest prefix of its
    prompt in its prefix cache, unless that copy has more than `bound` requests in flight above the least
    loaded copy (the load bound: one hot prefix cannot pile onto one copy).

    What a copy holds is learned from what it was sent: the prompt (the first `KEY_CHARS` characters) is cut
    into `chunk`-byte pieces, each hashed with all before it, so a hash names a whole prefix; each copy keeps
    the hashes it was taught, least recently used out past `capacity`. A request's match on a copy is the
    longest of its prefixes whose hash the copy knows. Among the copies within the bound, the longest match
    wins; ties (no match anywhere included) go to the least loaded of them, and among those to the prompt's
    home, the first of the copies in an order the hash of its first `home_chunks` chunks gives them
    (rendezvous hashing).

    A spill does not teach its copy what the busy copy holds, only what the request added to it (a
    conversation's new turns, so its next turn follows it). So each of many prefixes keeps one copy and
    goes back to it once its load allows, and when the copies' caches together hold more than one of them
    can, each caches its own share instead of all of them caching everything (measured in
    docs/benchmarks.md, "Prefix caching"). Two exceptions keep that partition fair: a prefix with a share s
    of the last `SHARE_WINDOW` requests needs ceil(s x copies) copies, and its spills teach until it has
    them (a hot prefix is then shared by load); and a spill moves the prefix to its new copy (the busy one
    forgets it) when that evens out the recent requests the copies' prefixes bring them. The index is per
    copy object: a restarted copy (a new `Backend`) starts empty, as its cache does, and its prefixes find
    new copies."""

    needs_key = True

    def __init__(self, bound: int = 1, chunk: int = 64, capacity: int = 4096,
                 on_spill: Callable[[], None] | None = None) -> None:
        self.bound = bound
        self.on_spill = on_spill  # called for each request sent past a copy that holds more of its prefix
        self.chunk = chunk
        self.capacity = capacity  # prefix hashes remembered per copy (64 bytes each: ~256 KB of prompt text)
        self.home_chunks = 4  # a prompt's home is decided by its first 4 chunks (256 bytes)
        self._seen: weakref.WeakKeyDictionary[Candidate, OrderedDict[int, None]] = weakref.WeakKeyDictionary()
        self._recent: deque[int] = deque(maxlen=SHARE_WINDOW)  # the homes of the last requests
        self._counts: Counter[int] = Counter()
        self._fallback = LeastOutstanding()

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

    def choose(self, replicas: Sequence[C], key: bytes | None = None) -> C:
        if not key:
            return self._fallback.choose(replicas)
        hashes = self.prefix_hashes(key)
        home = hashes[min(len(hashes), self.home_chunks) - 1]  # the same for every prompt on this prefix
        matches = [self.match(r, hashes) for r in replicas]
        least = min(r.in_flight for r in replicas)
        within = [(r, m) for r, m in zip(replicas, matches) if r.in_flight <= least + self.bound]
        longest = max(m for _, m in within)
        tied = [r for r, m in within if m == longest]
        fewest = min(r.in_flight for r in tied)
        best = max((r for r in tied if r.in_flight == fewest), key=lambda r: hash((home, r.id)))
        self._note(home)
        held = max(matches)
        if longest == held:
            self._remember(best, hashes)
        else:
            holders = [r for r, m in zip(replicas, matches) if m == held]
            self._spilled(best, holders, len(replicas), hashes, held, home)
        return best

    def _spilled(self, to: Candidate, holders: list[Candidate], copies: int, hashes: list[int], held: int,
                 home: int) -> None:
        """Teach copy `to`, which got a request past the `holders` of its first `held` chunks (see the class's
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


def make_router(strategy: RoutingStrategy, bound: int | None = None,
                on_spill: Callable[[], None] | None = None) -> Router:
    """A new router for `strategy`. PREFIX_AFFINITY's load bound: `bound` (a component's own setting), else
    the server's `BOUND_ENV`, else 1; `on_spill` counts the requests it moves."""
    bound = int(os.environ.get(BOUND_ENV, "1")) if bound is None else bound
    return {
        RoutingStrategy.LEAST_OUTSTANDING_REQUESTS: LeastOutstanding,
        RoutingStrategy.RANDOM: Random,
        RoutingStrategy.ROUND_ROBIN: RoundRobin,
        RoutingStrategy.POWER_OF_TWO: PowerOfTwo,
        RoutingStrategy.PREFIX_AFFINITY: lambda: PrefixAffinity(bound=bound, on_spill=on_spill),
    }[strategy]()
