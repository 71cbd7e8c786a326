"""Structured output: validity, cost and a peer, on the schemas of benchmarks/structured_schemas.py.

    flock /tmp/shoal-bench.lock .venv/bin/python benchmarks/structured_output.py --runs 3 \
        --out docs/results/structured_output.json

1. Compile: every schema compiled on a cache miss by the engine's own code (shoal.engine.grammar.Grammars,
   the runner's vocabulary), in this process: p50 / p90 / max.
2. Validity: `shoal engine`, every schema as a TGI `grammar` (json), greedy and sampled (seed 1), 16 requests
   at a time, up to `--max-new-tokens`: each answer parsed and validated (jsonschema, formats checked);
   answers cut by the token limit are counted and named.
3. Cost: tokens/s of the same engine and the same prompts, constrained and not, at 1 and 16 concurrent
   streams. Each unconstrained request asks for exactly the tokens its constrained twin generated, so both
   runs decode the same number of tokens per stream with the same batch shape; order alternates per run.
4. Peer: llama.cpp's server (xllamacpp, as shoal's `llama-server` engine kind runs it) with `json_schema` on
   `/completion`, the same prompts and schemas at 16 streams, against shoal's constrained run.
Medians of `--runs`; ratios are of the same run's medians.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import typer
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
from engine import THREADS, _start  # noqa: E402
from helpers import free_port  # noqa: E402
from structured_schemas import PROMPT, SCHEMAS  # noqa: E402

from shoal.hardware import describe_cpu, use_extra_buffers  # noqa: E402
from shoal.models.registry import resolve  # noqa: E402

CTX = 16384
console = Console(width=130)


def prompt(schema: dict[str, Any]) -> str:
    return PROMPT.format(schema=json.dumps(schema))


def compile_times() -> list[float]:
    """Seconds to compile each schema on a cache miss, as the engine does it (tokenizer built first)."""
    from shoal.engine.grammar import Grammars, GrammarSpec
    from shoal.engine.runners.llamacpp import LlamaCppRunner

    runner = LlamaCppRunner("gemma-3-270m", resolve("gemma-3-270m"), n_ctx=256, n_batch=64, n_seq_max=1,
                            n_threads=1)
    grammars = Grammars(runner)
    grammars.tokenizer  # noqa: B018 - built once per engine, not per schema
    out = []
    for schema in SCHEMAS.values():
        started = time.perf_counter()
        grammars.compile_now(GrammarSpec.json_schema(schema))
        out.append(time.perf_counter() - started)
    return out


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with session.post(url, json=body) as response:
        data = await response.json()
        if response.status != 200:
            return {"error": data}
        return data


async def _gather(url: str, bodies: list[dict[str, Any]], concurrency: int) -> tuple[list[dict[str, Any]], float]:
    """POST every body, `concurrency` at a time; the answers and the wall time."""
    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1800)) as session:
        async def one(body: dict[str, Any]) -> dict[str, Any]:
            async with limit:
                return await _post(session, url, body)
        started = time.perf_counter()
        answers = await asyncio.gather(*(one(b) for b in bodies))
        return list(answers), time.perf_counter() - started


def shoal_bodies(names: list[str], max_new: list[int] | int, constrained: bool,
                 sampling: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out = []
    for i, name in enumerate(names):
        parameters: dict[str, Any] = {"max_new_tokens": max_new[i] if isinstance(max_new, list) else max_new,
                                      "details": True, **(sampling or {})}
        if constrained:
            parameters["grammar"] = {"type": "json", "value": SCHEMAS[name]}
        out.append({"inputs": prompt(SCHEMAS[name]), "parameters": parameters})
    return out


def check(name: str, text: str) -> str | None:
    """None if `text` is JSON valid under schema `name`, else why not."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not JSON: {exc}"
    validator = jsonschema.Draft202012Validator(SCHEMAS[name], format_checker=jsonschema.FormatChecker())
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    return None if error is None else f"invalid: {error.message}"


