"""`sglang`: SGLang's server (`python -m sglang.launch_server`), OpenAI routes. Needs a CUDA GPU.

MAX_TOTAL_TOKENS → --context-length; MAX_BATCH_TOTAL_TOKENS → --max-total-tokens (SGLang's own KV pool
size, the same meaning as TGI's); MAX_BATCH_PREFILL_TOKENS → --max-prefill-tokens; MAX_CONCURRENT_REQUESTS
→ --max-running-requests; SM_NUM_GPUS → --tp-size; HF_MODEL_QUANTIZE → --quantization. Its radix
prefix cache is on by default.
"""
from __future__ import annotations

import sys
from dataclasses import replace

from shoal.engines.base import Deployment, Limits
from shoal.engines.gpu_server import OpenAIGpuServer
from shoal.engines.translate import OpenAICompletions, sglang_constraint
from shoal.launch import HOST, PORT, LaunchPlan, Slot


class Sglang(OpenAIGpuServer):
    name = "sglang"
    serves_adapters = True  # --lora-paths name=path
    description = "SGLang's server (`python -m sglang.launch_server`; CUDA GPUs)"
    dialect = OpenAICompletions({"top_k": "top_k", "repetition_penalty": "repetition_penalty", "typical_p": None,
                                 "truncate": None, "logit_bias": "logit_bias"}, stop_field="matched_stop",
                                constrain=sglang_constraint, adapter_field="lora_path")
    quantizations = {"awq": "awq", "gptq": "gptq", "bitsandbytes": "bitsandbytes", "bitsandbytes-nf4": "bitsandbytes",
                     "fp8": "fp8", "marlin": "marlin"}

    def with_credential(self, plan: LaunchPlan, token: str) -> LaunchPlan:
        """SGLang takes its API key only as a flag (a process's command line is readable by local users: the
        copy still refuses callers from other machines, and the gateway binds what it binds)."""
        return replace(plan, argv=(*plan.argv, "--api-key", token))

    def launch_plan(self, d: Deployment, slot: Slot) -> LaunchPlan:
        limits = Limits.of(d)
        argv = [sys.executable, "-m", "sglang.launch_server", "--model-path", d.model_id, "--host", HOST,
                "--port", PORT, "--served-model-name", d.component, "--context-length", str(limits.max_total),
                "--tp-size", str(self.tensor_parallel(d, slot))]
        if d.setting("MAX_BATCH_TOTAL_TOKENS"):
            argv += ["--max-total-tokens", str(limits.max_batch_total)]
        if limits.max_prefill:
            argv += ["--max-prefill-tokens", str(limits.max_prefill)]
        argv += self.common_flags(d, {"quantization": "--quantization", "chat_template": "--chat-template",
                                      "concurrency": "--max-running-requests"})
        if d.adapters:  # chosen per request by name (`lora_path`)
            argv += ["--lora-paths", *(f"{name}={path}" for name, path in d.adapters)]
        return LaunchPlan(tuple(argv), self.environment(d, slot))
