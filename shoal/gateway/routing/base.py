"""What every routing strategy is: a small class that chooses a copy for a request and hears what
became of the choice (as Ray Serve's request routers and llm-d's scorers do).

The gateway calls, per request: `choose` (pure: which copy, among the candidates with room), then `sent`
once that copy has taken the request (answered its first byte), then `done` when the answer has ended.
A copy that fails before answering is simply left out of the next `choose`: a retry never teaches a
strategy twice, nor about a copy that never saw the request. `copies_changed` follows the pool's copies
(a copy came into service, left, restarted).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar


class Candidate(Protocol):
    """What a strategy may read of a copy."""

    @property
    def id(self) -> str: ...

    @property
    def in_flight(self) -> int: ...


class RoutingRequest(Protocol):
    """What a strategy may read of a request."""

    @property
    def prefix_key(self) -> bytes | None: ...  # the prompt's first characters (for cache-aware routing)

    @property
    def adapter(self) -> str | None: ...  # the LoRA adapter it names (for adapter-aware routing)


C = TypeVar("C", bound=Candidate)


@dataclass(eq=False)
class Pick(Generic[C]):
    """A strategy's choice: the copy, and what the strategy wants back in `sent` / `done`."""

    copy: C
    memo: Any = None


class Router(Protocol):
    def choose(self, request: RoutingRequest, candidates: Sequence[C]) -> Pick[C]: ...

    def sent(self, pick: Pick[Any]) -> None: ...

    def done(self, pick: Pick[Any]) -> None: ...

    def copies_changed(self, copies: Sequence[Candidate]) -> None: ...


class Stateless:
    """Hooks for strategies that choose from the copies' load alone."""

    def sent(self, pick: Pick[Any]) -> None:
        return None

    def done(self, pick: Pick[Any]) -> None:
        return None

    def copies_changed(self, copies: Sequence[Candidate]) -> None:
        return None


# Settings a strategy reads: a component's environment (SHOAL_* names its engine ignores), else the server's.
Settings = Mapping[str, str]


def whole_number(settings: Settings, name: str, default: int) -> int:
    """A strategy's setting `name` >= 0: the component's, else the server's environment's, else `default`
    (ValueError naming a bad one, which deploy answers as a 400)."""
    value = settings.get(name) or os.environ.get(name) or str(default)
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {number}")
    return number


@dataclass(frozen=True)
class Strategy:
    """A routing strategy as endpoints name it: `build(component, settings)` makes the router of one
    component's pool (ValueError naming a bad setting: a deploy is refused with it); `settings`: the
    environment variables it reads (a component may set them: shoal.security.environment)."""

    name: str
    build: Callable[[str, Settings], Router]
    description: str
    settings: tuple[str, ...] = ()