def validity(base: str, max_new: int) -> dict[str, Any]:
    names = list(SCHEMAS)
    report: dict[str, Any] = {}
    for mode, sampling in (("greedy", None), ("sampled", {"do_sample": True, "seed": 1})):
        answers, _ = asyncio.run(_gather(f"{base}/generate", shoal_bodies(names, max_new, True, sampling), 16))
        cut, bad = [], {}
        for name, answer in zip(names, answers):
            if "error" in answer:
                bad[name] = str(answer["error"])
            elif answer["details"]["finish_reason"] == "length":
                cut.append(name)
            elif (why := check(name, answer["generated_text"])) is not None:
                bad[name] = why
        report[mode] = {"schemas": len(names), "valid": len(names) - len(cut) - len(bad), "cut_by_length": cut,
                        "invalid": bad,
                        "tokens": [a.get("details", {}).get("generated_tokens", 0) for a in answers]}
        console.print(f"validity, {mode}: {report[mode]['valid']}/{len(names)} valid; cut {cut}; invalid {bad}")
    return report


def tokens_per_s(answers: list[dict[str, Any]], seconds: float, peer: bool = False) -> float:
    key = "tokens_predicted" if peer else None
    total = sum(a.get(key, 0) if peer else a.get("details", {}).get("generated_tokens", 0) for a in answers)
    return total / seconds


def main(runs: int = 3, max_new_tokens: int = 384, cost_max_new_tokens: int = 0, check_validity: bool = True,
         one_stream: bool = True, out: Path = Path("docs/results/structured_output.json")) -> None:
    """`cost_max_new_tokens`: cap of the cost runs (0: `max_new_tokens`); `--no-check-validity` and
    `--no-one-stream` skip those parts (a shorter run)."""
    cap = cost_max_new_tokens or max_new_tokens
    out.parent.mkdir(parents=True, exist_ok=True)
    compile_s = compile_times()
    console.print(f"compile p50 {statistics.median(compile_s) * 1e3:.2f} ms, max {max(compile_s) * 1e3:.2f} ms")
    path = resolve("gemma-3-270m")
    shoal_port, peer_port = free_port(), free_port()
    logs = Path(tempfile.mkdtemp(prefix="shoal-structured-bench-"))
    engine = _start([sys.executable, "-m", "shoal.cli", "engine", "--port", str(shoal_port), "--num-threads",
                     str(THREADS), "--max-batch-total-tokens", str(CTX)], shoal_port, logs / "shoal.log")
    peer = _start([sys.executable, "-m", "shoal.engines.xllamacpp_server", "--model", str(path), "--port",
                   str(peer_port), "--ctx-size", str(CTX), "--parallel", "16", "--kv-unified", "--threads",
                   str(THREADS), "--flash-attn", "on", *([] if use_extra_buffers() else ["--no-repack"])],
                  peer_port, logs / "peer.log")
    base, peer_base = f"http://127.0.0.1:{shoal_port}", f"http://127.0.0.1:{peer_port}"
    try:
        names16 = list(SCHEMAS)[:16]
        names1 = names16[:4]
        if check_validity:
            valid = validity(base, max_new_tokens)
            twins = dict(zip(list(SCHEMAS), valid["greedy"]["tokens"]))  # what each constrained request generates
        else:
            valid = {}
            answers, _ = asyncio.run(_gather(f"{base}/generate", shoal_bodies(names16, cap, True), 16))
            twins = {n: a["details"]["generated_tokens"] for n, a in zip(names16, answers)}

        def shoal_run(names: list[str], constrained: bool, concurrency: int) -> float:
            counts = [min(max(1, twins[n]), cap) for n in names]
            answers, seconds = asyncio.run(_gather(f"{base}/generate", shoal_bodies(
                names, counts, constrained), concurrency))
            return tokens_per_s(answers, seconds)

        def peer_run(constrained: bool) -> float:
            """llama-server on the same prompts: with `json_schema`, or asked for the twins' token counts."""
            bodies = [{"prompt": prompt(SCHEMAS[n]), "temperature": 0, "cache_prompt": True,
                       **({"n_predict": cap, "json_schema": SCHEMAS[n]} if constrained else
                          {"n_predict": min(max(1, twins[n]), cap), "ignore_eos": True})} for n in names16]
            answers, seconds = asyncio.run(_gather(f"{peer_base}/completion", bodies, 16))
            if constrained:
                peer_answers.extend(zip(names16, answers))
            return tokens_per_s(answers, seconds, peer=True)

        peer_answers: list[tuple[str, dict[str, Any]]] = []
        systems = {"free-1": lambda: shoal_run(names1, False, 1), "constrained-1": lambda: shoal_run(names1, True, 1),
                   "free-16": lambda: shoal_run(names16, False, 16),
                   "constrained-16": lambda: shoal_run(names16, True, 16), "peer-free-16": lambda: peer_run(False),
                   "peer-16": lambda: peer_run(True)}
        if not one_stream:
            del systems["free-1"], systems["constrained-1"]
        for run in systems.values():  # warm-up
            run()
        samples: dict[str, list[float]] = {name: [] for name in systems}
        for rep in range(runs):
            order = list(systems)[rep % len(systems):] + list(systems)[:rep % len(systems)]
            for name in order:
                samples[name].append(systems[name]())
                console.print(f"run {rep + 1}: {name} {samples[name][-1]:.1f} tokens/s")
        peer_valid = sum(1 for n, a in peer_answers if "content" in a and check(n, a["content"]) is None)
    finally:
        for proc in (engine, peer):
            proc.terminate()
            proc.wait(10)
    report(compile_s, valid, samples, peer_valid, len(peer_answers), runs, max_new_tokens, out)


