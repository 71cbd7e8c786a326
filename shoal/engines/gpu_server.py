"""What vLLM and SGLang share: GPU servers that speak OpenAI, load Hugging Face models themselves, map
TGI's HF_MODEL_QUANTIZE to their --quantization, and honour the same TGI settings."""
from __future__ import annotations

from typing import ClassVar

from shoal.engines.base import (
    Deployment,
    EngineConfigError,
    EngineKind,
    EngineProtocol,
    ServerPolicy,
    device_env,
    threads_of,
)
from shoal.launch import Slot


class OpenAIGpuServer(EngineKind):
    protocol = EngineProtocol.OPENAI
    honoured = frozenset({"MAX_TOTAL_TOKENS", "MAX_BATCH_TOTAL_TOKENS", "MAX_BATCH_PREFILL_TOKENS",
                          "MAX_CONCURRENT_REQUESTS", "MAX_STOP_SEQUENCES", "MAX_TOP_N_TOKENS", "SM_NUM_GPUS",
                          "HF_MODEL_QUANTIZE", "CHAT_TEMPLATE"})
    why_not = {
        "MAX_INPUT_LENGTH": "its only length limit is prompt + new tokens (MAX_TOTAL_TOKENS)",
        "MAX_BEST_OF": "best_of is not served by its OpenAI routes",
        "WAITING_SERVED_RATIO": "a TGI scheduler setting with no equivalent",
        "MAX_WAITING_TOKENS": "a TGI scheduler setting with no equivalent",
    }
    quantizations: ClassVar[dict[str, str]]  # TGI's HF_MODEL_QUANTIZE values -> the engine's --quantization

    def check(self, d: Deployment, policy: ServerPolicy | None = None) -> None:
        super().check(d, policy)
        self.quantization(d)

    def quantization(self, d: Deployment) -> str | None:
        value = d.setting("HF_MODEL_QUANTIZE")
        if value is None:
            return None
        if value.lower() not in self.quantizations:
            raise EngineConfigError(f"HF_MODEL_QUANTIZE={value} has no equivalent in {self.name}; "
                                    f"supported: {', '.join(sorted(self.quantizations))}")
        return self.quantizations[value.lower()]

    @staticmethod
    def tensor_parallel(d: Deployment, slot: Slot) -> int:
        return d.gpus() or max(1, len(slot.accelerators))

    @staticmethod
    def environment(d: Deployment, slot: Slot) -> dict[str, str]:
        return {**d.passthrough_env(), **device_env(slot), "OMP_NUM_THREADS": str(threads_of(slot))}

    def common_flags(self, d: Deployment, names: dict[str, str]) -> list[str]:
        """The optional flags both engines have, under the engine's own `names` for them."""
        values = {"quantization": self.quantization(d), "chat_template": d.setting("CHAT_TEMPLATE"),
                  "concurrency": d.setting("MAX_CONCURRENT_REQUESTS")}
        return [part for key, value in values.items() if value for part in (names[key], value)]
