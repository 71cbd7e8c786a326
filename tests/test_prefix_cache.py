"""The prefix cache: its bookkeeping alone, llama.cpp's sliding-window cells on the real runner, and the
engine reusing prefixes on the real model."""
from __future__ import annotations

import concurrent.futures as cf
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from helpers import engine_process, metric

from shoal.engine.prefix_cache import PrefixCache, PrefixReuse
from shoal.engine.runners.base import BatchItem
from shoal.engine.runners.llamacpp import LlamaCppRunner
from shoal.models.registry import resolve

SENTENCE = "The history of science is the study of the development of science and scientific knowledge."
LONG = " ".join([SENTENCE] * 45)  # 721 tokens: longer than gemma-3-270m's 512-token sliding window


# -- the bookkeeping ------------------------------------------------------------------------------
def test_lookup_reuses_whole_blocks_or_the_whole_same_prompt() -> None:
    cache = PrefixCache(capacity_tokens=1000, seq_ids=[70, 71], block=4, min_tokens=2)
    cache.store(list(range(20)), body=19)
    cache.store([0, 1, 2, 99, 98, 97], body=5)
    entry, reused = cache.lookup(list(range(10)) + [55])
    assert entry is not None and len(entry) == 20 and reused == 8  # 10 shared: two whole blocks
    assert cache.lookup(list(range(20)))[1] == 19  # the same prompt: its whole body, as computed before
    assert cache.lookup(list(range(21)))[1] == 16  # a longer prompt: block 16-19 is cut otherwise now
    assert cache.lookup([0, 1, 2, 99, 98, 97])[1] == 5
    assert cache.lookup([5, 6])[1] == 0


def test_store_skips_what_is_held_and_replaces_what_it_extends() -> None:
    cache = PrefixCache(capacity_tokens=1000, seq_ids=[70, 71, 72], min_tokens=2)
    first = cache.store([1, 2, 3, 4], body=3).entry
    assert cache.store([1, 2, 3], body=2).entry is None  # already held inside the first
    longer = cache.store([1, 2, 3, 4, 5, 6], body=5)
    assert longer.evicted == [first] and [len(e) for e in cache.entries] == [6]
    assert cache.evictions == 0  # a replacement is not an eviction


def test_least_recently_used_entries_make_room() -> None:
    cache = PrefixCache(capacity_tokens=10, seq_ids=[70, 71, 72], block=2, min_tokens=2)
    a = cache.store([1, 1, 1, 1], body=3).entry
    b = cache.store([2, 2, 2, 2], body=3).entry
    cache.lookup([1, 1, 1, 1, 9])  # a is now the more recently used
    made = cache.store([3, 3, 3, 3], body=3)
    assert made.evicted == [b] and a in cache.entries and cache.held_tokens == 8 <= cache.capacity_tokens
    assert cache.store(list(range(11)), body=10).entry is None  # larger than the whole cache: not kept
    cache.store([4, 4], body=1)
    cache.store([5, 5], body=1)  # no sequence id left: the oldest goes
    assert len(cache.entries) == 3 and cache.evictions == 2


def test_cells_shared_with_a_parent_count_once_and_pass_to_its_children_when_it_goes() -> None:
    cache = PrefixCache(capacity_tokens=30, seq_ids=[70, 71, 72, 73], block=4, min_tokens=2)
    system = list(range(100, 116))  # 16 tokens every conversation starts with
    first = cache.store(system + [1, 1, 1, 1], body=19).entry
    second = cache.store(system + [2, 2, 2, 2], body=19, source=first, shared=16).entry
    assert second is not None and second.parent is first and second.cost == 4
    assert cache.held_tokens == 24  # the system prompt's 16 cells once, two tails of 4
    third = cache.store(system + [3, 3, 3, 3], body=19, source=second, shared=16)
    # 28 cells: room without evicting, where counting each entry whole (60) would have dropped both others
    assert third.evicted == [] and cache.held_tokens == 28 and len(cache.entries) == 3
    cache.lookup(system + [2, 2, 2, 2])  # the same prompts again: whole hits
    cache.lookup(system + [3, 3, 3, 3])  # the first is now the least recently used
    fourth = cache.store(system + [4, 4, 4, 4], body=19, source=third.entry, shared=16)
    assert fourth.evicted == [first]  # it goes, but only its 4-cell tail is freed:
    assert second.parent is None and second.cost == 20  # its shared cells are the second's now
    assert cache.held_tokens == 28 and cache.evictions == 1
    unknown = cache.store([7] * 8, body=7, source=first, shared=4).entry  # its source is gone: all its own
    assert unknown is not None and unknown.parent is None and unknown.cost == 8


