"""`sglang`: SGLang's server (`python -m sglang.launch_server`), OpenAI routes. Needs a CUDA GPU.

MAX_TOTAL_TOKENS → --context-length; MAX_BATCH_TOTAL_TOKENS → --max-total-tokens (SGLang's own KV pool
size, the same meaning as TGI's); MAX_BATCH_PREFILL_TOKENS → --max-prefill-tokens; MAX_CONCURRENT_REQUESTS
→ --max-running-requests; SM_NUM_GPUS → --tp-size; HF_MODEL_QUANTIZE → --quantization. Its radix
prefix cache is on by default.
"""
from __future__ import annotations

import sys

from shoal.engines.base import Deployment, EngineKind, EngineProtocol, Limits, device_env, threads_of
from shoal.engines.vllm import OPENAI_ONLY_WHY, quantization, tensor_parallel
from shoal.runtime.base import HOST, PORT, LaunchPlan, Slot

QUANTIZATIONS = {"awq": "awq", "gptq": "gptq", "bitsandbytes": "bitsandbytes", "bitsandbytes-nf4": "bitsandbytes",
                 "fp8": "fp8", "marlin": "marlin"}


class Sglang(EngineKind):
    name = "sglang"
    protocol = EngineProtocol.OPENAI
    description = "SGLang's server (`python -m sglang.launch_server`; CUDA GPUs)"
    honoured = frozenset({"MAX_TOTAL_TOKENS", "MAX_BATCH_TOTAL_TOKENS", "MAX_BATCH_PREFILL_TOKENS",
                          "MAX_CONCURRENT_REQUESTS", "MAX_STOP_SEQUENCES", "MAX_TOP_N_TOKENS", "SM_NUM_GPUS",
                          "HF_MODEL_QUANTIZE", "CHAT_TEMPLATE"})
    why_not = OPENAI_ONLY_WHY

    def check(self, d: Deployment) -> None:
        super().check(d)
        quantization(d, QUANTIZATIONS, self.name)

    def launch_plan(self, d: Deployment, slot: Slot) -> LaunchPlan:
        limits = Limits.of(d)
        argv = [sys.executable, "-m", "sglang.launch_server", "--model-path", d.model_id, "--host", HOST,
                "--port", PORT, "--served-model-name", d.component, "--context-length", str(limits.max_total),
                "--tp-size", str(tensor_parallel(d, slot))]
        if d.setting("MAX_BATCH_TOTAL_TOKENS"):
            argv += ["--max-total-tokens", str(limits.max_batch_total)]
        if limits.max_prefill:
            argv += ["--max-prefill-tokens", str(limits.max_prefill)]
        if concurrency := d.int_setting("MAX_CONCURRENT_REQUESTS"):
            argv += ["--max-running-requests", str(concurrency)]
        if quant := quantization(d, QUANTIZATIONS, self.name):
            argv += ["--quantization", quant]
        if template := d.setting("CHAT_TEMPLATE"):
            argv += ["--chat-template", template]
        env = {**d.passthrough_env(), **device_env(slot), "OMP_NUM_THREADS": str(threads_of(slot))}
        return LaunchPlan(tuple(argv), env)
