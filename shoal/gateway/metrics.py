"""Gateway metrics. Per-copy in-flight counts and queue depths are read when scraped, not on each request;
per-component figures carry SageMaker's metric names (Invocations, ModelLatency, ...): the hot path adds
to plain integers and two histograms, everything else is read at scrape time."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
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
PREFIX_SPILLS = Counter("shoal_gateway_prefix_affinity_spills", "Requests PREFIX_AFFINITY routing sent past a copy "
                        "that holds more of their prompt's prefix, for the load bound", ["component"])
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


# -- per component, with SageMaker's metric names (CloudWatch dimensions as labels) ---------------------------
_MICROSECONDS = (1e3, 2.5e3, 5e3, 1e4, 2.5e4, 5e4, 1e5, 2.5e5, 5e5, 1e6, 2.5e6, 5e6, 1e7, 3e7, 6e7, 1.2e8)
_DIMENSIONS = ["EndpointName", "InferenceComponentName"]
MODEL_LATENCY = Histogram("ModelLatency", "SageMaker's ModelLatency: microseconds from sending a request to a copy "
                          "until its last byte was relayed", _DIMENSIONS, buckets=_MICROSECONDS)
OVERHEAD_LATENCY = Histogram("OverheadLatency", "SageMaker's OverheadLatency: microseconds the gateway added "
                             "(admission queue, waiting for a copy to start, choosing a copy)", _DIMENSIONS,
                             buckets=_MICROSECONDS)
COLD_START_WAIT = Histogram("shoal_gateway_cold_start_wait_seconds", "Seconds a request that found no copy in service "
                            "waited for one to start", ["component"], buckets=_LATENCY)


@dataclass(eq=False)
class ComponentStats:
    """Counts the gateway keeps per component: plain integers on the hot path, read when scraped."""

    endpoint: str
    component: str
    invocations: int = 0  # requests sent to a copy (answered or timed out)
    errors_4xx: int = 0  # answered 4xx, by the copy or the gateway (429 overloaded)
    errors_5xx: int = 0  # answered 5xx, by the copy or the gateway (503 no copy, 504 first-byte timeout)
    model_errors: int = 0  # the copy answered other than 2xx, or not within the first-byte timeout
    model_latency: Any = None  # Histogram children for this component
    overhead_latency: Any = None

    def __post_init__(self) -> None:
        self.model_latency = MODEL_LATENCY.labels(self.endpoint, self.component)
        self.overhead_latency = OVERHEAD_LATENCY.labels(self.endpoint, self.component)

    def answered(self, status: int, started: float, sent: float, ended: float) -> None:
        """A copy answered `status`; times from time.perf_counter()."""
        self.invocations += 1
        if status >= 300:
            self.model_errors += 1
            self.failed(status)
        self.model_latency.observe((ended - sent) * 1e6)
        self.overhead_latency.observe((sent - started) * 1e6)

    def failed(self, status: int) -> None:
        if 400 <= status < 500:
            self.errors_4xx += 1
        elif status >= 500:
            self.errors_5xx += 1


@dataclass
class ComponentRow:
    """One component's figures at scrape time (the control side fills them in)."""

    stats: ComponentStats
    desired: int  # DesiredCopyCount: copies asked for
    current: int  # CurrentCopyCount: copies in service
    concurrency_per_copy: float  # requests in flight + queued, per desired copy (the total at 0 copies)
    invocations_per_copy: float | None  # per minute, over the last minute
    cpu: float | None = None  # CPUUtilizationNormalized: % of the copies' reserved cores, mean over copies
    memory: float | None = None  # MemoryUtilizationNormalized: % of their memory, mean over copies


class ComponentGauges(Collector):
    """SageMaker's per-component metric names, so dashboards built for SageMaker map one to one."""

    def __init__(self, read: Callable[[], list[ComponentRow]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        rows = self.read()
        families: list[tuple[Metric, Callable[[ComponentRow], float | None]]] = [
            (CounterMetricFamily("Invocations", "Requests sent to the component's copies", labels=_DIMENSIONS),
             lambda r: r.stats.invocations),
            (CounterMetricFamily("Invocation4XXErrors", "Requests answered with a 4xx status", labels=_DIMENSIONS),
             lambda r: r.stats.errors_4xx),
            (CounterMetricFamily("Invocation5XXErrors", "Requests answered with a 5xx status", labels=_DIMENSIONS),
             lambda r: r.stats.errors_5xx),
            (CounterMetricFamily("InvocationModelErrors", "Requests a copy answered other than 2xx or not in time",
                                 labels=_DIMENSIONS), lambda r: r.stats.model_errors),
            (GaugeMetricFamily("InvocationsPerCopy", "Invocations in the last minute per copy", labels=_DIMENSIONS),
             lambda r: r.invocations_per_copy),
            (GaugeMetricFamily("ConcurrentRequestsPerCopy", "Requests in flight and queued per copy",
                               labels=_DIMENSIONS), lambda r: r.concurrency_per_copy),
            (GaugeMetricFamily("CPUUtilizationNormalized", "CPU use of the copies, % of their reserved cores",
                               labels=_DIMENSIONS), lambda r: r.cpu),
            (GaugeMetricFamily("MemoryUtilizationNormalized", "Memory use of the copies, % of their memory",
                               labels=_DIMENSIONS), lambda r: r.memory),
            (GaugeMetricFamily("DesiredCopyCount", "Copies asked for", labels=_DIMENSIONS), lambda r: r.desired),
            (GaugeMetricFamily("CurrentCopyCount", "Copies in service", labels=_DIMENSIONS), lambda r: r.current),
        ]
        for family, value in families:
            for row in rows:
                if (v := value(row)) is not None:
                    family.add_metric([row.stats.endpoint, row.stats.component], v)
            yield family


def register_component_gauges(read: Callable[[], list[ComponentRow]]) -> Collector:
    collector = ComponentGauges(read)
    REGISTRY.register(collector)
    return collector


_PER_COMPONENT = (LATENCY, TTFB, RETRIES, REJECTED, PREFIX_SPILLS, TIMEOUTS, COLD_START_WAIT)


def forget_copy(component: str, copy_id: str) -> None:
    """A copy left for good: its label set leaves /metrics."""
    SERVED.remove_by_labels({"component": component, "copy": copy_id})


def forget_component(endpoint: str, component: str) -> None:
    """A component was deleted: its label sets leave /metrics."""
    for metric in (*_PER_COMPONENT, REQUESTS, SERVED):
        metric.remove_by_labels({"component": component})
    for metric in (MODEL_LATENCY, OVERHEAD_LATENCY):
        metric.remove_by_labels({"EndpointName": endpoint, "InferenceComponentName": component})