def test_dropping_a_parent_of_several_frees_only_its_tail() -> None:
    cache = PrefixCache(capacity_tokens=100, seq_ids=[70, 71, 72, 73], block=4, min_tokens=2)
    system = list(range(100, 116))
    root = cache.store(system + [0] * 4, body=19).entry
    children = [cache.store(system + [n] * 4, body=19, source=root, shared=16).entry for n in (1, 2, 3)]
    assert cache.held_tokens == 20 + 3 * 4
    cache.forget(root)  # its 4-cell tail goes; one child inherits the 16 shared cells, the others share them
    heir = next(c for c in children if c.parent is None)
    assert all(c.parent is heir and c.shared == 16 for c in children if c is not heir)
    assert cache.held_tokens == 16 + 3 * 4  # it used to count the 16 cells once per child: 3 x 20


def test_an_unused_cache_keeps_a_share_of_its_cells_and_opens_up_when_reused() -> None:
    cache = PrefixCache(capacity_tokens=1600, seq_ids=range(70, 90), block=4, min_tokens=2, idle_share=1 / 16)
    for i in range(10):  # all-unique prompts: nothing reused, so it keeps only the newest (100 > 1600 / 16)
        cache.note(0, 100)
        cache.store([i] * 100, body=99)
    assert [e.tokens[0] for e in cache.entries] == [9] and cache.limit_tokens == 100
    for _ in range(4):  # then a tenth of the prompt tokens come from it: all of it may be used again
        cache.note(100, 100)
    assert cache.limit_tokens == 1600
    for i in range(10, 20):
        cache.store([i] * 100, body=99)
    assert len(cache.entries) == 11 and cache.held_tokens == 1100


def test_one_off_tails_do_not_push_out_the_prefixes_the_next_requests_reuse() -> None:
    """Four system prompts of 20 tokens, each request one of them and a question of its own (4 tokens),
    answered in 4; room for the four system prompts (27 cells with the first question) and a few tails.
    Under plain LRU each new tail pushed out a system prompt not used for a few requests (92 % of what
    could be reused was); the segmented LRU drops the tails nobody reuses first and keeps all four."""
    cache = PrefixCache(capacity_tokens=160, seq_ids=range(70, 102), block=4, min_tokens=2)
    rng = random.Random(0)
    reused = possible = 0
    for i in range(400):
        system = 1000 * rng.randrange(4)
        prompt = [system + j for j in range(20)] + [10_000 + 10 * i + j for j in range(4)]
        entry, n = cache.lookup(prompt)
        if i >= 50:  # past the first use of each
            reused, possible = reused + n, possible + 20
        kept = cache.store(prompt + [20_000 + i] * 3, body=23, source=entry if n else None, shared=n)
        assert cache.held_tokens <= cache.capacity_tokens and kept.entry is not None
    assert reused == possible


class RecordingRunner:
    """Records what PrefixReuse asks of a runner (the call order is the point; the real runner is below)."""

    sliding_window = 0

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def copy_prefix(self, source: int, target: int, tokens: int) -> None:
        self.calls.append(("copy", source, target, tokens))

    def release(self, seq_id: int) -> None:
        self.calls.append(("release", seq_id))

    def kept_from(self, seq_id: int) -> int:
        return 0


def test_an_entry_replaced_by_its_extension_frees_its_cells_before_the_new_one_fills() -> None:
    runner = RecordingRunner()
    reuse = PrefixReuse(PrefixCache(1000, [70], min_tokens=2), runner)  # type: ignore[arg-type]
    reuse.keep(0, list(range(20)), body=19)  # the prompt, kept when its prefill ends
    reuse.keep(0, list(range(30)), body=19)  # the same request at its end: prompt and generated tokens
    assert runner.calls == [("copy", 0, 70, 20), ("release", 70), ("copy", 0, 70, 30)]


