"""TGI generation requests for engines that do not speak TGI, and their answers back in TGI's shape.

A `TgiCall` checks a TGI request with TGI's rules, refuses (422, naming it) a parameter the engine has
no equivalent for, and asks the engine in its dialect: OpenAI's `/v1/completions` (vLLM, SGLang, any
OpenAI server; `OpenAICompletions` here) or llama.cpp's own `/completion` (llama-server, in its module: it
says which stop sequence ended a generation, which its OpenAI route does not). Answers come back as TGI's
`{"generated_text", "details"}` or TGI's stream events, with finish reasons length / eos_token /
stop_sequence. Each engine kind that speaks OpenAI names its dialect (shoal.engines.adapters).
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

from shoal.errors import ApiError, validation_error
from shoal.http import sse
from shoal.protocol.requests import GenerateParameters, GenerateRequest, Grammar
from shoal.protocol.rules import check_parameters, is_sampling

DEFAULT_MAX_NEW_TOKENS = 20  # TGI's


@dataclass
class Piece:
    """What an engine said in one answer or one stream chunk, in TGI's terms."""

    text: str = ""
    tokens: list[dict[str, Any]] = field(default_factory=list)  # TGI token objects
    top: list[list[dict[str, Any]]] = field(default_factory=list)  # top tokens, one list per token
    finish: str | None = None  # length | eos_token | stop_sequence, on the last piece
    stop_word: str | None = None  # the stop sequence that ended it (engines leave it out of the text)
    generated: int | None = None  # tokens generated, where the engine says
    error: str | None = None


def token_json(token_id: int | None, text: str, logprob: float | None) -> dict[str, Any]:
    return {"id": -1 if token_id is None else token_id, "text": text, "logprob": logprob, "special": False}


@dataclass(frozen=True)
class Constraint:
    """TGI's `grammar`, as the dialects read it: `json` (a JSON Schema) or `regex` (a pattern)."""

    kind: Literal["json", "regex"]
    value: Any

    @classmethod
    def of(cls, grammar: Grammar) -> Constraint:
        """TGI's types json / json_object (a schema, as an object or as JSON text), json_schema ({"schema"}),
        regex; 422 when the value is not one."""
        if grammar.type == "regex":
            if not isinstance(grammar.value, str):
                raise validation_error("`grammar.value` must be a regular expression (a string) for type `regex`")
            return cls("regex", grammar.value)
        value = grammar.value
        if grammar.type == "json_schema":
            value = value.get("schema") if isinstance(value, dict) else None
        if isinstance(value, str):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise validation_error("`grammar.value` is not a JSON Schema: it is not JSON") from None
        if not isinstance(value, dict | bool):
            raise validation_error(f"`grammar.value` must be a JSON Schema for type `{grammar.type}`")
        return cls("json", value)


class Dialect(Protocol):
    path: str
    # TGI parameter -> the engine's field; None: the engine has no such parameter
    fields: dict[str, str | None]

    def payload(self, p: GenerateParameters, inputs: str, stream: bool) -> dict[str, Any]: ...

    def piece(self, data: dict[str, Any]) -> Piece: ...

    def constraint(self, c: Constraint) -> dict[str, Any] | None:
        """The payload fields that constrain the output as `c` asks; None: this engine cannot."""
        ...

    def adapter_fields(self, name: str | None, index: int, count: int) -> dict[str, Any]:
        """The payload fields that apply the LoRA adapter `name` (the `index`-th of the `count` the base's copies
        hold), or, with `name` None, none of them."""
        ...


Constrain = Callable[[Constraint], "dict[str, Any] | None"]


def unconstrained(_c: Constraint) -> dict[str, Any] | None:
    return None  # an OpenAI server of unknown make: no known field for it


def vllm_constraint(c: Constraint) -> dict[str, Any] | None:
    return {"structured_outputs": {c.kind: c.value}}  # vLLM >= 0.12 (guided_json and guided_regex before)


def sglang_constraint(c: Constraint) -> dict[str, Any] | None:
    return {"json_schema": orjson.dumps(c.value).decode()} if c.kind == "json" else {"regex": c.value}


def sampling_fields(p: GenerateParameters) -> dict[str, Any]:
    """TGI samples only when asked or warped; otherwise greedy, which OpenAI servers spell temperature 0."""
    if not is_sampling(p):
        return {"temperature": 0.0}
    out: dict[str, Any] = {"temperature": p.temperature or 1.0}
    if p.top_p is not None:
        out["top_p"] = p.top_p
    if p.seed is not None:
        out["seed"] = p.seed
    return out


