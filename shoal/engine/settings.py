"""Engine settings under TGI's names, with TGI's startup checks."""
from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, Field, model_validator

from shoal.errors import ConfigError
from shoal.hardware import ExtraBuffers

# TGI env name -> field name. MAX_INPUT_TOKENS is TGI's newer alias of MAX_INPUT_LENGTH.
ENV_NAMES: dict[str, str] = {
    "HF_MODEL_ID": "model_id",
    "MODEL_ID": "model_id",
    "MAX_INPUT_LENGTH": "max_input_length",
    "MAX_INPUT_TOKENS": "max_input_length",
    "MAX_TOTAL_TOKENS": "max_total_tokens",
    "MAX_BATCH_PREFILL_TOKENS": "max_batch_prefill_tokens",
    "MAX_BATCH_TOTAL_TOKENS": "max_batch_total_tokens",
    "MAX_CONCURRENT_REQUESTS": "max_concurrent_requests",
    "MAX_STOP_SEQUENCES": "max_stop_sequences",
    "MAX_BEST_OF": "max_best_of",
    "MAX_TOP_N_TOKENS": "max_top_n_tokens",
    "WAITING_SERVED_RATIO": "waiting_served_ratio",
    "MAX_WAITING_TOKENS": "max_waiting_tokens",
    "SM_NUM_GPUS": "num_gpus",
    "NUM_SHARD": "num_gpus",
    "HF_MODEL_QUANTIZE": "quantize",
    "QUANTIZE": "quantize",
    "CHAT_TEMPLATE": "chat_template",
    "SHOAL_NUM_THREADS": "num_threads",
    "SHOAL_FLASH_ATTENTION": "flash_attention",
    "SHOAL_CPU_EXTRA_BUFFERS": "extra_buffers",
    "SHOAL_PREFIX_CACHE": "prefix_cache",
    "SHOAL_PREFIX_CACHE_TOKENS": "prefix_cache_tokens",
    "SHOAL_PREFIX_CACHE_ENTRIES": "prefix_cache_entries",
    "SHOAL_PREFIX_CACHE_BLOCK": "prefix_cache_block",
    "SHOAL_SHUTDOWN_TIMEOUT": "shutdown_timeout_s",
    "SHOAL_LORA_ADAPTERS": "lora_adapters",
    "PAYLOAD_LIMIT": "payload_limit",
}


