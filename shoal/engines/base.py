"""What every engine kind provides: a launch recipe, checks at deploy, and the protocol it speaks.

A recipe turns a component's settings (TGI's names: MAX_TOTAL_TOKENS, MAX_BATCH_TOTAL_TOKENS, ...) and
a copy's slot into that engine's command line and environment. A TGI setting the engine cannot honour
is refused at deploy, naming it; other variables (HF_TOKEN, VLLM_*, ...) pass through to the process.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import ClassVar

from shoal.engines.adapters import PassThrough, ProtocolAdapter, Translating
from shoal.engines.translate import GENERIC_OPENAI, Dialect
from shoal.errors import ModelNotFoundError
from shoal.launch import COPY_TOKEN_ENV, LaunchPlan, Slot
from shoal.models.registry import check_model_location, default_model_dirs
from shoal.security.environment import check_environment


class EngineProtocol(str, Enum):
    TGI = "tgi"  # TGI's routes (/generate, /generate_stream, /invocations): requests pass through
    OPENAI = "openai"  # OpenAI's routes only: the gateway translates TGI and SageMaker requests


class EngineConfigError(ValueError):
    """A component's settings that this engine cannot run with; the message names the setting."""


# TGI's settings, as users of the Hugging Face LLM container set them (aliases map to one meaning).
ALIASES = {"MAX_INPUT_TOKENS": "MAX_INPUT_LENGTH", "NUM_SHARD": "SM_NUM_GPUS", "QUANTIZE": "HF_MODEL_QUANTIZE"}
TGI_SETTINGS = frozenset({
    "MAX_INPUT_LENGTH", "MAX_TOTAL_TOKENS", "MAX_BATCH_PREFILL_TOKENS", "MAX_BATCH_TOTAL_TOKENS",
    "MAX_CONCURRENT_REQUESTS", "MAX_STOP_SEQUENCES", "MAX_BEST_OF", "MAX_TOP_N_TOKENS", "WAITING_SERVED_RATIO",
    "MAX_WAITING_TOKENS", "SM_NUM_GPUS", "HF_MODEL_QUANTIZE", "CHAT_TEMPLATE", *ALIASES})
CANONICAL_SETTINGS = TGI_SETTINGS - ALIASES.keys()
DEFAULT_CONCURRENCY = 128  # TGI's MAX_CONCURRENT_REQUESTS default
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
ECR = r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/"  # an image in AWS's registry


@dataclass(frozen=True)
class Deployment:
    """What a recipe knows of a component."""

    component: str
    model_id: str
    env: Mapping[str, str]
    accelerators: int = 0  # per copy
    options: Mapping[str, str] = field(default_factory=dict)  # the engine kind's own options (EngineKind.options)
    adapters: tuple[tuple[str, str], ...] = ()  # LoRA adapters its copies serve: (name, artifact), in order

    def setting(self, name: str) -> str | None:
        """A TGI setting by its name or any alias of it."""
        for key, value in self.env.items():
            if (ALIASES.get(key, key) == name) and value != "":
                return value
        return None

    def int_setting(self, name: str, minimum: int = 1) -> int | None:
        value = self.setting(name)
        if value is None:
            return None
        try:
            number = int(value)
        except ValueError:
            raise EngineConfigError(f"{name} must be a whole number, got {value!r}") from None
        if number < minimum:
            raise EngineConfigError(f"{name} must be >= {minimum}, got {number}")
        return number

    def gpus(self) -> int | None:
        """SM_NUM_GPUS: the accelerators a copy's engine uses (0 on a copy without any, as SageMaker's CPU
        instances say it)."""
        return self.int_setting("SM_NUM_GPUS", minimum=0)

    def tgi_names(self) -> set[str]:
        return {ALIASES.get(k, k) for k, v in self.env.items() if k in TGI_SETTINGS and v != ""}

    def passthrough_env(self) -> dict[str, str]:
        """The component's variables that are not TGI settings: they reach the engine as they are."""
        return {k: v for k, v in self.env.items() if k not in TGI_SETTINGS}


