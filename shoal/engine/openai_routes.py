"""OpenAI's `/v1/chat/completions`, `/v1/completions` and `/v1/models` on top of the engine."""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from shoal.engine.engine import ENGINE_KEY, Engine, Prepared
from shoal.engine.scheduler import ErrorEvent, Finish, Token, TokenEvent
from shoal.errors import ApiError
from shoal.http import Handler, json_response, openai_error_response, sse, start_sse
from shoal.protocol.requests import ChatCompletionRequest, CompletionRequest, GenerateParameters, parse_body
from shoal.protocol.rules import check_openai

FINISH_REASONS = {"length": "length", "eos_token": "stop", "stop_sequence": "stop"}
Chunk = Callable[[str, list[TokenEvent], Finish | None], dict[str, Any]]  # text, tokens with logprobs


def _parameters(body: ChatCompletionRequest | CompletionRequest, max_new: int | None,
                top_n: int | None) -> GenerateParameters:
    """OpenAI's sampling defaults: temperature 1 samples, temperature 0 is greedy."""
    check_openai(body)
    temperature = 1.0 if body.temperature is None else body.temperature
    top_p = None if body.top_p in (None, 1.0) else body.top_p
    return GenerateParameters(max_new_tokens=max_new, do_sample=temperature > 0,
                              temperature=temperature if temperature not in (0, 1.0) else None,
                              top_p=top_p, stop=body.stops(), seed=body.seed,
                              frequency_penalty=body.frequency_penalty or None,
                              presence_penalty=body.presence_penalty or None, top_n_tokens=top_n)


def _strip_stop(text: str, finish: Finish, stops: tuple[str, ...]) -> str:
    """OpenAI leaves the stop sequence out of the text; TGI keeps it."""
    if finish.reason == "stop_sequence":
        cut = min((i for i in (text.rfind(s) for s in stops) if i >= 0), default=len(text))
        return text[:cut]
    return text


def _usage(prep: Prepared, finish: Finish) -> dict[str, Any]:
    n = finish.generated_tokens
    return {"prompt_tokens": len(prep.prompt), "completion_tokens": n, "total_tokens": len(prep.prompt) + n,
            "prompt_tokens_details": {"cached_tokens": finish.cached_tokens}}


async def _respond(request: web.Request, engine: Engine, prep: Prepared, stream: bool, want_logprobs: bool,
                   include_usage: bool, shape: Chunk, envelope: dict[str, Any]) -> web.StreamResponse:
    """Run `prep`; answer one JSON object, or SSE chunks ending in `data: [DONE]`."""
    with engine.admitted():
        response = await start_sse(request) if stream else None
        tokens: list[TokenEvent] = []
        async for event in engine.events(prep, want_logprobs):
            if isinstance(event, ErrorEvent):
                if response is None:
                    raise event.error
                await response.write(sse(event.error.body()))
                break
            if not isinstance(event, TokenEvent):
                continue
            tokens.append(event)
            if response is not None:
                piece = "" if event.token.special else event.token.text
                await response.write(sse({**envelope, **shape(piece, [event] if want_logprobs else [],
                                                             event.finish)}))
            if event.finish:
                if response is None:
                    text = _strip_stop(event.finish.generated_text, event.finish, prep.stop)
                    body = {**envelope, **shape(text, tokens if want_logprobs else [], event.finish)}
                    return json_response({**body, "usage": _usage(prep, event.finish)})
                if include_usage:
                    await response.write(sse({**envelope, "choices": [], "usage": _usage(prep, event.finish)}))
        assert response is not None
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _logprob(t: Token) -> dict[str, Any]:
    return {"token": t.text, "logprob": t.logprob, "bytes": list(t.text.encode())}


def _chat_logprobs(events: list[TokenEvent]) -> dict[str, Any] | None:
    if not events:
        return None
    return {"content": [{**_logprob(e.token), "top_logprobs": [_logprob(t) for t in e.top_tokens]}
                        for e in events]}


async def chat_completions(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE_KEY]
    body = parse_body(await request.read(), ChatCompletionRequest)
    check_openai(body)  # before the chat template sees the messages
    prompt = engine.render_chat([{"role": m.role, "content": m.text()} for m in body.messages])
    params = _parameters(body, body.max_completion_tokens or body.max_tokens,
                         body.top_logprobs if body.logprobs else None)
    prep = engine.prepare(prompt, params, stream=body.stream, default_max_new_tokens=None, add_special=False)
    stream = body.stream

    def shape(text: str, tokens: list[TokenEvent], finish: Finish | None) -> dict[str, Any]:
        reason = FINISH_REASONS[finish.reason] if finish else None
        if stream:
            delta = {"role": "assistant", "content": text}
            return {"choices": [{"index": 0, "delta": delta, "logprobs": _chat_logprobs(tokens),
                                 "finish_reason": reason}]}
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "logprobs": _chat_logprobs(tokens), "finish_reason": reason}]}

    envelope = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk" if stream
                else "chat.completion", "created": int(time.time()), "model": body.model or
                engine.runner.info.model_id, "system_fingerprint": f"shoal-{engine.runner.info.model_id}"}
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return await _respond(request, engine, prep, stream, body.logprobs, include_usage, shape, envelope)


async def completions(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE_KEY]
    body = parse_body(await request.read(), CompletionRequest)
    prompt = body.prompt_text()
    prep = engine.prepare(prompt, _parameters(body, body.max_tokens, body.logprobs or None), stream=body.stream,
                          default_max_new_tokens=None)
    echo = prompt if body.echo else ""

    def shape(text: str, tokens: list[TokenEvent], finish: Finish | None) -> dict[str, Any]:
        logprobs = None
        if tokens:
            logprobs = {"tokens": [e.token.text for e in tokens], "token_logprobs": [e.token.logprob for e in tokens],
                        "top_logprobs": [{t.text: t.logprob for t in e.top_tokens} for e in tokens],
                        "text_offset": None}
        text = (echo + text) if (finish and not body.stream) else text
        return {"choices": [{"index": 0, "text": text, "logprobs": logprobs,
                             "finish_reason": FINISH_REASONS[finish.reason] if finish else None}]}

    envelope = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": body.model or engine.runner.info.model_id}
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return await _respond(request, engine, prep, body.stream, bool(body.logprobs), include_usage, shape,
                          envelope)


async def models(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE_KEY]
    model_id = engine.runner.info.model_id
    return json_response({"object": "list", "data": [
        {"id": model_id, "object": "model", "created": 0, "owned_by": "shoal"}]})


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
