"""OpenAI's `/v1/chat/completions`, `/v1/completions` and `/v1/models` on top of the engine.

`n` choices are `n` sequences in the batch (seeds `seed + i` when a seed is given, as vLLM derives them).
Streams send exactly what the answer would hold: text that could still become a stop string is held back
until it cannot (vLLM's `stop_buffer_length`), and a tool call is sent as OpenAI's `tool_calls` deltas once
it is complete. `response_format` and `tools` constrain the output (shoal.engine.grammar, shoal.engine.tools).
"""
from __future__ import annotations

import asyncio
import dataclasses
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from shoal.engine.engine import ENGINE_KEY, Engine, Prepared
from shoal.engine.grammar import ANY_JSON_OBJECT, GrammarSpec
from shoal.engine.scheduler import ErrorEvent, Event, Finish, Token, TokenEvent
from shoal.engine.tools import ParsedCall, ToolPlan, prompt_messages
from shoal.errors import ApiError
from shoal.http import Handler, json_response, openai_error_response, sse, start_sse
from shoal.observability.tokens import USAGE_HEADER, Tokens
from shoal.protocol.requests import (
    ChatCompletionRequest,
    CompletionRequest,
    GenerateParameters,
    ResponseFormat,
    parse_body,
)
from shoal.protocol.rules import check_openai, refuse_unsupported_openai

FINISH_REASONS = {"length": "length", "eos_token": "stop", "stop_sequence": "stop"}
OpenAIBody = ChatCompletionRequest | CompletionRequest


def _parameters(engine: Engine, body: OpenAIBody, max_new: int | None, top_n: int | None) -> GenerateParameters:
    """OpenAI's sampling defaults: temperature 1 samples, temperature 0 is greedy (and no warper then, which
    would switch sampling back on). A `model` that names a loaded LoRA adapter runs with it (any other name:
    the base model, as the engine serves one model)."""
    check_openai(body)
    refuse_unsupported_openai(body)
    temperature = 1.0 if body.temperature is None else body.temperature
    sampled = temperature > 0
    top_p = None if body.top_p in (None, 1.0) or not sampled else body.top_p
    return GenerateParameters(max_new_tokens=max_new, do_sample=sampled,
                              temperature=temperature if temperature not in (0, 1.0) else None,
                              top_p=top_p, top_k=body.top_k if sampled else None, stop=body.stops(),
                              seed=body.seed, frequency_penalty=body.frequency_penalty or None,
                              presence_penalty=body.presence_penalty or None,
                              repetition_penalty=body.repetition_penalty, logit_bias=body.logit_bias,
                              top_n_tokens=top_n,
                              adapter_id=body.model if body.model in engine.adapters.by_name else None)


def _answer_format(response_format: ResponseFormat | None) -> GrammarSpec | None:
    """`response_format` as a grammar: none for text, any JSON object, or the given JSON Schema."""
    if response_format is None or response_format.type == "text":
        return None
    schema = response_format.json_schema.schema_ if response_format.json_schema else None
    return GrammarSpec.json_schema(schema if schema is not None else ANY_JSON_OBJECT)


def _variants(prep: Prepared, n: int, seed: int | None) -> list[Prepared]:
    """`n` sequences of one request: seeds seed+i (vLLM's), or fresh ones each."""
    if n == 1 or not prep.sampling.do_sample:
        return [prep] * n
    return [dataclasses.replace(prep, sampling=dataclasses.replace(
        prep.sampling, seed=(seed + i) % 2**64 if seed is not None else random.getrandbits(63))) for i in range(n)]


def _strip_stop(text: str, finish: Finish, stops: tuple[str, ...]) -> str:
    """OpenAI leaves the stop sequence out of the text; TGI keeps it."""
    if finish.reason == "stop_sequence":
        cut = min((i for i in (text.rfind(s) for s in stops) if i >= 0), default=len(text))
        return text[:cut]
    return text


def held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many characters at the end of `text` could still start a stop string."""
    held = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), held, -1):
            if text.endswith(stop[:k]):
                held = k
                break
    return held


@dataclass
class ChoiceOutput:
    """One choice's text as the client sees it: what may be streamed now, and its end."""

    index: int
    stops: tuple[str, ...]
    tools: ToolPlan | None
    text: str = ""
    sent: int = 0
    tokens: list[TokenEvent] = field(default_factory=list)  # with logprobs, when asked
    finish: Finish | None = None

    def release(self, piece: str) -> str:
        """Add a token's text; the text that can be streamed now (none while it may be a tool call)."""
        self.text += piece
        if self.tools is not None and self.tools.may_call(self.text):
            return ""
        end = max(self.sent, len(self.text) - held_back(self.text, self.stops))
        out, self.sent = self.text[self.sent:end], end
        return out

    @property
    def final_text(self) -> str:
        assert self.finish is not None
        return _strip_stop(self.finish.generated_text, self.finish, self.stops)

    def calls(self) -> list[ParsedCall] | None:
        return self.tools.parse(self.final_text) if self.tools is not None else None

    def rest(self) -> str:
        """What the stream has not sent of the final text."""
        return self.final_text[self.sent:]

    def reason(self, calls: list[ParsedCall] | None) -> str:
        assert self.finish is not None
        return "tool_calls" if calls else FINISH_REASONS[self.finish.reason]


