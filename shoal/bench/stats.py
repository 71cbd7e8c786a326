"""The numbers of one load point: requests, rates, latency percentiles, TTFT, ITL, goodput, copy shares."""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from shoal.bench.loadgen import Run


@dataclass
class Slo:
    """A request is good when it succeeded within every bound given (seconds)."""

    ttft: float | None = None
    latency: float | None = None
    itl: float | None = None

    def met(self, ttft: float | None, latency: float, itl: float | None) -> bool:
        return ((self.ttft is None or (ttft is not None and ttft <= self.ttft))
                and (self.latency is None or latency <= self.latency)
                and (self.itl is None or itl is None or itl <= self.itl))


@dataclass
class PointStats:
    config: str
    load: str  # "vus=8" or "rate=4/s"
    requests: int  # answered (successes and failures), interrupted ones excluded
    interrupted: int
    duration_s: float
    req_per_s: float
    success_pct: float
    latency_p50_s: float | None
    latency_p90_s: float | None
    latency_p99_s: float | None
    latency_mean_s: float | None
    ttft_p50_s: float | None
    ttft_p99_s: float | None
    itl_mean_s: float | None
    itl_p50_s: float | None
    output_tokens_per_s: float
    goodput_req_per_s: float | None
    errors: dict[str, int] = field(default_factory=dict)
    copy_share: dict[str, float] = field(default_factory=dict)
    # with a load schedule and a shoal component: its copies over time (shoal.bench.timeline)
    copy_seconds: float | None = None  # ∫ (desired + draining) copies dt over the run
    mean_copies: float | None = None
    peak_copies: int | None = None
    cold_start_s: float | None = None  # first byte of the first request that found no copy in service
    cold_starts: int = 0  # requests that began with no copy in service
    cold_start_ttfts_s: list[float] = field(default_factory=list)  # their first bytes (the successful ones)
    timeline: list[dict] = field(default_factory=list)

    def row(self) -> dict:
        return asdict(self)


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def summarize(run: Run, config: str, load: str, slo: Slo | None = None) -> PointStats:
    """req/s counts every answered request over the configured duration, as k6's http_reqs rate over a
    constant-vus stage; latency, TTFT and ITL are over successful requests."""
    ok = [r for r in run.records if r.ok]
    latencies = [r.latency for r in ok]
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    gaps = [g for r in ok for g in r.gaps]
    per_request_itl = [float(np.mean(r.gaps)) if r.gaps else None for r in ok]
    copies = Counter(r.copy for r in ok if r.copy)
    total = len(run.records)
    goodput = None
    if slo is not None:
        good = sum(slo.met(r.ttft, r.latency, itl) for r, itl in zip(ok, per_request_itl))
        goodput = good / run.duration_s
    return PointStats(
        config=config, load=load, requests=total, interrupted=run.interrupted, duration_s=run.duration_s,
        req_per_s=total / run.duration_s, success_pct=100.0 * len(ok) / total if total else 0.0,
        latency_p50_s=_pct(latencies, 50), latency_p90_s=_pct(latencies, 90), latency_p99_s=_pct(latencies, 99),
        latency_mean_s=_mean(latencies), ttft_p50_s=_pct(ttfts, 50), ttft_p99_s=_pct(ttfts, 99),
        itl_mean_s=_mean(gaps), itl_p50_s=_pct(gaps, 50),
        output_tokens_per_s=sum(r.tokens for r in ok) / run.duration_s, goodput_req_per_s=goodput,
        errors=dict(Counter(r.error for r in run.records if r.error)),
        copy_share={c: n / len(ok) for c, n in sorted(copies.items())})
