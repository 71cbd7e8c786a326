"""POWER_OF_TWO: two copies at random, the less loaded of them (the power of two choices)."""
from __future__ import annotations

import random
from collections.abc import Sequence

from shoal.gateway.routing.base import C, Pick, RoutingRequest, Settings, Stateless, Strategy


class PowerOfTwo(Stateless):
    def choose(self, request: RoutingRequest, candidates: Sequence[C]) -> Pick[C]:
        if len(candidates) == 1:
            return Pick(candidates[0])
        a, b = random.sample(list(candidates), 2)
        return Pick(a if a.in_flight <= b.in_flight else b)


def _build(_component: str, _settings: Settings) -> PowerOfTwo:
    return PowerOfTwo()


STRATEGY = Strategy("POWER_OF_TWO", _build, "the less loaded of two random copies")
