"""RANDOM (SageMaker's other strategy): any copy with room, uniformly."""
from __future__ import annotations

import random
from collections.abc import Sequence

from shoal.gateway.routing.base import C, Pick, RoutingRequest, Settings, Stateless, Strategy


class Random(Stateless):
    def choose(self, request: RoutingRequest, candidates: Sequence[C]) -> Pick[C]:
        return Pick(random.choice(candidates))


def _build(_component: str, _settings: Settings) -> Random:
    return Random()


STRATEGY = Strategy("RANDOM", _build, "any copy, uniformly at random")
