"""Which grammar library the built-in engine uses: llguidance vs xgrammar on this machine, with the GGUF
vocabulary of the default model (Gemma 3, 262,144 tokens) read from llama.cpp.

    flock /tmp/shoal-bench.lock .venv/bin/python benchmarks/grammar_libraries.py llguidance
    python3 -m venv /tmp/xgr-venv && /tmp/xgr-venv/bin/pip install xgrammar   # torch, transformers>=5
    flock /tmp/shoal-bench.lock /tmp/xgr-venv/bin/python benchmarks/grammar_libraries.py xgrammar

xgrammar runs in a venv of its own: it needs transformers >= 5, hence huggingface-hub >= 2.4, which
shoal's test client `text-generation` refuses (< 1.0). The first run writes the vocabulary to
/tmp/gemma-vocab.pkl for the second.

Measures, for each library: building its tokenizer from the vocabulary, compiling each schema of
benchmarks/structured_schemas.py on a cache miss (p50 / p90 / max), the schemas it refuses, and the time to
fill the masks of a batch of 16 sequences (16 different schemas, each advanced by random allowed tokens).
"""
from __future__ import annotations

import ctypes
import json
import pickle
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from structured_schemas import SCHEMAS  # noqa: E402

BATCH, STEPS = 16, 40
DUMP = Path("/tmp/gemma-vocab.pkl")


def vocabulary() -> tuple[list[bytes], list[int], list[int]]:
    if DUMP.exists():
        return pickle.loads(DUMP.read_bytes())
    from shoal.engine.runners.llamacpp import LlamaCppRunner
    from shoal.models.registry import resolve

    runner = LlamaCppRunner("gemma", resolve("gemma-3-270m"), n_ctx=256, n_batch=64, n_seq_max=1, n_threads=1)
    n = runner.n_vocab
    tokens = [runner.token_bytes(t) for t in range(n)]
    special = [t for t in range(n) if runner.is_special(t)]
    eog = [t for t in special if runner.is_end_of_generation(t)]
    DUMP.write_bytes(pickle.dumps((tokens, special, eog)))
    return tokens, special, eog


def percentiles(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"p50 {statistics.median(xs) * 1e3:.1f} ms, p90 {xs[int(len(xs) * 0.9)] * 1e3:.1f} ms, " \
           f"max {xs[-1] * 1e3:.1f} ms"


def allowed(mask_row: np.ndarray, n: int) -> np.ndarray:
    bits = np.unpackbits(mask_row.view(np.uint8), bitorder="little")[:n]
    return np.flatnonzero(bits)


def bench_llguidance(tokens: list[bytes], special: list[int], eog: list[int]) -> None:
    import llama_cpp as ll
    import llguidance as llg
    import llguidance.numpy as lln

    from shoal.models.registry import resolve

    params = ll.llama_model_default_params()
    params.vocab_only = True  # llguidance tokenizes forced bytes with llama.cpp's own tokenizer (no GIL)
    model = ll.llama_model_load_from_file(str(resolve("gemma-3-270m")).encode(), params)
    tokenize = ctypes.cast(ll.llama_cpp._lib.llama_tokenize, ctypes.c_void_p).value
    started = time.perf_counter()
    specials = set(special)
    marked = [b"\xff" + t if i in specials else t for i, t in enumerate(tokens)]
    tok = llg.LLTokenizer.from_llamacpp(tokens=marked, vocab_ptr=ll.llama_model_get_vocab(model),
                                        tokenize_fptr=tokenize, eos_token=eog, slices=None)
    print(f"llguidance {llg.__version__}: tokenizer {time.perf_counter() - started:.2f} s")
    options = {"whitespace_flexible": False}
    compile_s, refused, grammars = [], [], {}
    for name, schema in SCHEMAS.items():
        started = time.perf_counter()
        grammar = llg.LLMatcher.grammar_from_json_schema(json.dumps(schema), overrides=options)
        matcher = llg.LLMatcher(tok, grammar)
        lln.fill_next_token_bitmask(matcher, lln.allocate_token_bitmask(1, tok.vocab_size))  # lazy until here
        elapsed = time.perf_counter() - started
        if matcher.is_error():
            refused.append(f"{name}: {matcher.get_error()[:100]}")
            continue
        compile_s.append(elapsed)
        grammars[name] = grammar
    print(f"  compile (grammar, matcher, first mask): {percentiles(compile_s)}; refused {len(refused)}: {refused}")
    executor = llg.LLExecutor()
    rng = random.Random(0)
    matchers = [llg.LLMatcher(tok, grammars[n]) for n in list(grammars)[:BATCH]]
    mask = lln.allocate_token_bitmask(BATCH, tok.vocab_size)
    times = []
    for _ in range(STEPS):
        started = time.perf_counter()
        lln.fill_next_token_bitmask_par(executor, [(m, i) for i, m in enumerate(matchers)], mask)
        times.append(time.perf_counter() - started)
        for i, m in enumerate(matchers):
            ok = allowed(mask[i], len(tokens))
            m.consume_token(int(rng.choice(ok)))
            if m.is_stopped() or m.is_error():
                m.reset()
    print(f"  masks for {BATCH} sequences, one step: {percentiles(times)}")


def bench_xgrammar(tokens: list[bytes], special: list[int], eog: list[int]) -> None:
    import xgrammar as xgr

    started = time.perf_counter()
    info = xgr.TokenizerInfo(tokens, xgr.VocabType.RAW, vocab_size=len(tokens), stop_token_ids=eog)
    print(f"xgrammar {xgr.__version__ if hasattr(xgr, '__version__') else ''}: tokenizer "
          f"{time.perf_counter() - started:.2f} s (special tokens: {len(info.special_token_ids)})")
    compile_s, refused, compiled = [], [], {}
    for name, schema in SCHEMAS.items():
        compiler = xgr.GrammarCompiler(info, max_threads=2, cache_enabled=False)
        started = time.perf_counter()
        try:
            grammar = compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
        except Exception as exc:  # noqa: BLE001 - the library's refusal, reported
            refused.append(f"{name}: {str(exc)[:100]}")
            continue
        compile_s.append(time.perf_counter() - started)
        compiled[name] = grammar
    print(f"  compile: {percentiles(compile_s)}; refused {len(refused)}: {refused}")
    rng = random.Random(0)
    matchers = [xgr.GrammarMatcher(compiled[n]) for n in list(compiled)[:BATCH]]
    batch = xgr.BatchGrammarMatcher(max_threads=2)
    mask = np.full((BATCH, (len(tokens) + 31) // 32), -1, dtype=np.int32)
    import torch
    tmask = torch.from_numpy(mask)
    times = []
    for _ in range(STEPS):
        started = time.perf_counter()
        batch.batch_fill_next_token_bitmask(matchers, tmask)
        times.append(time.perf_counter() - started)
        for i, m in enumerate(matchers):
            ok = allowed(mask[i], len(tokens))
            m.accept_token(int(rng.choice(ok)))
            if m.is_terminated():
                m.reset()
    print(f"  masks for {BATCH} sequences, one step: {percentiles(times)}")


if __name__ == "__main__":
    vocab = vocabulary()
    print(f"vocabulary: {len(vocab[0])} tokens, {len(vocab[1])} special, end of generation {vocab[2]}")
    {"llguidance": bench_llguidance, "xgrammar": bench_xgrammar}[sys.argv[1]](*vocab)
