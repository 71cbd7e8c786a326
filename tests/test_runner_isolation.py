"""Sequences in one llama.cpp batch are independent: a sequence's logits are bit-identical whatever
the other sequences in the batch are (at the same batch shape)."""
from __future__ import annotations

import numpy as np
import pytest

from shoal.engine.runners.base import BatchItem
from shoal.engine.runners.llamacpp import LlamaCppRunner
from shoal.models.registry import resolve


@pytest.fixture(scope="module")
def runner() -> LlamaCppRunner:
    r = LlamaCppRunner("gemma-3-270m", resolve("gemma-3-270m"), n_ctx=4096, n_batch=512, n_seq_max=16,
                       n_threads=2)
    yield r
    r.close()


def _greedy_run(runner: LlamaCppRunner, prompts: list[str], steps: int = 8) -> list[np.ndarray]:
    """Decode all prompts together; the logits of the first sequence at every step."""
    seqs = list(range(len(prompts)))
    tokens = {s: runner.tokenize(p) for s, p in zip(seqs, prompts)}
    out = {s: [int(np.argmax(runner.step([BatchItem(s, tokens[s], 0)])[0]))] for s in seqs}
    rows = []
    for _ in range(steps):
        logits = runner.step([BatchItem(s, [out[s][-1]], len(tokens[s]) + len(out[s]) - 1) for s in seqs])
        rows.append(np.array(logits[0]))
        for s in seqs:
            out[s].append(int(np.argmax(logits[s])))
    for s in seqs:
        runner.release(s)
    return rows


def test_companions_do_not_change_a_sequence(runner: LlamaCppRunner) -> None:
    first = "The capital of France is"
    a = _greedy_run(runner, [first] + [f"Story number {i}:" for i in range(15)])
    b = _greedy_run(runner, [first] + ["def f(x):", "1, 2, 3,", "Hello"] * 5)
    for row_a, row_b in zip(a, b):
        assert np.array_equal(row_a, row_b)


def test_released_sequence_ids_start_clean(runner: LlamaCppRunner) -> None:
    before = _greedy_run(runner, ["Once upon a time"])
    _greedy_run(runner, ["Something else entirely, and longer than the first prompt"])
    after = _greedy_run(runner, ["Once upon a time"])
    for x, y in zip(before, after):
        assert np.array_equal(x, y)