class Door(Protocol):
    """How a route shapes its choices: a whole answer's, and a stream chunk's."""

    def answer(self, c: ChoiceOutput) -> dict[str, Any]: ...

    def chunks(self, c: ChoiceOutput, text: str, tokens: list[TokenEvent], done: bool) -> list[dict[str, Any]]: ...


def _usage(prep: Prepared, choices: list[ChoiceOutput]) -> dict[str, Any]:
    n = sum(c.finish.generated_tokens for c in choices if c.finish)
    cached = choices[0].finish.cached_tokens if choices[0].finish else 0
    return {"prompt_tokens": len(prep.prompt), "completion_tokens": n, "total_tokens": len(prep.prompt) + n,
            "prompt_tokens_details": {"cached_tokens": cached}}


def _token_headers(usage: dict[str, Any]) -> dict[str, str]:
    return {"x-prompt-tokens": str(usage["prompt_tokens"]), "x-generated-tokens": str(usage["completion_tokens"]),
            "x-cached-tokens": str(usage["prompt_tokens_details"]["cached_tokens"])}


async def _choice_events(engine: Engine, preps: list[Prepared], want_logprobs: bool
                         ) -> AsyncIterator[tuple[int, Event]]:
    """The events of every choice, as they come, tagged with the choice's index."""
    if len(preps) == 1:
        async for event in engine.events(preps[0], want_logprobs):
            yield 0, event
        return
    queue: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()

    async def pump(index: int, prep: Prepared) -> None:
        async for event in engine.events(prep, want_logprobs):
            queue.put_nowait((index, event))

    tasks = [asyncio.ensure_future(pump(i, p)) for i, p in enumerate(preps)]
    try:
        while True:  # the caller stops once every choice has ended
            yield await queue.get()
    finally:
        for task in tasks:
            task.cancel()


async def _respond(request: web.Request, engine: Engine, preps: list[Prepared], body: OpenAIBody,
                   want_logprobs: bool, door: Door, envelope: dict[str, Any],
                   tools: ToolPlan | None = None) -> web.StreamResponse:
    """Run the choices; answer one JSON object, or SSE chunks ending in `data: [DONE]`."""
    choices = [ChoiceOutput(i, preps[0].stop, tools) for i in range(len(preps))]
    with engine.admitted():
        response = await start_sse(request) if body.stream else None
        running = len(choices)
        async for index, event in _choice_events(engine, preps, want_logprobs):
            if isinstance(event, ErrorEvent):
                if response is None:
                    raise event.error
                await response.write(sse(event.error.body()))
                break
            if not isinstance(event, TokenEvent):
                continue
            c = choices[index]
            if want_logprobs:
                c.tokens.append(event)
            c.finish = event.finish  # then its final text is the answer's, and the chunk sends what is left of it
            text = "" if c.finish or event.token.special else c.release(event.token.text)
            if response is not None and (text or want_logprobs or c.finish):
                for chunk in door.chunks(c, text, [event] if want_logprobs else [], c.finish is not None):
                    await response.write(sse({**envelope, "choices": [chunk]}))
            running -= c.finish is not None
            if not running:
                break
        usage = _usage(preps[0], choices)
        if response is None:  # TGI's token headers too, which the gateway counts usage by
            return json_response({**envelope, "choices": [door.answer(c) for c in choices], "usage": usage},
                                 headers=_token_headers(usage))
        if not running and body.stream_options and body.stream_options.include_usage:
            await response.write(sse({**envelope, "choices": [], "usage": usage}))
        await response.write(b"data: [DONE]\n\n")
        if USAGE_HEADER in request.headers:  # the gateway asks for the stream's token counts, after its events
            await response.write(Tokens(usage["prompt_tokens"], usage["completion_tokens"],
                                        usage["prompt_tokens_details"]["cached_tokens"]).trailer())
        await response.write_eof()
        return response


def _logprob(t: Token) -> dict[str, Any]:
    return {"token": t.text, "logprob": t.logprob, "bytes": list(t.text.encode())}


def _chat_logprobs(events: list[TokenEvent]) -> dict[str, Any] | None:
    if not events:
        return None
    return {"content": [{**_logprob(e.token), "top_logprobs": [_logprob(t) for t in e.top_tokens]}
                        for e in events]}