def test_an_entry_kept_from_a_request_that_reused_a_prefix_shares_its_cells() -> None:
    runner = RecordingRunner()
    reuse = PrefixReuse(PrefixCache(1000, [70, 71, 72], min_tokens=2), runner)  # type: ignore[arg-type]
    reuse.keep(0, list(range(200)), body=199)
    first = reuse.cache.entries[0]
    assert reuse.reuse(1, list(range(130)) + [7] * 20) == 128  # two whole blocks of the first's cells
    reuse.keep(1, list(range(130)) + [7] * 20, body=149)
    second = reuse.cache.entries[1]
    assert second.parent is first and second.shared == 128 and reuse.cache.held_tokens == 200 + 22
    assert reuse.reuse(1, [5] * 40) == 0  # sequence 1 again, for a request that reused nothing
    reuse.keep(1, [5] * 40, body=39)
    assert reuse.cache.entries[2].parent is None


# -- llama.cpp's sliding-window layers, on the real runner -----------------------------------------
def _prefill(runner: LlamaCppRunner, seq: int, tokens: list[int], start: int = 0) -> None:
    for at in range(0, len(tokens), 256):
        runner.step([BatchItem(seq, tokens[at:at + 256], start + at)])


def test_a_prefix_whose_window_cells_are_gone_is_not_reused() -> None:
    """With few sequences llama.cpp's sliding-window cache is small, and it recycles the window cells
    other sequences no longer attend to; a prefix whose cells before its end are gone must be recomputed."""
    runner = LlamaCppRunner("gemma-3-270m", resolve("gemma-3-270m"), n_ctx=4096, n_batch=512, n_seq_max=2,
                            n_threads=2)
    assert runner.sliding_window == 512
    prompt = runner.tokenize(LONG)[:700]
    reuse = PrefixReuse(PrefixCache(4096, [1], block=256, min_tokens=2), runner)
    _prefill(runner, 0, prompt)
    reuse.keep(0, prompt, body=700)  # all 700 computed as prompt chunks (of 256, as the block)
    runner.release(0)
    assert runner.kept_from(1) == 0 and reuse.reuse(0, prompt + [7]) == 700  # all cells still there
    runner.release(0)
    other = runner.tokenize(" ".join(["Once upon a time there was a fisherman."] * 300))[:2500]
    _prefill(runner, 0, other)  # fills the sliding-window cache: the prefix's old window cells are recycled
    runner.release(0)
    kept = runner.kept_from(1)
    assert kept > 700 - 512  # the cells the last 512 positions need are no longer all there
    assert reuse.reuse(0, prompt + [7]) == 0  # so nothing is reused: the prompt is computed again


# -- the engine, on the real model -----------------------------------------------------------------
@dataclass
class Engines:
    cached: str  # cache on: the one most tests fill
    hit: str  # cache on, for one partial hit: its cells sit as a fresh engine's would
    miss: str  # cache on, for the same request as a miss
    plain: str  # cache off


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engines]:
    settings = {"MAX_INPUT_LENGTH": 1000, "MAX_TOTAL_TOKENS": 1100, "MAX_BATCH_TOTAL_TOKENS": 4096}
    with engine_process(tmp_path_factory.mktemp("cached"), **settings) as cached, \
            engine_process(tmp_path_factory.mktemp("hit"), **settings) as hit, \
            engine_process(tmp_path_factory.mktemp("miss"), **settings) as miss, \
            engine_process(tmp_path_factory.mktemp("plain"), **settings, SHOAL_PREFIX_CACHE=0) as plain:
        yield Engines(cached, hit, miss, plain)


def _generate(url: str, prompt: str, n: int = 16) -> httpx.Response:
    return httpx.post(f"{url}/generate", timeout=120,
                      json={"inputs": prompt, "parameters": {"max_new_tokens": n, "details": True}})


# three prompts that share no block: each is a true miss first
@pytest.mark.parametrize("prompt", ["The capital of France is", "Once upon a time, " + SENTENCE * 3, LONG])
def test_a_greedy_request_reads_the_same_with_and_without_a_cache_hit(engines: Engines, prompt: str) -> None:
    miss, hit = _generate(engines.cached, prompt), _generate(engines.cached, prompt)
    prompt_tokens = int(hit.headers["x-prompt-tokens"])
    assert miss.headers["x-cached-tokens"] == "0"
    assert int(hit.headers["x-cached-tokens"]) == prompt_tokens - 1 == hit.json()["details"]["cached_tokens"]
    assert hit.json()["generated_text"] == miss.json()["generated_text"]
    assert hit.json()["details"]["tokens"] == miss.json()["details"]["tokens"]  # logprobs too: bit for bit


