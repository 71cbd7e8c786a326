"""SageMaker's control operations, one small function each, over shoal's controller.

Each takes the plane, the caller and its request (a shapes model, checked against AWS's own constraints
first) and returns the answer's body; errors are AwsErrors in AWS's words. Deletes answer at once and
finish in the background (Describe shows Deleting, then "Could not find ..."), as SageMaker's do.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shoal.control.api import problems
from shoal.control.controller import BatchSize, RollingPolicy
from shoal.control.models import EndpointSpec
from shoal.control.resources import instance_type
from shoal.control.sagemaker import shapes, views
from shoal.control.sagemaker.containers import (
    DEFAULT_STARTUP_TIMEOUT_S,
    Deployable,
    adapter_spec,
    checked,
    component_spec,
    compute,
    container_deployable,
    specified,
    startup_timeout,
)
from shoal.control.sagemaker.plane import CONFIG, MODEL, SageMakerPlane, arn
from shoal.control.sagemaker.protocol import AwsError, Body, Caller, validation
from shoal.control.sagemaker.validate import check
from shoal.control.store import COMPONENT, ENDPOINT
from shoal.errors import ApiError
from shoal.gateway.routing import DEFAULT_STRATEGY, STRATEGIES

MAX_INSTANCES = 64  # of one instance type, over all endpoints: the "account-level service limit"
IN_PROGRESS = ("Creating", "Updating", "Deleting")


def _stored(req: shapes.Shape) -> Body:
    """A request as it came (its Tags aside: Describe does not show them)."""
    return req.model_dump(by_alias=True, exclude_unset=True, exclude={"Tags"})


# -- models ------------------------------------------------------------------------------------------------------
def create_model(plane: SageMakerPlane, caller: Caller, req: shapes.CreateModel) -> Body:
    model_arn = arn(caller, "model", req.model_name)
    if plane.document(MODEL, req.model_name):
        raise validation(f"Cannot create already existing model \"{model_arn}\".")
    container_deployable(*_the_container(req), plane.c.policy.extra_env)
    plane.put_document(MODEL, req.model_name, _stored(req))
    return {"ModelArn": model_arn}


def _the_container(req: shapes.CreateModel) -> tuple[shapes.Container, str]:
    """A model's one container, and where it is in the request."""
    if req.primary_container is not None and req.containers is None:
        return req.primary_container, "PrimaryContainer"
    if req.primary_container is None and req.containers is not None:
        if len(req.containers) == 1:
            return req.containers[0], "Containers.1"
        raise validation(f"shoal runs one container per model; Containers has {len(req.containers)} (inference "
                         f"pipelines are not supported)")
    raise validation("Give either PrimaryContainer or Containers.")


def describe_model(plane: SageMakerPlane, caller: Caller, req: shapes.ModelName) -> Body:
    return views.model(caller, plane.model(req.model_name))


def list_models(plane: SageMakerPlane, caller: Caller, req: shapes.ListRequest) -> Body:
    rows = [{"ModelName": m["ModelName"], "ModelArn": arn(caller, "model", m["ModelName"]),
             "CreationTime": m["CreationTime"]} for m in plane.documents(MODEL)]
    return views.listing(rows, req, "Models", "ModelName")


def delete_model(plane: SageMakerPlane, caller: Caller, req: shapes.ModelName) -> Body:
    if not plane.store.delete_document(MODEL, req.model_name):
        raise validation(f"Could not find model \"{req.model_name}\".")
    return {}


# -- endpoint configurations -------------------------------------------------------------------------------------
def create_endpoint_config(plane: SageMakerPlane, caller: Caller, req: shapes.CreateEndpointConfig) -> Body:
    config_arn = arn(caller, "endpoint-config", req.endpoint_config_name)
    if plane.document(CONFIG, req.endpoint_config_name):
        raise validation(f"Cannot create already existing endpoint configuration \"{config_arn}\".")
    _variant(req.production_variants)
    plane.put_document(CONFIG, req.endpoint_config_name, _stored(req))
    return {"EndpointConfigArn": config_arn}


def _variant(variants: list[shapes.ProductionVariant]) -> shapes.ProductionVariant:
    """The one production variant of a configuration, if it describes an endpoint shoal can run."""
    if len(variants) != 1:
        raise validation(f"shoal endpoints have one production variant; ProductionVariants has {len(variants)}")
    v = variants[0]
    if v.model_name:
        raise validation("shoal serves inference-component-based endpoints: leave ModelName out of the production "
                         "variant and deploy the model with CreateInferenceComponent (in the sagemaker SDK: "
                         "endpoint_type=EndpointType.INFERENCE_COMPONENT_BASED)")
    if v.serverless_config is not None or not v.instance_type:
        raise validation("ProductionVariants.1.InstanceType is required: shoal has no serverless endpoints")
    try:
        instance_type(v.instance_type)
    except ValueError as exc:
        raise validation(str(exc)) from None
    _routing(v)
    return v


