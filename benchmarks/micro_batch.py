"""What the prefix cache's block size costs and why it needs one (docs/architecture.md, "Prefix cache").

1. Prefill time of a 255-token prompt (one sequence, and four at once) with llama.cpp micro-batches
   (`n_ubatch`) of 512 (llama.cpp's default, shoal with the cache off), 256, 128 and 64 tokens (shoal's
   block with the cache on): the contexts are measured in rotating order, medians of `--runs`.
2. How much the numbers move: the largest difference of the next-token logits between computing a
   prompt whole and reusing a cached prefix of it (kept from another prompt sharing it, which stays in
   the KV cache meanwhile) and computing the rest, with micro-batches of 512 and the cut anywhere or on a
   64-token boundary, and with micro-batches of 64 cut on a 64-token boundary. 0 means bit-identical.
   Here the whole prompt is computed beside the cached one, so its KV cells sit elsewhere than on a hit:
   the script measures the pieces and the cells' layout together (docs/architecture.md, "Prefix cache").

    python benchmarks/micro_batch.py --runs 6 --out docs/results/micro_batch.json
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from shoal.engine.runners.base import BatchItem
from shoal.engine.runners.llamacpp import LlamaCppRunner
from shoal.hardware import describe_cpu, use_extra_buffers
from shoal.models.registry import resolve

console = Console(width=120)
SIZES = (512, 256, 128, 64)
TEXT = ("The history of science is the study of the development of science and scientific knowledge, "
        "including both the natural and social sciences. ") * 40
SYSTEM = ("You are a careful assistant. The history of science is the study of the development of science "
          "and scientific knowledge, including both the natural and social sciences. ") * 6


def runner(n_ubatch: int, extra_buffers: bool) -> LlamaCppRunner:
    return LlamaCppRunner("gemma-3-270m", resolve("gemma-3-270m"), n_ctx=8192, n_batch=2048, n_seq_max=64,
                          n_threads=2, n_ubatch=n_ubatch, extra_buffers=extra_buffers)


def _timed(r: LlamaCppRunner, sequences: int, tokens: list[int]) -> float:
    started = time.perf_counter()
    r.step([BatchItem(s, tokens, 0) for s in range(sequences)])
    elapsed = time.perf_counter() - started
    for s in range(sequences):
        r.release(s)
    return elapsed


def prefill_times(runs: int) -> dict[str, dict[int, float]]:
    runners = {n: runner(n, use_extra_buffers()) for n in SIZES}
    tokens = runners[512].tokenize(TEXT)[:255]
    samples: dict[str, dict[int, list[float]]] = {"1 x 255": {n: [] for n in SIZES}, "4 x 255": {n: [] for n in SIZES}}
    for rep in range(runs):
        for n in SIZES[rep % len(SIZES):] + SIZES[:rep % len(SIZES)]:
            samples["1 x 255"][n].append(_timed(runners[n], 1, tokens))
            samples["4 x 255"][n].append(_timed(runners[n], 4, tokens))
    return {case: {n: statistics.median(v) for n, v in per.items()} for case, per in samples.items()}


def _last_logits(r: LlamaCppRunner, seq: int, prompt: list[int], start: int) -> np.ndarray:
    if start < len(prompt) - 1:
        r.step([BatchItem(seq, prompt[start:-1], start)])
    return np.array(r.step([BatchItem(seq, prompt[-1:], len(prompt) - 1)])[0], copy=True)


def logit_moves(n_ubatch: int, align: int, extra_buffers: bool) -> float:
    """Largest |logit difference| over three prompts sharing SYSTEM with a cached one, reuse cut at `align`."""
    r = runner(n_ubatch, extra_buffers)
    cached = r.tokenize(SYSTEM + " Question: what is science?")
    r.step([BatchItem(1, cached[:-1], 0)])
    worst = 0.0
    for question in (" Question: who was Galileo?", " Question: what?", " Answer"):
        prompt = r.tokenize(SYSTEM + question)
        whole = _last_logits(r, 0, prompt, 0)
        r.release(0)
        shared = next((i for i, (a, b) in enumerate(zip(prompt, cached)) if a != b), min(len(prompt), len(cached)))
        reuse = min(shared, len(prompt) - 1) // align * align
        r.copy_prefix(1, 0, reuse)
        worst = max(worst, float(np.abs(_last_logits(r, 0, prompt, reuse) - whole).max()))
        r.release(0)
    return worst


def main(runs: int = 6, out: Path = Path("docs/results/micro_batch.json")) -> None:
    times = prefill_times(runs)
    table = Table(title=f"Prefill seconds by micro-batch (median of {runs}), {describe_cpu()}")
    table.add_column("prompts", justify="right")
    for n in SIZES:
        table.add_column(f"n_ubatch {n}", justify="right")
    for case, per in times.items():
        table.add_row(case, *(f"{per[n]:.3f} ({per[n] / per[512] - 1:+.1%})" for n in SIZES))
    console.print(table)
    moves = {f"{label}, extra buffers {'on' if xb else 'off'}": logit_moves(n, align, xb)
             for xb in sorted({use_extra_buffers(), False}, reverse=True)
             for label, n, align in (("n_ubatch 512, cut anywhere", 512, 1), ("n_ubatch 512, cut at 64", 512, 64),
                                     ("n_ubatch 64, cut at 64", 64, 64))}
    table = Table(title="Largest next-token logit difference, cached prefix vs computed whole")
    table.add_column("micro-batches, cut")
    table.add_column("max |diff|", justify="right")
    for label, value in moves.items():
        table.add_row(label, f"{value:.4f}")
    console.print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "cpu": describe_cpu(), "prefill_s": times, "logit_moves": moves},
                              indent=2))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    typer.run(main)
