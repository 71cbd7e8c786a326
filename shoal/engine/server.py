"""The engine's HTTP server: the TGI routes (see ../shared/DESIGN.md, "Engine contract")."""
from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from shoal import __version__, tracing
from shoal.engine import openai_routes
from shoal.engine.engine import ENGINE_KEY, INLINE_TOKENIZE_CHARS, Engine, Prepared
from shoal.engine.grammar import from_tgi
from shoal.engine.runners.base import ModelRunner
from shoal.engine.scheduler import ErrorEvent, Finish, PrefillEvent, Token, TokenEvent
from shoal.errors import ConfigError, validation_error
from shoal.http import Handler, Timeouts, api_errors, bearer_only, body_deadline, json_response, sse, start_sse
from shoal.observability.tokens import USAGE_HEADER, Tokens
from shoal.protocol.requests import GenerateRequest, TokenizeRequest, parse_body


def token_json(t: Token) -> dict[str, Any]:
    return {"id": t.id, "text": t.text, "logprob": t.logprob, "special": t.special}


@dataclasses.dataclass
class Generation:
    """Everything one finished sequence produced."""

    prep: Prepared
    tokens: list[Token]
    top_tokens: list[list[Token]]
    prefill: list[Token]
    finish: Finish

    @property
    def text(self) -> str:
        return (self.prep.inputs if self.prep.return_full_text else "") + self.finish.generated_text

    @property
    def score(self) -> float:
        return sum(t.logprob or 0.0 for t in self.tokens)

    def details(self) -> dict[str, Any]:
        return {"finish_reason": self.finish.reason, "generated_tokens": self.finish.generated_tokens,
                "seed": self.prep.sampling.seed, "cached_tokens": self.finish.cached_tokens,
                "prefill": [token_json(t) for t in self.prefill],
                "tokens": [token_json(t) for t in self.tokens],
                "top_tokens": [[token_json(t) for t in top] for top in self.top_tokens]}

    def timing_headers(self) -> dict[str, str]:
        f = self.finish
        return {"x-prompt-tokens": str(len(self.prep.prompt)), "x-generated-tokens": str(f.generated_tokens),
                "x-cached-tokens": str(f.cached_tokens),
                "x-queue-time": str(int(f.queue_time * 1000)),
                "x-inference-time": str(int(f.inference_time * 1000)),
                "x-total-time": str(int((f.queue_time + f.inference_time) * 1000))}


async def run_to_end(engine: Engine, prep: Prepared, want_logprobs: bool = False) -> Generation:
    tokens: list[Token] = []
    top: list[list[Token]] = []
    prefill: list[Token] = []
    async for event in engine.events(prep, want_logprobs):
        if isinstance(event, ErrorEvent):
            raise event.error
        if isinstance(event, PrefillEvent):
            prefill.extend(event.tokens)
            continue
        tokens.append(event.token)
        if event.top_tokens:
            top.append(event.top_tokens)
        if event.finish:
            return Generation(prep, tokens, top, prefill, event.finish)
    raise RuntimeError("sequence ended without finishing")  # pragma: no cover


async def generate_best(engine: Engine, prep: Prepared) -> tuple[Generation, list[Generation]]:
    """TGI's best_of: several sampled sequences, the one of highest log-probability wins."""
    if prep.best_of == 1:
        return await run_to_end(engine, prep), []
    variants = [dataclasses.replace(prep, sampling=dataclasses.replace(prep.sampling,
                                                                      seed=random.getrandbits(63)))
                for _ in range(prep.best_of)]
    results = await asyncio.gather(*(run_to_end(engine, v) for v in variants))
    ranked = sorted(results, key=lambda g: g.score, reverse=True)
    return ranked[0], ranked[1:]


async def _prepare(engine: Engine, body: GenerateRequest, stream: bool) -> Prepared:
    """TGI's validation, then the `grammar` compiled (off the event loop)."""
    prep = await engine.prepare(body.inputs, body.parameters, stream=stream)
    grammar = body.parameters.grammar
    return await engine.constrain(prep, from_tgi(grammar) if grammar else None, "grammar")


async def _complete(engine: Engine, body: GenerateRequest) -> tuple[Generation, list[Generation]]:
    prep = await _prepare(engine, body, stream=False)
    with engine.admitted():
        return await generate_best(engine, prep)


def _generate_body(best: Generation, others: list[Generation]) -> dict[str, Any]:
    out: dict[str, Any] = {"generated_text": best.text}
    if best.prep.details:
        out["details"] = best.details()
        if others:
            out["details"]["best_of_sequences"] = [
                {"generated_text": g.text, **g.details()} for g in others]
    return out


async def generate(request: web.Request) -> web.StreamResponse:
    body = parse_body(await request.read(), GenerateRequest)
    best, others = await _complete(request.app[ENGINE_KEY], body)
    return json_response(_generate_body(best, others), headers=best.timing_headers())


async def generate_stream(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE_KEY]
    body = parse_body(await request.read(), GenerateRequest)
    return await _stream(request, engine, body)


async def _stream(request: web.Request, engine: Engine, body: GenerateRequest) -> web.StreamResponse:
    prep = await _prepare(engine, body, stream=True)
    with engine.admitted():
        response = await start_sse(request)
        index, cached = 0, 0
        async for event in engine.events(prep):
            if isinstance(event, ErrorEvent):
                await response.write(sse(event.error.body()))
                break
            if not isinstance(event, TokenEvent):
                continue
            index += 1
            cached = event.finish.cached_tokens if event.finish else cached
            message: dict[str, Any] = {"index": index, "token": token_json(event.token),
                                       "top_tokens": [token_json(t) for t in event.top_tokens] or None,
                                       "generated_text": None, "details": None}
            if event.finish:
                f = event.finish
                message["generated_text"] = (prep.inputs if prep.return_full_text else "") + f.generated_text
                if prep.details:
                    message["details"] = {"finish_reason": f.reason, "generated_tokens": f.generated_tokens,
                                          "seed": prep.sampling.seed, "cached_tokens": f.cached_tokens}
            await response.write(sse(message))
        if USAGE_HEADER in request.headers:  # the gateway asks for the stream's token counts, after its events
            await response.write(Tokens(len(prep.prompt), index, cached).trailer())
        await response.write_eof()
        return response


