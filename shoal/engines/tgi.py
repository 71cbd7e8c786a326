"""`tgi`: Hugging Face Text Generation Inference (`text-generation-launcher`). TGI reads its settings from
the same environment names shoal uses, so they pass through as they are; the copy's accelerators set
--num-shard (SM_NUM_GPUS) and HF_MODEL_QUANTIZE becomes TGI's QUANTIZE, as the Hugging Face LLM container
does."""
from __future__ import annotations

from shoal.engines.base import CANONICAL_SETTINGS, Deployment, EngineKind, EngineProtocol, device_env, program
from shoal.launch import HOST, PORT, LaunchPlan, Slot


class Tgi(EngineKind):
    name = "tgi"
    protocol = EngineProtocol.TGI
    serves_adapters = True  # LORA_ADAPTERS=name=path,...
    description = "Hugging Face TGI (`text-generation-launcher`; GPUs)"
    honoured = CANONICAL_SETTINGS - {"CHAT_TEMPLATE"}
    why_not = {"CHAT_TEMPLATE": "TGI takes the chat template from the model's tokenizer_config.json"}

    def with_credential(self, plan: LaunchPlan, token: str) -> LaunchPlan:
        return plan  # TGI's router takes no API key: its copies rely on binding where only the server reaches

    def launch_plan(self, d: Deployment, slot: Slot) -> LaunchPlan:
        shards = d.gpus() or max(1, len(slot.accelerators))
        env = {**d.env, **device_env(slot)}
        if quantize := d.setting("HF_MODEL_QUANTIZE"):
            env["QUANTIZE"] = quantize
        if d.adapters:  # chosen per request by `adapter_id`
            env["LORA_ADAPTERS"] = ",".join(f"{name}={path}" for name, path in d.adapters)
        argv = (program("text-generation-launcher"), "--model-id", d.model_id, "--hostname", HOST,
                "--port", PORT, "--num-shard", str(shards))
        return LaunchPlan(argv, env)
