"""`vllm`: vLLM's OpenAI-compatible server (`vllm serve`). Its PyPI wheel needs a CUDA GPU.

MAX_TOTAL_TOKENS → --max-model-len; MAX_BATCH_TOTAL_TOKENS → the KV cache size in 16-token blocks
(--num-gpu-blocks-override; without it vLLM sizes the cache from free GPU memory, as TGI infers
MAX_BATCH_TOTAL_TOKENS); MAX_BATCH_PREFILL_TOKENS → --max-num-batched-tokens; MAX_CONCURRENT_REQUESTS →
--max-num-seqs; SM_NUM_GPUS (or the copy's accelerators) → --tensor-parallel-size; HF_MODEL_QUANTIZE →
--quantization. Prefix caching is on.
"""
from __future__ import annotations

from shoal.engines.base import Deployment, EngineConfigError, EngineKind, EngineProtocol, Limits, device_env, \
    program, threads_of
from shoal.runtime.base import HOST, PORT, LaunchPlan, Slot

BLOCK_TOKENS = 16
# TGI's HF_MODEL_QUANTIZE values -> vLLM's --quantization; others are refused.
QUANTIZATIONS = {"awq": "awq", "gptq": "gptq", "bitsandbytes": "bitsandbytes", "bitsandbytes-nf4": "bitsandbytes",
                 "fp8": "fp8", "marlin": "marlin", "compressed-tensors": "compressed-tensors"}
OPENAI_ONLY_WHY = {
    "MAX_INPUT_LENGTH": "its only length limit is prompt + new tokens (MAX_TOTAL_TOKENS → --max-model-len)",
    "MAX_BEST_OF": "best_of is not served by its OpenAI routes",
    "WAITING_SERVED_RATIO": "a TGI scheduler setting with no equivalent",
    "MAX_WAITING_TOKENS": "a TGI scheduler setting with no equivalent",
}


def quantization(d: Deployment, table: dict[str, str], engine: str) -> str | None:
    value = d.setting("HF_MODEL_QUANTIZE")
    if value is None:
        return None
    if value.lower() not in table:
        raise EngineConfigError(f"HF_MODEL_QUANTIZE={value} has no equivalent in {engine}; "
                                f"supported: {', '.join(sorted(table))}")
    return table[value.lower()]


def tensor_parallel(d: Deployment, slot: Slot) -> int:
    return d.int_setting("SM_NUM_GPUS") or max(1, len(slot.accelerators))


class Vllm(EngineKind):
    name = "vllm"
    protocol = EngineProtocol.OPENAI
    description = "vLLM's OpenAI server (`vllm serve`; CUDA GPUs)"
    honoured = frozenset({"MAX_TOTAL_TOKENS", "MAX_BATCH_TOTAL_TOKENS", "MAX_BATCH_PREFILL_TOKENS",
                          "MAX_CONCURRENT_REQUESTS", "MAX_STOP_SEQUENCES", "MAX_TOP_N_TOKENS", "SM_NUM_GPUS",
                          "HF_MODEL_QUANTIZE", "CHAT_TEMPLATE"})
    why_not = OPENAI_ONLY_WHY

    def check(self, d: Deployment) -> None:
        super().check(d)
        quantization(d, QUANTIZATIONS, self.name)

    def launch_plan(self, d: Deployment, slot: Slot) -> LaunchPlan:
        limits = Limits.of(d)
        argv = [program("vllm"), "serve", d.model_id, "--host", HOST, "--port", PORT,
                "--served-model-name", d.component, "--max-model-len", str(limits.max_total),
                "--tensor-parallel-size", str(tensor_parallel(d, slot)), "--enable-prefix-caching"]
        if d.setting("MAX_BATCH_TOTAL_TOKENS"):
            blocks = -(-limits.max_batch_total // BLOCK_TOKENS)
            argv += ["--block-size", str(BLOCK_TOKENS), "--num-gpu-blocks-override", str(blocks)]
        if limits.max_prefill:
            argv += ["--max-num-batched-tokens", str(limits.max_prefill)]
        if concurrency := d.int_setting("MAX_CONCURRENT_REQUESTS"):
            argv += ["--max-num-seqs", str(concurrency)]
        if quant := quantization(d, QUANTIZATIONS, self.name):
            argv += ["--quantization", quant]
        if template := d.setting("CHAT_TEMPLATE"):
            argv += ["--chat-template", template]
        env = {**d.passthrough_env(), **device_env(slot), "OMP_NUM_THREADS": str(threads_of(slot))}
        return LaunchPlan(tuple(argv), env)
