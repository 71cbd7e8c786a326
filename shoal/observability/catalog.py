"""Which metrics shoal keeps, with SageMaker's names, units, namespaces and dimension sets (Amazon SageMaker AI
metrics in Amazon CloudWatch: endpoint invocation metrics and inference component metrics), and shoal's own.

Per request (`request_samples`), as SageMaker sends them:
- `AWS/SageMaker`, per inference component (`InferenceComponentName`: the one the client named, an adapter's
  own name included) and per endpoint variant (`EndpointName`, `VariantName`):
  `Invocations` (1 for each request a copy answered, or kept past the first-byte timeout),
  `Invocation4XXErrors` / `Invocation5XXErrors` (1 or 0 for every request: the copy's status where it
  answered, else the gateway's), `InvocationModelErrors` (1 or 0 per invocation: the copy answered other
  than 2xx, or not in time), `ModelLatency` (microseconds from sending the request to a copy until the last
  byte of its answer was relayed) and `OverheadLatency` (microseconds the gateway added: the request's whole
  time minus ModelLatency); per component also `InvocationsPerCopy` (1/copies in service per invocation,
  so its Sum is invocations per copy).
- `Shoal`, per inference component: `PromptTokens`, `CachedTokens`, `GeneratedTokens` (per request whose answer
  reported them) and `TimeToFirstByte` (microseconds, streams).

Sampled (`component_samples`, every second for concurrency, every SAMPLE_S for the rest):
- `AWS/SageMaker` per component: `ConcurrentRequestsPerCopy` (requests in flight and queued / copies).
- `/aws/sagemaker/InferenceComponents` per component: `CPUUtilizationNormalized` (% of the copy's reserved
  cores) and `MemoryUtilizationNormalized` (% of its memory: MaxMemoryRequiredInMb, else its reservation),
  one sample per copy in service.
- `Shoal` per component: `DesiredCopyCount`, `CurrentCopyCount` (in service).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from shoal.observability.hooks import Finished
from shoal.observability.store import Dims, SeriesKey

SAGEMAKER = "AWS/SageMaker"
INFERENCE_COMPONENTS = "/aws/sagemaker/InferenceComponents"
SHOAL = "Shoal"
COMPONENT = "InferenceComponentName"
SAMPLE_S = 10.0  # CPU, memory and copy counts; concurrency every second

Sample = tuple[SeriesKey, str, float]  # series, unit, value

MICROSECONDS, NONE, PERCENT, COUNT = "Microseconds", "None", "Percent", "Count"


@dataclass(frozen=True)
class ComponentReading:
    """One component as the sampler reads it (the server fills it from the controller and the gateway)."""

    endpoint: str
    component: str
    desired: int
    current: int  # copies in service
    concurrency: int  # requests in flight + queued
    cpu: list[float] = field(default_factory=list)  # per copy in service: % of its reserved cores
    memory: list[float] = field(default_factory=list)  # per copy in service: % of its memory


class _Keys:
    """SeriesKeys made once per (namespace, metric, dims): the hot path builds none."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, str, Dims], SeriesKey] = {}

    def __call__(self, namespace: str, metric: str, dims: Dims) -> SeriesKey:
        key = self._made.get((namespace, metric, dims))
        if key is None:
            key = self._made[(namespace, metric, dims)] = SeriesKey(namespace, metric, dims)
        return key


class Catalog:
    def __init__(self, variant_of: Callable[[str], str]) -> None:
        self.variant_of = variant_of  # an endpoint's production variant name (SageMaker's, "AllTraffic")
        self.key = _Keys()
        self._variants: dict[str, tuple[str, float]] = {}  # endpoint -> (variant, when read): read once a minute

    def variant(self, endpoint: str) -> str:
        now = time.monotonic()
        known = self._variants.get(endpoint)
        if known is None or now - known[1] > 60:
            known = self._variants[endpoint] = (self.variant_of(endpoint), now)
        return known[0]

    def request_samples(self, f: Finished) -> Iterator[Sample]:
        if f.endpoint is None or (invoked := f.invoked) is None:
            return
        key = self.key
        component: Dims = ((COMPONENT, invoked),)
        variant: Dims = (("EndpointName", f.endpoint), ("VariantName", self.variant(f.endpoint)))
        status = 504 if f.timed_out else f.copy_status if f.copy_status is not None else f.status
        invoked_copy = f.copy_status is not None or f.timed_out
        for dims in (component, variant):
            yield key(SAGEMAKER, "Invocation4XXErrors", dims), NONE, 1.0 if 400 <= status < 500 else 0.0
            yield key(SAGEMAKER, "Invocation5XXErrors", dims), NONE, 1.0 if status >= 500 else 0.0
            if invoked_copy:
                yield key(SAGEMAKER, "Invocations", dims), NONE, 1.0
                yield key(SAGEMAKER, "InvocationModelErrors", dims), NONE, 0.0 if status < 300 else 1.0
            if f.model_s is not None:
                yield key(SAGEMAKER, "ModelLatency", dims), MICROSECONDS, f.model_s * 1e6
                yield key(SAGEMAKER, "OverheadLatency", dims), MICROSECONDS, max(0.0, f.total_s - f.model_s) * 1e6
        if invoked_copy:
            yield key(SAGEMAKER, "InvocationsPerCopy", component), NONE, 1.0 / max(f.copies, 1)
        if (t := f.tokens) is not None:
            yield key(SHOAL, "PromptTokens", component), COUNT, float(t.prompt)
            yield key(SHOAL, "CachedTokens", component), COUNT, float(t.cached)
            yield key(SHOAL, "GeneratedTokens", component), COUNT, float(t.generated)
        if f.first_byte_s is not None:
            yield key(SHOAL, "TimeToFirstByte", component), MICROSECONDS, f.first_byte_s * 1e6

    def concurrency_samples(self, r: ComponentReading) -> Iterator[Sample]:
        yield (self.key(SAGEMAKER, "ConcurrentRequestsPerCopy", ((COMPONENT, r.component),)), NONE,
               r.concurrency / max(r.desired, 1))

    def component_samples(self, r: ComponentReading) -> Iterator[Sample]:
        component: Dims = ((COMPONENT, r.component),)
        yield self.key(SHOAL, "DesiredCopyCount", component), COUNT, float(r.desired)
        yield self.key(SHOAL, "CurrentCopyCount", component), COUNT, float(r.current)
        for cpu in r.cpu:
            yield self.key(INFERENCE_COMPONENTS, "CPUUtilizationNormalized", component), PERCENT, cpu
        for memory in r.memory:
            yield self.key(INFERENCE_COMPONENTS, "MemoryUtilizationNormalized", component), PERCENT, memory
