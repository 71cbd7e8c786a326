"""Endpoints, inference components and copies, with SageMaker's names, fields and status values."""
from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shoal.control.autoscaling.policy import AutoscalingView
from shoal.control.resources import CATALOG, ComputeRequirements, instance_type
from shoal.engines import DEFAULT_ENGINE, ENGINES, Deployment
from shoal.gateway.routing import DEFAULT_STRATEGY, STRATEGIES, strategy
from shoal.launch import Slot
from shoal.security.environment import SAFE_ENV_SCHEMA, check_names

_OPTION_SHORTHANDS = {"command": ("EngineCommand", "engine_command"), "protocol": ("EngineProtocol", "engine_protocol")}
# SageMaker's EndpointName / InferenceComponentName pattern.
NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"


class Status(str, Enum):
    CREATING = "Creating"
    IN_SERVICE = "InService"
    UPDATING = "Updating"
    FAILED = "Failed"
    DELETING = "Deleting"


class CopyStatus(str, Enum):
    STARTING = "Starting"
    IN_SERVICE = "InService"
    DRAINING = "Draining"
    RESTARTING = "Restarting"
    FAILED = "Failed"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class EndpointSpec(_Spec):
    name: str = Field(pattern=NAME_PATTERN, alias="EndpointName")
    instance_type: str = Field("local", alias="InstanceType", json_schema_extra={"enum": ["local", *CATALOG]})
    instance_count: int = Field(1, ge=1, le=64, alias="InitialInstanceCount")
    routing: str = Field(DEFAULT_STRATEGY, alias="RoutingStrategy", json_schema_extra={"enum": list(STRATEGIES)})

    @field_validator("routing")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        return strategy(value).name  # raises with the list of known strategies

    @field_validator("instance_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        instance_type(value)  # raises with the list of known types
        return value


class ComponentSpec(_Spec):
    name: str = Field(pattern=NAME_PATTERN, alias="InferenceComponentName")
    endpoint: str = Field(pattern=NAME_PATTERN, alias="EndpointName")
    model_id: str = Field(min_length=1, alias="ModelId", json_schema_extra={"examples": ["gemma-3-270m"]})
    env: dict[str, str] = Field(default_factory=dict, alias="Environment", json_schema_extra=SAFE_ENV_SCHEMA)
    compute: ComputeRequirements = Field(default_factory=ComputeRequirements,
                                         alias="ComputeResourceRequirements")
    startup_timeout_s: int = Field(600, ge=1, le=3600, alias="ContainerStartupHealthCheckTimeoutInSeconds")
    copies: int = Field(1, ge=0, le=1024, alias="CopyCount")
    engine: str = Field(DEFAULT_ENGINE, alias="Engine", json_schema_extra={"enum": list(ENGINES)})
    # The engine kind's own options (EngineKind.options), e.g. the `command` engine's command line.
    engine_options: dict[str, str] = Field(default_factory=dict, alias="EngineOptions")
    # An adapter component: a LoRA adapter (ModelId: its GGUF file, or an adapter shoal ships) that every copy
    # of this base component serves; it has no copies, compute or engine of its own.
    base: str | None = Field(None, pattern=NAME_PATTERN, alias="BaseInferenceComponentName")

    @model_validator(mode="after")
    def _adapters_have_no_copies(self) -> ComponentSpec:
        if self.base is not None:
            if self.copies and "copies" in self.model_fields_set:
                raise ValueError(f"an adapter has no copies of its own: every copy of {self.base} serves it "
                                 f"(leave CopyCount out, or 0)")
            self.copies = 0
        return self

    @property
    def is_adapter(self) -> bool:
        return self.base is not None

    @model_validator(mode="before")
    @classmethod
    def _option_shorthands(cls, data: Any) -> Any:
        """EngineCommand and EngineProtocol: shorthands for the `command` engine's options (and how specs
        stored before EngineOptions existed read them)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for option, names in _OPTION_SHORTHANDS.items():
            for name in names:
                if (value := data.pop(name, None)) is not None:
                    options = data.setdefault("EngineOptions", data.pop("engine_options", None) or {})
                    if isinstance(options, dict):
                        options.setdefault(option, value)
        return data

    @field_validator("env")
    @classmethod
    def _safe_env(cls, env: dict[str, str]) -> dict[str, str]:
        return dict(check_names(env))  # which names: the server's policy, checked at deploy (shoal.engines)

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if value not in ENGINES:
            raise ValueError(f"unknown engine '{value}'; known: {', '.join(ENGINES)}")
        return value

    def deployment(self) -> Deployment:
        """What the engine recipe needs to know of this component."""
        return Deployment(self.name, self.model_id, self.env, self.compute.num_accelerators, self.engine_options)


class ComponentUpdate(_Spec):
    copies: int | None = Field(None, ge=0, le=1024, alias="CopyCount")
    env: dict[str, str] | None = Field(None, alias="Environment", json_schema_extra=SAFE_ENV_SCHEMA)

    @field_validator("env")
    @classmethod
    def _safe_env(cls, env: dict[str, str] | None) -> dict[str, str] | None:
        return None if env is None else dict(check_names(env))


class CopyView(BaseModel):
    """One running replica, as `describe` shows it."""

    id: str
    status: CopyStatus
    slot: Slot
    address: str | None = None
    pid: int | None = None
    restarts: int = 0
    reason: str | None = None
    in_flight: int = 0


class ComponentView(BaseModel):
    spec: ComponentSpec
    status: Status
    reason: str | None = None
    copies: list[CopyView] = []
    desired_copies: int = 0  # copies asked for (CopyCount), starting ones included
    current_copies: int = 0  # copies in service
    draining_copies: int = 0  # scaled in, finishing their requests
    adapters: list[str] = []  # its adapter inference components (LoRA), which its copies serve
    autoscaling: AutoscalingView | None = None  # its policy and last scaling activity, if it has one

    model_config = ConfigDict(arbitrary_types_allowed=True)


class EndpointView(BaseModel):
    spec: EndpointSpec
    status: Status
    components: list[str] = []
