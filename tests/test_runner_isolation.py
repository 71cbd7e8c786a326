"""Sequences in one llama.cpp batch are independent: a sequence's logits are bit-identical whatever
the other sequences in the batch are (at the same batch shape)."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import greedy_logits

from shoal.engine.runners.llamacpp import LlamaCppRunner
from shoal.models.registry import resolve


@pytest.fixture(scope="module")
def runner() -> LlamaCppRunner:
    r = LlamaCppRunner("gemma-3-270m", resolve("gemma-3-270m"), n_ctx=4096, n_batch=512, n_seq_max=16,
                       n_threads=2)
    yield r
    r.close()


def test_companions_do_not_change_a_sequence(runner: LlamaCppRunner) -> None:
    first = "The capital of France is"
    a = greedy_logits(runner, [first] + [f"Story number {i}:" for i in range(15)])
    b = greedy_logits(runner, [first] + ["def f(x):", "1, 2, 3,", "Hello"] * 5)
    for row_a, row_b in zip(a, b):
        assert np.array_equal(row_a, row_b)


def test_released_sequence_ids_start_clean(runner: LlamaCppRunner) -> None:
    before = greedy_logits(runner, ["Once upon a time"])
    greedy_logits(runner, ["Something else entirely, and longer than the first prompt"])
    after = greedy_logits(runner, ["Once upon a time"])
    for x, y in zip(before, after):
        assert np.array_equal(x, y)
