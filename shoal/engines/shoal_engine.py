"""`shoal`: the built-in engine (TGI-compatible, continuous batching on llama.cpp; GGUF models)."""
from __future__ import annotations

import re
import sys

from shoal.engine.settings import EngineSettings
from shoal.engines.base import (
    CANONICAL_SETTINGS,
    ECR,
    Deployment,
    EngineConfigError,
    EngineKind,
    EngineProtocol,
    ImageFamily,
    ServerPolicy,
    confine_model,
    device_env,
    threads_of,
)
from shoal.errors import ConfigError, ModelNotFoundError
from shoal.launch import HOST, PORT, LaunchPlan, Slot
from shoal.models.registry import resolve, resolve_adapter


def check_gguf_model(model_id: str) -> None:
    """The model resolves on this machine to a GGUF file (registered name, alias or local path)."""
    try:
        resolve(model_id)
    except ModelNotFoundError as exc:
        raise EngineConfigError(str(exc)) from None


class ShoalEngine(EngineKind):
    name = "shoal"
    protocol = EngineProtocol.TGI
    description = "built-in: TGI-compatible, continuous batching on llama.cpp (GGUF)"
    honoured = CANONICAL_SETTINGS

    images = (
        ImageFamily("Hugging Face LLM (TGI) images, as get_huggingface_llm_image_uri(\"huggingface\") returns "
                    "(<account>.dkr.ecr.<region>.amazonaws.com/huggingface-pytorch-tgi-inference:<tag>)",
                    re.compile(ECR + r"huggingface-pytorch-tgi-inference[:@]")),
        ImageFamily("TGI's own image (ghcr.io/huggingface/text-generation-inference:<tag>)",
                    re.compile(r"^ghcr\.io/huggingface/text-generation-inference([:@]|$)")),
    )

    def check(self, d: Deployment, policy: ServerPolicy | None = None) -> None:
        super().check(d, policy)
        try:
            EngineSettings.build(d.env)  # TGI's startup checks and every value, as the engine will read them
        except ConfigError as exc:
            raise EngineConfigError(str(exc)) from None

    serves_adapters = True
    loads_adapters_live = True  # POST /adapters on a running copy (shoal.engine.server)

    def check_model(self, d: Deployment, policy: ServerPolicy) -> None:
        confine_model(d.model_id, policy)
        check_gguf_model(d.model_id)

    def check_adapter(self, artifact: str, policy: ServerPolicy) -> str:
        return gguf_adapter(artifact, policy)

    def launch_plan(self, d: Deployment, slot: Slot) -> LaunchPlan:
        adapters = {ADAPTERS_ENV: adapter_list(d.adapters)} if d.adapters else {}
        return LaunchPlan(
            argv=(sys.executable, "-m", "shoal.cli", "engine", "--host", HOST, "--port", PORT),
            env={**d.env, "HF_MODEL_ID": d.model_id, "SHOAL_NUM_THREADS": str(threads_of(slot)),
                 "SM_NUM_GPUS": str(len(slot.accelerators)), **adapters, **device_env(slot)})


ADAPTERS_ENV = "SHOAL_LORA_ADAPTERS"  # name=path;name=path: the adapters a built-in engine loads at start


def adapter_list(adapters: tuple[tuple[str, str], ...]) -> str:
    return ";".join(f"{name}={path}" for name, path in adapters)


def gguf_adapter(artifact: str, policy: ServerPolicy) -> str:
    """A GGUF LoRA file where the server may read it, or one shoal ships; its path."""
    confine_model(artifact, policy)
    try:
        return str(resolve_adapter(artifact))
    except ModelNotFoundError as exc:
        raise EngineConfigError(str(exc)) from None
