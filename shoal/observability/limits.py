"""Per-key limits on requests and tokens per minute, over a sliding minute.

A request is admitted while its key sent fewer than `requests_per_minute` requests in the last 60 s and its
answers reported fewer than `tokens_per_minute` tokens (prompt + generated) in the last 60 s; otherwise it is
refused with 429 and Retry-After: the seconds until the oldest request, or enough tokens, leave the window.
Tokens are known only when an answer ends, so a key may go over its token limit by the requests it has in
flight when it reaches it (as OpenAI's own limits, which count a request's tokens up front, do not).
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from shoal.observability.hooks import Finished, Throttled

WINDOW_S = 60.0


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


@dataclass
class _Window:
    requests: deque[float] = field(default_factory=deque)  # admission times
    tokens: deque[tuple[float, int]] = field(default_factory=deque)  # (answer's end, its tokens)
    token_sum: int = 0

    def expire(self, now: float) -> None:
        while self.requests and self.requests[0] <= now - WINDOW_S:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= now - WINDOW_S:
            self.token_sum -= self.tokens.popleft()[1]


class KeyLimiter:
    """The gateway's Gate for keys with limits, and an observer of the tokens their answers report."""

    def __init__(self, limits: dict[str, Limits], clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = {name: lim for name, lim in limits.items() if lim.requests_per_minute or lim.tokens_per_minute}
        self.clock = clock
        self._windows: dict[str, _Window] = {name: _Window() for name in self.limits}

    def __bool__(self) -> bool:
        return bool(self.limits)

    def admit(self, key: str | None) -> None:
        if key is None or (limits := self.limits.get(key)) is None:
            return
        now, window = self.clock(), self._windows[key]
        window.expire(now)
        if (cap := limits.tokens_per_minute) and window.token_sum >= cap:
            over, wait = window.token_sum - cap, 0.0
            for at, n in window.tokens:  # the oldest answers leave first
                over -= n
                wait = at + WINDOW_S - now
                if over < 0:
                    break
            raise Throttled(f"Rate exceeded: API key {key!r} used {window.token_sum} tokens in the last minute; "
                            f"its limit is {cap} tokens per minute", wait)
        if (cap := limits.requests_per_minute) and len(window.requests) >= cap:
            wait = window.requests[len(window.requests) - cap] + WINDOW_S - now
            raise Throttled(f"Rate exceeded: API key {key!r} sent {len(window.requests)} requests in the last "
                            f"minute; its limit is {cap} requests per minute", wait)
        window.requests.append(now)

    def __call__(self, f: Finished) -> None:
        """An answer ended: its tokens count against its key's minute."""
        if f.key is None or f.tokens is None or (window := self._windows.get(f.key)) is None:
            return
        n = f.tokens.prompt + f.tokens.generated
        if n:
            window.tokens.append((self.clock(), n))
            window.token_sum += n
