"""Admission per component: a bounded wait queue when every copy is at its concurrency limit.

It counts the component's requests (sent to a copy, or admitted and about to be) against its capacity, the
sum of its copies' limits; every copy's own count stays within its limit because the router only chooses
among copies with room, and an admitted request always finds one (the counts of draining copies weigh
on the component's until their requests end)."""
from __future__ import annotations

import asyncio
from collections import deque

from shoal.errors import ApiError


class Admission:
    """`acquire(capacity)` returns at once while the component has room; otherwise the request waits in a
    queue of at most `max_queue`, for at most `queue_timeout_s`. Beyond either: 429 with Retry-After.

    With no copy in service and a `cold_start_timeout_s`, a request waits in the same queue for a copy
    to start, for at most that long; beyond the queue or the timeout: 503 (nothing is overloaded: there
    is no copy yet)."""

    def __init__(self, max_queue: int, queue_timeout_s: float) -> None:
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def _room(self, capacity: int) -> bool:
        return self.in_flight < capacity

    async def acquire(self, capacity: int, cold_start_timeout_s: float | None = None) -> None:
        """Count a request in against `capacity` (its copies' limits), waiting in the queue if needed."""
        if self._room(capacity) and not self._waiters:
            self.in_flight += 1
            return
        starting = capacity == 0 and cold_start_timeout_s is not None
        if len(self._waiters) >= self.max_queue:
            if starting:
                raise unavailable(f"no copy is in service yet and {self.max_queue} requests are already waiting "
                                  f"for one to start")
            raise overloaded(f"all copies are busy and {self.max_queue} requests are already waiting")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        timeout_s = cold_start_timeout_s if starting else self.queue_timeout_s
        try:
            await asyncio.wait_for(waiter, timeout_s)  # wake() counts us in before resolving
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            if waiter.done() and not waiter.cancelled():  # admitted just as we gave up
                self.release(capacity)
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            if isinstance(exc, asyncio.TimeoutError):
                if starting:
                    raise unavailable(f"no copy came into service within {timeout_s:g}s") from None
                raise overloaded(f"no copy was free within {self.queue_timeout_s:g}s") from None
            raise

    def release(self, capacity: int) -> None:
        self.in_flight -= 1
        self.wake(capacity)

    def wake(self, capacity: int) -> None:
        """Admit waiters, in order, while the component has room (after a release, or new copies)."""
        while self._waiters and self._room(capacity):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)


def overloaded(detail: str) -> ApiError:
    return ApiError(429, f"Model is overloaded: {detail}", "overloaded")


def unavailable(detail: str) -> ApiError:
    return ApiError(503, f"Service unavailable: {detail}", "unavailable")