@dataclass(frozen=True)
class Limits:
    """The token limits every engine shares, with TGI's derived defaults and startup checks."""

    max_input: int | None
    max_total: int
    max_prefill: int | None
    max_batch_total: int

    @classmethod
    def of(cls, d: Deployment, default_total: int = 2048) -> Limits:
        max_input = d.int_setting("MAX_INPUT_LENGTH")
        max_total = d.int_setting("MAX_TOTAL_TOKENS") or max(default_total, (max_input or 0) + 1)
        batch_total = d.int_setting("MAX_BATCH_TOTAL_TOKENS") or max(16384, max_total)
        prefill = d.int_setting("MAX_BATCH_PREFILL_TOKENS")
        if max_input is not None and max_input >= max_total:
            raise EngineConfigError(f"MAX_INPUT_LENGTH must be < MAX_TOTAL_TOKENS. Given: {max_input} and {max_total}")
        if max_total > batch_total:
            raise EngineConfigError(
                f"MAX_TOTAL_TOKENS must be <= MAX_BATCH_TOTAL_TOKENS. Given: {max_total} and {batch_total}")
        if prefill is not None and max_input is not None and prefill < max_input:
            raise EngineConfigError(
                f"MAX_BATCH_PREFILL_TOKENS must be >= MAX_INPUT_LENGTH. Given: {prefill} and {max_input}")
        return cls(max_input, max_total, prefill, batch_total)


@dataclass(frozen=True)
class ServerPolicy:
    """What the server's operator allows its components."""

    allow_command_engine: bool = False  # `shoal server --allow-command-engine`
    model_dirs: tuple[Path, ...] = field(default_factory=default_model_dirs)  # where local models may be
    extra_env: tuple[str, ...] = ()  # `--allow-env`: variables (or PREFIX*) a component may set beyond the list


@dataclass(frozen=True)
class ImageFamily:
    """SageMaker container images an engine kind runs (CreateModel's `Image`)."""

    description: str
    pattern: re.Pattern[str]


class EngineKind:
    """One kind of engine: what it honours, how it starts, how the gateway speaks to it, which SageMaker
    images it runs. Adding one is a module with a subclass plus a line in shoal.engines.ENGINES."""

    name: ClassVar[str]
    label: ClassVar[str] = ""  # how people write its name (vLLM); default: `name`
    protocol: ClassVar[EngineProtocol]
    description: ClassVar[str]
    honoured: ClassVar[frozenset[str]]  # TGI settings this engine honours; the others are refused
    why_not: ClassVar[dict[str, str]] = {}  # why a setting is refused, where there is more to say
    dialect: ClassVar[Dialect] = GENERIC_OPENAI  # how TGI requests are asked of it, if it speaks OpenAI
    images: ClassVar[tuple[ImageFamily, ...]] = ()  # SageMaker images that run on it
    options: ClassVar[dict[str, str]] = {}  # options a component may give this engine (EngineOptions): their meaning
    install_hint: ClassVar[str] = ""  # how to install it, when `installed()` says it is not

    # LoRA adapters (adapter inference components): whether its copies serve them, and whether a running copy
    # loads a new one (else the base's copies are replaced, one at a time, to load it at start).
    serves_adapters: ClassVar[bool] = False
    loads_adapters_live: ClassVar[bool] = False

    def installed(self) -> bool:
        return True

    def check_adapter(self, artifact: str, policy: ServerPolicy) -> str:
        """An adapter artifact this engine's copies can load, where the server may read it: as the launch plan
        and the copies will name it (ValueError saying why not)."""
        if not self.serves_adapters:
            raise EngineConfigError(f"engine {self.name} cannot serve LoRA adapters: deploy the base on shoal, "
                                    f"llama-server, vllm, sglang or tgi")
        confine_model(artifact, policy)
        check_model_reference(artifact)
        return artifact

    def refusal(self, policy: ServerPolicy) -> str | None:
        """Why this server's operator does not let components run this engine, or None."""
        return None

    def protocol_of(self, d: Deployment) -> EngineProtocol:
        return self.protocol

    def adapter(self, d: Deployment) -> ProtocolAdapter:
        """How the gateway speaks to its copies (shoal.engines.adapters)."""
        if self.protocol_of(d) is EngineProtocol.TGI:
            return PassThrough()
        return Translating(self.name, self.dialect)

    def check(self, d: Deployment, policy: ServerPolicy | None = None) -> None:
        """Refuse what cannot work or is not allowed, at deploy: the engine itself, settings it cannot
        honour, bad values, a model it cannot load or may not read."""
        policy = policy or ServerPolicy()
        if why := self.refusal(policy):
            raise EngineConfigError(why)
        self.check_options(d)
        check_environment_of(d, policy)
        refused = sorted(d.tgi_names() - self.honoured)
        if refused:
            reasons = "; ".join(f"{n}: {self.why_not.get(n, 'no equivalent in ' + self.name)}" for n in refused)
            raise EngineConfigError(f"engine {self.name} cannot honour {', '.join(refused)} ({reasons}); "
                                    f"remove {'it' if len(refused) == 1 else 'them'} or choose another engine")
        gpus = d.gpus()
        if gpus is not None and (gpus > max(d.accelerators, 1) or (gpus == 0) != (d.accelerators == 0)):
            raise EngineConfigError(f"SM_NUM_GPUS={gpus} but each copy has {d.accelerators} accelerator(s) "
                                    f"(NumberOfAcceleratorDevicesRequired)")
        Limits.of(d)
        self.check_model(d, policy)

    def check_options(self, d: Deployment) -> None:
        if unknown := sorted(set(d.options) - set(self.options)):
            takes = "; ".join(f"{k}: {v}" for k, v in self.options.items()) or "none"
            raise EngineConfigError(f"engine {self.name} takes no option {', '.join(unknown)} (EngineOptions; it "
                                    f"takes: {takes})")

    def check_model(self, d: Deployment, policy: ServerPolicy) -> None:
        """A local model under the server's model directories, or a hub id."""
        confine_model(d.model_id, policy)
        check_model_reference(d.model_id)

    def copy_concurrency(self, d: Deployment) -> int:
        """Requests the gateway sends one copy at once (MAX_CONCURRENT_REQUESTS)."""
        return d.int_setting("MAX_CONCURRENT_REQUESTS") or DEFAULT_CONCURRENCY

    def launch_plan(self, d: Deployment, slot: Slot) -> LaunchPlan:
        raise NotImplementedError

    def with_credential(self, plan: LaunchPlan, token: str) -> LaunchPlan:
        """`plan` with the copy's credential given the way this engine takes an API key: the gateway sends
        `Authorization: Bearer <token>` to the copy, and a copy that checks it answers nobody else (shoal's
        engine; the `command` engine may read SHOAL_COPY_TOKEN)."""
        return replace(plan, env={**plan.env, COPY_TOKEN_ENV: token})