def penalty_fields(p: GenerateParameters) -> dict[str, float]:
    """OpenAI's frequency and presence penalties, which every OpenAI-speaking engine takes by these names."""
    values = {"frequency_penalty": p.frequency_penalty, "presence_penalty": p.presence_penalty}
    return {k: v for k, v in values.items() if v is not None}


def extra_fields(fields: dict[str, str | None], p: GenerateParameters) -> dict[str, Any]:
    """TGI parameters that the engine names its own way (already checked to exist there)."""
    values = {"top_k": p.top_k, "repetition_penalty": p.repetition_penalty, "typical_p": p.typical_p,
              "truncate": p.truncate, "logit_bias": p.logit_bias}
    return {fields[k]: v for k, v in values.items() if v is not None and fields.get(k)}  # type: ignore[misc]


@dataclass(frozen=True)
class OpenAICompletions:
    """OpenAI's `/v1/completions`, with the extra sampling and constraint fields vLLM and SGLang accept."""

    fields: dict[str, str | None]
    stop_field: str | None  # where the engine says which stop string ended a choice
    constrain: Constrain = unconstrained  # TGI's grammar in the engine's fields
    adapter_field: str = "model"  # where the engine reads a LoRA adapter's name (vLLM: `model`)
    path: str = "/v1/completions"

    def constraint(self, c: Constraint) -> dict[str, Any] | None:
        return self.constrain(c)

    def adapter_fields(self, name: str | None, index: int, count: int) -> dict[str, Any]:
        return {self.adapter_field: name} if name is not None else {}

    def payload(self, p: GenerateParameters, inputs: str, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"prompt": inputs, "max_tokens": p.max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
                                "stream": stream, **sampling_fields(p), **extra_fields(self.fields, p)}
        if p.stop:
            body["stop"] = p.stop
        body.update(penalty_fields(p))
        if p.details or p.top_n_tokens:
            body["logprobs"] = max(1, p.top_n_tokens or 0)
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def piece(self, data: dict[str, Any]) -> Piece:
        if "error" in data:
            return Piece(error=error_text(data))
        usage = data.get("usage") or {}
        choices = data.get("choices") or [{}]
        choice = choices[0]
        piece = Piece(text=choice.get("text") or "", generated=usage.get("completion_tokens"))
        piece.tokens, piece.top = _openai_logprobs(choice.get("logprobs"))
        reason = choice.get("finish_reason")
        if reason == "length":
            piece.finish = "length"
        elif reason:
            stopped_by = choice.get(self.stop_field) if self.stop_field else None
            piece.finish = "stop_sequence" if isinstance(stopped_by, str) else "eos_token"
            piece.stop_word = stopped_by if isinstance(stopped_by, str) else None
        return piece


def _openai_logprobs(lp: dict[str, Any] | None) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """OpenAI's legacy completion logprobs (tokens, token_logprobs, top_logprobs) as TGI tokens."""
    if not lp:
        return [], []
    tokens = [token_json(None, t, p) for t, p in zip(lp.get("tokens") or [], lp.get("token_logprobs") or [])]
    top = [[token_json(None, t, p) for t, p in (alts or {}).items()] for alts in lp.get("top_logprobs") or []]
    return tokens, top


OPENAI_FIELDS: dict[str, str | None] = {"top_k": None, "repetition_penalty": None, "typical_p": None,
                                        "truncate": None, "logit_bias": "logit_bias"}
GENERIC_OPENAI = OpenAICompletions(OPENAI_FIELDS, stop_field="stop_reason")  # any OpenAI server


@dataclass(frozen=True)
class TgiLimits:
    """The limits TGI's rules check a request against, from the component's settings."""

    max_input_length: int  # MAX_TOTAL_TOKENS: the engine checks the prompt itself
    max_stop_sequences: int = 4
    max_top_n_tokens: int = 5
    max_best_of: int = 1  # no OpenAI-speaking engine serves best_of