def _routing(v: shapes.ProductionVariant) -> str:
    """SageMaker's strategies and shoal's own (ROUND_ROBIN, POWER_OF_TWO, PREFIX_AFFINITY, ADAPTER_AFFINITY)."""
    routing = v.routing_config.routing_strategy if v.routing_config else DEFAULT_STRATEGY
    if routing not in STRATEGIES:
        raise validation(f"1 validation error detected: Value '{routing}' at 'productionVariants.1.member.routingConfig"
                         f".routingStrategy' failed to satisfy constraint: Member must satisfy enum value set: "
                         f"[{', '.join(STRATEGIES)}]")
    return routing


def describe_endpoint_config(plane: SageMakerPlane, caller: Caller, req: shapes.EndpointConfigName) -> Body:
    config = plane.config(req.endpoint_config_name)
    return {**config, "EndpointConfigArn": arn(caller, "endpoint-config", req.endpoint_config_name)}


def list_endpoint_configs(plane: SageMakerPlane, caller: Caller, req: shapes.ListRequest) -> Body:
    rows = [{"EndpointConfigName": c["EndpointConfigName"], "CreationTime": c["CreationTime"],
             "EndpointConfigArn": arn(caller, "endpoint-config", c["EndpointConfigName"])}
            for c in plane.documents(CONFIG)]
    return views.listing(rows, req, "EndpointConfigs", "EndpointConfigName")


def delete_endpoint_config(plane: SageMakerPlane, caller: Caller, req: shapes.EndpointConfigName) -> Body:
    if not plane.store.delete_document(CONFIG, req.endpoint_config_name):
        raise validation(f"Could not find endpoint configuration \"{req.endpoint_config_name}\".")
    return {}


# -- endpoints ---------------------------------------------------------------------------------------------------
def create_endpoint(plane: SageMakerPlane, caller: Caller, req: shapes.CreateEndpoint) -> Body:
    endpoint_arn = arn(caller, "endpoint", req.endpoint_name)
    if req.endpoint_name in plane.c.endpoints:
        raise validation(f"Cannot create already existing endpoint \"{endpoint_arn}\".")
    spec, variant = _configured(plane, req.endpoint_name, req.endpoint_config_name)
    plane.c.create_endpoint(spec)
    plane.store.note(ENDPOINT, spec.name, EndpointConfigName=req.endpoint_config_name, Variant=variant)
    plane.settle(spec.name, "Creating")
    return {"EndpointArn": endpoint_arn}


def update_endpoint(plane: SageMakerPlane, caller: Caller, req: shapes.UpdateEndpoint) -> Body:
    plane.endpoint(req.endpoint_name)
    _not_in_progress(plane, caller, req.endpoint_name)
    spec, variant = _configured(plane, req.endpoint_name, req.endpoint_config_name)
    plane.c.update_endpoint(spec)
    plane.store.note(ENDPOINT, spec.name, EndpointConfigName=req.endpoint_config_name, Variant=variant)
    plane.settle(spec.name, "Updating")
    return {"EndpointArn": arn(caller, "endpoint", req.endpoint_name)}


def _configured(plane: SageMakerPlane, name: str, config_name: str) -> tuple[EndpointSpec, Body]:
    """The endpoint an endpoint configuration describes, within the instance limit; and its variant as given."""
    config = plane.config(config_name)
    v = _variant([shapes.ProductionVariant.model_validate(v) for v in config["ProductionVariants"]])
    kind, count = v.instance_type or "", v.initial_instance_count
    used = sum(e.instance_count for e in plane.c.endpoints.values() if e.instance_type == kind and e.name != name)
    if used + count > MAX_INSTANCES:
        raise AwsError("ResourceLimitExceeded", f"The account-level service limit '{kind} for endpoint usage' is "
                       f"{MAX_INSTANCES} Instances, with current utilization of {used} Instances and a request delta "
                       f"of {count} Instances. Please use AWS Service Quotas to request an increase for this quota.")
    spec = EndpointSpec(EndpointName=name, InstanceType=kind, InitialInstanceCount=count, RoutingStrategy=_routing(v))
    return spec, config["ProductionVariants"][0]


def _not_in_progress(plane: SageMakerPlane, caller: Caller, name: str) -> None:
    if plane.endpoint_status(name).status in IN_PROGRESS:
        raise validation(f"Cannot update in-progress endpoint \"{arn(caller, 'endpoint', name)}\".")


def describe_endpoint(plane: SageMakerPlane, caller: Caller, req: shapes.EndpointName) -> Body:
    return views.endpoint(plane, caller, req.endpoint_name)


