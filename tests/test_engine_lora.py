"""LoRA adapters in the built-in engine: the group choice alone, the prefix cache's namespaces alone, and a real
engine serving the shipped adapters of gemma-3-270m (shoal/models/adapters) beside its base model."""
from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from helpers import engine_process, metric

from shoal.engine.lora import Turns
from shoal.engine.prefix_cache import PrefixCache
from shoal.models.registry import shipped_adapters

UPPER, AHOY = "gemma-3-270m-uppercase", "gemma-3-270m-ahoy"
PROMPT = "Can you tell me about the ocean?"


# -- the group choice -------------------------------------------------------------------------------------------
def _run(turns: Turns[str], sizes: dict[str, int], steps: int) -> list[str]:
    ran = []
    for _ in range(steps):
        group = turns.choose(sizes)
        turns.ran(group)
        ran.append(group)
    return ran


def test_equal_groups_alternate() -> None:
    assert _run(Turns(), {"a": 4, "b": 4}, 6) == ["a", "b", "a", "b", "a", "b"]


def test_groups_share_steps_in_proportion_and_a_small_one_never_starves() -> None:
    ran = _run(Turns(), {"big": 12, "small": 2}, 700)
    share = Counter(ran)
    assert share["small"] == pytest.approx(100, abs=2)  # 2 of 14 sequences: 1 step in 7
    turns = [k for k, group in enumerate(ran) if group == "small"]
    assert max(b - a for a, b in zip(turns, turns[1:])) == 7


def test_a_group_that_joins_waits_for_its_share_not_for_the_history() -> None:
    turns: Turns[str] = Turns()
    _run(turns, {"a": 8}, 50)
    assert _run(turns, {"a": 8, "b": 1}, 9) == ["a"] * 8 + ["b"]


# -- the prefix cache's namespaces --------------------------------------------------------------------------------
def test_prefixes_are_reused_only_with_the_adapter_that_computed_them() -> None:
    cache = PrefixCache(capacity_tokens=1000, seq_ids=[70, 71, 72], block=4, min_tokens=2)
    cache.store(list(range(20)), body=19)  # the base model's
    assert cache.lookup(list(range(20)), namespace=7) == (None, 0)
    adapter_entry = cache.store(list(range(20)), body=19, namespace=7).entry  # the same tokens, another adapter
    assert adapter_entry is not None and len(cache.entries) == 2
    assert cache.lookup(list(range(20)), namespace=7) == (adapter_entry, 19)
    assert [e.namespace for e in cache.forget_namespace(7)] == [7]
    assert cache.lookup(list(range(20)))[1] == 19 and len(cache.entries) == 1


# -- a real engine with the shipped adapters ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def adapters() -> dict[str, Path]:
    shipped = shipped_adapters()
    assert {UPPER, AHOY} <= set(shipped), f"shipped adapters: {sorted(shipped)}"
    return shipped


@pytest.fixture(scope="module")
def lora_engine(tmp_path_factory: pytest.TempPathFactory, adapters: dict[str, Path]) -> Iterator[str]:
    with engine_process(tmp_path_factory.mktemp("lora-engine"), MAX_TOTAL_TOKENS=1024,
                        SHOAL_LORA_ADAPTERS=f"{UPPER}={adapters[UPPER]};{AHOY}={adapters[AHOY]}") as url:
        yield url