def test_a_shared_prefix_is_reused_and_only_the_rest_computed(engines: Engines) -> None:
    """Bit for bit where the cells sit alike: llama.cpp's attention also moves with the KV cells' layout, which
    a cache holding many entries changes (docs/architecture.md, "Prefix cache")."""
    system = "You are a careful assistant. " + SENTENCE * 8
    _generate(engines.hit, system + " Question: what is science?")
    answer = _generate(engines.hit, system + " Question: who was Galileo?")
    shared = int(answer.headers["x-cached-tokens"])
    assert shared >= 128 and shared % 64 == 0  # the whole blocks of the system prompt
    assert shared < int(answer.headers["x-prompt-tokens"]) - 3
    miss = _generate(engines.miss, system + " Question: who was Galileo?")
    assert miss.headers["x-cached-tokens"] == "0"
    assert answer.json()["details"]["tokens"] == miss.json()["details"]["tokens"]


def test_requests_that_arrive_together_compute_their_shared_prefix_once(engines: Engines) -> None:
    system = "You are a terse historian. " + SENTENCE * 9  # a system prompt this engine has not seen
    with cf.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda q: _generate(engines.cached, f"{system} Question: {q}?", n=4),
                                ["who", "what", "when"]))
    cached = sorted(int(a.headers["x-cached-tokens"]) for a in answers)
    assert cached[0] == 0 and cached[1] >= 128 and cached[2] >= 128  # one computed it, two waited and reused


def test_openai_usage_reports_cached_tokens(engines: Engines) -> None:
    client = openai.OpenAI(base_url=f"{engines.cached}/v1", api_key="unused")
    messages = [{"role": "system", "content": SENTENCE * 3}, {"role": "user", "content": "Say hi."}]
    client.chat.completions.create(model="m", messages=messages, max_tokens=4, temperature=0)
    again = client.chat.completions.create(model="m", messages=messages, max_tokens=4, temperature=0)
    assert again.usage.prompt_tokens_details.cached_tokens == again.usage.prompt_tokens - 1
    client.completions.create(model="m", prompt=SENTENCE * 3, max_tokens=3, temperature=0)
    stream = client.completions.create(model="m", prompt=SENTENCE * 3, max_tokens=3, temperature=0, stream=True,
                                       stream_options={"include_usage": True})
    usage = [c.usage for c in stream if c.usage][-1]
    assert usage.prompt_tokens_details.cached_tokens > 0


def test_metrics_and_the_off_switch(engines: Engines) -> None:
    cached, plain = engines.cached, engines.plain
    assert _generate(plain, SENTENCE * 3).headers["x-cached-tokens"] == "0"
    assert metric(cached, "shoal_prefix_cache_hits_total") >= 3
    assert 0 < metric(cached, "shoal_prefix_cache_hit_rate") <= 1
    assert metric(cached, "shoal_prefix_cache_tokens") <= 4096
    assert "shoal_prefix_cache_lookups_total 0.0" in httpx.get(f"{plain}/metrics").text


def test_eviction_under_pressure_keeps_every_running_requests_budget(tmp_path: Path) -> None:
    """A cache of 600 tokens fills with distinct prompts and evicts; a batch using all of
    MAX_BATCH_TOTAL_TOKENS still runs beside it."""
    with engine_process(tmp_path, MAX_INPUT_LENGTH=200, MAX_TOTAL_TOKENS=256, MAX_BATCH_TOTAL_TOKENS=1024,
                        SHOAL_PREFIX_CACHE_TOKENS=600) as url:
        for i in range(8):
            assert _generate(url, f"{i} " + SENTENCE * 6, n=8).status_code == 200
        assert metric(url, "shoal_prefix_cache_evictions_total") > 0
        assert metric(url, "shoal_prefix_cache_tokens") <= 600
        for i in range(8):  # conversations on one system prompt: its cells are held once
            answer = _generate(url, SENTENCE * 9 + f" Question {i}: why?", n=8)
            assert i == 0 or int(answer.headers["x-cached-tokens"]) >= 128
        assert metric(url, "shoal_prefix_cache_entries") >= 6  # whole, each would take over 160 of the 600
        assert metric(url, "shoal_prefix_cache_tokens") <= 600
        with cf.ThreadPoolExecutor(4) as pool:  # 4 x (200-token prompts + 56) = the whole 1024-token budget
            answers = list(pool.map(lambda i: _generate(url, f"{i} {i} " + SENTENCE * 11, n=56), range(4)))
        assert all(a.status_code == 200 for a in answers)
        assert metric(url, "shoal_batch_max_tokens_peak") <= 1024
        assert np.all([int(a.headers["x-generated-tokens"]) == 56 for a in answers])
