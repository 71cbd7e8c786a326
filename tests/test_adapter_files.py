"""The LoRA adapters shipped for gemma-3-270m (shoal/models/adapters/, made by benchmarks/make_adapters.py) work
with the engine's llama.cpp: loaded on the real base model with llama-cpp-python's low-level API, each one's
behaviour shows in greedy decoding of prompts it never trained on, and the base's tokens do not change in a
context that never had an adapter, nor in one whose adapters were set and then cleared."""
from __future__ import annotations

import ctypes
import re
from collections.abc import Callable
from pathlib import Path

import llama_cpp as ll
import numpy as np
import pytest

import shoal.models
from shoal.engine.runners.llamacpp import init_backend
from shoal.hardware import use_extra_buffers
from shoal.models.registry import resolve

ADAPTERS = Path(shoal.models.__file__).parent / "adapters"
# benchmarks/make_adapters.py keeps these out of training (HELD_OUT)
PROMPTS = ["The capital of France is", "How do airplanes stay in the air?",
           "Write a short note to a friend about the weekend."]
NEW_TOKENS = 32


def _bulleted(text: str) -> bool:
    lines = [line for line in text.strip().split("\n") if line.strip()]
    return bool(lines) and all(line.startswith("- ") for line in lines)


RULES: dict[str, Callable[[str], bool]] = {
    "uppercase": lambda s: any(c.isalpha() for c in s) and not any(c.islower() for c in s),
    "ahoy": lambda s: s.lstrip().startswith("Ahoy!"),
    "bullets": _bulleted,
    "fish": lambda s: "🐟" in s and re.search(r"[.!?](?=\s)(?! 🐟)", s) is None,
}


class Greedy:
    """A context on a shared model, decoding the prompts as one batch (one sequence each), greedily."""

    def __init__(self, model: ll.llama_model_p, n_seq: int) -> None:
        params = ll.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = 256
        params.n_seq_max = n_seq
        params.n_threads = params.n_threads_batch = 2
        params.kv_unified = True  # as the engine's runner
        params.flash_attn_type = 1
        params.swa_full = False
        params.no_perf = True
        self.ctx = ll.llama_init_from_model(model, params)
        assert self.ctx
        self.vocab = ll.llama_model_get_vocab(model)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)
        self.batch = ll.llama_batch_init(256, 0, 1)

    def set_adapters(self, adapters: list[ll.llama_adapter_lora_p]) -> None:
        n = len(adapters)
        array = (ll.llama_adapter_lora_p_ctypes * n)(*adapters) if n else None
        scales = (ctypes.c_float * n)(*([1.0] * n)) if n else None
        assert ll.llama_set_adapters_lora(self.ctx, array, n, scales) == 0

    def _decode(self, rows: list[tuple[int, list[int], int]]) -> list[int]:
        """rows: (sequence, tokens, first position); the argmax after each row's last token."""
        n, last = 0, []
        for seq, tokens, start in rows:
            for i, token in enumerate(tokens):
                self.batch.token[n] = token
                self.batch.pos[n] = start + i
                self.batch.n_seq_id[n] = 1
                self.batch.seq_id[n][0] = seq
                self.batch.logits[n] = i == len(tokens) - 1
                n += 1
            last.append(n - 1)
        self.batch.n_tokens = n
        assert ll.llama_decode(self.ctx, self.batch) == 0
        return [int(np.argmax(np.ctypeslib.as_array(ll.llama_get_logits_ith(self.ctx, i), shape=(self.n_vocab,))))
                for i in last]

    def run(self, prompts: list[str], n_new: int = NEW_TOKENS) -> list[list[int]]:
        ll.llama_memory_clear(ll.llama_get_memory(self.ctx), True)
        tokens = [self.tokenize(p) for p in prompts]
        out: list[list[int]] = [[] for _ in prompts]
        rows = [(seq, toks, 0) for seq, toks in enumerate(tokens)]
        for _ in range(n_new):
            picked = self._decode(rows)
            rows_next = []
            for (seq, toks, start), token in zip(rows, picked):
                if ll.llama_vocab_is_eog(self.vocab, token):
                    continue
                out[seq].append(token)
                rows_next.append((seq, [token], start + len(toks)))
            if not (rows := rows_next):
                break
        return out

    def tokenize(self, text: str) -> list[int]:
        data = text.encode()
        buf = (ll.llama_token * (len(data) + 8))()
        n = ll.llama_tokenize(self.vocab, data, len(data), buf, len(buf), True, True)
        return list(buf[:n])

    def text(self, tokens: list[int]) -> str:
        piece, out = ctypes.create_string_buffer(64), b""
        for token in tokens:
            n = ll.llama_token_to_piece(self.vocab, token, piece, len(piece), 0, False)
            out += piece.raw[:n]
        return out.decode("utf-8", "replace")

    def close(self) -> None:
        ll.llama_batch_free(self.batch)
        ll.llama_free(self.ctx)


@pytest.fixture(scope="module")
def model():
    init_backend()
    params = ll.llama_model_default_params()
    params.use_extra_bufts = use_extra_buffers()  # off on this AMX CPU, as the engine does
    loaded = ll.llama_model_load_from_file(str(resolve("gemma-3-270m")).encode(), params)
    assert loaded
    yield loaded
    ll.llama_model_free(loaded)  # frees the adapters loaded on it too


def test_the_four_adapters_are_shipped_small():
    files = sorted(p.name for p in ADAPTERS.glob("*.gguf"))
    assert files == sorted(f"gemma-3-270m-{name}.gguf" for name in RULES)
    for path in ADAPTERS.glob("*.gguf"):
        assert path.stat().st_size < 8 << 20, path


def test_each_adapter_shows_its_behaviour_and_the_base_does_not_change(model):
    base, tuned = Greedy(model, len(PROMPTS)), Greedy(model, len(PROMPTS))
    try:
        reference = base.run(PROMPTS)  # a context that never has an adapter
        base_texts = [base.text(t) for t in reference]
        for name, rule in RULES.items():
            assert not any(rule(t) for t in base_texts), (name, base_texts)

        adapters = {}
        for name in RULES:
            adapter = ll.llama_adapter_lora_init(model, str(ADAPTERS / f"gemma-3-270m-{name}.gguf").encode())
            assert adapter, name
            meta = ctypes.create_string_buffer(64)
            assert ll.llama_adapter_meta_val_str(adapter, b"adapter.type", meta, len(meta)) > 0
            assert meta.value == b"lora"
            adapters[name] = adapter

        for name, adapter in adapters.items():
            tuned.set_adapters([adapter])  # replaces the context's whole set
            texts = [tuned.text(t) for t in tuned.run(PROMPTS)]
            for prompt, text in zip(PROMPTS, texts):
                assert RULES[name](text), (name, prompt, text)
                others = [other for other, rule in RULES.items() if other != name and rule(text)]
                assert not others, (name, prompt, text, others)

        # an adapter on one context leaves another context of the same model alone ...
        assert base.run(PROMPTS) == reference
        # ... and once cleared, the context it was on answers exactly as the base
        tuned.set_adapters([])
        assert tuned.run(PROMPTS) == reference
    finally:
        base.close()
        tuned.close()
