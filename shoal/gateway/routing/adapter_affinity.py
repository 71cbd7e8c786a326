"""ADAPTER_AFFINITY: each LoRA adapter's requests go to the copies that serve it now, within a load bound.

llama.cpp applies adapters to a whole context, so a copy decodes one adapter's requests per step: a copy
that serves two adapters at once runs two half-batches where it could run one. This strategy keeps each
adapter (the base model counts as one more) on as few copies as its load needs, as llm-d's LoRA-affinity
scorer and Ray Serve's model multiplexing do:

- a copy is *hot* for an adapter while it has requests of that adapter in flight, and for `linger_s`
  after its last one ended;
- a request goes to a copy hot for its adapter whose load is within `bound` requests of the least loaded
  copy: the one with the most requests of that adapter in flight (so an adapter that spilled onto a second
  copy drains back to one);
- if no hot copy is within the bound, to the adapter's new home: of the copies within the bound, the one
  hot for the fewest adapters (so adapters spread one group per copy), then the least loaded, then the first
  in an order a hash of the adapter's name gives the copies (rendezvous hashing).

Settings: SHOAL_ADAPTER_AFFINITY_BOUND in a component's environment (its engine ignores it) or the
server's (default 4).
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shoal.gateway.routing.base import C, Candidate, Pick, RoutingRequest, Settings, Strategy, whole_number

BOUND_ENV = "SHOAL_ADAPTER_AFFINITY_BOUND"
BASE = ""  # requests without an adapter: the base model, an adapter set of its own


@dataclass
class _Heat:
    """What one copy serves: requests in flight per adapter, and when each adapter's last one ended."""

    in_flight: Counter[str] = field(default_factory=Counter)
    ended: dict[str, float] = field(default_factory=dict)

    def hot(self, adapter: str, now: float, linger_s: float) -> bool:
        return self.in_flight[adapter] > 0 or now - self.ended.get(adapter, -1e9) < linger_s

    def hot_count(self, now: float, linger_s: float) -> int:
        return sum(self.hot(a, now, linger_s) for a in {*self.in_flight, *self.ended})


class AdapterAffinity:
    def __init__(self, bound: int = 4, linger_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.bound = bound
        self.linger_s = linger_s
        self.clock = clock  # seconds (benchmarks/adapter_routing_model.py runs it on simulated time)
        self._heat: dict[Candidate, _Heat] = {}  # by copy (a restarted copy is a new one)

    def choose(self, request: RoutingRequest, candidates: Sequence[C]) -> Pick[C]:
        adapter = request.adapter or BASE
        least = min(c.in_flight for c in candidates)
        within = [c for c in candidates if c.in_flight <= least + self.bound]
        now = self.clock()
        hot = [c for c in within if self._heat_of(c).hot(adapter, now, self.linger_s)]
        if hot:
            return Pick(max(hot, key=lambda c: (self._heat_of(c).in_flight[adapter], -c.in_flight)), adapter)
        home = min(within, key=lambda c: (self._heat_of(c).hot_count(now, self.linger_s), c.in_flight,
                                          -hash((adapter, c.id))))
        return Pick(home, adapter)

    def sent(self, pick: Pick[Any]) -> None:
        self._heat_of(pick.copy).in_flight[pick.memo] += 1

    def done(self, pick: Pick[Any]) -> None:
        heat = self._heat_of(pick.copy)
        heat.in_flight[pick.memo] -= 1
        heat.ended[pick.memo] = self.clock()

    def copies_changed(self, copies: Sequence[Candidate]) -> None:
        present = set(map(id, copies))
        for gone in [copy for copy in self._heat if id(copy) not in present]:
            del self._heat[gone]

    def _heat_of(self, copy: Candidate) -> _Heat:
        return self._heat.setdefault(copy, _Heat())


def _build(_component: str, settings: Settings) -> AdapterAffinity:
    return AdapterAffinity(whole_number(settings, BOUND_ENV, 4))


STRATEGY = Strategy("ADAPTER_AFFINITY", _build, "the copies serving the request's LoRA adapter now, within a load "
                                                "bound (each adapter on as few copies as its load needs)",
                    (BOUND_ENV,))