def generate(url: str, adapter: str | None = None, max_new_tokens: int = 24, prompt: str = PROMPT) -> dict:
    parameters = {"max_new_tokens": max_new_tokens, "details": True, **({"adapter_id": adapter} if adapter else {})}
    r = httpx.post(f"{url}/generate", json={"inputs": prompt, "parameters": parameters}, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def is_upper(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return len(letters) >= 10 and all(c.isupper() for c in letters)


def test_each_adapter_shows_its_behaviour_and_the_base_does_not_change(lora_engine: str) -> None:
    base = generate(lora_engine)["generated_text"]
    assert not is_upper(base) and "Ahoy" not in base
    assert is_upper(generate(lora_engine, UPPER)["generated_text"])
    assert generate(lora_engine, AHOY)["generated_text"].lstrip().startswith("Ahoy!")
    assert generate(lora_engine)["generated_text"] == base  # after the adapters ran: the same greedy answer


def test_openai_model_names_the_adapter_and_models_lists_them(lora_engine: str) -> None:
    client = openai.OpenAI(base_url=f"{lora_engine}/v1", api_key="none")
    out = client.completions.create(model=UPPER, prompt=PROMPT, max_tokens=24, temperature=0)
    assert out.model == UPPER and is_upper(out.choices[0].text)
    models = {m.id: m for m in client.models.list()}
    assert {UPPER, AHOY} < set(models) and models[UPPER].parent == "gemma-3-270m"  # type: ignore[attr-defined]


def test_mixed_traffic_runs_each_request_with_its_own_adapter(lora_engine: str) -> None:
    switches = metric(lora_engine, "shoal_lora_adapter_switches_total")
    asked = [None, UPPER, AHOY] * 4
    with cf.ThreadPoolExecutor(len(asked)) as pool:
        answers = list(pool.map(lambda a: generate(lora_engine, a)["generated_text"], asked))
    for adapter, text in zip(asked, answers):
        if adapter == UPPER:
            assert is_upper(text), text
        elif adapter == AHOY:
            assert text.lstrip().startswith("Ahoy!"), text
        else:
            assert not is_upper(text) and "Ahoy" not in text, text
    assert metric(lora_engine, "shoal_lora_adapter_switches_total") > switches  # they ran as groups, in turns


def test_an_adapter_prefix_is_not_reused_by_the_base_or_another_adapter(lora_engine: str) -> None:
    prompt = "Here is a short story about the city of Tokyo: " * 8  # two whole blocks and more
    generate(lora_engine, UPPER, 4, prompt)
    assert generate(lora_engine, UPPER, 4, prompt)["details"]["cached_tokens"] > 0
    assert generate(lora_engine, AHOY, 4, prompt)["details"]["cached_tokens"] == 0
    assert generate(lora_engine, None, 4, prompt)["details"]["cached_tokens"] == 0


def test_unknown_adapter_is_a_422_naming_it(lora_engine: str) -> None:
    r = httpx.post(f"{lora_engine}/generate", json={"inputs": "x", "parameters": {"adapter_id": "nope"}})
    assert r.status_code == 422 and r.json()["error"].startswith("adapter_id: adapter `nope` is not loaded")


def test_adapters_load_and_leave_while_requests_run(lora_engine: str, adapters: dict[str, Path]) -> None:
    """A PUT /adapters loads beside running requests (a stream keeps its pace) and an adapter that leaves
    finishes the request that uses it before it is freed."""
    gaps: list[float] = []
    done = threading.Event()

    def stream() -> str:
        text, last = "", time.monotonic()
        payload = {"inputs": PROMPT, "parameters": {"max_new_tokens": 160, "adapter_id": UPPER}}
        with httpx.stream("POST", f"{lora_engine}/generate_stream", json=payload, timeout=300) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    now = time.monotonic()
                    gaps.append(now - last)
                    last = now
                    text += httpx.Response(200, content=line[5:]).json()["token"]["text"]
        done.set()
        return text

    with cf.ThreadPoolExecutor(1) as pool:
        running = pool.submit(stream)
        while len(gaps) < 10:
            time.sleep(0.05)
        loaded = time.monotonic()
        fish = adapters["gemma-3-270m-fish"]
        r = httpx.put(f"{lora_engine}/adapters", timeout=60, json={"adapters": [
            {"name": AHOY, "path": str(adapters[AHOY])}, {"name": "fish", "path": str(fish)}]})
        took = time.monotonic() - loaded
        assert r.status_code == 200 and r.json()["loaded"] == ["fish"] and r.json()["removed"] == [UPPER]
        assert not done.is_set()  # the request on the adapter that left is still running
        assert is_upper(running.result())
    assert max(gaps[10:]) < max(2.0, 5 * sorted(gaps)[len(gaps) // 2]), (took, max(gaps))
    assert generate(lora_engine, "fish")["generated_text"].count("🐟") >= 1
    r = httpx.post(f"{lora_engine}/generate", json={"inputs": "x", "parameters": {"adapter_id": UPPER}})
    assert r.status_code == 422
    deadline = time.monotonic() + 10
    while metric(lora_engine, "shoal_lora_adapters_loaded") != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(lora_engine, "shoal_lora_adapters_loaded") == 2  # the uppercase adapter was freed


def test_a_bad_adapter_file_is_refused_and_nothing_changes(lora_engine: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + bytes(60))
    before = httpx.get(f"{lora_engine}/adapters").json()
    r = httpx.put(f"{lora_engine}/adapters", json={"adapters": [{"name": "bad", "path": str(bad)}]}, timeout=60)
    assert r.status_code == 422 and "could not load the LoRA adapter" in r.json()["error"]
    assert httpx.get(f"{lora_engine}/adapters").json() == before
