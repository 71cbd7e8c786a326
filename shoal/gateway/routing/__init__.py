"""Routing strategies: which copy serves the next request. One module per strategy (a class with the
hooks of `base.Router`, and its `Strategy`: name, how to build it from a component's settings); adding one
is that module plus a line in STRATEGIES."""
from __future__ import annotations

from shoal.gateway.routing import (
    adapter_affinity,
    least_outstanding,
    power_of_two,
    prefix_affinity,
    random_choice,
    round_robin,
)
from shoal.gateway.routing.base import Candidate, Pick, Router, RoutingRequest, Settings, Strategy

STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    least_outstanding.STRATEGY,
    random_choice.STRATEGY,
    round_robin.STRATEGY,
    power_of_two.STRATEGY,
    prefix_affinity.STRATEGY,
    adapter_affinity.STRATEGY,
)}
DEFAULT_STRATEGY = least_outstanding.STRATEGY.name


def strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown routing strategy {name!r}; known: {', '.join(STRATEGIES)}") from None


def build_router(name: str, component: str, settings: Settings) -> Router:
    return strategy(name).build(component, settings)


def check_settings(settings: Settings) -> None:
    """Every strategy's settings in a component's environment are valid (ValueError naming one that is not),
    whichever strategy its endpoint uses now: the endpoint may change strategy later."""
    for known in STRATEGIES.values():
        known.build("check", settings)


__all__ = ["DEFAULT_STRATEGY", "STRATEGIES", "Candidate", "Pick", "Router", "RoutingRequest", "Settings",
           "Strategy", "build_router", "check_settings", "strategy"]
