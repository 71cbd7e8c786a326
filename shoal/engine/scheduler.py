"""Continuous batching: requests join and leave the running batch between forward passes.

One model thread runs the loop. Each step it admits waiting requests (in arrival order, while the
batch's reserved tokens, input + max_new, stay within MAX_BATCH_TOTAL_TOKENS), feeds prompt chunks
of new requests (at most MAX_BATCH_PREFILL_TOKENS a step) together with one token of every running
request into one forward pass, then samples and emits a token per running request. Events reach
the asyncio side in one hand-over per step.

LoRA adapters: a forward pass applies one adapter (or none) to all its rows (llama.cpp's adapters belong
to the context), so the running requests form one group per adapter and each step runs one group. The
group that runs is the one with the most requests times the steps it has waited (`_group_to_run`): the
batch stays as full as the mix allows, groups share steps in proportion to their requests, and a group of
one waits at most about as many steps as the largest group has requests, so no adapter starves.
"""
from __future__ import annotations

import asyncio
import codecs
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shoal.engine import metrics
from shoal.engine.grammar import Grammars, MaskJob
from shoal.engine.lora import Adapter, Adapters, Turns
from shoal.engine.prefix_cache import PrefixCache, PrefixReuse, common_prefix
from shoal.engine.runners.base import BatchItem, ModelRunner
from shoal.engine.sampling import Choice, Sampler, SamplingParams
from shoal.engine.settings import EngineSettings
from shoal.errors import ApiError, generation_error, validation_error

log = logging.getLogger(__name__)

# The least share of its cells the prefix cache keeps while it is not being reused (shoal.engine.prefix_cache).
IDLE_CACHE_SHARE = 1 / 16
# Requests that want prompt logprobs prefill in chunks this small, to bound the logits buffer.
_PROMPT_LOGPROB_CHUNK = 64


@dataclass(slots=True)
class Token:
    id: int
    text: str
    logprob: float | None
    special: bool = False


@dataclass(slots=True)
class Finish:
    reason: str  # length | eos_token | stop_sequence
    generated_text: str
    generated_tokens: int
    queue_time: float
    inference_time: float
    cached_tokens: int = 0  # prompt tokens reused from the prefix cache
    arrived: float = 0.0  # time.monotonic() when it was submitted
    prefill_time: float = 0.0  # from joining the batch to its first token


@dataclass(slots=True)
class TokenEvent:
    token: Token
    top_tokens: list[Token]
    finish: Finish | None = None  # set on a sequence's last token


@dataclass(slots=True)
class PrefillEvent:
    tokens: list[Token]


@dataclass(slots=True)
class ErrorEvent:
    error: ApiError


Event = TokenEvent | PrefillEvent | ErrorEvent


@dataclass(eq=False)
class Sequence:
    """One request as the scheduler sees it."""

    prompt: list[int]
    max_new_tokens: int
    params: SamplingParams
    emit: Callable[[Event], None]  # called on the event loop's thread
    stop: tuple[str, ...] = ()
    want_logprobs: bool = False
    prompt_logprobs: bool = False
    matcher: Any = None  # llguidance's LLMatcher when the output is constrained (shoal.engine.grammar)
    adapter: Adapter | None = None  # the LoRA adapter it runs with (None: the base model)
    # state, owned by the model thread
    seq_id: int = -1
    prefilled: int = 0
    generated: list[int] = field(default_factory=list)
    text: str = ""
    cancelled: bool = False
    cached_tokens: int = 0  # prompt tokens whose KV came from the prefix cache
    arrived: float = field(default_factory=time.monotonic)
    started: float = 0.0
    first_token_at: float = 0.0
    last_prompt_row: np.ndarray | None = None  # logits at the end of the last prompt chunk

    def __post_init__(self) -> None:
        self.sampler = Sampler(self.params, self.prompt)
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")

    @property
    def reserved_tokens(self) -> int:
        return len(self.prompt) + self.max_new_tokens

    @property
    def in_prefill(self) -> bool:
        return self.prefilled < len(self.prompt)

    def decode(self, piece: bytes) -> str:
        return self._utf8.decode(piece)

    @property
    def namespace(self) -> int:
        """Its prefix-cache namespace: KV computed with one adapter is reused only with it."""
        return self.adapter.serial if self.adapter else 0