class ChatDoor:
    def answer(self, c: ChoiceOutput) -> dict[str, Any]:
        calls = c.calls()
        message: dict[str, Any] = {"role": "assistant", "content": None if calls else c.final_text}
        if calls:
            message["tool_calls"] = [call.json() for call in calls]
        return {"index": c.index, "message": message, "logprobs": _chat_logprobs(c.tokens),
                "finish_reason": c.reason(calls)}

    def chunks(self, c: ChoiceOutput, text: str, tokens: list[TokenEvent], done: bool) -> list[dict[str, Any]]:
        calls = c.calls() if done else None
        if calls:  # as OpenAI streams them: index, id and name first, then the arguments
            return [*({"index": c.index, "delta": {"role": "assistant", "tool_calls": [delta]}, "logprobs": None,
                       "finish_reason": None} for call_index, call in enumerate(calls)
                      for delta in _call_deltas(call_index, call)),
                    {"index": c.index, "delta": {}, "logprobs": _chat_logprobs(tokens),
                     "finish_reason": c.reason(calls)}]
        text = text + c.rest() if done else text
        return [{"index": c.index, "delta": {"role": "assistant", "content": text},
                 "logprobs": _chat_logprobs(tokens), "finish_reason": c.reason(None) if done else None}]


def _call_deltas(index: int, call: ParsedCall) -> list[dict[str, Any]]:
    return [{"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}},
            {"index": index, "function": {"arguments": call.arguments}}]


@dataclass
class CompletionDoor:
    echo: str = ""

    def answer(self, c: ChoiceOutput) -> dict[str, Any]:
        return {"index": c.index, "text": self.echo + c.final_text, "logprobs": _completion_logprobs(c.tokens),
                "finish_reason": c.reason(None)}

    def chunks(self, c: ChoiceOutput, text: str, tokens: list[TokenEvent], done: bool) -> list[dict[str, Any]]:
        return [{"index": c.index, "text": text + c.rest() if done else text,
                 "logprobs": _completion_logprobs(tokens), "finish_reason": c.reason(None) if done else None}]


def _completion_logprobs(tokens: list[TokenEvent]) -> dict[str, Any] | None:
    if not tokens:
        return None
    return {"tokens": [e.token.text for e in tokens], "token_logprobs": [e.token.logprob for e in tokens],
            "top_logprobs": [{t.text: t.logprob for t in e.top_tokens} for e in tokens], "text_offset": None}


async def chat_completions(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE_KEY]
    body = parse_body(await request.read(), ChatCompletionRequest)
    params = _parameters(engine, body, body.max_completion_tokens or body.max_tokens,  # checks before the template
                         body.top_logprobs if body.logprobs else None)
    tools = ToolPlan.of(body)
    messages, extra = prompt_messages(body, tools, "tools" in engine.chat_template)
    prompt = engine.render_chat(messages, **extra)
    prep = await engine.prepare(prompt, params, stream=body.stream, default_max_new_tokens=None, add_special=False)
    answer = _answer_format(body.response_format)
    if tools:
        await _check_schemas(engine, body, answer)
    prep = await engine.constrain(prep, tools.grammar(answer) if tools else answer,
                                  "tools" if tools else "response_format")
    envelope = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk" if body.stream
                else "chat.completion", "created": int(time.time()), "model": body.model or
                engine.runner.info.model_id, "system_fingerprint": f"shoal-{engine.runner.info.model_id}"}
    return await _respond(request, engine, _variants(prep, body.n, body.seed), body, body.logprobs, ChatDoor(),
                          envelope, tools)


async def _check_schemas(engine: Engine, body: ChatCompletionRequest, answer: GrammarSpec | None) -> None:
    """Each schema alone first, so that a bad one is refused in words that name it (compilations are cached)."""
    if answer is not None:
        await engine.grammars.compile(answer, "response_format")
    for i, tool in enumerate(body.tools or []):
        if tool.function.parameters is not None:
            await engine.grammars.compile(GrammarSpec.json_schema(tool.function.parameters),
                                          f"tools[{i}].function.parameters")


async def completions(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE_KEY]
    body = parse_body(await request.read(), CompletionRequest)
    params = _parameters(engine, body, body.max_tokens, body.logprobs or None)
    prompt = body.prompt_text()
    prep = await engine.prepare(prompt, params, stream=body.stream, default_max_new_tokens=None)
    prep = await engine.constrain(prep, _answer_format(body.response_format), "response_format")
    envelope = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": body.model or engine.runner.info.model_id}
    door = CompletionDoor(prompt if body.echo else "")
    return await _respond(request, engine, _variants(prep, body.n, body.seed), body, bool(body.logprobs), door,
                          envelope)


async def models(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE_KEY]
    model_id = engine.runner.info.model_id
    adapters = [{"id": name, "object": "model", "created": 0, "owned_by": "shoal", "parent": model_id}
                for name in engine.adapters.by_name]
    return json_response({"object": "list", "data": [
        {"id": model_id, "object": "model", "created": 0, "owned_by": "shoal"}, *adapters]})


def _in_openai_words(handler: Handler) -> Handler:
    """Errors of the OpenAI routes in OpenAI's shape (OpenAI's clients show nothing of TGI's)."""
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return openai_error_response(exc)
    return run


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", _in_openai_words(chat_completions))
    app.router.add_post("/v1/completions", _in_openai_words(completions))
    app.router.add_get("/v1/models", models)
