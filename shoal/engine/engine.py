"""The engine: validation as TGI does it, admission, and the bridge to the model thread."""
from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from shoal import tracing
from shoal.engine import metrics
from shoal.engine.grammar import CompiledGrammar, Grammars, GrammarSpec
from shoal.engine.lora import Adapter, Adapters, parse_adapter_list
from shoal.engine.runners.base import ModelRunner
from shoal.engine.sampling import SamplingParams
from shoal.engine.scheduler import ErrorEvent, Event, Finish, Scheduler, Sequence, TokenEvent
from shoal.engine.settings import EngineSettings
from shoal.errors import ApiError, overloaded_error, validation_error
from shoal.models import chat
from shoal.protocol.requests import GenerateParameters
from shoal.protocol.rules import (
    check_parameters,
    empty_inputs,
    inputs_too_long,
    logit_bias_outside,
    refuse_unsupported_tgi,
    total_too_long,
)

INLINE_TOKENIZE_CHARS = 4096  # longer texts are tokenized off the event loop


@dataclass
class Prepared:
    """A validated request, ready for the scheduler."""

    inputs: str
    prompt: list[int]
    max_new_tokens: int
    sampling: SamplingParams
    stop: tuple[str, ...]
    details: bool
    decoder_input_details: bool
    return_full_text: bool
    best_of: int
    grammar: CompiledGrammar | None = None  # the output's constraint, compiled (Engine.constrain)
    adapter: Adapter | None = None  # the LoRA adapter it runs with (None: the base model)


