"""Routing strategies: which live copy serves the next request. One small class each, one interface."""
from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Sequence
from enum import Enum
from typing import Protocol, TypeVar


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
    """Requests sharing a prompt prefix go to the same copy (rendezvous hashing, stable when copies come
    and go), unless that copy has `bound` more requests in flight than the least loaded one."""

    needs_key = True

    def __init__(self, bound: int = 4) -> None:
        self.bound = bound
        self._fallback = LeastOutstanding()

    def choose(self, replicas: Sequence[C], key: bytes | None = None) -> C:
        if not key:
            return self._fallback.choose(replicas)
        home = max(replicas, key=lambda r: hashlib.blake2b(key + r.id.encode(), digest_size=8).digest())
        least = min(r.in_flight for r in replicas)
        return home if home.in_flight <= least + self.bound else self._fallback.choose(replicas)


def make_router(strategy: RoutingStrategy) -> Router:
    return {
        RoutingStrategy.LEAST_OUTSTANDING_REQUESTS: LeastOutstanding,
        RoutingStrategy.RANDOM: Random,
        RoutingStrategy.ROUND_ROBIN: RoundRobin,
        RoutingStrategy.POWER_OF_TWO: PowerOfTwo,
        RoutingStrategy.PREFIX_AFFINITY: PrefixAffinity,
    }[strategy]()
