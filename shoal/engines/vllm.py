"""`vllm`: vLLM's OpenAI-compatible server (`vllm serve`). Its PyPI wheel needs a CUDA GPU.

MAX_TOTAL_TOKENS → --max-model-len; MAX_BATCH_TOTAL_TOKENS → the KV cache size in 16-token blocks
(--num-gpu-blocks-override; without it vLLM sizes the cache from free GPU memory, as TGI infers
MAX_BATCH_TOTAL_TOKENS); MAX_BATCH_PREFILL_TOKENS → --max-num-batched-tokens; MAX_CONCURRENT_REQUESTS →
--max-num-seqs; SM_NUM_GPUS (or the copy's accelerators) → --tensor-parallel-size; HF_MODEL_QUANTIZE →
--quantization. Prefix caching is on.
"""
from __future__ import annotations

from shoal.engines.base import Deployment, Limits, program
from shoal.engines.gpu_server import OpenAIGpuServer
from shoal.launch import HOST, PORT, LaunchPlan, Slot

BLOCK_TOKENS = 16


class Vllm(OpenAIGpuServer):
    name = "vllm"
    description = "vLLM's OpenAI server (`vllm serve`; CUDA GPUs)"
    quantizations = {"awq": "awq", "gptq": "gptq", "bitsandbytes": "bitsandbytes", "bitsandbytes-nf4": "bitsandbytes",
                     "fp8": "fp8", "marlin": "marlin", "compressed-tensors": "compressed-tensors"}

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
        return LaunchPlan(tuple(argv), self.environment(d, slot))