async def compat_generate(request: web.Request) -> web.StreamResponse:
    """`POST /` and `/invocations`: SSE when `stream`, else a one-element array (SageMaker's shape)."""
    engine = request.app[ENGINE_KEY]
    body = parse_body(await request.read(), GenerateRequest)
    if body.stream:
        return await _stream(request, engine, body)
    best, others = await _complete(engine, body)
    return json_response([_generate_body(best, others)], headers=best.timing_headers())


async def tokenize(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE_KEY]
    body = parse_body(await request.read(), TokenizeRequest)
    tokens = await engine.tokenize(body.inputs)
    if len(body.inputs) <= INLINE_TOKENIZE_CHARS:
        return json_response(_token_listing(engine.runner, tokens))
    return json_response(await asyncio.to_thread(_token_listing, engine.runner, tokens))  # the loop keeps answering


def _token_listing(runner: ModelRunner, tokens: list[int]) -> list[dict[str, Any]]:
    """TGI's /tokenize answer: each token's id, text and character span in the input."""
    out, cursor = [], 0
    for token in tokens:
        text = runner.token_bytes(token).decode("utf-8", "replace")
        stop = cursor if runner.is_special(token) else cursor + len(text)
        out.append({"id": token, "text": text, "start": cursor, "stop": stop})
        cursor = stop
    return out


class AdapterEntry(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    path: str = Field(min_length=1)


class AdapterSet(BaseModel):
    """`PUT /adapters`: the whole set of LoRA adapters the copy serves from now on."""

    adapters: list[AdapterEntry]


async def put_adapters(request: web.Request) -> web.StreamResponse:
    """Serve exactly the adapters named (new ones load beside running requests; ones left out are freed
    when no request uses them). Only the copy's supervisor calls it (the copy's credential)."""
    engine = request.app[ENGINE_KEY]
    body = parse_body(await request.read(), AdapterSet)
    try:
        changes = await engine.use_adapters([(a.name, a.path) for a in body.adapters])
    except ConfigError as exc:
        raise validation_error(str(exc)) from None
    return json_response({**changes, "adapters": engine.adapters.describe()})


async def get_adapters(request: web.Request) -> web.StreamResponse:
    return json_response({"adapters": request.app[ENGINE_KEY].adapters.describe()})


async def info(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE_KEY]
    s, m = engine.settings, engine.runner.info
    return json_response({
        "model_id": m.model_id, "model_sha": None, "model_dtype": m.dtype, "model_device_type": m.device,
        "model_pipeline_tag": "text-generation", "max_concurrent_requests": s.max_concurrent_requests,
        "max_best_of": s.max_best_of, "max_stop_sequences": s.max_stop_sequences,
        "max_input_length": s.max_input_length, "max_input_tokens": s.max_input_length,
        "max_total_tokens": s.max_total_tokens, "max_batch_total_tokens": s.max_batch_total_tokens,
        "max_batch_prefill_tokens": s.max_batch_prefill_tokens, "waiting_served_ratio": s.waiting_served_ratio,
        "max_waiting_tokens": s.max_waiting_tokens, "max_batch_size": s.max_sequences,
        "validation_workers": 1, "max_client_batch_size": 1, "router": "shoal", "version": __version__,
        "sha": None, "docker_label": None, "architecture": m.architecture,
        "lora_adapters": sorted(engine.adapters.by_name),
    })


async def health(request: web.Request) -> web.StreamResponse:
    request.app[ENGINE_KEY].check_healthy()
    return web.Response(status=200)


async def metrics(_request: web.Request) -> web.StreamResponse:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@web.middleware
async def _traced(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Each request a span continuing the gateway's `traceparent`, with its queue, prefill and decode."""
    with tracing.phases(f"engine {request.method} {request.path}", request.headers) as span:
        response = await handler(request)
        tracing.set_attributes(span, **{"http.response.status_code": response.status})
        return response


def build_app(engine: Engine, copy_token: str | None = None, timeouts: Timeouts | None = None) -> web.Application:
    """The engine's routes; with `copy_token`, only a caller presenting it is answered (health aside)."""
    credential = [bearer_only(copy_token)] if copy_token else []
    traced = [_traced] if tracing.enabled() else []
    app = web.Application(middlewares=[api_errors, *credential, *traced, body_deadline((timeouts or Timeouts()).body_s)],
                          client_max_size=engine.settings.payload_limit)
    app[ENGINE_KEY] = engine
    app.router.add_post("/generate", generate)
    app.router.add_post("/generate_stream", generate_stream)
    app.router.add_post("/", compat_generate)
    app.router.add_post("/invocations", compat_generate)
    app.router.add_post("/tokenize", tokenize)
    app.router.add_get("/info", info)
    app.router.add_get("/health", health)
    app.router.add_get("/ping", health)  # SageMaker's container health check
    app.router.add_get("/metrics", metrics)
    app.router.add_put("/adapters", put_adapters)
    app.router.add_get("/adapters", get_adapters)
    openai_routes.add_routes(app)

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        engine.start()
        yield
        engine.stop()

    app.cleanup_ctx.append(lifecycle)
    return app
