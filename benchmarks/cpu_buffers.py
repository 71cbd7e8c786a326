"""llama.cpp's extra CPU weight buffers (repacked blocks; AMX on Intel) on vs off, on this CPU.

The built-in engine turns them off unless asked (shoal.hardware). This measures what that choice is
worth: prefill of a 256-token prompt, and greedy decode of 1 and 16 sequences, with
`use_extra_bufts` on and off, alternating, medians of `--runs`. On an AMX CPU, "on" crashes
(llama.cpp #20824): run with `--only off` there.

    python benchmarks/cpu_buffers.py --runs 5
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
from shoal.hardware import describe_cpu
from shoal.models.registry import resolve

console = Console()
PROMPT = "The history of the printing press begins in"


def make_runner(extra: bool) -> LlamaCppRunner:
    return LlamaCppRunner("gemma-3-270m", resolve("gemma-3-270m"), n_ctx=8192, n_batch=512, n_seq_max=16,
                          n_threads=2, extra_buffers=extra)


def prefill(runner: LlamaCppRunner, tokens: int = 256) -> float:
    prompt = (runner.tokenize(PROMPT * 64))[:tokens]
    started = time.perf_counter()
    runner.step([BatchItem(0, prompt, 0)])
    seconds = time.perf_counter() - started
    runner.release(0)
    return tokens / seconds


def decode(runner: LlamaCppRunner, streams: int, steps: int = 32) -> float:
    prompt = runner.tokenize(PROMPT)
    last = [int(np.argmax(runner.step([BatchItem(s, prompt, 0)])[-1])) for s in range(streams)]
    started = time.perf_counter()
    for step in range(steps):
        logits = runner.step([BatchItem(s, [last[s]], len(prompt) + step) for s in range(streams)])
        last = [int(t) for t in np.argmax(logits, axis=1)]
    seconds = time.perf_counter() - started
    for s in range(streams):
        runner.release(s)
    return streams * steps / seconds


def main(runs: int = 5, only: str = "on,off", out: Path = Path("docs/results/cpu_buffers.json")) -> None:
    modes = only.split(",")
    runners = {mode: make_runner(mode == "on") for mode in modes}
    tests = {"prefill 256 tok/s": prefill, "decode 1 stream tok/s": lambda r: decode(r, 1),
             "decode 16 streams tok/s": lambda r: decode(r, 16)}
    samples = {mode: {name: [] for name in tests} for mode in modes}
    for runner in runners.values():
        runner.warm_up()
    for rep in range(runs):
        for mode in modes if rep % 2 == 0 else reversed(modes):
            for name, test in tests.items():
                samples[mode][name].append(test(runners[mode]))
    median = {m: {n: statistics.median(v) for n, v in per.items()} for m, per in samples.items()}
    cpu = describe_cpu()
    table = Table(title=f"llama.cpp extra CPU buffers, median of {runs}: {cpu}")
    table.add_column("measure")
    for mode in modes:
        table.add_column(f"extra buffers {mode}", justify="right")
    if len(modes) == 2:
        table.add_column("on / off", justify="right")
    for name in tests:
        row = [name, *(f"{median[m][name]:.1f}" for m in modes)]
        if len(modes) == 2:
            row.append(f"{median['on'][name] / median['off'][name]:.2f}x")
        table.add_row(*row)
    console.print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu": cpu, "runs": runs, "samples": samples, "median": median}, indent=2))


if __name__ == "__main__":
    typer.run(main)