class EngineSettings(BaseModel):
    """What one engine process (one copy) runs with."""

    model_id: str = "gemma-3-270m"
    # Unset limits follow the set ones, as TGI's launcher does.
    max_input_length: int = Field(None, gt=0)  # type: ignore[assignment]  # min(1024, total - 1)
    max_total_tokens: int = Field(2048, gt=0)
    max_batch_prefill_tokens: int = Field(None, gt=0)  # type: ignore[assignment]  # input + 50
    max_batch_total_tokens: int = Field(None, gt=0)  # type: ignore[assignment]  # max(16384, total)
    max_concurrent_requests: int = Field(128, gt=0)
    max_stop_sequences: int = Field(4, ge=0)
    max_best_of: int = Field(2, gt=0)
    max_top_n_tokens: int = Field(5, ge=0)
    waiting_served_ratio: float = Field(0.3, ge=0)
    max_waiting_tokens: int = Field(20, ge=0)
    max_sequences: int = Field(64, gt=0, le=256)  # llama.cpp sequence slots in the batch
    num_gpus: int = Field(0, ge=0)
    quantize: str | None = None
    chat_template: str | None = None
    num_threads: int | None = Field(None, gt=0)  # default: the CPUs this process may run on
    flash_attention: bool = True  # llama.cpp's flash attention: faster at 16+ streams on this CPU
    extra_buffers: ExtraBuffers = ExtraBuffers.AUTO  # llama.cpp's AMX / repacked weights (shoal.hardware)
    prefix_cache: bool = True  # keep computed prompt prefixes for later requests (shoal.engine.prefix_cache)
    prefix_cache_tokens: int = Field(None, gt=0)  # type: ignore[assignment]  # KV cells for it: MAX_BATCH_TOTAL_TOKENS
    prefix_cache_entries: int = Field(32, gt=0)  # prefixes held at once (each takes a llama.cpp sequence id)
    prefix_cache_block: int = Field(64, ge=16, le=512)  # reuse unit; a prompt alone is computed in such blocks
    shutdown_timeout_s: float = Field(30.0, ge=0)  # on SIGTERM: how long requests in flight get to finish
    payload_limit: int = Field(2_000_000, gt=0)  # bytes of a request body (TGI's --payload-limit)
    lora_adapters: str = ""  # name=path;name=path: LoRA adapters loaded at start (shoal.engine.lora)

    @model_validator(mode="after")
    def _tgi_startup_checks(self) -> EngineSettings:
        if self.quantize not in (None, ""):
            raise ValueError(f"HF_MODEL_QUANTIZE={self.quantize}: a GGUF model is quantized when the file is made; "
                             f"deploy the GGUF file of the quantization you want")
        if self.max_input_length is None:
            self.max_input_length = max(1, min(1024, self.max_total_tokens - 1))
        if self.max_batch_prefill_tokens is None:
            self.max_batch_prefill_tokens = self.max_input_length + 50
        if self.max_batch_total_tokens is None:
            self.max_batch_total_tokens = max(16384, self.max_total_tokens)
        if self.prefix_cache_tokens is None:
            self.prefix_cache_tokens = self.max_batch_total_tokens
        if self.max_sequences + self.prefix_cache_entries > 256:
            raise ValueError("SHOAL_PREFIX_CACHE_ENTRIES + the batch's 64 sequences must be <= 256 (llama.cpp's limit)")
        if self.max_input_length >= self.max_total_tokens:
            raise ValueError(
                f"`max_input_length` must be < `max_total_tokens`. Given: "
                f"{self.max_input_length} and {self.max_total_tokens}"
            )
        if self.max_batch_prefill_tokens < self.max_input_length:
            raise ValueError(
                f"`max_batch_prefill_tokens` must be >= `max_input_length`. Given: "
                f"{self.max_batch_prefill_tokens} and {self.max_input_length}"
            )
        if self.max_total_tokens > self.max_batch_total_tokens:
            raise ValueError(
                f"`max_total_tokens` must be <= `max_batch_total_tokens`. Given: "
                f"{self.max_total_tokens} and {self.max_batch_total_tokens}"
            )
        return self

    @property
    def context_tokens(self) -> int:
        """KV cells to allocate: the running batch's budget, plus the prefix cache's own."""
        return self.max_batch_total_tokens + (self.prefix_cache_tokens if self.prefix_cache else 0)

    @property
    def sequence_ids(self) -> int:
        """llama.cpp sequence ids: one per running request, one per cached prefix."""
        return self.max_sequences + (self.prefix_cache_entries if self.prefix_cache else 0)

    @property
    def threads(self) -> int:
        """Threads for the model: as asked, but never more than the CPUs this process may run on."""
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return min(self.num_threads or usable, usable)

    @classmethod
    def build(cls, env: Mapping[str, str] | None = None, **overrides: object) -> EngineSettings:
        """Settings from TGI env names, then explicit overrides (flags) on top."""
        values: dict[str, object] = {}
        for name, field in ENV_NAMES.items():
            if (env or {}).get(name) not in (None, ""):
                values[field] = env[name]  # type: ignore[index]
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise ConfigError(_first_message(exc)) from None


def _first_message(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = []
        for err in errors():
            where = ".".join(str(p) for p in err.get("loc", ()))
            msg = str(err.get("msg", "")).removeprefix("Value error, ")
            parts.append(f"{where}: {msg}" if where else msg)
        return "; ".join(parts)
    return str(exc)
