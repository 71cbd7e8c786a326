"""LEAST_OUTSTANDING_REQUESTS (SageMaker's default): the copy with the fewest requests in flight."""
from __future__ import annotations

import itertools
from collections.abc import Sequence

from shoal.gateway.routing.base import C, Pick, RoutingRequest, Settings, Stateless, Strategy


class LeastOutstanding(Stateless):
    """Fewest in-flight requests; ties rotate so equal copies share the load."""

    def __init__(self) -> None:
        self._turn = itertools.count()

    def choose(self, request: RoutingRequest, candidates: Sequence[C]) -> Pick[C]:
        return Pick(self.least_loaded(candidates))

    def least_loaded(self, candidates: Sequence[C]) -> C:
        start = next(self._turn) % len(candidates)
        best = candidates[start]
        for i in range(1, len(candidates)):
            copy = candidates[(start + i) % len(candidates)]
            if copy.in_flight < best.in_flight:
                best = copy
        return best


def _build(_component: str, _settings: Settings) -> LeastOutstanding:
    return LeastOutstanding()


STRATEGY = Strategy("LEAST_OUTSTANDING_REQUESTS", _build, "the copy with the fewest requests in flight")