class Engine:
    def __init__(self, settings: EngineSettings, runner: ModelRunner) -> None:
        self.settings = settings
        self.runner = runner
        self.grammars = Grammars(runner)
        self.adapters = Adapters(runner)
        self.adapters.load_now(parse_adapter_list(settings.lora_adapters))
        self.scheduler = Scheduler(runner, settings, self.grammars, self.adapters)
        template = settings.chat_template
        self.chat_template = (chat.load_template(template) if template
                              else runner.info.chat_template or chat.default_template(runner.info.architecture))
        self.in_flight = 0

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self.scheduler.start(asyncio.get_running_loop())
        self.grammars.warm()  # the grammar tokenizer (about 1 s), in the background

    def stop(self) -> None:
        self.scheduler.stop()
        self.grammars.close()

    # -- validation (TGI's rules and messages) --------------------------------------------
    async def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        """Tokens of `text`; a long text on a worker thread, so the event loop keeps answering meanwhile."""
        if len(text) <= INLINE_TOKENIZE_CHARS:
            return self.runner.tokenize(text, add_special)
        return await asyncio.to_thread(self.runner.tokenize, text, add_special)

    async def prepare(self, inputs: str, p: GenerateParameters, stream: bool,
                default_max_new_tokens: int | None = 20, add_special: bool = True) -> Prepared:
        """Check a request as TGI's validation does; `add_special=False` for chat-template output. The
        adapter is `p.adapter_id` (OpenAI's routes set it from a `model` that names a loaded adapter)."""
        s = self.settings
        check_parameters(p, s, stream)
        refuse_unsupported_tgi(p)
        adapter = self.adapters.get(p.adapter_id, "adapter_id") if p.adapter_id else None
        best_of = p.best_of or 1
        if not inputs:
            raise validation_error(empty_inputs())
        prompt = await self.tokenize(inputs, add_special)
        if p.truncate is not None and len(prompt) > p.truncate:
            prompt = prompt[-p.truncate:]
        if len(prompt) > s.max_input_length:
            raise validation_error(inputs_too_long(s.max_input_length, len(prompt)))
        max_new = p.max_new_tokens or default_max_new_tokens or (s.max_total_tokens - len(prompt))
        if len(prompt) + max_new > s.max_total_tokens:
            raise validation_error(total_too_long(s.max_total_tokens, len(prompt), max_new))
        sampling = SamplingParams(do_sample=p.do_sample, temperature=p.temperature, top_k=p.top_k,
                                  top_p=p.top_p, typical_p=p.typical_p,
                                  repetition_penalty=p.repetition_penalty,
                                  frequency_penalty=p.frequency_penalty, presence_penalty=p.presence_penalty,
                                  top_n_tokens=p.top_n_tokens or 0, logit_bias=self._logit_bias(p))
        if sampling.do_sample:
            sampling.seed = p.seed if p.seed is not None else random.getrandbits(63)
        return Prepared(inputs, prompt, max_new, sampling, tuple(p.stop), p.details,
                        p.decoder_input_details, bool(p.return_full_text), best_of, adapter=adapter)

    def _logit_bias(self, p: GenerateParameters) -> dict[int, float] | None:
        if not p.logit_bias:
            return None
        bias = {int(token): value for token, value in p.logit_bias.items()}
        vocab = self.runner.info.vocab_size
        if (outside := next((t for t in bias if not 0 <= t < vocab), None)) is not None:
            raise validation_error(logit_bias_outside(outside, vocab))
        return bias

    async def constrain(self, prep: Prepared, spec: GrammarSpec | None, field: str) -> Prepared:
        """Compile `spec` (off the event loop and the model thread; cached) into `prep`: its sequences then
        only produce what the grammar allows. A grammar the library refuses is a 422 naming `field`."""
        if spec is not None:
            prep.grammar = await self.grammars.compile(spec, field)
        return prep

    async def use_adapters(self, pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
        """Serve exactly these adapters from now on (loaded beside the running requests)."""
        changes = await self.adapters.replace(pairs)
        self.scheduler.wake()  # free the ones that left, once unused
        return changes

    def render_chat(self, messages: list[dict[str, Any]], **extra: Any) -> str:
        info = self.runner.info
        return chat.render(self.chat_template, messages, info.bos_token, info.eos_token, **extra)

    # -- running -------------------------------------------------------------------------
    @contextmanager
    def admitted(self) -> Iterator[None]:
        """Count a request in for the block, or answer 429 past MAX_CONCURRENT_REQUESTS."""
        if self.in_flight >= self.settings.max_concurrent_requests:
            metrics.REQUEST_FAILURE.labels("overloaded").inc()
            raise overloaded_error()
        self.in_flight += 1
        metrics.IN_FLIGHT.set(self.in_flight)
        metrics.REQUEST_COUNT.inc()
        try:
            yield
        finally:
            self.in_flight -= 1
            metrics.IN_FLIGHT.set(self.in_flight)

    async def events(self, prep: Prepared, want_logprobs: bool = False) -> AsyncIterator[Event]:
        """Run one sequence; yields its events until its last token or an error. Leaving early cancels it."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        seq = Sequence(prompt=prep.prompt, max_new_tokens=prep.max_new_tokens, params=prep.sampling,
                       emit=queue.put_nowait, stop=prep.stop,
                       want_logprobs=want_logprobs or prep.details or prep.best_of > 1,
                       prompt_logprobs=prep.decoder_input_details,
                       matcher=prep.grammar.matcher() if prep.grammar else None, adapter=prep.adapter)
        metrics.INPUT_LENGTH.observe(len(prep.prompt))
        self.scheduler.submit(seq)
        finished = False
        try:
            while True:
                event = await queue.get()
                if isinstance(event, TokenEvent) and event.finish:
                    finished = True
                    done = event.finish
                    metrics.REQUEST_SUCCESS.inc()
                    metrics.GENERATED_TOKENS.observe(done.generated_tokens)
                    metrics.REQUEST_DURATION.observe(done.queue_time + done.inference_time)
                    _trace_phases(done, len(prep.prompt))
                elif isinstance(event, ErrorEvent):
                    finished = True
                    metrics.REQUEST_FAILURE.labels(event.error.error_type).inc()
                yield event
                if finished:
                    return
        finally:
            if not finished:
                self.scheduler.cancel(seq)

    def check_healthy(self) -> None:
        if not self.scheduler.alive:
            raise ApiError(503, "the model loop is not running", "unhealthy")
        if not self.scheduler.warmed_up.is_set():
            raise ApiError(503, "warming up: the first decode has not finished", "unhealthy")


def _trace_phases(done: Finish, prompt_tokens: int) -> None:
    """The request's queue, prefill and decode as spans of its trace (when tracing is on)."""
    if (phases := tracing.current_phases()) is None:
        return
    started = done.arrived + done.queue_time
    first, end = started + done.prefill_time, started + done.inference_time
    phases.add("engine queue", done.arrived, started)
    phases.add("engine prefill", started, first, {"shoal.prompt_tokens": prompt_tokens,
                                                  "shoal.cached_tokens": done.cached_tokens})
    phases.add("engine decode", first, end, {"shoal.generated_tokens": done.generated_tokens,
                                             "shoal.finish_reason": done.reason})


ENGINE_KEY = web.AppKey("engine", Engine)
