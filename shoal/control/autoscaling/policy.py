"""An inference component's autoscaling policy, as plain data: bounds, target tracking, step scaling.

One `ScalingPolicy` per component is what Application Auto Scaling calls a scalable target (the
component's DesiredCopyCount with MinCapacity / MaxCapacity) together with its scaling policies:
target tracking on concurrent requests per copy or invocations per copy per minute, and step scaling
(accepted for SageMaker's scale-from-zero recipe; shoal starts copies on demand without an alarm).
Error text is written once here, in AWS's words, and used by shoal's API and by Application Auto
Scaling's API alike.
"""
from __future__ import annotations

import time
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# AWS's messages (ValidationException)
MIN_ABOVE_MAX = "Maximum capacity cannot be less than minimum capacity"
NEGATIVE_MIN = "Minimum capacity cannot be less than 0"
MAX_TOO_HIGH = "Maximum capacity cannot be greater than 1024"


class PolicyError(ValueError):
    """A policy that cannot work; the message is the one the caller gets."""


class Metric(str, Enum):
    """The predefined metrics target tracking can follow on an inference component."""

    CONCURRENCY = "SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution"
    INVOCATIONS = "SageMakerInferenceComponentInvocationsPerCopy"

    @property
    def label(self) -> str:
        """How a cause reads it: `concurrency 9.5 per copy`, `invocations 130 per copy per minute`."""
        return "concurrency" if self is Metric.CONCURRENCY else "invocations"

    @property
    def unit(self) -> str:
        return "per copy" if self is Metric.CONCURRENCY else "per copy per minute"


def target_value_error(value: float) -> str | None:
    if value > 0:
        return None
    return (f"1 validation error detected: Value '{value!r}' at 'targetTrackingScalingPolicyConfiguration."
            f"targetValue' failed to satisfy constraint: Member must have value greater than 0")


def bounds_error(min_copies: int, max_copies: int) -> str | None:
    if min_copies < 0:
        return NEGATIVE_MIN
    if max_copies > 1024:
        return MAX_TOO_HIGH
    if max_copies < min_copies:
        return MIN_ABOVE_MAX
    return None


