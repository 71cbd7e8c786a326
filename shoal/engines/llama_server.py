"""`llama-server`: llama.cpp's own C++ server, from the prebuilt PyPI wheel `xllamacpp` (no compiler).

It speaks OpenAI's routes; the gateway translates TGI and SageMaker requests. Each of its slots holds
MAX_TOTAL_TOKENS of context and there are MAX_BATCH_TOTAL_TOKENS / MAX_TOTAL_TOKENS of them, so both of
TGI's limits hold. Its prompt cache is on (llama.cpp's default).
"""
from __future__ import annotations

import importlib.util
import sys

from shoal.engines.base import Deployment, EngineConfigError, EngineKind, EngineProtocol, Limits, device_env, threads_of
from shoal.engines.shoal_engine import check_gguf_model
from shoal.hardware import use_extra_buffers
from shoal.launch import HOST, PORT, LaunchPlan, Slot
from shoal.models.registry import resolve


class LlamaServer(EngineKind):
    name = "llama-server"
    protocol = EngineProtocol.OPENAI
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

    def check_model(self, d: Deployment) -> None:
        if importlib.util.find_spec("xllamacpp") is None:
            raise EngineConfigError("engine llama-server needs llama.cpp's server from the xllamacpp wheel: "
                                    "pip install 'shoal[llama-server]'")
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
        return LaunchPlan(tuple(argv), {**d.passthrough_env(), **device_env(slot)})
