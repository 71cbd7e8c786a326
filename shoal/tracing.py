"""Tracing with OpenTelemetry, off unless configured (`pip install 'shoal[tracing]'`).

On: `shoal server --otlp-endpoint URL` (or OpenTelemetry's own OTEL_EXPORTER_OTLP_TRACES_ENDPOINT /
OTEL_EXPORTER_OTLP_ENDPOINT in the server's environment). The server then exports its spans over OTLP/HTTP and
gives its copies the traces endpoint (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), so the built-in engine exports its
own. A client's W3C `traceparent` is continued; the gateway sends the copy a `traceparent` of its exchange span.

Spans: the gateway's request (door, component, status), its admission wait, the routing choice (copy), the
exchange until the first byte; the engine's request with its queue, prefill and decode (recorded from the
scheduler's timestamps when the request ends). Off, every call here is a check of one global and nothing else.

Sampling is decided at the root, before OpenTelemetry is asked anything: a request whose caller sent a
`traceparent` follows the caller's sampled flag; one without is traced with probability `sample_ratio`
(`--trace-sample-ratio`, or OpenTelemetry's OTEL_TRACES_SAMPLER_ARG). A request not sampled costs a random
draw; its caller's `traceparent`, if any, is passed on to the copy unchanged (W3C's rule for a proxy).
"""
from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
SAMPLER_ENV, SAMPLER_ARG_ENV = "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"
_tracer: Any = None  # opentelemetry's Tracer while tracing is on
_provider: Any = None
_ratio = 1.0  # of requests without a caller's decision, the share traced
_passed_on: ContextVar[str | None] = ContextVar("shoal_traceparent_passed_on", default=None)
_NO_SPAN: nullcontext[None] = nullcontext()
_phases: ContextVar[Phases | None] = ContextVar("shoal_trace_phases", default=None)


def configured_endpoint(env: Mapping[str, str] = os.environ) -> str | None:
    """The OTLP/HTTP traces URL the environment names (OpenTelemetry's variables), or None."""
    if url := env.get(ENDPOINT_ENV):
        return url
    if base := env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return base.rstrip("/") + "/v1/traces"
    return None


def configured_ratio(env: Mapping[str, str] = os.environ) -> float:
    """The sampling ratio OpenTelemetry's variables name (a `traceidratio` sampler's argument), else 1."""
    if env.get(SAMPLER_ENV, "").removeprefix("parentbased_") != "traceidratio" or SAMPLER_ARG_ENV not in env:
        return 1.0
    try:
        return min(max(float(env[SAMPLER_ARG_ENV]), 0.0), 1.0)
    except ValueError:
        from shoal.errors import ConfigError
        raise ConfigError(f"{SAMPLER_ARG_ENV} must be a number from 0 to 1, not {env[SAMPLER_ARG_ENV]!r}") from None


def enable(service: str, endpoint: str | None = None, exporter: Any = None, sample_ratio: float = 1.0) -> None:
    """Trace from now on: export to `endpoint` (OTLP/HTTP, batched), or to `exporter` as each span ends; of the
    requests without a caller's decision, `sample_ratio` are traced."""
    global _tracer, _provider, _ratio
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        from shoal.errors import ConfigError
        raise ConfigError("tracing needs OpenTelemetry: pip install 'shoal[tracing]'") from None
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    _tracer, _provider, _ratio = provider.get_tracer("shoal"), provider, sample_ratio


def disable() -> None:
    """Stop tracing, exporting what is batched first."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


def enabled() -> bool:
    return _tracer is not None


def _sampled(headers: Mapping[str, str]) -> bool:
    """The root's decision: the caller's sampled flag, else a draw. A request not sampled passes its caller's
    traceparent on."""
    parent = headers.get("traceparent")
    caller = _caller_sampled(parent) if parent is not None else None
    _passed_on.set(parent if caller is False else None)
    if caller is None:
        return _ratio >= 1.0 or random.random() < _ratio
    return caller


def _caller_sampled(parent: str) -> bool | None:
    """The sampled flag of a W3C traceparent (version-traceid-parentid-flags); None when it is malformed."""
    flags = parent[-2:]
    if len(parent) != 55 or flags.strip("0123456789abcdef"):
        return None
    return bool(int(flags, 16) & 1)


def server_span(name: str, headers: Mapping[str, str], attributes: dict[str, Any] | None = None) -> Any:
    """A span for a request that came in, continuing the caller's `traceparent` (a context manager; None
    inside when tracing is off or the request is not sampled)."""
    if _tracer is None or not _sampled(headers):
        return _NO_SPAN
    return _root(name, headers, attributes)


def _root(name: str, headers: Mapping[str, str], attributes: dict[str, Any] | None) -> Any:
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind
    return _tracer.start_as_current_span(name, context=extract(headers), kind=SpanKind.SERVER,
                                         attributes=attributes)


def span(name: str, attributes: dict[str, Any] | None = None, client: bool = False) -> Any:
    """A child of the current span (a context manager; None inside when tracing is off)."""
    if _tracer is None:
        return _NO_SPAN
    from opentelemetry.trace import SpanKind, get_current_span
    if not get_current_span().is_recording():  # outside a sampled request
        return _NO_SPAN
    return _tracer.start_as_current_span(name, kind=SpanKind.CLIENT if client else SpanKind.INTERNAL,
                                         attributes=attributes)


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's `traceparent` to headers going out (or the caller's, for a request not sampled)."""
    if _tracer is None:
        return
    if (parent := _passed_on.get()) is not None:
        headers["traceparent"] = parent
        return
    from opentelemetry.propagate import inject as otel_inject
    from opentelemetry.trace import get_current_span
    if get_current_span().is_recording():
        otel_inject(headers)


def trace_id(span: Any) -> str | None:
    """A span's trace id as W3C writes it (None when tracing is off)."""
    return format(span.get_span_context().trace_id, "032x") if span is not None else None


def set_attributes(target: Any, **attributes: Any) -> None:
    if target is not None:
        target.set_attributes({k: v for k, v in attributes.items() if v is not None})


@contextmanager
def phases(name: str, headers: Mapping[str, str], attributes: dict[str, Any] | None = None) -> Iterator[Any]:
    """A server span whose child phases are recorded afterwards from timestamps: code running inside it finds
    them with `current_phases()`. Yields the span (None when tracing is off)."""
    if _tracer is None or not _sampled(headers):
        yield None
        return
    with _root(name, headers, attributes) as current:
        token = _phases.set(Phases(current))
        try:
            yield current
        finally:
            _phases.reset(token)


def current_phases() -> Phases | None:
    return _phases.get()


class Phases:
    """Children of a span, each from a start and an end on `time.monotonic()`'s clock."""

    def __init__(self, parent: Any) -> None:
        from opentelemetry import trace
        self.parent = parent
        self._context = trace.set_span_in_context(parent)
        self._offset_ns = time.time_ns() - time.monotonic_ns()

    def add(self, name: str, start: float, end: float, attributes: dict[str, Any] | None = None) -> None:
        if _tracer is None or end < start:
            return
        child = _tracer.start_span(name, context=self._context, attributes=attributes,
                                   start_time=self._offset_ns + int(start * 1e9))
        child.end(end_time=self._offset_ns + int(end * 1e9))
