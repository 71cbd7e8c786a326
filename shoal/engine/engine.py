"""The engine: validation as TGI does it, admission, and the bridge to the model thread."""
from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from aiohttp import web

from shoal.engine import metrics
from shoal.engine.protocol import GenerateParameters
from shoal.engine.runners.base import ModelRunner
from shoal.engine.sampling import SamplingParams
from shoal.engine.scheduler import ErrorEvent, Event, Scheduler, Sequence, TokenEvent
from shoal.engine.settings import EngineSettings
from shoal.errors import ApiError, overloaded_error, validation_error
from shoal.models import chat


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


class Engine:
    def __init__(self, settings: EngineSettings, runner: ModelRunner) -> None:
        self.settings = settings
        self.runner = runner
        self.scheduler = Scheduler(runner, settings)
        template = settings.chat_template
        self.chat_template = (chat.load_template(template) if template
                              else runner.info.chat_template or chat.default_template(runner.info.architecture))
        self.in_flight = 0

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self.scheduler.start(asyncio.get_running_loop())

    def stop(self) -> None:
        self.scheduler.stop()

    # -- validation (TGI's rules and messages) --------------------------------------------
    def prepare(self, inputs: str, p: GenerateParameters, stream: bool,
                default_max_new_tokens: int | None = 20, add_special: bool = True) -> Prepared:
        """Check a request as TGI's validation does; `add_special=False` for chat-template output."""
        s = self.settings
        best_of = p.best_of or 1
        if p.best_of is not None:
            if not 0 < best_of <= s.max_best_of:
                raise validation_error(f"`best_of` must be > 0 and <= {s.max_best_of}. Given: {best_of}")
            if best_of > 1:
                if not (p.do_sample or p.temperature or p.top_k or p.top_p or p.typical_p):
                    raise validation_error("you must use sampling when `best_of` is > 1")
                if p.seed is not None:
                    raise validation_error("`seed` must not be set when `best_of` > 1")
                if stream:
                    raise validation_error("`best_of` != 1 is not supported when streaming tokens")
        if p.temperature is not None and p.temperature <= 0:
            raise validation_error("`temperature` must be strictly positive")
        if p.repetition_penalty is not None and p.repetition_penalty <= 0:
            raise validation_error("`repetition_penalty` must be strictly positive")
        if p.frequency_penalty is not None and not -2.0 <= p.frequency_penalty <= 2.0:
            raise validation_error("`frequency_penalty` must be >= -2.0 and <= 2.0")
        if p.top_p is not None and not 0.0 < p.top_p < 1.0:
            raise validation_error("`top_p` must be > 0.0 and < 1.0")
        if p.typical_p is not None and not 0.0 < p.typical_p < 1.0:
            raise validation_error("`typical_p` must be > 0.0 and < 1.0")
        if p.top_k is not None and p.top_k <= 0:
            raise validation_error("`top_k` must be strictly positive")
        if p.max_new_tokens is not None and p.max_new_tokens <= 0:
            raise validation_error("`max_new_tokens` must be strictly positive")
        if len(p.stop) > s.max_stop_sequences:
            raise validation_error(
                f"`stop` supports up to {s.max_stop_sequences} stop sequences. Given: {len(p.stop)}")
        top_n = p.top_n_tokens or 0
        if not 0 <= top_n <= s.max_top_n_tokens:
            raise validation_error(f"`top_n_tokens` must be >= 0 and <= {s.max_top_n_tokens}. Given: {top_n}")
        if p.decoder_input_details and stream:
            raise validation_error("`decoder_input_details` == true is not supported when streaming tokens")
        if not inputs:
            raise validation_error("`inputs` cannot be empty")
        if p.truncate is not None and not 0 < p.truncate < s.max_input_length:
            raise validation_error(f"`truncate` must be strictly positive and less than "
                                   f"{s.max_input_length}. Given: {p.truncate}")
        prompt = self.runner.tokenize(inputs, add_special)
        if p.truncate is not None and len(prompt) > p.truncate:
            prompt = prompt[-p.truncate:]
        if len(prompt) > s.max_input_length:
            raise validation_error(f"`inputs` must have less than {s.max_input_length} tokens. "
                                   f"Given: {len(prompt)}")
        max_new = p.max_new_tokens or default_max_new_tokens or (s.max_total_tokens - len(prompt))
        if len(prompt) + max_new > s.max_total_tokens:
            raise validation_error(
                f"`inputs` tokens + `max_new_tokens` must be <= {s.max_total_tokens}. "
                f"Given: {len(prompt)} `inputs` tokens and {max_new} `max_new_tokens`")
        sampling = SamplingParams(do_sample=p.do_sample, temperature=p.temperature, top_k=p.top_k,
                                  top_p=p.top_p, typical_p=p.typical_p,
                                  repetition_penalty=p.repetition_penalty,
                                  frequency_penalty=p.frequency_penalty, top_n_tokens=top_n)
        if sampling.do_sample:
            sampling.seed = p.seed if p.seed is not None else random.getrandbits(63)
        return Prepared(inputs, prompt, max_new, sampling, tuple(p.stop), p.details,
                        p.decoder_input_details, bool(p.return_full_text), best_of)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        info = self.runner.info
        return chat.render(self.chat_template, messages, info.bos_token, info.eos_token)

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
                       prompt_logprobs=prep.decoder_input_details)
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


ENGINE_KEY = web.AppKey("engine", Engine)