class Scheduler:
    def __init__(self, runner: ModelRunner, settings: EngineSettings, grammars: Grammars | None = None,
                 adapters: Adapters | None = None) -> None:
        self.runner = runner
        self.settings = settings
        self.grammars = grammars
        self.adapters = adapters
        self._active: Adapter | None = None  # the adapter the last step ran
        self._turns: Turns[Adapter | None] = Turns()
        self._left: list[Adapter] = []  # adapters that left, freed once no sequence uses them
        self._masks: MaskJob | None = None  # made on the first constrained step
        self._lock = threading.Condition()
        self._incoming: list[Sequence] = []
        self._waiting: deque[Sequence] = deque()
        self._running: list[Sequence] = []
        self._free_ids = list(range(settings.max_sequences - 1, -1, -1))
        self._reserved = 0
        self._steps_since_admit = 0
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.peak_reserved_tokens = 0
        self.healthy = True
        self.warmed_up = threading.Event()
        cache_ids = range(settings.max_sequences, settings.sequence_ids)
        self.block = settings.prefix_cache_block
        cache = PrefixCache(settings.prefix_cache_tokens, cache_ids, self.block, idle_share=IDLE_CACHE_SHARE)
        self.prefixes = PrefixReuse(cache, runner) if settings.prefix_cache else None

    # -- called from the event loop ---------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="shoal-model", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify()
        if self._thread:
            self._thread.join(timeout=10)
        if self._masks:
            self._masks.close()

    def submit(self, seq: Sequence) -> None:
        with self._lock:
            self._incoming.append(seq)
            self._lock.notify()

    def cancel(self, seq: Sequence) -> None:
        seq.cancelled = True
        self.wake()

    def wake(self) -> None:
        """Have the model thread look at its queues (and the adapters that left) now."""
        with self._lock:
            self._lock.notify()

    @property
    def alive(self) -> bool:
        return self.healthy and self._thread is not None and self._thread.is_alive()

    # -- the model thread --------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._warm_up()
            while self._next_arrivals():
                self._drop_cancelled()
                self._free_left_adapters()
                self._admit()
                if self._running:
                    self._step()
        except Exception:  # pragma: no cover - a bug; fail every request rather than hang them
            log.exception("model loop crashed")
            self.healthy = False
            self._fail(self._running + list(self._waiting), generation_error("model loop crashed"))

    def _warm_up(self) -> None:
        """Decode once before serving, on this thread: a model that cannot decode here never serves.
        (On this thread because llama.cpp's OpenMP workers belong to the thread that first decodes: a
        warm-up on another thread leaves a second team that slows every step by 10-15 %.)"""
        self.runner.warm_up()
        log.info("warm-up decode done")
        self.warmed_up.set()

    def _next_arrivals(self) -> bool:
        with self._lock:
            while not (self._incoming or self._running or self._waiting or self._stopping or self._adapters_left()):
                self._lock.wait()
            if self._stopping:
                return False
            self._waiting.extend(self._incoming)
            self._incoming.clear()
        metrics.QUEUE_SIZE.set(len(self._waiting))
        return True

    def _adapters_left(self) -> bool:
        return self.adapters is not None and bool(self.adapters.leaving)

    def _free_left_adapters(self) -> None:
        """Free the adapters that left and that no sequence runs or waits with any more (with their cached
        prefixes). A sequence whose adapter was freed before it got here fails by name."""
        if self.adapters is None:
            return
        self._left.extend(self.adapters.take_leaving())
        if not self._left:
            return
        in_use = {s.adapter for s in (*self._running, *self._waiting)}
        for adapter in [a for a in self._left if a not in in_use]:
            self._left.remove(adapter)
            if self.prefixes:
                self.prefixes.forget_namespace(adapter.serial)
            self.adapters.free(adapter)

    def _drop_cancelled(self) -> None:
        if any(s.cancelled for s in self._waiting):
            self._waiting = deque(s for s in self._waiting if not s.cancelled)
        for seq in [s for s in self._running if s.cancelled]:
            self._retire(seq)

    def _admit(self) -> None:
        s = self.settings
        if not self._waiting:
            return
        ratio_met = len(self._waiting) >= s.waiting_served_ratio * len(self._running)
        if self._running and not ratio_met and self._steps_since_admit < s.max_waiting_tokens:
            self._steps_since_admit += 1
            return
        admitted = 0
        gone = [s for s in self._waiting if s.adapter is not None and s.adapter.freed]
        if gone:
            self._fail(gone, validation_error("adapter_id: the adapter was removed before this request ran"))
        for seq in list(self._waiting):
            if not self._free_ids or self._reserved + seq.reserved_tokens > s.max_batch_total_tokens:
                break  # in order: nobody overtakes the head of the queue for budget
            if self._awaits_shared_prefill(seq):
                continue
            self._waiting.remove(seq)
            seq.seq_id = self._free_ids.pop()
            if self.prefixes and not seq.prompt_logprobs:  # prompt logprobs need every prompt row computed
                seq.cached_tokens = seq.prefilled = self.prefixes.reuse(seq.seq_id, seq.prompt, seq.namespace)
            seq.started = time.monotonic()
            metrics.QUEUE_DURATION.observe(seq.started - seq.arrived)
            self._reserved += seq.reserved_tokens
            self._running.append(seq)
            admitted += 1
        if admitted:
            self._steps_since_admit = 0
            self.peak_reserved_tokens = max(self.peak_reserved_tokens, self._reserved)
            metrics.BATCH_MAX_TOKENS_PEAK.set(self.peak_reserved_tokens)
            self._observe_batch()
        metrics.QUEUE_SIZE.set(len(self._waiting))

    def _awaits_shared_prefill(self, seq: Sequence) -> bool:
        """Whether a running request is computing at least one block of `seq`'s prompt that the prefix cache
        does not hold: then `seq` waits for that prefill to end and reuses it, instead of computing the
        same tokens beside it (a burst of requests on one new system prompt computes it once)."""
        if self.prefixes is None or seq.prompt_logprobs:
            return False
        body = len(seq.prompt) - 1
        for other in self._running:
            if other.in_prefill and not other.prompt_logprobs and other.adapter is seq.adapter:
                shared = min(common_prefix(other.prompt, seq.prompt), body) // self.block * self.block
                if shared - other.cached_tokens >= self.block:
                    return True
        return False

    def _group_to_run(self) -> list[Sequence]:
        """The running sequences of the adapter this step runs (shoal.engine.lora.Turns)."""
        groups: dict[Adapter | None, list[Sequence]] = {}
        for seq in self._running:
            groups.setdefault(seq.adapter, []).append(seq)
        metrics.ADAPTER_GROUPS.set(len(groups))
        if len(groups) == 1:
            return self._running
        return groups[self._turns.choose({a: len(g) for a, g in groups.items()})]

    def _adapter_loading(self) -> bool:
        return self.adapters is not None and self.adapters.lock.locked()

    def _apply_adapter(self, adapter: Adapter | None) -> bool:
        """Switch the context to `adapter`; whether the next step re-plans its graph (it then holds the
        adapters' lock: llama.cpp reads the model's adapter set while re-planning)."""
        self._turns.ran(adapter)
        changed = self.runner.use_adapter(adapter.handle if adapter else None)
        self._active = adapter
        if changed:
            metrics.ADAPTER_SWITCHES.inc()
        return changed

    def _plan(self) -> tuple[list[BatchItem], list[Sequence]]:
        items: list[BatchItem] = []
        owners: list[Sequence] = []
        prefill_budget = self.settings.max_batch_prefill_tokens
        group = self._group_to_run()
        if group and group[0].adapter is not self._active and self._adapter_loading():
            group = [s for s in self._running if s.adapter is self._active] or group  # switch after the load
        exact = self.prefixes is not None and len(self._running) == 1
        for seq in group:
            if seq.in_prefill:
                chunk = min(self._prefill_chunk(seq) if exact else len(seq.prompt) - seq.prefilled, prefill_budget)
                if seq.prompt_logprobs:
                    chunk = min(chunk, _PROMPT_LOGPROB_CHUNK)
                if chunk <= 0:
                    continue
                prefill_budget -= chunk
                tokens = seq.prompt[seq.prefilled:seq.prefilled + chunk]
                items.append(BatchItem(seq.seq_id, tokens, seq.prefilled, seq.prompt_logprobs))
            else:
                position = len(seq.prompt) + len(seq.generated) - 1
                items.append(BatchItem(seq.seq_id, [seq.generated[-1]], position))
            owners.append(seq)
        return items, owners

    def _prefill_chunk(self, seq: Sequence) -> int:
        """How much of the prompt of a sequence that runs alone to feed next, with the prefix cache on: one
        block, cut at block boundaries, and the last prompt token alone, one step after the rest. llama.cpp's
        numbers move with the shape of what is computed together, so a prompt alone is always computed in
        the same pieces, whether a cached prefix (whole blocks, or the whole rest of the same prompt) or
        nothing came from the cache: a hit computes what a miss would (docs/architecture.md).
        In a batch, the rest of the prompt goes at once (it is computed with others anyway)."""
        body = len(seq.prompt) - 1 - seq.prefilled
        if body <= 0 or seq.prompt_logprobs:
            return len(seq.prompt) - seq.prefilled
        return min(body, self.block - seq.prefilled % self.block)

    def _step(self) -> None:
        items, owners = self._plan()
        if not items:
            return
        started = time.perf_counter()
        replan = self._apply_adapter(owners[0].adapter)
        masks = self._start_masks(items, owners)
        try:
            if replan and self.adapters is not None:
                with self.adapters.lock:
                    logits = self.runner.step(items)
            else:
                logits = self.runner.step(items)
        except ApiError as exc:
            self._fail(list(owners), exc)
            return
        if masks is not None:
            self._apply_masks(logits, *masks)
        events: list[tuple[Sequence, Event]] = []
        greedy = np.argmax(logits, axis=1)
        row = 0
        for item, seq in zip(items, owners):
            rows = len(item.tokens) if item.all_logits else 1
            if item.all_logits:
                events.append((seq, PrefillEvent(self._prompt_logprobs(seq, item, logits[row:row + rows]))))
            last = row + rows - 1
            row += rows
            if seq.in_prefill:
                seq.prefilled += len(item.tokens)
                if seq.in_prefill:
                    continue
                if self.prefixes and not seq.prompt_logprobs:  # its prompt is reusable now, not only at its end
                    self.prefixes.keep(seq.seq_id, seq.prompt, len(seq.prompt) - 1, seq.namespace)
            self._advance(seq, logits[last], int(greedy[last]), events)
        self._deliver(events)
        self._observe_step(time.perf_counter() - started, sum(len(i.tokens) for i in items))

    def _start_masks(self, items: list[BatchItem], owners: list[Sequence]) -> tuple[list[int], Future] | None:
        """Start computing the token masks of the constrained sequences that pick a token this step (their
        matchers are in their final state for it), so that they are ready when llama_decode returns. None,
        and no cost past this loop, when no sequence is constrained."""
        rows, matchers, row = [], [], 0
        for item, seq in zip(items, owners):
            row += len(item.tokens) if item.all_logits else 1
            samples = not seq.in_prefill or seq.prefilled + len(item.tokens) == len(seq.prompt)
            if seq.matcher is not None and samples:
                rows.append(row - 1)
                matchers.append(seq.matcher)
        if not matchers:
            return None
        if self._masks is None:
            assert self.grammars is not None, "a constrained sequence needs the engine's grammars"
            self._masks = MaskJob(self.grammars)
        return rows, self._masks.start(matchers)

    def _apply_masks(self, logits: np.ndarray, rows: list[int], pending: Future) -> None:
        waited = time.perf_counter()
        blocked = pending.result()
        metrics.GRAMMAR_MASK_WAIT.observe(time.perf_counter() - waited)
        for i, row in enumerate(rows):
            MaskJob.apply(logits[row], blocked[i])

    def _prompt_logprobs(self, seq: Sequence, item: BatchItem, rows: np.ndarray) -> list[Token]:
        """Logprob of each prompt token under the logits at the position before it."""
        out = []
        for offset, token in enumerate(item.tokens):
            before = rows[offset - 1] if offset else seq.last_prompt_row
            logprob = _log_softmax_at(before, token) if before is not None else None
            out.append(self._token(token, logprob))
        seq.last_prompt_row = np.array(rows[-1])
        return out

    def _token(self, token: int, logprob: float | None) -> Token:
        return Token(token, self.runner.token_bytes(token).decode("utf-8", "replace"), logprob,
                     self.runner.is_special(token))

    def _advance(self, seq: Sequence, row: np.ndarray, greedy_token: int,
                 events: list[tuple[Sequence, Event]]) -> None:
        if seq.params.plain_greedy and not seq.want_logprobs and not seq.params.top_n_tokens:
            choice = Choice(greedy_token, float("nan"))
        else:
            choice = seq.sampler.choose(row)
        token_id = choice.token
        if seq.matcher is not None and not seq.matcher.consume_token(token_id):
            self._fail([seq], generation_error(f"grammar: {seq.matcher.get_error()}"))
            return
        seq.sampler.observe(token_id)
        seq.generated.append(token_id)
        if len(seq.generated) == 1:
            seq.first_token_at = time.monotonic()
        special = self.runner.is_special(token_id)
        piece = self.runner.token_bytes(token_id)
        text = piece.decode("utf-8", "replace") if special else seq.decode(piece)
        logprob = choice.logprob if seq.want_logprobs else None
        top = [self._token(t, lp) for t, lp in choice.top]
        event = TokenEvent(Token(token_id, text, logprob, special), top)
        events.append((seq, event))
        reason = None
        if self.runner.is_end_of_generation(token_id):
            reason = "eos_token"
        else:
            if not special:
                seq.text += text
            if seq.matcher is not None and seq.matcher.is_stopped():
                reason = "eos_token"  # the grammar is complete: nothing but the end may follow
            elif seq.stop and _hits_stop(seq.text, len(text), seq.stop):
                reason = "stop_sequence"
            elif len(seq.generated) >= seq.max_new_tokens:
                reason = "length"
        if reason:
            event.finish = Finish(reason, seq.text, len(seq.generated), seq.started - seq.arrived,
                                  time.monotonic() - seq.started, seq.cached_tokens, seq.arrived,
                                  seq.first_token_at - seq.started)
            self._retire(seq, finished=True)

    def _retire(self, seq: Sequence, finished: bool = False) -> None:
        self._running.remove(seq)
        if finished and self.prefixes and not seq.prompt_logprobs:  # (fed in other chunks: other numbers)
            # its prompt and all but the last generated token have KV
            self.prefixes.keep(seq.seq_id, seq.prompt + seq.generated[:-1], len(seq.prompt) - 1, seq.namespace)
        self.runner.release(seq.seq_id)
        self._free_ids.append(seq.seq_id)
        self._reserved -= seq.reserved_tokens
        self._observe_batch()

    def _fail(self, seqs: list[Sequence], error: ApiError) -> None:
        for seq in seqs:
            if seq in self._running:
                self._retire(seq)
        self._waiting = deque(s for s in self._waiting if s not in seqs)
        self._deliver([(s, ErrorEvent(error)) for s in seqs])

    def _deliver(self, events: list[tuple[Sequence, Event]]) -> None:
        if events and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(_emit_all, events)

    def _observe_step(self, seconds: float, tokens: int) -> None:
        metrics.BATCH_FORWARD_DURATION.observe(seconds)
        metrics.BATCH_TOKENS.inc(tokens)

    def _observe_batch(self) -> None:
        metrics.BATCH_SIZE.set(len(self._running))
        metrics.BATCH_RESERVED_TOKENS.set(self._reserved)


def _emit_all(events: list[tuple[Sequence, Event]]) -> None:
    for seq, event in events:
        seq.emit(event)


def _hits_stop(text: str, added: int, stops: tuple[str, ...]) -> bool:
    tail_from = max(0, len(text) - added - max(len(s) for s in stops))
    tail = text[tail_from:]
    return any(s in tail for s in stops)


def _log_softmax_at(row: np.ndarray, token: int) -> float:
    m = float(row.max())
    return float(row[token]) - m - float(np.log(np.exp(row - m).sum()))
