"""Routing strategies: which live copy serves the next request. One small class each, one interface."""
from __future__ import annotations

import itertools
import os
import random
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from enum import Enum
from typing import Protocol, TypeVar

# How much of a prompt the gateway reads for PREFIX_AFFINITY (characters; ~2000 tokens).
KEY_CHARS = 8192
# PREFIX_AFFINITY's load bound: requests in flight a copy may have above the least loaded and still get its
# prefixes (0: only the least loaded copies are considered; cache-awareness then breaks their ties).
BOUND_ENV = "SHOAL_PREFIX_AFFINITY_BOUND"


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
    the hashes of the prompts it served, least recently used out past `capacity`. A request's match on a copy
    is the number of its leading hashes the copy has seen. Among the copies within the bound, the longest
    match wins; ties (no match anywhere included) go to the least loaded of them, and among those to the
    prompt's home, the first of the copies in an order the hash of its first `home_chunks` chunks gives
    them (rendezvous hashing), so a prefix that spilled to a second copy goes back home when loads are even
    again instead of wandering. A spill teaches the second copy the prefix: a hot prefix is cached on as
    many copies as its load needs, and then shared evenly. The index is per copy object: a restarted copy
    (a new `Backend`) starts empty, as its cache does."""

    needs_key = True

    def __init__(self, bound: int = 1, chunk: int = 64, capacity: int = 4096) -> None:
        self.bound = bound
        self.chunk = chunk
        self.capacity = capacity  # prefix hashes remembered per copy (64 bytes each: ~256 KB of prompt text)
        self.home_chunks = 4  # a prompt's home is decided by its first 4 chunks (256 bytes)
        self._seen: weakref.WeakKeyDictionary[Candidate, OrderedDict[int, None]] = weakref.WeakKeyDictionary()
        self._fallback = LeastOutstanding()

    def prefix_hashes(self, key: bytes) -> list[int]:
        hashes, h = [], 0
        for at in range(0, len(key), self.chunk):
            h = hash((h, key[at:at + self.chunk]))
            hashes.append(h)
        return hashes

    def match(self, replica: Candidate, hashes: list[int]) -> int:
        """How many leading prefix hashes of the request `replica` has seen."""
        seen = self._seen.get(replica)
        if not seen:
            return 0
        n = 0
        for h in hashes:
            if h not in seen:
                break
            n += 1
        return n

    def choose(self, replicas: Sequence[C], key: bytes | None = None) -> C:
        if not key:
            return self._fallback.choose(replicas)
        hashes = self.prefix_hashes(key)
        least = min(r.in_flight for r in replicas)
        within = [r for r in replicas if r.in_flight <= least + self.bound]
        matches = [self.match(r, hashes) for r in within]
        longest = max(matches)
        tied = [r for r, m in zip(within, matches) if m == longest]
        fewest = min(r.in_flight for r in tied)
        home = hashes[min(len(hashes), self.home_chunks) - 1]  # the same for every prompt on this prefix
        best = max((r for r in tied if r.in_flight == fewest), key=lambda r: hash((home, r.id)))
        self._remember(best, hashes)
        return best

    def _remember(self, replica: Candidate, hashes: list[int]) -> None:
        seen = self._seen.get(replica)
        if seen is None:
            seen = self._seen[replica] = OrderedDict()
        for h in hashes:
            seen[h] = None
            seen.move_to_end(h)
        while len(seen) > self.capacity:
            seen.popitem(last=False)


def make_router(strategy: RoutingStrategy) -> Router:
    return {
        RoutingStrategy.LEAST_OUTSTANDING_REQUESTS: LeastOutstanding,
        RoutingStrategy.RANDOM: Random,
        RoutingStrategy.ROUND_ROBIN: RoundRobin,
        RoutingStrategy.POWER_OF_TWO: PowerOfTwo,
        RoutingStrategy.PREFIX_AFFINITY: lambda: PrefixAffinity(bound=int(os.environ.get(BOUND_ENV, "1"))),
    }[strategy]()
