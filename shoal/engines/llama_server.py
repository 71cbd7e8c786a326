"""`llama-server`: llama.cpp's own C++ server, from the prebuilt PyPI wheel `xllamacpp` (no compiler).

It speaks OpenAI's routes; TGI and SageMaker requests go to its own `/completion` route, which says which
stop sequence ended a generation (its OpenAI route does not), in `LlamaCppCompletion`'s dialect. Each of its slots holds
MAX_TOTAL_TOKENS of context and there are MAX_BATCH_TOTAL_TOKENS / MAX_TOTAL_TOKENS of them, so both of
TGI's limits hold. Its prompt cache is on (llama.cpp's default).
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from typing import Any

from shoal.engines.base import (
    Deployment,
    EngineConfigError,
    EngineKind,
    EngineProtocol,
    Limits,
    ServerPolicy,
    confine_model,
    device_env,
    threads_of,
)
from shoal.engines.shoal_engine import check_gguf_model, gguf_adapter
from shoal.engines.translate import (
    DEFAULT_MAX_NEW_TOKENS,
    Constraint,
    Piece,
    error_text,
    extra_fields,
    penalty_fields,
    sampling_fields,
    token_json,
)
from shoal.hardware import use_extra_buffers
from shoal.launch import HOST, PORT, LaunchPlan, Slot
from shoal.models.registry import resolve
from shoal.protocol.requests import GenerateParameters


@dataclass(frozen=True)
class LlamaCppCompletion:
    """llama.cpp server's own `/completion` route: token ids, and `stop_type` eos / word / limit."""

    fields: dict[str, str | None]
    path: str = "/completion"

    def constraint(self, c: Constraint) -> dict[str, Any] | None:
        return {"json_schema": c.value} if c.kind == "json" else None  # llama.cpp's server has no regex field

    def adapter_fields(self, name: str | None, index: int, count: int) -> dict[str, Any]:
        """Every adapter of its --lora list (the base's order) with its scale: the one asked for 1, the others 0
        (a request without `lora` would run with whatever its slot last applied)."""
        if not count:
            return {}
        return {"lora": [{"id": i, "scale": 1.0 if name is not None and i == index else 0.0} for i in range(count)]}

    def payload(self, p: GenerateParameters, inputs: str, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"prompt": inputs, "n_predict": p.max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
                                "stream": stream, "return_tokens": True, "cache_prompt": True,
                                **_NEUTRAL_SAMPLERS, **sampling_fields(p), **extra_fields(self.fields, p)}
        if p.stop:
            body["stop"] = p.stop
        body.update(penalty_fields(p))
        if p.details or p.top_n_tokens:
            body["n_probs"] = max(1, p.top_n_tokens or 0)
        return body

    def piece(self, data: dict[str, Any]) -> Piece:
        if "error" in data:
            return Piece(error=error_text(data))
        probs = data.get("completion_probabilities") or []
        if probs:
            tokens = [token_json(e.get("id"), _piece(e), e.get("logprob")) for e in probs]
            top = [[token_json(t.get("id"), _piece(t), t.get("logprob")) for t in e.get("top_logprobs", [])]
                   for e in probs]
        else:
            ids = data.get("tokens") or []
            text = data.get("content") or ""
            tokens = [token_json(ids[0], text, None)] if len(ids) == 1 else [token_json(i, "", None) for i in ids]
            top = []
        piece = Piece(text=data.get("content") or "", tokens=tokens, top=top)
        if data.get("stop"):
            kind = data.get("stop_type")
            piece.finish = {"limit": "length", "word": "stop_sequence"}.get(kind, "eos_token")
            piece.stop_word = data.get("stopping_word") or None if kind == "word" else None
            piece.generated = data.get("tokens_predicted")
        return piece


# llama.cpp's server samples with top-k 40, top-p 0.95 and min-p 0.05 unless told otherwise; TGI applies
# only the warpers a request names.
_NEUTRAL_SAMPLERS = {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.0}


def _piece(entry: dict[str, Any]) -> str:
    """A llama.cpp token's text from its bytes (its `token` field merges pieces around stop-word checks)."""
    raw = entry.get("bytes")
    return bytes(raw).decode("utf-8", "replace") if raw is not None else entry.get("token", "")


class LlamaServer(EngineKind):
    name = "llama-server"
    protocol = EngineProtocol.OPENAI
    serves_adapters = True  # llama.cpp's --lora, chosen per request; new adapters need new copies
    dialect = LlamaCppCompletion({"top_k": "top_k", "repetition_penalty": "repeat_penalty", "typical_p": "typical_p",
                                  "truncate": None, "logit_bias": None})
    description = "llama.cpp's C++ server (PyPI wheel xllamacpp; GGUF)"
    honoured = frozenset({"MAX_TOTAL_TOKENS", "MAX_BATCH_TOTAL_TOKENS", "MAX_BATCH_PREFILL_TOKENS",
                          "MAX_CONCURRENT_REQUESTS", "MAX_STOP_SEQUENCES", "MAX_TOP_N_TOKENS", "SM_NUM_GPUS",
                          "CHAT_TEMPLATE"})
    why_not = {
        "MAX_INPUT_LENGTH": "llama.cpp's server limits prompt + new tokens (MAX_TOTAL_TOKENS), not the prompt alone",
        "HF_MODEL_QUANTIZE": "a GGUF file is quantized when it is made: deploy the GGUF of the quantization you want",
        "MAX_BEST_OF": "llama.cpp's server has no best_of",
        "WAITING_SERVED_RATIO": "a TGI scheduler setting; llama.cpp's server schedules its slots itself",
        "MAX_WAITING_TOKENS": "a TGI scheduler setting; llama.cpp's server schedules its slots itself",
    }

    install_hint = "pip install 'shoal[llama-server]'"

    def installed(self) -> bool:
        return importlib.util.find_spec("xllamacpp") is not None

    def check_model(self, d: Deployment, policy: ServerPolicy) -> None:
        if not self.installed():
            raise EngineConfigError(f"engine llama-server needs llama.cpp's server from the xllamacpp wheel: "
                                    f"{self.install_hint}")
        confine_model(d.model_id, policy)
        check_gguf_model(d.model_id)

    def launch_plan(self, d: Deployment, slot: Slot) -> LaunchPlan:
        limits = Limits.of(d)
        slots = max(1, limits.max_batch_total // limits.max_total)
        argv = [sys.executable, "-m", "shoal.engines.xllamacpp_server", "--host", HOST, "--port", PORT,
                "--model", str(resolve(d.model_id)), "--alias", d.component,
                "--ctx-size", str(slots * limits.max_total), "--parallel", str(slots),
                "--threads", str(threads_of(slot)), "--flash-attn", "on", "--metrics",
                "--n-gpu-layers", "999" if slot.accelerators else "0"]
        if limits.max_prefill:
            argv += ["--batch-size", str(limits.max_prefill)]
        if template := d.setting("CHAT_TEMPLATE"):
            argv += ["--chat-template", template]
        if not use_extra_buffers(d.env.get("SHOAL_CPU_EXTRA_BUFFERS", "auto")):
            argv.append("--no-repack")
        for _name, path in d.adapters:  # loaded, applied per request (`lora`: [{id, scale}]), in this order
            argv += ["--lora", path]
        return LaunchPlan(tuple(argv), {**d.passthrough_env(), **device_env(slot)})

    def check_adapter(self, artifact: str, policy: ServerPolicy) -> str:
        return gguf_adapter(artifact, policy)
