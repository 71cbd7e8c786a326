"""Constrained decoding with llguidance: JSON Schema, regex and lark grammars as token masks.

Why llguidance (measured, `benchmarks/grammar_libraries.py`, docs/benchmarks.md "Structured output"): on
Gemma's 262,144-token vocabulary it compiles the benchmark's schemas in 0.5 ms p50 (xgrammar: 35 ms), has
CPU wheels with no torch, takes lark grammars (tool calls in "auto" mode are "text, or a marker and a call")
and forces the canonical tokens of forced text. Its masks cost 2-6 ms a step for 16 sequences; they are
computed on a helper thread while llama_decode runs (`MaskJob`), so the model thread only applies them.

The tokenizer comes from the runner's own vocabulary (token bytes, special tokens, end-of-generation
tokens), with llama.cpp's tokenizer for the text a grammar forces: nothing is downloaded.
"""
from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import llguidance as llg
import llguidance.numpy as lln
import numpy as np

from shoal.engine import metrics
from shoal.engine.runners.base import ModelRunner
from shoal.errors import validation_error
from shoal.protocol.requests import Grammar
from shoal.protocol.rules import invalid_grammar

log = logging.getLogger(__name__)

# Compact JSON (no free whitespace): a small model left free whitespace can pad forever.
JSON_OPTIONS = {"whitespace_flexible": False}
CACHE_SIZE = 256  # compiled grammars kept, least recently used dropped


@dataclass(frozen=True)
class GrammarSpec:
    """What a request constrains its output to: a JSON Schema (as JSON text), a regex, or a lark grammar."""

    kind: Literal["json", "regex", "lark"]
    text: str

    @staticmethod
    def json_schema(schema: Any) -> GrammarSpec:
        return GrammarSpec("json", json.dumps(schema))  # key order kept: properties come out in that order

    def llguidance(self) -> str:
        if self.kind == "json":
            return llg.LLMatcher.grammar_from_json_schema(self.text, overrides=JSON_OPTIONS)  # type: ignore[arg-type]
        if self.kind == "regex":
            return llg.LLMatcher.grammar_from_regex(self.text)
        return llg.LLMatcher.grammar_from_lark(self.text)


ANY_JSON_OBJECT: dict[str, Any] = {"type": "object"}


def from_tgi(grammar: Grammar) -> GrammarSpec:
    """TGI's `grammar` parameter as a spec; a value of the wrong shape is a 422 naming it."""
    value = grammar.value
    if grammar.type == "regex":
        if not isinstance(value, str):
            raise validation_error(invalid_grammar("grammar", "a `regex` grammar's value must be a string"))
        return GrammarSpec("regex", value)
    if grammar.type == "json_schema":  # TGI 3: {"name"?, "schema"}
        value = value.get("schema") if isinstance(value, dict) else None
        if value is None:
            raise validation_error(invalid_grammar("grammar", "a `json_schema` grammar's value needs `schema`"))
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise validation_error(invalid_grammar("grammar", f"the JSON Schema is not JSON: {exc}")) from None
    if not isinstance(value, (dict, bool)):
        raise validation_error(invalid_grammar("grammar", "a JSON Schema must be an object"))
    return GrammarSpec.json_schema(value or ANY_JSON_OBJECT)


class CompiledGrammar:
    """A checked grammar and a matcher in its start state, whose copies each sequence gets."""

    def __init__(self, template: llg.LLMatcher) -> None:
        self._template = template

    def matcher(self) -> llg.LLMatcher:
        return self._template.deep_copy()


class GrammarError(Exception):
    """The library refused a grammar; its words are the message."""


