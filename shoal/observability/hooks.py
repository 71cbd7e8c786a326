"""What the gateway tells observability, and what it may be told back: one immutable record per finished
request (for CloudWatch's metrics and usage per key), and a refusal when a key is over its limits.
Plain values only: the gateway knows nothing of how they are kept."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from shoal.errors import ApiError
from shoal.observability.tokens import Tokens


@dataclass(frozen=True, slots=True)
class Finished:
    """One request a front door answered."""

    at: float  # epoch seconds when it arrived
    door: str  # sagemaker | openai | tgi
    status: int  # what the client was answered
    total_s: float  # arrival to the answer's last byte
    key: str | None = None  # the API key's name (None on a server without keys)
    endpoint: str | None = None  # None: refused before a component was known
    component: str | None = None  # the component whose copies served it (an adapter's base)
    adapter: str | None = None  # the adapter inference component it named, if any
    copies: int = 0  # copies of the component in service when it ended
    copy_status: int | None = None  # what the copy answered (None: no copy answered: refused, timed out)
    model_s: float | None = None  # sending to a copy until the answer's last byte (SageMaker's ModelLatency)
    first_byte_s: float | None = None  # arrival to the first streamed byte (time to first token on streams)
    tokens: Tokens | None = None  # as the answer reported them
    error: str | None = None  # the gateway's refusal, by its error type (timeout, overloaded, rate_limit_exceeded...)

    @property
    def invoked(self) -> str | None:
        """The inference component the client named: the adapter's name, or the component's."""
        return self.adapter or self.component

    @property
    def throttled(self) -> bool:
        """Refused by its key's limits."""
        return self.error == Throttled.ERROR_TYPE

    @property
    def timed_out(self) -> bool:
        """A copy took it and sent nothing within the first-byte timeout."""
        return self.error == "timeout"


Observer = Callable[[Finished], None]


class Throttled(ApiError):
    """A key over one of its limits: 429 in the door's words, with Retry-After."""

    ERROR_TYPE = "rate_limit_exceeded"  # OpenAI's code for it

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(429, message, self.ERROR_TYPE)
        self.retry_after_s = max(1, math.ceil(retry_after_s))


class Gate(Protocol):
    def admit(self, key: str | None) -> None:
        """Return when `key` may send a request now; raise Throttled when it may not."""
        ...
