"""Engine throughput: shoal's engine over HTTP vs the raw llama.cpp batch loop vs llama.cpp's own server.

For each number of concurrent streams B, all three generate B x N tokens (greedy) from B prompts:
- raw:   a bare `llama_batch` loop in this process: one llama_decode per step for all B sequences,
         argmax on the logits. No HTTP, no scheduler: the limit the engine can approach.
- shoal: `shoal engine`, B concurrent `POST /generate_stream` requests, tokens counted from the SSE.
- peer:  llama.cpp's C++ server (`llama-server`, from the prebuilt xllamacpp wheel, as shoal's
         `llama-server` engine kind runs it), 32 slots on one unified KV cache, B concurrent streaming
         `/v1/completions` requests.
All use the same model, 2 threads, flash attention on, one unified KV cache of 16384 tokens. The order of
the three is rotated each repetition; the table shows medians of `--runs` repetitions and the ratios of
medians.

    python benchmarks/engine.py --runs 3 --out results/engine.json
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import llama_cpp as ll
import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import free_port, wait_healthy  # noqa: E402

from shoal.engine.runners.llamacpp import init_backend  # noqa: E402
from shoal.hardware import describe_cpu, use_extra_buffers  # noqa: E402
from shoal.models.registry import resolve  # noqa: E402

PROMPTS = ["Once upon a time, in a small village by the sea, there lived",
           "The history of the printing press begins in",
           "Here is a list of the planets of the solar system, with a short note on each:",
           "def quicksort(items):\n    \"\"\"Sort a list.\"\"\"\n"]
CTX = 16384
THREADS = 2
console = Console(width=120)


class RawLoop:
    """The bare llama.cpp batch API, configured as shoal's engine configures it."""

    def __init__(self, path: Path) -> None:
        init_backend()  # llama.cpp's log goes to Python logging, as in the engine
        model_params = ll.llama_model_default_params()
        model_params.use_extra_bufts = use_extra_buffers()  # as the engine: no AMX buffers (shoal.hardware)
        self.model = ll.llama_model_load_from_file(str(path).encode(), model_params)
        params = ll.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch, params.n_seq_max = CTX, 2048, 512, 64
        params.n_threads = params.n_threads_batch = THREADS
        params.kv_unified, params.swa_full, params.flash_attn_type = True, False, 1
        self.ctx = ll.llama_init_from_model(self.model, params)
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)
        self.batch = ll.llama_batch_init(2048, 0, 1)

    def tokenize(self, text: str) -> list[int]:
        out = (ll.llama_token * 512)()
        n = ll.llama_tokenize(self.vocab, text.encode(), len(text.encode()), out, 512, True, True)
        return list(out[:n])

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> np.ndarray:
        b = self.batch
        for i, (token, pos, seq, logits) in enumerate(entries):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, 1, logits
            b.seq_id[i][0] = seq
        b.n_tokens = len(entries)
        assert ll.llama_decode(self.ctx, b) == 0
        rows = sum(e[3] for e in entries)
        return np.ctypeslib.as_array(ll.llama_get_logits(self.ctx), shape=(rows, self.n_vocab))

    def run(self, streams: int, new_tokens: int) -> tuple[int, float]:
        prompts = [self.tokenize(PROMPTS[s % len(PROMPTS)]) for s in range(streams)]
        started = time.perf_counter()
        entries = [(t, p, s, p == len(toks) - 1) for s, toks in enumerate(prompts) for p, t in enumerate(toks)]
        last = np.argmax(self._decode(entries), axis=1)
        positions = [len(p) for p in prompts]
        for _ in range(new_tokens - 1):
            last = np.argmax(self._decode([(int(last[s]), positions[s], s, True) for s in range(streams)]), axis=1)
            positions = [p + 1 for p in positions]
        elapsed = time.perf_counter() - started
        ll.llama_memory_clear(ll.llama_get_memory(self.ctx), True)
        return streams * new_tokens, elapsed


async def _stream_tokens(session: aiohttp.ClientSession, url: str, body: dict) -> int:
    tokens = 0
    async with session.post(url, json=body) as response:
        response.raise_for_status()
        async for line in response.content:
            if line.startswith(b"data:") and not line.startswith(b"data: [DONE]"):
                tokens += 1
    return tokens


