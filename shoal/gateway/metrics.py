"""Gateway metrics. Per-copy in-flight counts and queue depths are read when scraped, not on each request."""
from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter("shoal_gateway_requests", "Requests answered, by component, route and status",
                   ["component", "route", "code"])
LATENCY = Histogram("shoal_gateway_request_duration_seconds", "Seconds from request to last byte",
                    ["component"], buckets=_LATENCY)
TTFB = Histogram("shoal_gateway_time_to_first_byte_seconds",
                 "Seconds to the first streamed byte (time to first token on streams)", ["component"],
                 buckets=_LATENCY)
SERVED = Counter("shoal_gateway_copy_requests", "Requests sent to each copy", ["component", "copy"])
RETRIES = Counter("shoal_gateway_retries", "Requests retried on another copy after a copy failed them",
                  ["component"])
REJECTED = Counter("shoal_gateway_rejected", "Requests refused with 429", ["component"])
TIMEOUTS = Counter("shoal_gateway_first_byte_timeouts", "Requests a copy left unanswered past the first-byte "
                   "timeout", ["component"])


class LiveGauges(Collector):
    """In-flight requests per copy and queue depth per component, read from the gateway's state."""

    def __init__(self, read: Callable[[], tuple[list[tuple[str, str, int]], list[tuple[str, int]]]]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        copies, queues = self.read()
        in_flight = GaugeMetricFamily("shoal_gateway_copy_in_flight", "Requests in flight on each copy",
                                      labels=["component", "copy"])
        for component, copy, n in copies:
            in_flight.add_metric([component, copy], n)
        queue = GaugeMetricFamily("shoal_gateway_queue_depth", "Requests waiting for a free copy",
                                  labels=["component"])
        for component, n in queues:
            queue.add_metric([component], n)
        yield in_flight
        yield queue


def register_live_gauges(read: Callable[[], tuple[list[tuple[str, str, int]], list[tuple[str, int]]]]) -> Collector:
    collector = LiveGauges(read)
    REGISTRY.register(collector)
    return collector
