"""Prometheus metrics of one engine process, under TGI's names where TGI has one."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_TOKENS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)

REQUEST_COUNT = Counter("tgi_request_count", "Requests received")
REQUEST_SUCCESS = Counter("tgi_request_success", "Requests that finished generating")
REQUEST_FAILURE = Counter("tgi_request_failure", "Requests that failed, by error type", ["err"])
REQUEST_DURATION = Histogram("tgi_request_duration", "End-to-end request seconds", buckets=_LATENCY)
QUEUE_DURATION = Histogram("tgi_request_queue_duration", "Seconds waiting before joining the batch",
                           buckets=_LATENCY)
INPUT_LENGTH = Histogram("tgi_request_input_length", "Prompt tokens per request", buckets=_TOKENS)
GENERATED_TOKENS = Histogram("tgi_request_generated_tokens", "Generated tokens per request", buckets=_TOKENS)
QUEUE_SIZE = Gauge("tgi_queue_size", "Requests waiting to join the batch")
BATCH_SIZE = Gauge("tgi_batch_current_size", "Requests in the running batch")
BATCH_RESERVED_TOKENS = Gauge("tgi_batch_current_max_tokens",
                              "Tokens reserved by the running batch (input + max_new_tokens each)")
BATCH_MAX_TOKENS_PEAK = Gauge("shoal_batch_max_tokens_peak",
                              "Most tokens the running batch has ever reserved (<= MAX_BATCH_TOTAL_TOKENS)")
BATCH_FORWARD_DURATION = Histogram("tgi_batch_forward_duration", "Seconds per forward pass", buckets=_LATENCY)
BATCH_TOKENS = Counter("shoal_batch_tokens", "Tokens fed through forward passes (prompt and generated)")
IN_FLIGHT = Gauge("shoal_engine_in_flight", "Requests admitted by the HTTP server and not yet answered")
PREFIX_LOOKUPS = Counter("shoal_prefix_cache_lookups", "Requests that looked for a cached prompt prefix")
PREFIX_HITS = Counter("shoal_prefix_cache_hits", "Requests that reused a cached prompt prefix")
PREFIX_PROMPT_TOKENS = Counter("shoal_prefix_cache_prompt_tokens", "Prompt tokens of the requests that looked")
PREFIX_CACHED_TOKENS = Counter("shoal_prefix_cache_cached_tokens", "Prompt tokens reused instead of computed")
PREFIX_SWA_MISSES = Counter("shoal_prefix_cache_window_misses",
                            "Matches not reused: the sliding-window layers no longer hold the cells before them")
PREFIX_EVICTIONS = Counter("shoal_prefix_cache_evictions", "Cached prefixes dropped to make room")
PREFIX_ENTRIES = Gauge("shoal_prefix_cache_entries", "Cached prefixes held")
PREFIX_HELD_TOKENS = Gauge("shoal_prefix_cache_tokens", "Tokens the cached prefixes hold")
PREFIX_HIT_RATE = Gauge("shoal_prefix_cache_hit_rate", "Hits / lookups since the engine started")
GRAMMAR_COMPILE_DURATION = Histogram("shoal_grammar_compile_duration", "Seconds to compile a grammar (cache misses)",
                                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5))
GRAMMAR_CACHE_HITS = Counter("shoal_grammar_cache_hits", "Grammar compilations answered from the cache")
GRAMMAR_MASK_WAIT = Histogram("shoal_grammar_mask_wait_duration",
                              "Seconds the model thread waited for token masks after a forward pass",
                              buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1))
ADAPTERS_LOADED = Gauge("shoal_lora_adapters_loaded", "LoRA adapters held in memory (serving or leaving)")
ADAPTER_SWITCHES = Counter("shoal_lora_adapter_switches", "Forward passes that ran another adapter than the last")
ADAPTER_GROUPS = Gauge("shoal_lora_adapter_groups", "Adapters (the base counts as one) among running requests")