async def _http_run(url: str, bodies: list[dict]) -> tuple[int, float]:
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        started = time.perf_counter()
        counts = await asyncio.gather(*(_stream_tokens(session, url, b) for b in bodies))
        return sum(counts), time.perf_counter() - started


def shoal_run(base: str, streams: int, new_tokens: int) -> tuple[int, float]:
    bodies = [{"inputs": PROMPTS[s % len(PROMPTS)], "parameters": {"max_new_tokens": new_tokens}}
              for s in range(streams)]
    return asyncio.run(_http_run(f"{base}/generate_stream", bodies))


def peer_run(base: str, streams: int, new_tokens: int) -> tuple[int, float]:
    bodies = [{"prompt": PROMPTS[s % len(PROMPTS)], "max_tokens": new_tokens, "temperature": 0, "stream": True}
              for s in range(streams)]
    return asyncio.run(_http_run(f"{base}/v1/completions", bodies))


def _start(cmd: list[str], port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    wait_healthy(f"http://127.0.0.1:{port}", proc)
    return proc


def main(runs: int = 3, new_tokens: int = 64, streams: str = "1,4,16,32",
         out: Path = Path("results/engine.json")) -> None:
    sizes = [int(s) for s in streams.split(",")]
    path = resolve("gemma-3-270m")
    out.parent.mkdir(parents=True, exist_ok=True)
    shoal_port, peer_port = free_port(), free_port()
    env_engine = [sys.executable, "-m", "shoal.cli", "engine", "--port", str(shoal_port),
                  "--num-threads", str(THREADS), "--max-batch-total-tokens", str(CTX)]
    peer_cmd = [sys.executable, "-m", "shoal.engines.xllamacpp_server", "--model", str(path), "--port",
                str(peer_port), "--ctx-size", str(CTX), "--parallel", str(max(sizes)), "--kv-unified",
                "--threads", str(THREADS), "--flash-attn", "on", *([] if use_extra_buffers() else ["--no-repack"])]
    logs = Path(tempfile.mkdtemp(prefix="shoal-engine-bench-"))
    engine = _start(env_engine, shoal_port, logs / "shoal.log")
    peer = _start(peer_cmd, peer_port, logs / "peer.log")
    raw = RawLoop(path)
    systems = {"raw": lambda b: raw.run(b, new_tokens),
               "shoal": lambda b: shoal_run(f"http://127.0.0.1:{shoal_port}", b, new_tokens),
               "peer": lambda b: peer_run(f"http://127.0.0.1:{peer_port}", b, new_tokens)}
    samples: dict[str, dict[int, list[float]]] = {name: {b: [] for b in sizes} for name in systems}
    try:
        for name in systems:  # warm-up
            systems[name](1)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("engine benchmark", total=runs * len(sizes) * len(systems))
            for rep in range(runs):
                for b in sizes:
                    order = list(systems)[rep % 3:] + list(systems)[:rep % 3]
                    for name in order:
                        tokens, seconds = systems[name](b)
                        samples[name][b].append(tokens / seconds)
                        progress.advance(task)
    finally:
        for proc in (engine, peer):
            proc.terminate()
            proc.wait(10)
    report(samples, sizes, runs, new_tokens, out)


def report(samples: dict[str, dict[int, list[float]]], sizes: list[int], runs: int, new_tokens: int,
           out: Path) -> None:
    med = {name: {b: statistics.median(v) for b, v in per.items()} for name, per in samples.items()}
    table = Table(title=f"Engine tokens/s (median of {runs}), {new_tokens} new tokens per stream, greedy")
    for col in ("streams", "raw llama_batch", "shoal engine (HTTP)", "llama-server", "shoal / raw",
                "shoal / llama-server"):
        table.add_column(col, justify="right")
    for b in sizes:
        table.add_row(str(b), f"{med['raw'][b]:.1f}", f"{med['shoal'][b]:.1f}", f"{med['peer'][b]:.1f}",
                      f"{med['shoal'][b] / med['raw'][b]:.0%}", f"{med['shoal'][b] / med['peer'][b]:.2f}x")
    console.print(table)
    out.write_text(json.dumps({"runs": runs, "new_tokens": new_tokens, "samples": samples, "median": med,
                               "cpu_count": os.cpu_count(), "cpu": describe_cpu(), "peer": "llama-server (xllamacpp)"},
                              indent=2))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    typer.run(main)