def report(compile_s: list[float], valid: dict[str, Any], samples: dict[str, list[float]], peer_valid: int,
           peer_total: int, runs: int, max_new: int, out: Path) -> None:
    xs = sorted(compile_s)
    console.print(f"compile on a cache miss ({len(xs)} schemas): p50 {statistics.median(xs) * 1e3:.2f} ms, "
                  f"p90 {xs[int(len(xs) * 0.9)] * 1e3:.2f} ms, max {xs[-1] * 1e3:.2f} ms")
    table = Table(title=f"Validity ({len(SCHEMAS)} schemas, up to {max_new} new tokens)")
    for col in ("decoding", "valid", "cut by max_new_tokens", "invalid"):
        table.add_column(col)
    for mode, r in valid.items():
        table.add_row(mode, f"{r['valid']}/{r['schemas']}", ", ".join(r["cut_by_length"]) or "0",
                      ", ".join(f"{k}: {v}" for k, v in r["invalid"].items()) or "0")
    console.print(table)
    med = {name: statistics.median(v) for name, v in samples.items()}
    table = Table(title=f"Tokens/s (median of {runs})")
    for col in ("streams", "unconstrained", "constrained", "constrained / unconstrained",
                "llama-server unconstrained", "llama-server json_schema", "its constrained / unconstrained",
                "shoal / llama-server, unconstrained", "shoal / llama-server, constrained"):
        table.add_column(col, justify="right")
    if "free-1" in med:
        table.add_row("1", f"{med['free-1']:.1f}", f"{med['constrained-1']:.1f}",
                      f"{med['constrained-1'] / med['free-1']:.0%}", "", "", "", "", "")
    table.add_row("16", f"{med['free-16']:.1f}", f"{med['constrained-16']:.1f}",
                  f"{med['constrained-16'] / med['free-16']:.0%}", f"{med['peer-free-16']:.1f}",
                  f"{med['peer-16']:.1f}", f"{med['peer-16'] / med['peer-free-16']:.0%}",
                  f"{med['free-16'] / med['peer-free-16']:.2f}x", f"{med['constrained-16'] / med['peer-16']:.2f}x")
    console.print(table)
    console.print(f"llama-server answers valid under their schema: {peer_valid}/{peer_total}")
    out.write_text(json.dumps({"compile_s": compile_s, "validity": valid, "samples": samples, "median": med,
                               "peer_valid": [peer_valid, peer_total], "cpu": describe_cpu(), "runs": runs},
                              indent=2))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    typer.run(main)