def list_endpoints(plane: SageMakerPlane, caller: Caller, req: shapes.ListRequest) -> Body:
    rows = [views.endpoint_summary(plane, caller, name) for name in plane.c.endpoints]
    return views.listing(rows, req, "Endpoints", "EndpointName", "EndpointStatus")


def delete_endpoint(plane: SageMakerPlane, caller: Caller, req: shapes.EndpointName) -> Body:
    plane.endpoint(req.endpoint_name)
    if plane.c.members(req.endpoint_name):
        raise validation("Cannot delete endpoint with inference component associated. Please delete inference "
                         "component and try it again.")
    _not_in_progress(plane, caller, req.endpoint_name)
    plane.delete_endpoint(req.endpoint_name)
    return {}


# -- inference components ------------------------------------------------------------------------------------------
def create_inference_component(plane: SageMakerPlane, caller: Caller, req: shapes.CreateInferenceComponent) -> Body:
    name = req.inference_component_name
    component_arn = arn(caller, "inference-component", name)
    if name in plane.c.components:
        raise validation(f"Cannot create already existing inference component \"{component_arn}\".")
    plane.endpoint(req.endpoint_name)
    variant = plane.variant_name(req.endpoint_name)
    if req.variant_name not in (None, variant):
        raise validation(f"Could not find variant \"{req.variant_name}\" in endpoint \"{req.endpoint_name}\".")
    spec = req.specification
    if spec is not None and spec.base_inference_component_name:  # an adapter of another component
        plane.c.create_component(adapter_spec(name, req.endpoint_name, spec))
        plane.store.note(COMPONENT, name, VariantName=variant, ArtifactUrl=spec.container.artifact_url
                         if spec.container else None)
        return {"InferenceComponentArn": component_arn}
    if spec is None or spec.compute_resource_requirements is None:
        raise validation("Specification with ComputeResourceRequirements is required: what one copy needs")
    what = specified(plane, spec)
    if what is None:
        raise validation("Specification needs ModelName or Container: the model to deploy")
    startup = startup_timeout(spec) or _variant_startup(plane, req.endpoint_name) or DEFAULT_STARTUP_TIMEOUT_S
    copies = req.runtime_config.copy_count if req.runtime_config else 1
    plane.c.create_component(component_spec(name, req.endpoint_name, what, compute(spec.compute_resource_requirements),
                                            startup, copies))
    plane.store.note(COMPONENT, name, VariantName=variant, **_notes(spec, what))
    return {"InferenceComponentArn": component_arn}


def _variant_startup(plane: SageMakerPlane, endpoint: str) -> int | None:
    variant = plane.store.meta(ENDPOINT, endpoint).notes.get("Variant") or {}
    return variant.get("ContainerStartupHealthCheckTimeoutInSeconds")


def _notes(spec: shapes.Specification, what: Deployable) -> Body:
    """What Describe shows of a Specification beyond the component itself (its Environment is the component's)."""
    notes: Body = {"ModelName": spec.model_name, "Image": what.image,
                   "ArtifactUrl": spec.container.artifact_url if spec.container else None}
    if spec.startup_parameters:
        notes["StartupParameters"] = spec.startup_parameters.model_dump(by_alias=True, exclude_none=True)
    return notes


def describe_inference_component(plane: SageMakerPlane, caller: Caller, req: shapes.InferenceComponentName) -> Body:
    return views.component(plane, caller, req.inference_component_name)


def list_inference_components(plane: SageMakerPlane, caller: Caller, req: shapes.ListRequest) -> Body:
    rows = [views.component_summary(plane, caller, name) for name in list(plane.c.components)]

    def where(row: Body) -> bool:
        return (req.endpoint_name_equals in (None, row["EndpointName"])
                and req.variant_name_equals in (None, row["VariantName"]))

    return views.listing(rows, req, "InferenceComponents", "InferenceComponentName", "InferenceComponentStatus", where)


def update_inference_component(plane: SageMakerPlane, caller: Caller, req: shapes.UpdateInferenceComponent) -> Body:
    current = _updatable(plane, caller, req.inference_component_name).spec
    changes: Body = {"copies": req.runtime_config.copy_count if req.runtime_config else current.copies}
    notes: Body = {}
    if spec := req.specification:
        if what := specified(plane, spec):
            changes |= {"model_id": what.model_id, "env": what.env, "engine": what.engine}
            notes = _notes(spec, what)
        if spec.compute_resource_requirements:
            changes["compute"] = compute(spec.compute_resource_requirements)
        if startup := startup_timeout(spec):
            changes["startup_timeout_s"] = startup
    plane.c.roll_component(checked(current.model_copy(update=changes)), _policy(req.deployment_config))
    if req.deployment_config:
        notes["LastDeploymentConfig"] = req.deployment_config.model_dump(by_alias=True, exclude_unset=True)
    plane.store.note(COMPONENT, current.name, **notes)
    return {"InferenceComponentArn": arn(caller, "inference-component", current.name)}


