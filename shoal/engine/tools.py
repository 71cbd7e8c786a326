"""OpenAI tool calling on the built-in engine: what the output is constrained to, and the calls read back.

A call is written `<tool_call>` followed by JSON: one `{"name", "arguments"}` object, or with parallel calls
allowed, a non-empty array of them; each `arguments` follows its function's `parameters` schema. The output
is constrained (shoal.engine.grammar), so what follows the marker always parses and validates:
- `required`, or a named function: the whole output is the marker and the call(s);
- `auto`: free text that does not start with the marker (or the `response_format` JSON, if one is asked),
  or the marker and the call(s): a lark grammar;
- `none`: no tools in the prompt, no constraint but `response_format`'s.
How the prompt shows the tools is in shoal.models.chat (`tool_messages`).
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from shoal.engine.grammar import JSON_OPTIONS, GrammarSpec
from shoal.protocol.requests import ChatCompletionRequest, NamedToolChoice, Tool

MARKER = "<tool_call>"
NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


@dataclass(frozen=True)
class ParsedCall:
    id: str
    name: str
    arguments: str  # JSON text

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class ToolPlan:
    """What one chat request allows: which functions, whether the model must call one, how many at once."""

    tools: tuple[Tool, ...]
    mode: str  # auto | required
    parallel: bool

    @staticmethod
    def of(body: ChatCompletionRequest) -> ToolPlan | None:
        """None when the request has no tools to offer (none given, or `tool_choice` "none")."""
        if not body.tools or body.tool_choice == "none":
            return None
        tools = tuple(body.tools)
        parallel = body.parallel_tool_calls is not False
        if isinstance(body.tool_choice, NamedToolChoice):
            name = body.tool_choice.function.name
            return ToolPlan(tuple(t for t in tools if t.function.name == name), "required", False)
        return ToolPlan(tools, "required" if body.tool_choice == "required" else "auto", parallel)

    def calls_schema(self) -> dict[str, Any]:
        one = {"anyOf": [_call_schema(t) for t in self.tools]} if len(self.tools) > 1 else _call_schema(self.tools[0])
        return {"type": "array", "items": one, "minItems": 1} if self.parallel else one

    def grammar(self, answer: GrammarSpec | None) -> GrammarSpec:
        """The lark grammar of the output; `answer`: the JSON Schema of a non-call answer (response_format)."""
        call = f'"{MARKER}" calls'
        rules = [f"calls: %json {_lark_json(self.calls_schema())}"]
        if self.mode == "required":
            return GrammarSpec("lark", "\n".join([f"start: {call}", *rules]))
        if answer is not None and answer.kind == "json":
            start, rule = "answer", f"answer: %json {_lark_json(json.loads(answer.text))}"
        else:  # free text, which must not start the way a call does
            start, rule = "TEXT", "TEXT: /(.|\\n)*/ & ~/<tool_call>(.|\\n)*/"
        return GrammarSpec("lark", "\n".join([f"start: {start} | {call}", rule, *rules]))

    def may_call(self, text: str) -> bool:
        """Whether `text` (the output so far) is, or may still become, a call: held back from a stream."""
        return self.mode == "required" or text.startswith(MARKER) or MARKER.startswith(text)

    def parse(self, text: str) -> list[ParsedCall] | None:
        """The calls in a finished output; None if it is not a call (text, or cut short by max_tokens)."""
        if not text.startswith(MARKER):
            return None
        try:
            value = json.loads(text[len(MARKER):])
        except json.JSONDecodeError:
            return None
        return [ParsedCall(f"call_{uuid.uuid4().hex[:24]}", c["name"], json.dumps(c["arguments"]))
                for c in (value if isinstance(value, list) else [value])]


def _call_schema(tool: Tool) -> dict[str, Any]:
    f = tool.function
    return {"type": "object", "properties": {"name": {"const": f.name}, "arguments": f.parameters or NO_ARGUMENTS},
            "required": ["name", "arguments"], "additionalProperties": False}


def _lark_json(schema: dict[str, Any]) -> str:
    """A JSON Schema for lark's `%json`, with the same compact-JSON options as a `json` grammar."""
    return json.dumps({**schema, "x-guidance": JSON_OPTIONS})


def instructions(plan: ToolPlan) -> str:
    """The default tool preamble (for chat templates that do not render `tools`): the functions as JSON and
    the exact shape of an answer that calls them."""
    functions = [{"name": t.function.name, "description": t.function.description or "",
                  "parameters": t.function.parameters or NO_ARGUMENTS} for t in plan.tools]
    shape = ('a JSON array of calls, each {"name": <function name>, "arguments": <its arguments as a JSON object>}'
             if plan.parallel else
             'one JSON object {"name": <function name>, "arguments": <its arguments as a JSON object>}')
    how = (f"Answer only with {MARKER} followed by {shape}." if plan.mode == "required" else
           f"To call functions, answer with {MARKER} followed by {shape}. Otherwise answer in plain text.")
    return f"You can call these functions:\n{json.dumps(functions)}\n{how}"


def prompt_messages(body: ChatCompletionRequest, plan: ToolPlan | None,
                    template_renders_tools: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The conversation for the chat template, and the template's extra variables. A template that renders
    `tools` (jinja) gets the tools and the calls as OpenAI sends them; any other gets the preamble as a system
    message, earlier calls written as the model writes them, and tool answers as user turns."""
    if template_renders_tools:
        messages = [m.model_dump(exclude_none=True) for m in body.messages]
        for m in messages:
            m["content"] = m.get("content") if isinstance(m.get("content"), str) else _text(m)
            for call in m.get("tool_calls", []):
                call["function"]["arguments"] = _arguments(call["function"]["arguments"])
        return messages, ({"tools": [t.model_dump(exclude_none=True) for t in plan.tools]} if plan else {})
    names = {c.id: c.function.name for m in body.messages for c in m.tool_calls or []}
    out: list[dict[str, Any]] = [{"role": "system", "content": instructions(plan)}] if plan else []
    for m in body.messages:
        if m.role == "tool":
            out.append({"role": "user", "content": f"Result of {names.get(m.tool_call_id or '', m.name or 'the call')}:"
                                                   f" {m.text()}"})
        elif m.tool_calls:
            calls = [{"name": c.function.name, "arguments": _arguments(c.function.arguments)} for c in m.tool_calls]
            written = calls if len(calls) > 1 or (plan and plan.parallel) else calls[0]
            out.append({"role": m.role, "content": m.text() + MARKER + json.dumps(written)})
        else:
            out.append({"role": m.role, "content": m.text()})
    return out, {}


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _text(message: dict[str, Any]) -> str:
    parts = message.get("content") or []
    return "".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")