def program(name: str) -> str:
    """An engine's program: the one installed beside shoal (same virtual environment) if any, else PATH's."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def threads_of(slot: Slot) -> int:
    return max(1, len(slot.cores))


def device_env(slot: Slot) -> dict[str, str]:
    """The accelerators a copy may see, as every CUDA program reads them."""
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(a) for a in slot.accelerators)}


MODEL_REFERENCES = ("HF_MODEL_ID", "MODEL_ID")  # where engines read their model from the environment


def check_environment_of(d: Deployment, policy: ServerPolicy) -> None:
    """The component may set these variables (the server's list), its model references name its model (the one
    that is checked: a different HF_MODEL_ID would load something else), and a CHAT_TEMPLATE given as a file is
    under the model directories (a template is read by the engine)."""
    try:
        check_environment(d.env, policy.extra_env)
    except ValueError as exc:
        raise EngineConfigError(str(exc)) from None
    for name in MODEL_REFERENCES:
        if (value := d.env.get(name)) not in (None, "", d.model_id):
            raise EngineConfigError(f"Environment {name}={value!r} names another model than the component's "
                                    f"({d.model_id!r}); leave it out or make it the same")
    template = d.setting("CHAT_TEMPLATE")
    if template and "{" not in template and len(template) < 4096:  # a file, as the engines read it
        try:
            check_model_location(template if template.startswith(("/", "~", ".")) else f"./{template}",
                                 policy.model_dirs)
        except ModelNotFoundError:
            raise EngineConfigError(f"CHAT_TEMPLATE {template!r} is a file outside the server's model directories "
                                    f"({', '.join(str(p) for p in policy.model_dirs)}); give the template itself, "
                                    f"or a file under one of them") from None


def confine_model(model_id: str, policy: ServerPolicy) -> None:
    """A local model must be under the server's model directories (checked before anything is read)."""
    try:
        check_model_location(model_id, policy.model_dirs)
    except ModelNotFoundError as exc:
        raise EngineConfigError(str(exc)) from None


def check_model_reference(model_id: str) -> None:
    """For engines that load Hugging Face models themselves: a local directory that exists, or a hub id."""
    looks_local = model_id.startswith(("/", "./", "../", "~"))
    if looks_local and not Path(model_id).expanduser().exists():
        raise EngineConfigError(f"model {model_id!r}: no such file or directory on the server")
    if not looks_local and not _HUB_ID.match(model_id):
        raise EngineConfigError(f"model {model_id!r} is neither a local path nor a Hugging Face model id (org/name)")
