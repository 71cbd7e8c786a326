"""Pure helpers of the console's load history: percentiles from histogram buckets, rates over a window, and
the few figures the console reads from a copy's own Prometheus text (whatever its engine kind calls them)."""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

Buckets = tuple[tuple[float, float], ...]  # (upper bound, cumulative count), ascending; the last bound +Inf

# What the console reads from a copy's /metrics, by engine kind's names: the built-in engine (TGI's names and
# shoal's), vLLM, SGLang, llama.cpp's server. Counters are summed over label sets; `_bucket` lines by `le`.
ENGINE_FIGURES: dict[str, str] = {
    "tgi_request_generated_tokens_sum": "tokens",  # generated tokens, summed over finished requests
    "vllm:generation_tokens_total": "tokens",
    "sglang:generation_tokens_total": "tokens",
    "llamacpp:tokens_predicted_total": "tokens",
    "shoal_prefix_cache_cached_tokens_total": "cached_tokens",  # prompt tokens read from the prefix cache
    "shoal_prefix_cache_prompt_tokens_total": "prompt_tokens",  # prompt tokens of requests that looked
    "vllm:prefix_cache_hits_total": "cached_tokens",  # vLLM counts tokens too
    "vllm:prefix_cache_queries_total": "prompt_tokens",
    "tgi_queue_size": "queue",  # requests waiting to join the copy's batch
    "vllm:num_requests_waiting": "queue",
    "sglang:num_queue_reqs": "queue",
    "llamacpp:requests_deferred": "queue",
    "tgi_batch_current_size": "batch",  # requests in the copy's running batch
    "vllm:num_requests_running": "batch",
    "sglang:num_running_reqs": "batch",
    "llamacpp:requests_processing": "batch",
}
ENGINE_HISTOGRAMS: dict[str, str] = {
    "tgi_request_duration_bucket": "latency",  # seconds a request spent in the copy
    "vllm:e2e_request_latency_seconds_bucket": "latency",
    "sglang:e2e_request_latency_seconds_bucket": "latency",
}
_LE = re.compile(r'le="([^"]+)"')


def engine_figures(text: str) -> tuple[dict[str, float], dict[str, Buckets]]:
    """The console's figures from a copy's Prometheus text: only the lines it needs are looked at (no full
    parse), summed over label sets."""
    values: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        end = line.find("{")
        name = line[:end] if end >= 0 else line.split(" ", 1)[0]
        figure, histogram = ENGINE_FIGURES.get(name), ENGINE_HISTOGRAMS.get(name)
        if figure is None and histogram is None:
            continue
        try:
            value = float(line.rsplit("}", 1)[-1].split()[0] if end >= 0 else line.split()[1])
        except (IndexError, ValueError):
            continue
        if figure is not None:
            values[figure] = values.get(figure, 0.0) + value
        elif histogram is not None and (le := _LE.search(line)):
            bound = math.inf if le.group(1) in ("+Inf", "Inf") else float(le.group(1))
            per = buckets.setdefault(histogram, {})
            per[bound] = per.get(bound, 0.0) + value
    return values, {k: tuple(sorted(v.items())) for k, v in buckets.items()}


def bucket_delta(new: Buckets | None, old: Buckets | None) -> Buckets | None:
    """Counts of the observations between two readings of one histogram (None: no reading, or it restarted)."""
    if not new:
        return None
    if not old:
        return new
    before = dict(old)
    delta = tuple((le, count - before.get(le, 0.0)) for le, count in new)
    return None if any(count < 0 for _le, count in delta) else delta


def quantile(q: float, buckets: Buckets | None) -> float | None:
    """Prometheus's histogram_quantile: linear inside the bucket the q-th observation falls in (the highest
    finite bound when it falls in +Inf); None without observations."""
    if not buckets:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower
            inside = count - below
            return lower + (le - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = le, count
    return lower


def rate(new: float | None, old: float | None, seconds: float) -> float | None:
    """Per second between two readings of a counter; None when one is missing or the counter went back
    (a restarted copy counts from 0 again)."""
    if new is None or old is None or seconds <= 0 or new < old:
        return None
    return (new - old) / seconds


def ratio(parts: Iterable[float | None], wholes: Iterable[float | None]) -> float | None:
    """sum(parts) / sum(wholes) over the readings present; None when the wholes add up to nothing."""
    pairs = [(p, w) for p, w in zip(parts, wholes) if p is not None and w is not None]
    whole = sum(w for _p, w in pairs)
    return sum(p for p, _w in pairs) / whole if whole > 0 else None


def rounded(value: float | None, digits: int = 4) -> float | None:
    """A figure with `digits` significant digits (the JSON stays small); None and non-finite values as None."""
    if value is None or not math.isfinite(value):
        return None
    if value == 0:
        return 0.0
    return round(value, max(0, digits - 1 - math.floor(math.log10(abs(value)))))


def merged(readings: Sequence[Buckets | None]) -> Buckets | None:
    """Buckets of several histograms with the same bounds, added up (copies of one component)."""
    present = [b for b in readings if b]
    if not present:
        return None
    total: dict[float, float] = {}
    for buckets in present:
        for le, count in buckets:
            total[le] = total.get(le, 0.0) + count
    return tuple(sorted(total.items()))
