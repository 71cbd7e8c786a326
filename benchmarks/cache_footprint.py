"""What cells held by other sequences (a full prefix cache) cost the requests that run (docs/benchmarks.md,
"What a full prefix cache costs"): llama.cpp attends over every KV cell up to the highest one in use,
masking the rest, so idle cells are not free.

Runner called directly, 2 threads: 8 prompts of 256 tokens prefilled, then 16 decode steps of the 8,
with 0, 4096 and 8192 cells held by 14 or 28 other sequences of 287 tokens (a cache full of finished
requests), in rotating order, `--runs` times; medians.

    python benchmarks/cache_footprint.py --runs 3 --out docs/results/cache_footprint.json
"""
from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from shoal.engine.runners.base import BatchItem
from shoal.engine.runners.llamacpp import LlamaCppRunner
from shoal.hardware import describe_cpu
from shoal.models.registry import resolve

HELD = (0, 4096, 8192)  # cells held by other sequences
ENTRY = 287  # tokens per held sequence: a 256-token prompt and 31 generated
console = Console(width=120)


def _tokens(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(1000, 20000) for _ in range(n)]


def _prefill(runner: LlamaCppRunner, seq: int, tokens: list[int]) -> None:
    for at in range(0, len(tokens), 256):
        runner.step([BatchItem(seq, tokens[at:at + 256], at)])


def measure(runner: LlamaCppRunner, held: int, rng: random.Random) -> dict[str, float]:
    others = range(10, 10 + held // ENTRY)
    for seq in others:
        _prefill(runner, seq, _tokens(rng, ENTRY))
    started = time.perf_counter()
    for seq in range(8):
        _prefill(runner, seq, _tokens(rng, 256))
    prefill = time.perf_counter() - started
    steps = []
    for k in range(16):
        step_started = time.perf_counter()
        runner.step([BatchItem(seq, _tokens(rng, 1), 256 + k) for seq in range(8)])
        steps.append(time.perf_counter() - step_started)
    for seq in [*range(8), *others]:
        runner.release(seq)
    return {"prefill_s": prefill, "decode_step_s": statistics.median(steps)}


def main(runs: int = 3, out: Path = Path("docs/results/cache_footprint.json")) -> None:
    runner = LlamaCppRunner("gemma-3-270m", resolve("gemma-3-270m"), n_ctx=16384, n_batch=512, n_seq_max=40,
                            n_threads=2, extra_buffers=False)
    runner.warm_up()
    rng = random.Random(0)
    samples: dict[int, list[dict[str, float]]] = {h: [] for h in HELD}
    for rep in range(runs):
        k = rep % len(HELD)
        for held in HELD[k:] + HELD[:k]:
            samples[held].append(measure(runner, held, rng))
            console.print(f"run {rep + 1}: {held} cells held: {samples[held][-1]}")
    summary = {h: {key: statistics.median(s[key] for s in rows) for key in ("prefill_s", "decode_step_s")}
               for h, rows in samples.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "cpu": describe_cpu(), "summary": summary, "samples": samples},
                              indent=2))
    table = Table(title=f"Cells held by other sequences: medians of {runs}")
    for col in ("cells held", "prefill 8 x 256 s", "vs 0", "decode step ms (8 streams)", "vs 0"):
        table.add_column(col, justify="right")
    base = summary[0]
    for held, s in summary.items():
        table.add_row(str(held), f"{s['prefill_s']:.2f}", f"{s['prefill_s'] / base['prefill_s']:.2f}x",
                      f"{1000 * s['decode_step_s']:.1f}", f"{s['decode_step_s'] / base['decode_step_s']:.2f}x")
    console.print(table)
    console.print(f"wrote {out}")


if __name__ == "__main__":
    typer.run(main)
