"""Engine kinds: what a copy runs. Adding one is a module with an `EngineKind` subclass plus a line in
ENGINES below (docs/architecture.md, "Engines")."""
from __future__ import annotations

from shoal.engines.base import Deployment, EngineConfigError, EngineKind, EngineProtocol
from shoal.engines.command import Command
from shoal.engines.llama_server import LlamaServer
from shoal.engines.sglang import Sglang
from shoal.engines.shoal_engine import ShoalEngine
from shoal.engines.tgi import Tgi
from shoal.engines.vllm import Vllm

ENGINES: dict[str, EngineKind] = {e.name: e for e in (ShoalEngine(), LlamaServer(), Vllm(), Sglang(), Tgi(),
                                                      Command())}
DEFAULT_ENGINE = "shoal"


def engine_kind(name: str) -> EngineKind:
    try:
        return ENGINES[name]
    except KeyError:
        raise EngineConfigError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}") from None


__all__ = ["DEFAULT_ENGINE", "ENGINES", "Deployment", "EngineConfigError", "EngineKind", "EngineProtocol",
           "engine_kind"]
