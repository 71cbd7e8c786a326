"""Application Auto Scaling's API (JSON 1.1, `X-Amz-Target: AnyScaleFrontendService.<Op>`) over shoal's
autoscaling policies, so boto3 `client("application-autoscaling", endpoint_url=...)` scripts work.

One function per operation, over plain dicts (the request's JSON and the answer's), raising `AwsError`
(the JSON 1.1 door's, shoal.control.sagemaker.protocol) with AWS's error code and words; `service()`
registers them behind that door. Field names, enums and required members come from botocore's own
service model. What is served: SageMaker inference components (`ServiceNamespace` sagemaker, `ResourceId`
inference-component/<name>, `ScalableDimension` sagemaker:inference-component:DesiredCopyCount);
target tracking on the two predefined inference-component metrics; step scaling, stored as given (a
request at zero copies starts copies at once, no alarm needed; its largest ScalingAdjustment says how
many). Other namespaces are valid requests about resources shoal does not have.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from shoal.control.autoscaling.policy import (
    Activity,
    Metric,
    PolicyError,
    ScalingPolicy,
    StepScaling,
    TargetTracking,
    bounds_error,
    target_value_error,
)
from shoal.control.autoscaling.scaler import Autoscaler
from shoal.control.sagemaker.protocol import ACCOUNT, AwsError, Body, Caller, Service
from shoal.control.sagemaker.protocol import validation as invalid
from shoal.control.sagemaker.validate import check
from shoal.errors import ApiError

TARGET_PREFIX = "AnyScaleFrontendService"
NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:inference-component:DesiredCopyCount"
RESOURCE_PREFIX = "inference-component/"
ROLE_ARN = (f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
            "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint")
UNSUPPORTED = "Unsupported service namespace, resource type or scalable dimension"
LOCAL = Caller()
Operation = Callable[[Autoscaler, Body, Caller], Body]


def _check(operation: str, body: Body) -> None:
    """AWS's own input validation (required members, types, enums, ranges), from botocore's model."""
    check("application-autoscaling", operation, body)


def _component(body: Body, scaler: Autoscaler, must_exist: bool = True) -> str:
    """The inference component a (namespace, resource id, dimension) names."""
    namespace, resource, dimension = body.get("ServiceNamespace"), body.get("ResourceId"), body.get("ScalableDimension")
    if namespace != NAMESPACE or (dimension is not None and dimension != DIMENSION) \
            or not isinstance(resource, str) or not resource.startswith(RESOURCE_PREFIX) \
            or "/" in resource[len(RESOURCE_PREFIX):] or resource == RESOURCE_PREFIX:
        raise invalid(UNSUPPORTED)
    name = resource[len(RESOURCE_PREFIX):]
    if must_exist and name not in scaler.c.components:
        raise invalid(f"Could not find inference component \"{name}\".")
    return name


def _target_missing(body: Body) -> AwsError:
    return AwsError("ObjectNotFoundException", f"No scalable target registered for service namespace: "
                    f"{body['ServiceNamespace']}, resource ID: {body['ResourceId']}, scalable dimension: "
                    f"{body['ScalableDimension']}")


def _resource(component: str) -> str:
    return RESOURCE_PREFIX + component


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)))


def target_arn(policy: ScalingPolicy, caller: Caller = LOCAL) -> str:
    return (f"arn:aws:application-autoscaling:{caller.region}:{ACCOUNT}:scalable-target/"
            f"{_uuid(policy.component, str(policy.created_at)).replace('-', '')}")


def policy_arn(component: str, name: str, caller: Caller = LOCAL) -> str:
    return (f"arn:aws:autoscaling:{caller.region}:{ACCOUNT}:scalingPolicy:{_uuid(component, name)}:resource/sagemaker/"
            f"{_resource(component)}:policyName/{name}")


def _put(scaler: Autoscaler, policy: ScalingPolicy) -> ScalingPolicy:
    try:
        return scaler.put(policy)
    except ApiError as exc:
        raise invalid(exc.message) from None


def _page(items: list[Body], body: Body, key: str) -> Body:
    """MaxResults / NextToken paging (the token is the index of the next item)."""
    limit = body.get("MaxResults") or 50
    try:
        start = int(body.get("NextToken") or 0)
    except ValueError:
        raise AwsError("InvalidNextTokenException", "Invalid token") from None
    out: Body = {key: items[start:start + limit]}
    if start + limit < len(items):
        out["NextToken"] = str(start + limit)
    return out


# -- operations -------------------------------------------------------------------------------------------------
def register_scalable_target(scaler: Autoscaler, body: Body, caller: Caller = LOCAL) -> Body:
    _check("RegisterScalableTarget", body)
    name = _component(body, scaler)
    old = scaler.get(name)
    lo, hi = body.get("MinCapacity"), body.get("MaxCapacity")
    if old is None and lo is None:
        raise invalid("Minimum capacity must be specified")
    if old is None and hi is None:
        raise invalid("Maximum capacity must be specified")
    lo = old.min_copies if lo is None else lo
    hi = old.max_copies if hi is None else hi
    if problem := bounds_error(lo, hi):
        raise invalid(problem)
    suspended = body.get("SuspendedState") or {}
    fields: Body = {"min_copies": lo, "max_copies": hi}
    for key, field in (("DynamicScalingOutSuspended", "scale_out_suspended"),
                       ("DynamicScalingInSuspended", "scale_in_suspended")):
        if key in suspended:
            fields[field] = bool(suspended[key])
    policy = old.model_copy(update=fields) if old else ScalingPolicy(component=name, **fields)
    return {"ScalableTargetARN": target_arn(_put(scaler, policy), caller)}


def deregister_scalable_target(scaler: Autoscaler, body: Body, caller: Caller = LOCAL) -> Body:
    _check("DeregisterScalableTarget", body)
    name = _component(body, scaler, must_exist=False)
    if not scaler.delete(name):
        raise AwsError("ObjectNotFoundException", f"No scalable target found for service namespace: "
                       f"{body['ServiceNamespace']}, resource ID: {body['ResourceId']}, scalable dimension: "
                       f"{body['ScalableDimension']}")
    return {}


def _tracking(name: str, config: Any) -> TargetTracking:
    if not isinstance(config, dict) or "TargetValue" not in config:
        raise invalid("TargetTrackingScalingPolicyConfiguration is required for a TargetTrackingScaling policy "
                      "and must have a TargetValue")
    if "CustomizedMetricSpecification" in config or "PredefinedMetricSpecification" not in config:
        raise invalid(f"shoal tracks predefined metrics only: give PredefinedMetricSpecification with "
                      f"PredefinedMetricType {Metric.CONCURRENCY.value} or {Metric.INVOCATIONS.value}")
    metric = config["PredefinedMetricSpecification"]["PredefinedMetricType"]  # present and in AWS's enum: _check
    if metric not in {m.value for m in Metric}:
        raise invalid(f"The predefined metric type {metric} is not supported for the scalable dimension {DIMENSION}; "
                      f"use {Metric.CONCURRENCY.value} or {Metric.INVOCATIONS.value}")
    target = config["TargetValue"]
    if problem := target_value_error(float(target)):
        raise invalid(problem)
    try:
        return TargetTracking(name=name, metric=Metric(metric), target=float(target),
                              scale_out_cooldown_s=config.get("ScaleOutCooldown", 300),
                              scale_in_cooldown_s=config.get("ScaleInCooldown", 300),
                              disable_scale_in=bool(config.get("DisableScaleIn", False)))
    except (ValidationError, PolicyError) as exc:
        raise invalid(str(exc)) from None


def put_scaling_policy(scaler: Autoscaler, body: Body, caller: Caller = LOCAL) -> Body:
    _check("PutScalingPolicy", body)
    name = _component(body, scaler)
    policy = scaler.get(name)
    if policy is None:
        raise _target_missing(body)
    kind = body.get("PolicyType") or "StepScaling"
    policy_name = body["PolicyName"]
    if kind == "TargetTrackingScaling":
        tracking = _tracking(policy_name, body.get("TargetTrackingScalingPolicyConfiguration"))
        policy = policy.without(policy_name).with_tracking(tracking)
    elif kind == "StepScaling":
        config = body.get("StepScalingPolicyConfiguration")
        if not isinstance(config, dict):
            raise invalid("StepScalingPolicyConfiguration is required for a StepScaling policy")
        policy = policy.without(policy_name).with_step(StepScaling(name=policy_name, config=config))
    else:
        raise invalid(f"{kind} policies are not supported for {DIMENSION}; use TargetTrackingScaling or StepScaling")
    _put(scaler, policy)
    return {"PolicyARN": policy_arn(name, policy_name, caller), "Alarms": []}


def delete_scaling_policy(scaler: Autoscaler, body: Body, caller: Caller = LOCAL) -> Body:
    _check("DeleteScalingPolicy", body)
    name = _component(body, scaler, must_exist=False)
    policy = scaler.get(name)
    if policy is None or not policy.has(body["PolicyName"]):
        raise AwsError("ObjectNotFoundException", f"No scaling policy found for service namespace: "
                       f"{body['ServiceNamespace']}, resource ID: {body['ResourceId']}, scalable dimension: "
                       f"{body['ScalableDimension']}, policy name: {body['PolicyName']}")
    _put(scaler, policy.without(body["PolicyName"]))
    return {}


def _filter(scaler: Autoscaler, body: Body, resource_ids: list[str] | None) -> list[ScalingPolicy]:
    """The policies a Describe* call asks about (none outside SageMaker inference components)."""
    if body["ServiceNamespace"] != NAMESPACE or body.get("ScalableDimension") not in (None, DIMENSION):
        return []
    return [p for p in scaler.policies.values() if resource_ids is None or _resource(p.component) in resource_ids]


def describe_scalable_targets(scaler: Autoscaler, body: Body, caller: Caller = LOCAL) -> Body:
    _check("DescribeScalableTargets", body)
    ids = body.get("ResourceIds")
    targets = [{"ServiceNamespace": NAMESPACE, "ResourceId": _resource(p.component), "ScalableDimension": DIMENSION,
                "MinCapacity": p.min_copies, "MaxCapacity": p.max_copies, "RoleARN": ROLE_ARN,
                "CreationTime": p.created_at, "ScalableTargetARN": target_arn(p, caller),
                "SuspendedState": {"DynamicScalingInSuspended": p.scale_in_suspended,
                                   "DynamicScalingOutSuspended": p.scale_out_suspended,
                                   "ScheduledScalingSuspended": False}}
               for p in _filter(scaler, body, ids if ids else None)]
    return _page(targets, body, "ScalableTargets")


def _policy_body(p: ScalingPolicy, kind: str, name: str, config: Body, created_at: float, caller: Caller) -> Body:
    return {"PolicyARN": policy_arn(p.component, name, caller), "PolicyName": name, "ServiceNamespace": NAMESPACE,
            "ResourceId": _resource(p.component), "ScalableDimension": DIMENSION, "PolicyType": kind,
            f"{kind}PolicyConfiguration": config, "Alarms": [], "CreationTime": created_at}


def describe_scaling_policies(scaler: Autoscaler, body: Body, caller: Caller = LOCAL) -> Body:
    _check("DescribeScalingPolicies", body)
    resource = body.get("ResourceId")
    names = body.get("PolicyNames") or None
    out = []
    for p in _filter(scaler, body, [resource] if resource else None):
        for t in p.tracking:
            out.append(_policy_body(p, "TargetTrackingScaling", t.name, {
                "TargetValue": t.target, "PredefinedMetricSpecification": {"PredefinedMetricType": t.metric.value},
                "ScaleOutCooldown": t.scale_out_cooldown_s, "ScaleInCooldown": t.scale_in_cooldown_s,
                "DisableScaleIn": t.disable_scale_in}, t.created_at, caller))
        out += [_policy_body(p, "StepScaling", s.name, s.config, s.created_at, caller) for s in p.steps]
    return _page([o for o in out if names is None or o["PolicyName"] in names], body, "ScalingPolicies")


def _activity_body(a: Activity) -> Body:
    out: Body = {"ActivityId": a.id, "ServiceNamespace": NAMESPACE, "ResourceId": _resource(a.component),
                 "ScalableDimension": DIMENSION, "Description": a.description, "Cause": a.cause,
                 "StartTime": a.started_at, "StatusCode": a.status}
    if a.ended_at is not None:
        out["EndTime"] = a.ended_at
    if a.message:
        out["StatusMessage"] = a.message
    return out


def describe_scaling_activities(scaler: Autoscaler, body: Body, caller: Caller = LOCAL) -> Body:
    _check("DescribeScalingActivities", body)
    if body["ServiceNamespace"] != NAMESPACE or body.get("ScalableDimension") not in (None, DIMENSION):
        return {"ScalingActivities": []}
    resource = body.get("ResourceId")
    names = [resource[len(RESOURCE_PREFIX):]] if resource else list(scaler.activities)
    activities = sorted((a for n in names for a in scaler.history(n)), key=lambda a: a.started_at, reverse=True)
    return _page([_activity_body(a) for a in activities], body, "ScalingActivities")


OPERATIONS: dict[str, Operation] = {
    "RegisterScalableTarget": register_scalable_target,
    "DeregisterScalableTarget": deregister_scalable_target,
    "PutScalingPolicy": put_scaling_policy,
    "DeleteScalingPolicy": delete_scaling_policy,
    "DescribeScalableTargets": describe_scalable_targets,
    "DescribeScalingPolicies": describe_scaling_policies,
    "DescribeScalingActivities": describe_scaling_activities,
}


def call(scaler: Autoscaler, operation: str, body: Body, caller: Caller = LOCAL) -> Body:
    """Run one operation; `AwsError` for anything but success (an unknown operation included)."""
    handler = OPERATIONS.get(operation)
    if handler is None:
        raise AwsError("UnknownOperationException", f"Operation {TARGET_PREFIX}.{operation} is not served by shoal "
                                                     f"(served: {', '.join(OPERATIONS)})")
    return handler(scaler, body, caller)


def service(scaler: Autoscaler) -> Service:
    """Application Auto Scaling behind the JSON 1.1 door (`X-Amz-Target: AnyScaleFrontendService.<Op>`)."""
    return lambda operation, body, caller: call(scaler, operation, body, caller)
