"""What one engine step costs with LoRA adapters (docs/benchmarks.md, "LoRA adapters"): shoal's llama.cpp
runner driven directly (no HTTP, no scheduler), the default model and the four shipped adapters, 1 thread as
each copy of the routing benchmark has. Measures a decode step of n sequences with one adapter (n = 2, 4, 8:
a least-squares line gives the fixed and the per-sequence cost), the same steps when every step switches
adapter (the switch: llama.cpp re-plans its graph), and a 64-token prompt computed alone (its cost per
token). `benchmarks/adapter_routing_model.py` takes its step costs from here. Medians of `--runs`.

    python benchmarks/adapter_step_cost.py --out docs/results/adapter_step_cost.json
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import typer
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from shoal.engine.runners.base import BatchItem  # noqa: E402
from shoal.engine.runners.llamacpp import LlamaCppRunner  # noqa: E402
from shoal.hardware import describe_cpu  # noqa: E402
from shoal.models.registry import resolve, shipped_adapters  # noqa: E402

console = Console()
SIZES = (2, 4, 8)
PROMPT_TOKENS = 64
STEPS = 48


class Bench:
    def __init__(self, threads: int) -> None:
        self.runner = LlamaCppRunner("gemma-3-270m", resolve("gemma-3-270m"), n_ctx=8192, n_batch=512,
                                     n_seq_max=16, n_threads=threads)
        self.adapters = [self.runner.load_adapter(str(p)) for p in shipped_adapters().values()]
        self.prompt = self.runner.tokenize("Tell me a story about a fish who lives in the sea and its friends, " * 5)
        self.prompt = self.prompt[:PROMPT_TOKENS]
        self.positions: dict[int, int] = {}

    def fresh(self, sequences: int) -> None:
        """`sequences` sequences, each with the prompt computed (not timed)."""
        for seq in range(16):
            self.runner.release(seq)
        for seq in range(sequences):
            self.runner.step([BatchItem(seq, self.prompt, 0)])
            self.positions[seq] = len(self.prompt)

    def decode(self, sequences: int, switch: bool) -> float:
        """Seconds per step of `sequences` sequences, one adapter, or switching adapter every step."""
        self.fresh(sequences)
        started = time.perf_counter()
        for i in range(STEPS):
            self.runner.use_adapter(self.adapters[i % 2 if switch else 0])
            self.runner.step([BatchItem(s, [100], self.positions[s]) for s in range(sequences)])
            for s in range(sequences):
                self.positions[s] += 1
        return (time.perf_counter() - started) / STEPS

    def prompt_cost(self) -> float:
        """Seconds to compute the 64-token prompt of a new sequence (one step)."""
        self.fresh(0)
        self.runner.use_adapter(self.adapters[0])
        started = time.perf_counter()
        self.runner.step([BatchItem(0, self.prompt, 0)])
        return time.perf_counter() - started


def main(runs: int = 5, threads: int = 1, out: Path = Path("docs/results/adapter_step_cost.json")) -> None:
    bench = Bench(threads)
    same = {n: [] for n in SIZES}
    switching = {n: [] for n in SIZES}
    prompt: list[float] = []
    for _ in range(runs):
        for n in SIZES:
            same[n].append(bench.decode(n, switch=False))
            switching[n].append(bench.decode(n, switch=True))
        prompt.append(bench.prompt_cost())
    same_med = {n: statistics.median(v) for n, v in same.items()}
    per_sequence, fixed = np.polyfit(list(same_med), list(same_med.values()), 1)
    switch = statistics.median(statistics.median(switching[n]) - same_med[n] for n in SIZES)
    result = {"cpu": describe_cpu(), "threads": threads, "runs": runs,
              "step_s": {str(n): v for n, v in same_med.items()},
              "switching_step_s": {str(n): statistics.median(v) for n, v in switching.items()},
              "fixed_s": float(fixed), "per_sequence_s": float(per_sequence), "switch_s": switch,
              "per_prompt_token_s": statistics.median(prompt) / len(bench.prompt)}
    for n in SIZES:
        console.print(f"{n} sequences: {same_med[n] * 1e3:.1f} ms a step, "
                      f"{result['switching_step_s'][str(n)] * 1e3:.1f} ms switching adapter every step")
    console.print(f"fixed {fixed * 1e3:.1f} ms + {per_sequence * 1e3:.1f} ms per sequence; switch {switch * 1e3:.1f} "
                  f"ms; prompt {result['per_prompt_token_s'] * 1e3:.2f} ms per token")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    typer.run(main)