def update_runtime_config(plane: SageMakerPlane, caller: Caller, req: shapes.UpdateRuntimeConfig) -> Body:
    comp = _updatable(plane, caller, req.inference_component_name)
    plane.c.roll_component(comp.spec.model_copy(update={"copies": req.desired_runtime_config.copy_count}),
                           RollingPolicy())
    return {"InferenceComponentArn": arn(caller, "inference-component", req.inference_component_name)}


def _updatable(plane: SageMakerPlane, caller: Caller, name: str):  # type: ignore[no-untyped-def]
    comp = plane.component(name)
    if comp.status.value in IN_PROGRESS:
        raise validation(f"Cannot update in-progress inference component "
                         f"\"{arn(caller, 'inference-component', name)}\".")
    return comp


def _policy(config: shapes.DeploymentConfig | None) -> RollingPolicy:
    """SageMaker's rolling update policy; without one, every copy is replaced at once (capacity permitting)."""
    if config is None:
        return RollingPolicy(batch=BatchSize(percent=100))
    policy = config.rolling_update_policy
    rollback = policy.rollback_maximum_batch_size
    return RollingPolicy(batch=_batch(policy.maximum_batch_size), wait_s=policy.wait_interval_in_seconds,
                         rollback=_batch(rollback) if rollback else BatchSize(percent=100))


def _batch(size: shapes.CapacitySize) -> BatchSize:
    return BatchSize(copies=size.value) if size.type == "COPY_COUNT" else BatchSize(percent=size.value)


def delete_inference_component(plane: SageMakerPlane, caller: Caller, req: shapes.InferenceComponentName) -> Body:
    plane.component(req.inference_component_name)
    plane.c.start_delete(req.inference_component_name)
    return {}


# -- dispatch -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Operation:
    shape: type[shapes.Shape]
    run: Callable[[SageMakerPlane, Caller, Any], Body]


OPERATIONS: dict[str, Operation] = {
    "CreateModel": Operation(shapes.CreateModel, create_model),
    "DescribeModel": Operation(shapes.ModelName, describe_model),
    "ListModels": Operation(shapes.ListRequest, list_models),
    "DeleteModel": Operation(shapes.ModelName, delete_model),
    "CreateEndpointConfig": Operation(shapes.CreateEndpointConfig, create_endpoint_config),
    "DescribeEndpointConfig": Operation(shapes.EndpointConfigName, describe_endpoint_config),
    "ListEndpointConfigs": Operation(shapes.ListRequest, list_endpoint_configs),
    "DeleteEndpointConfig": Operation(shapes.EndpointConfigName, delete_endpoint_config),
    "CreateEndpoint": Operation(shapes.CreateEndpoint, create_endpoint),
    "DescribeEndpoint": Operation(shapes.EndpointName, describe_endpoint),
    "ListEndpoints": Operation(shapes.ListRequest, list_endpoints),
    "UpdateEndpoint": Operation(shapes.UpdateEndpoint, update_endpoint),
    "DeleteEndpoint": Operation(shapes.EndpointName, delete_endpoint),
    "CreateInferenceComponent": Operation(shapes.CreateInferenceComponent, create_inference_component),
    "DescribeInferenceComponent": Operation(shapes.InferenceComponentName, describe_inference_component),
    "ListInferenceComponents": Operation(shapes.ListRequest, list_inference_components),
    "UpdateInferenceComponent": Operation(shapes.UpdateInferenceComponent, update_inference_component),
    "UpdateInferenceComponentRuntimeConfig": Operation(shapes.UpdateRuntimeConfig, update_runtime_config),
    "DeleteInferenceComponent": Operation(shapes.InferenceComponentName, delete_inference_component),
}


def call(plane: SageMakerPlane, operation: str, body: Body, caller: Caller) -> Body:
    """Run one operation: AWS's checks, then shoal's; shoal's own refusals (placement, engine settings) keep
    their explanation, as ValidationExceptions."""
    op = OPERATIONS.get(operation)
    if op is None:
        raise AwsError("UnknownOperationException", f"shoal does not serve SageMaker.{operation}; it serves "
                                                    f"{', '.join(OPERATIONS)}")
    check("sagemaker", operation, body)
    try:
        request = op.shape.model_validate(body)
    except ValidationError as exc:
        raise validation(problems(exc)) from None
    try:
        return op.run(plane, caller, request)
    except ApiError as exc:
        raise validation(exc.message) from None
