"""How an answer's token counts reach the gateway: prompt, cached (of the prompt) and generated tokens.

- A whole answer: the built-in engine's headers (`x-prompt-tokens`, `x-generated-tokens`, `x-cached-tokens`,
  TGI's names), else an OpenAI `usage` object in the body (any OpenAI-speaking engine).
- A stream: its headers went out before the first token, so the gateway asks the built-in engine
  (`USAGE_HEADER`) to end the stream with one SSE comment line, `: shoal-usage {...}`, which the gateway
  reads and takes out (`StreamMeter`): clients never see it. Other engines' streams are read for an OpenAI
  `usage` chunk (`stream_options.include_usage`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

USAGE_HEADER = "X-Shoal-Usage"  # sent to a copy with a streamed request: "end the stream with its token counts"
MARK = b": shoal-usage "  # the trailer: an SSE comment line (clients of a copy's own routes ignore comments)


@dataclass(frozen=True, slots=True)
class Tokens:
    prompt: int
    generated: int
    cached: int = 0  # of the prompt's tokens, how many came from the prefix cache

    def trailer(self) -> bytes:
        return MARK + orjson.dumps({"prompt_tokens": self.prompt, "generated_tokens": self.generated,
                                    "cached_tokens": self.cached}) + b"\n\n"


def from_headers(headers: Mapping[str, str]) -> Tokens | None:
    """TGI's (and the built-in engine's) token headers of a whole answer."""
    prompt, generated = headers.get("x-prompt-tokens"), headers.get("x-generated-tokens")
    if prompt is None or generated is None:
        return None
    try:
        return Tokens(int(prompt), int(generated), int(headers.get("x-cached-tokens") or 0))
    except ValueError:
        return None


def from_usage(usage: Any) -> Tokens | None:
    """An OpenAI `usage` object (or the trailer's)."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens")
    generated = usage.get("completion_tokens", usage.get("generated_tokens"))
    if not isinstance(prompt, int) or not isinstance(generated, int):
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else usage.get("cached_tokens")
    return Tokens(prompt, generated, cached if isinstance(cached, int) else 0)


def from_body(raw: bytes) -> Tokens | None:
    """The `usage` of a whole OpenAI answer (looked for only when the body names one)."""
    if b'"usage"' not in raw:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return from_usage(data.get("usage")) if isinstance(data, dict) else None


class StreamMeter:
    """Reads a stream's token counts as its chunks pass (`chunk` returns what the client gets): the engine's
    trailer, which it takes out of the stream, or the last OpenAI `usage` chunk. The trailer is the last thing
    a copy sends, so once it has begun nothing after it goes to the client."""

    __slots__ = ("_held", "_trailer", "tokens")

    def __init__(self) -> None:
        self.tokens: Tokens | None = None
        self._held = b""  # a line that may be the trailer's start, until the next chunk tells
        self._trailer: bytes | None = None

    def chunk(self, data: bytes) -> bytes:
        if self._trailer is not None:
            self._trailer += data
            return b""
        if self._held:
            data, self._held = self._held + data, b""
        at = data.find(MARK)
        if at >= 0 and (at == 0 or data[at - 1] == 0x0A):
            self._trailer = data[at:]
            return data[:at]
        line = data.rfind(b"\n") + 1
        if line < len(data) and MARK.startswith(data[line:]):  # an unfinished line that may become the trailer
            self._held = data[line:]
            data = data[:line]
        if b'"usage":{' in data:
            self._openai_usage(data)
        return data

    def end(self) -> bytes:
        """At the stream's end: what is still held back (not a trailer after all) goes to the client."""
        if self._trailer is not None:
            try:
                self.tokens = from_usage(orjson.loads(self._trailer[len(MARK):].strip()))
            except orjson.JSONDecodeError:
                pass
        held, self._held = self._held, b""
        return held

    def _openai_usage(self, data: bytes) -> None:
        for event in data.split(b"\n\n"):
            if b'"usage":{' in event and event.startswith(b"data:"):
                try:
                    found = from_usage(orjson.loads(event[5:]).get("usage"))
                except (orjson.JSONDecodeError, AttributeError):
                    continue  # an event cut across chunks: the counts are lost, the stream is not
                if found is not None:
                    self.tokens = found
