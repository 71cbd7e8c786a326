"""ROUND_ROBIN: the copies in turn."""
from __future__ import annotations

import itertools
from collections.abc import Sequence

from shoal.gateway.routing.base import C, Pick, RoutingRequest, Settings, Stateless, Strategy


class RoundRobin(Stateless):
    def __init__(self) -> None:
        self._turn = itertools.count()

    def choose(self, request: RoutingRequest, candidates: Sequence[C]) -> Pick[C]:
        return Pick(candidates[next(self._turn) % len(candidates)])


def _build(_component: str, _settings: Settings) -> RoundRobin:
    return RoundRobin()


STRATEGY = Strategy("ROUND_ROBIN", _build, "the copies in turn")
