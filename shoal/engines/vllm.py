"""`vllm`: vLLM's OpenAI-compatible server (`vllm serve`). Its PyPI wheel needs a CUDA GPU.

MAX_TOTAL_TOKENS → --max-model-len; MAX_BATCH_TOTAL_TOKENS → the KV cache size in 16-token blocks
(--num-gpu-blocks-override; without it vLLM sizes the cache from free GPU memory, as TGI infers
MAX_BATCH_TOTAL_TOKENS); MAX_BATCH_PREFILL_TOKENS → --max-num-batched-tokens; MAX_CONCURRENT_REQUESTS →
--max-num-seqs; SM_NUM_GPUS (or the copy's accelerators) → --tensor-parallel-size; HF_MODEL_QUANTIZE →
--quantization. Prefix caching is on.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import replace

from shoal.engines.base import ECR, Deployment, ImageFamily, Limits, program
from shoal.engines.gpu_server import OpenAIGpuServer
from shoal.engines.translate import OpenAICompletions, vllm_constraint
from shoal.launch import HOST, PORT, LaunchPlan, Slot

BLOCK_TOKENS = 16


class Vllm(OpenAIGpuServer):
    name = "vllm"
    label = "vLLM"
    serves_adapters = True  # --enable-lora --lora-modules name=path
    description = "vLLM's OpenAI server (`vllm serve`; CUDA GPUs)"
    install_hint = "pip install vllm, on a machine with NVIDIA GPUs"
    images = (
        ImageFamily("LMI images (<account>.dkr.ecr.<region>.amazonaws.com/djl-inference:<version>-lmi<...>)",
                    re.compile(ECR + r"djl-inference:[^/]*lmi")),
        ImageFamily("vLLM images (vllm/vllm-openai:<tag>, <account>.dkr.ecr.<region>.amazonaws.com/vllm:<tag>)",
                    re.compile(r"^((docker\.io/)?vllm/vllm-openai|" + ECR[1:] + r"vllm)([:@]|$)")),
    )
    dialect = OpenAICompletions({"top_k": "top_k", "repetition_penalty": "repetition_penalty", "typical_p": None,
                                 "truncate": "truncate_prompt_tokens", "logit_bias": "logit_bias"},
                                stop_field="stop_reason", constrain=vllm_constraint)
    quantizations = {"awq": "awq", "gptq": "gptq", "bitsandbytes": "bitsandbytes", "bitsandbytes-nf4": "bitsandbytes",
                     "fp8": "fp8", "marlin": "marlin", "compressed-tensors": "compressed-tensors"}

    def with_credential(self, plan: LaunchPlan, token: str) -> LaunchPlan:
        return replace(plan, env={**plan.env, "VLLM_API_KEY": token})  # vLLM's --api-key, from its environment

    def installed(self) -> bool:
        return shutil.which(program("vllm")) is not None

    def launch_plan(self, d: Deployment, slot: Slot) -> LaunchPlan:
        limits = Limits.of(d)
        argv = [program("vllm"), "serve", d.model_id, "--host", HOST, "--port", PORT,
                "--served-model-name", d.component, "--max-model-len", str(limits.max_total),
                "--tensor-parallel-size", str(self.tensor_parallel(d, slot)), "--enable-prefix-caching"]
        if d.setting("MAX_BATCH_TOTAL_TOKENS"):
            blocks = -(-limits.max_batch_total // BLOCK_TOKENS)
            argv += ["--block-size", str(BLOCK_TOKENS), "--num-gpu-blocks-override", str(blocks)]
        if limits.max_prefill:
            argv += ["--max-num-batched-tokens", str(limits.max_prefill)]
        argv += self.common_flags(d, {"quantization": "--quantization", "chat_template": "--chat-template",
                                      "concurrency": "--max-num-seqs"})
        if d.adapters:  # served by name (`model`), all of them in one batch
            argv += ["--enable-lora", "--max-loras", str(len(d.adapters)), "--lora-modules",
                     *(f"{name}={path}" for name, path in d.adapters)]
        return LaunchPlan(tuple(argv), self.environment(d, slot))