class Grammars:
    """Compiles specs off the event loop and the model thread (a small pool), keeps the last CACHE_SIZE."""

    def __init__(self, runner: ModelRunner, cache_size: int = CACHE_SIZE) -> None:
        self.runner = runner
        self.cache_size = cache_size
        self._cache: OrderedDict[GrammarSpec, CompiledGrammar] = OrderedDict()
        self._lock = threading.Lock()
        self._tokenizer: llg.LLTokenizer | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shoal-grammar")

    def warm(self) -> None:
        """Build the tokenizer in the background (about 1 s for 262,144 tokens) before the first request."""
        self._pool.submit(lambda: self.tokenizer)

    @property
    def tokenizer(self) -> llg.LLTokenizer:
        with self._lock:
            if self._tokenizer is None:
                started = time.perf_counter()
                self._tokenizer = build_tokenizer(self.runner)
                log.info("grammar tokenizer: %d tokens in %.2f s", self._tokenizer.vocab_size,
                         time.perf_counter() - started)
            return self._tokenizer

    async def compile(self, spec: GrammarSpec, field: str) -> CompiledGrammar:
        """The compiled grammar of `spec` (cached); a grammar the library refuses is a 422 naming `field`."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self.compile_now, spec)
        except GrammarError as exc:
            raise validation_error(invalid_grammar(field, str(exc))) from None

    def compile_now(self, spec: GrammarSpec) -> CompiledGrammar:
        with self._lock:
            hit = self._cache.get(spec)
            if hit is not None:
                self._cache.move_to_end(spec)
                metrics.GRAMMAR_CACHE_HITS.inc()
                return hit
        self.tokenizer  # noqa: B018 - built once per engine (Engine.start warms it), not counted as compile time
        started = time.perf_counter()
        compiled = self._build(spec)
        metrics.GRAMMAR_COMPILE_DURATION.observe(time.perf_counter() - started)
        with self._lock:
            self._cache[spec] = compiled
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return compiled

    def _build(self, spec: GrammarSpec) -> CompiledGrammar:
        tokenizer = self.tokenizer
        try:
            grammar = spec.llguidance()
        except (ValueError, TypeError, RuntimeError) as exc:  # a schema llguidance cannot read at all
            raise GrammarError(str(exc)) from None
        failed, messages = llg.LLMatcher.validate_grammar_with_warnings(grammar, tokenizer)
        if failed:
            raise GrammarError(messages[0].strip())
        matcher = llg.LLMatcher(tokenizer, grammar, log_level=0)
        # llguidance builds its lexer lazily: the first mask does that work here, not on the model thread.
        lln.fill_next_token_bitmask(matcher, lln.allocate_token_bitmask(1, tokenizer.vocab_size))
        if matcher.is_error():
            raise GrammarError(matcher.get_error())
        return CompiledGrammar(matcher)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def build_tokenizer(runner: ModelRunner) -> llg.LLTokenizer:
    """llguidance's tokenizer from the runner's vocabulary: each token's bytes, special tokens marked with
    a 0xff byte (llguidance's convention: a grammar's text never matches them), every end-of-generation
    token as EOS. Text that a grammar forces is tokenized by llama.cpp's tokenizer, called without the GIL."""
    n = runner.info.vocab_size
    tokens, eos = [], []
    for token in range(n):
        piece = runner.token_bytes(token)
        if runner.is_special(token):
            piece = b"\xff" + piece
            if runner.is_end_of_generation(token):
                eos.append(token)
        tokens.append(piece)
    vocab = getattr(runner, "vocab", None)
    if vocab is not None:  # llama.cpp
        import llama_cpp as ll

        tokenize = ctypes.cast(ll.llama_cpp._lib.llama_tokenize, ctypes.c_void_p).value
        return llg.LLTokenizer.from_llamacpp(tokens=tokens, vocab_ptr=vocab, tokenize_fptr=tokenize,  # type: ignore[attr-defined]
                                             eos_token=eos, slices=None)
    return llg.LLTokenizer(llg.TokenizerWrapper(_RunnerVocabulary(runner, tokens, eos)), eos_token=eos)


class _RunnerVocabulary:
    """TokenizerWrapper's view of a runner without llama.cpp's C tokenizer (a PyTorch runner)."""

    def __init__(self, runner: ModelRunner, tokens: list[bytes], eos: list[int]) -> None:
        self.runner, self.tokens, self.eos_token_id, self.bos_token_id = runner, tokens, eos[0], None
        self.special_token_ids = [i for i, t in enumerate(tokens) if t.startswith(b"\xff")]

    def __call__(self, text: bytes) -> list[int]:
        return self.runner.tokenize(text.decode("utf-8", "replace"), add_special=False)


class MaskJob:
    """The next token masks of a batch's constrained sequences, computed on a helper thread while the model
    thread runs llama_decode (which releases the GIL), then applied to their logits rows before sampling."""

    def __init__(self, grammars: Grammars) -> None:
        self.vocab_size = grammars.runner.info.vocab_size
        self._executor = llg.LLExecutor()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shoal-masks")
        self._bits = lln.allocate_token_bitmask(1, grammars.tokenizer.vocab_size)

    def start(self, matchers: Sequence[llg.LLMatcher]) -> Future[np.ndarray]:
        """Masks of `matchers` (their current states), as a boolean `blocked` matrix, a row each."""
        return self._thread.submit(self._compute, list(matchers))

    def _compute(self, matchers: list[llg.LLMatcher]) -> np.ndarray:
        if self._bits.shape[0] < len(matchers):
            self._bits = lln.allocate_token_bitmask(len(matchers), self._bits.shape[1] * 32)
        bits = self._bits[:len(matchers)]
        lln.fill_next_token_bitmask_par(self._executor, [(m, i) for i, m in enumerate(matchers)], bits)
        allowed = np.unpackbits(bits.view(np.uint8), axis=1, bitorder="little")[:, :self.vocab_size]
        return allowed == 0

    @staticmethod
    def apply(row: np.ndarray, blocked: np.ndarray) -> None:
        np.copyto(row, -np.inf, where=blocked)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