class _Plain(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetTracking(_Plain):
    """Keep `metric` near `target`: out fast, in after `scale_in_cooldown_s` of lower load."""

    name: str = Field(min_length=1, max_length=256)
    metric: Metric = Metric.CONCURRENCY
    target: float
    scale_out_cooldown_s: int = Field(300, ge=0, le=86400)
    scale_in_cooldown_s: int = Field(300, ge=0, le=86400)
    disable_scale_in: bool = False
    created_at: float = Field(default_factory=time.time)

    @model_validator(mode="after")
    def _positive_target(self) -> TargetTracking:
        if problem := target_value_error(self.target):
            raise PolicyError(problem)
        return self

    def describe(self) -> str:
        return f"{self.metric.label} {self.target:g} {self.metric.unit}"


class StepScaling(_Plain):
    """A step scaling policy. shoal has no alarms: a request that finds no copy starts copies at once, and
    the largest positive ScalingAdjustment (ChangeInCapacity) says how many copies start from zero."""

    name: str = Field(min_length=1, max_length=256)
    config: dict[str, Any] = Field(default_factory=dict)  # StepScalingPolicyConfiguration, as given
    created_at: float = Field(default_factory=time.time)

    @property
    def from_zero(self) -> int:
        if self.config.get("AdjustmentType", "ChangeInCapacity") not in ("ChangeInCapacity", "ExactCapacity"):
            return 1
        steps = [s.get("ScalingAdjustment", 0) for s in self.config.get("StepAdjustments", [])]
        return max([1, *(s for s in steps if isinstance(s, int))])


class ScalingPolicy(_Plain):
    """A component's copy count bounds and the policies that move it."""

    component: str
    min_copies: int
    max_copies: int
    tracking: list[TargetTracking] = Field(default_factory=list)
    steps: list[StepScaling] = Field(default_factory=list)
    cold_start_timeout_s: float = Field(300.0, gt=0, le=3600)  # how long a request waits for a first copy
    scale_out_suspended: bool = False  # SuspendedState.DynamicScalingOutSuspended
    scale_in_suspended: bool = False  # SuspendedState.DynamicScalingInSuspended
    created_at: float = Field(default_factory=time.time)

    @model_validator(mode="after")
    def _bounds(self) -> ScalingPolicy:
        if problem := bounds_error(self.min_copies, self.max_copies):
            raise PolicyError(problem)
        return self

    @property
    def from_zero(self) -> int:
        """Copies to start when a request finds none: 1, or what a step policy says."""
        return max([1, *(s.from_zero for s in self.steps)])

    def with_tracking(self, policy: TargetTracking) -> ScalingPolicy:
        kept = [t for t in self.tracking if t.name != policy.name]
        return self.model_copy(update={"tracking": [*kept, policy]})

    def with_step(self, policy: StepScaling) -> ScalingPolicy:
        kept = [s for s in self.steps if s.name != policy.name]
        return self.model_copy(update={"steps": [*kept, policy]})

    def without(self, name: str) -> ScalingPolicy:
        return self.model_copy(update={"tracking": [t for t in self.tracking if t.name != name],
                                       "steps": [s for s in self.steps if s.name != name]})

    def has(self, name: str) -> bool:
        return any(p.name == name for p in [*self.tracking, *self.steps])

    def describe(self) -> str:
        targets = ", ".join(t.describe() for t in self.tracking) or "no target tracking"
        return f"{self.min_copies}-{self.max_copies} copies, {targets}"


class Activity(BaseModel):
    """One scaling activity, as describe and DescribeScalingActivities show it."""

    id: str
    component: str
    started_at: float  # epoch seconds
    ended_at: float | None = None
    from_copies: int
    to_copies: int
    cause: str  # "concurrency 9.5 per copy > target 4: 2 → 5 copies"
    status: str = "InProgress"  # AWS's: InProgress | Successful | Failed | Unfulfilled | Overridden
    message: str | None = None  # the outcome, e.g. "cannot place copy 5: it needs ..."

    @property
    def description(self) -> str:
        return f"Setting desired copy count to {self.to_copies}."


class AutoscalingView(BaseModel):
    """What describe and ls show of a component's autoscaling."""

    min_copies: int
    max_copies: int
    targets: list[str] = []
    scale_out_cooldown_s: int | None = None
    scale_in_cooldown_s: int | None = None
    cold_start_timeout_s: float
    last_activity: Activity | None = None


class AutoscalingSpec(BaseModel):
    """shoal's own API (`PUT /api/inference-components/{name}/autoscaling`), the CLI and the SDK: one call
    sets a component's whole policy. Application Auto Scaling's API edits the same policy piece by piece."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    min_copies: int = Field(alias="MinCapacity", json_schema_extra={"examples": [0]})
    max_copies: int = Field(alias="MaxCapacity", json_schema_extra={"examples": [4]})
    target_concurrency: float | None = Field(None, gt=0, alias="TargetConcurrency",
                                             description="requests in flight + queued per copy")
    target_invocations: float | None = Field(None, gt=0, alias="TargetInvocationsPerCopyPerMinute")
    scale_out_cooldown_s: int = Field(300, ge=0, le=86400, alias="ScaleOutCooldown")
    scale_in_cooldown_s: int = Field(300, ge=0, le=86400, alias="ScaleInCooldown")
    cold_start_timeout_s: float = Field(300.0, gt=0, le=3600, alias="ColdStartTimeout",
                                        description="seconds a request waits for a first copy before a 503")

    def policy(self, component: str) -> ScalingPolicy:
        cooldowns = {"scale_out_cooldown_s": self.scale_out_cooldown_s, "scale_in_cooldown_s": self.scale_in_cooldown_s}
        tracking = [TargetTracking(name=name, metric=metric, target=target, **cooldowns)
                    for name, metric, target in (("concurrency-per-copy", Metric.CONCURRENCY, self.target_concurrency),
                                                 ("invocations-per-copy", Metric.INVOCATIONS, self.target_invocations))
                    if target is not None]
        return ScalingPolicy(component=component, min_copies=self.min_copies, max_copies=self.max_copies,
                             tracking=tracking, cold_start_timeout_s=self.cold_start_timeout_s)


class AutoscalingState(BaseModel):
    """A component's policy, its copies, and its scaling activities (newest first)."""

    policy: ScalingPolicy
    desired_copies: int
    current_copies: int
    activities: list[Activity] = []