class TgiCall:
    """One TGI generation request on its way to an engine that speaks another dialect."""

    def __init__(self, body: GenerateRequest, dialect: Dialect, engine: str, limits: TgiLimits,
                 stream: bool, adapter: dict[str, Any] | None = None) -> None:
        self.inputs = body.inputs
        self.p = body.parameters.model_copy(update={"adapter_id": None}) if adapter else body.parameters
        self.adapter = adapter or {}  # the engine's fields for the adapter the request names (resolved already)
        self.stream = stream
        self.engine = engine
        self.dialect = dialect
        check_parameters(self.p, limits, self.stream)
        self._refuse_untranslatable()
        self.constrained = self._constraint()

    def _refuse_untranslatable(self) -> None:
        p = self.p
        asked = {"top_k": p.top_k is not None, "typical_p": p.typical_p is not None, "truncate": p.truncate is not None,
                 "repetition_penalty": p.repetition_penalty not in (None, 1.0), "logit_bias": bool(p.logit_bias),
                 "decoder_input_details": p.decoder_input_details, "watermark": p.watermark,
                 "adapter_id": p.adapter_id is not None}
        for name, wanted in asked.items():
            if wanted and not self.dialect.fields.get(name):
                raise validation_error(f"`{name}` is not supported by this inference component's engine "
                                       f"({self.engine})")
        if not self.inputs:
            raise validation_error("`inputs` cannot be empty")

    def _constraint(self) -> dict[str, Any]:
        """The engine's fields for TGI's `grammar`, or 422 naming it where the engine has none for its type."""
        if self.p.grammar is None:
            return {}
        constraint = Constraint.of(self.p.grammar)
        if (fields := self.dialect.constraint(constraint)) is None:
            raise validation_error(f"`grammar` of type `{self.p.grammar.type}` is not supported by this inference "
                                   f"component's engine ({self.engine})")
        return fields

    @property
    def path(self) -> str:
        return self.dialect.path

    def payload(self) -> bytes:
        return orjson.dumps({**self.dialect.payload(self.p, self.inputs, self.stream), **self.constrained,
                             **self.adapter})

    # -- answers -------------------------------------------------------------------------
    def answer(self, raw: bytes) -> dict[str, Any]:
        """The engine's whole answer as TGI's `/generate` body."""
        piece = self.dialect.piece(orjson.loads(raw))
        if piece.error:
            raise ApiError(424, piece.error, "generation")
        out: dict[str, Any] = {"generated_text": self._full_text(piece.text, piece)}
        if self.p.details:
            out["details"] = {**self._details(piece, len(piece.tokens)), "prefill": [], "tokens": piece.tokens,
                              "top_tokens": piece.top if self.p.top_n_tokens else []}
        return out

    async def events(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The engine's stream as TGI's server-sent events; the last event carries the whole text."""
        text, count, pending = "", 0, None
        async for data in _sse_objects(chunks):
            piece = self.dialect.piece(data)
            if piece.error:
                yield sse({"error": piece.error, "error_type": "generation"})
                return
            for event in self._token_events(piece):
                if pending is not None:
                    yield sse(pending)
                count += 1
                text += event["token"]["text"]
                pending = {"index": count, **event, "generated_text": None, "details": None}
            if piece.finish:
                if pending is None:  # a generation that ended at once: TGI still sends one event
                    pending = {"index": 1, "token": token_json(None, "", None), "top_tokens": None,
                               "generated_text": None, "details": None}
                pending["generated_text"] = self._full_text(text, piece)
                if self.p.details:
                    pending["details"] = self._details(piece, count)
                yield sse(pending)
                return
        if pending is not None:
            yield sse(pending)
        yield sse({"error": "the engine ended the stream before the generation finished", "error_type": "generation"})

    def _token_events(self, piece: Piece) -> Iterator[dict[str, Any]]:
        if piece.tokens and any(t["text"] for t in piece.tokens):
            for i, token in enumerate(piece.tokens):
                top = piece.top[i] if self.p.top_n_tokens and i < len(piece.top) else None
                yield {"token": token, "top_tokens": top}
        elif piece.text:
            token_id = piece.tokens[0]["id"] if len(piece.tokens) == 1 else None
            yield {"token": token_json(token_id, piece.text, None), "top_tokens": None}

    def _full_text(self, text: str, last: Piece) -> str:
        if last.finish == "stop_sequence" and last.stop_word and not text.endswith(last.stop_word):
            text += last.stop_word  # TGI's text keeps the stop sequence
        return (self.inputs if self.p.return_full_text else "") + text

    def _details(self, last: Piece, counted: int) -> dict[str, Any]:
        return {"finish_reason": last.finish, "generated_tokens": last.generated or counted,
                "seed": self.p.seed if is_sampling(self.p) else None}


async def _sse_objects(chunks: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    """JSON objects of `data:` lines in a server-sent event stream, whatever the chunking."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            line = line.strip()
            if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
                try:
                    yield orjson.loads(line[5:])
                except orjson.JSONDecodeError:
                    continue


def error_text(data: dict[str, Any]) -> str:
    error = data.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error or data.get("message") or data)


def engine_error(status: int, raw: bytes) -> ApiError:
    """An OpenAI-speaking engine's refusal, in TGI's shape: its 4xx are validation errors (422)."""
    try:
        message = error_text(orjson.loads(raw))
    except (orjson.JSONDecodeError, AttributeError):
        message = raw.decode("utf-8", "replace")
    if status == 429:
        return ApiError(429, "Model is overloaded", "overloaded")
    return ApiError(422 if 400 <= status < 500 else 424, message, "validation" if status < 500 else "generation")
