"""How much one sequence's logits move with the batch around it, in llama.cpp on this CPU.

The same prompt is decoded greedily for 8 steps alone (batch of 1) and as row 0 of batches of 2, 4, 8
and 16, and of a batch of 16 with other companions. Prints the largest logit difference against the
lone run, and between the two batches of 16 (same shape, other companions), with flash attention on and
off. docs/architecture.md ("Batch shape and determinism") quotes these numbers.

    python benchmarks/batch_invariance.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import greedy_logits  # noqa: E402

from shoal.engine.runners.llamacpp import LlamaCppRunner  # noqa: E402
from shoal.models.registry import resolve  # noqa: E402

PROMPTS = ["The capital of France is", "Once upon a time", "def fib(n):", "1, 2, 3,", "Hello world", "xyz abc"]


def gap(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def main() -> None:
    table = Table(title="largest logit difference of one sequence (8 greedy steps)")
    table.add_column("flash attention")
    for col in ("batch 2", "batch 4", "batch 8", "batch 16", "16 vs 16, other companions"):
        table.add_column(col, justify="right")
    for flash in (True, False):
        runner = LlamaCppRunner("gemma-3-270m", resolve("gemma-3-270m"), n_ctx=16384, n_batch=1024,
                                n_seq_max=32, n_threads=2, flash_attention=flash)
        first = PROMPTS[0]
        alone = greedy_logits(runner, [first])
        by_size = [gap(alone, greedy_logits(runner, [first] + [PROMPTS[1 + i % 5] for i in range(n - 1)]))
                   for n in (2, 4, 8, 16)]
        sixteen = greedy_logits(runner, [first] + [PROMPTS[1 + i % 5] for i in range(15)])
        others = greedy_logits(runner, [first] + [f"Story number {i}:" for i in range(15)])
        table.add_row("on" if flash else "off", *(f"{g:.3f}" for g in by_size), f"{gap(sixteen, others):.3f}")
        runner.close()
    Console().print(table)


if __name__ == "__main__":
    main()
