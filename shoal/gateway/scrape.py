"""One scrape for everything: the server's `/metrics` carries its own metrics and every copy's engine metrics.

At scrape time the gateway asks each copy in service for its `/metrics` (with the copy's credential, all at
once, `timeout_s` each), adds `endpoint`, `component` and `copy` labels to its samples and merges them with
the server's own families of the same name (a copy's `process_*` beside the server's), so Prometheus needs one
target and no discovery. A copy gone from the pool is gone from the next scrape. `shoal_copy_up` says, per
copy, whether its metrics came (0: it did not answer in time, or not in Prometheus text).
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator

import aiohttp
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from shoal.gateway.pool import Backend, RoutingTable

COPY_LABELS = ("endpoint", "component", "copy")


class CopyMetrics:
    def __init__(self, table: RoutingTable, timeout_s: float = 2.0, registry: CollectorRegistry = REGISTRY) -> None:
        self.table = table
        self.timeout_s = timeout_s
        self.registry = registry

    async def exposition(self) -> bytes:
        """The server's metrics and its copies', in Prometheus text format."""
        copies = [(pool.config.endpoint, pool.name, b) for pool in self.table.pools.values() for b in pool.backends]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as session:
            texts = await asyncio.gather(*(_fetch(session, backend) for _, _, backend in copies))
        families = {f.name: _copy(f) for f in self.registry.collect()}  # (some collectors hand out the same object)
        up = Metric("shoal_copy_up", "1 when the copy's engine metrics came with this scrape, else 0", "gauge")
        for (endpoint, component, backend), text in zip(copies, texts):
            labels = {"endpoint": endpoint, "component": component, "copy": backend.id}
            up.add_sample("shoal_copy_up", labels, 0.0 if text is None else 1.0)
            for family in _families(text or ""):
                _merge(families, family, labels)
        families[up.name] = up
        return generate_latest(_Fixed(families.values()))  # type: ignore[arg-type]


async def _fetch(session: aiohttp.ClientSession, backend: Backend) -> str | None:
    headers = {"Authorization": f"Bearer {backend.token}"} if backend.token else {}
    try:
        async with session.get(f"{backend.address}/metrics", headers=headers) as answer:
            return await answer.text() if answer.status == 200 else None
    except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError):
        return None


def _families(text: str) -> Iterator[Metric]:
    try:
        yield from text_string_to_metric_families(text)
    except ValueError:  # not Prometheus text: the copy counts as down for its metrics' sake
        return


def _copy(family: Metric) -> Metric:
    out = Metric(family.name, family.documentation, family.type, family.unit)
    out.samples = list(family.samples)
    return out


def _merge(families: dict[str, Metric], family: Metric, labels: dict[str, str]) -> None:
    """Add `family`'s samples, labelled with the copy, to the family of the same name (a new one if none)."""
    into = families.get(family.name)
    if into is None:
        into = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
    elif into.type != family.type:  # the same name for another kind of metric: keep the server's
        return
    into.samples.extend(Sample(s.name, {**s.labels, **labels}, s.value, s.timestamp, s.exemplar)
                        for s in family.samples)


class _Fixed:
    """A registry-like collection of families, for prometheus_client's text writer."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)
