"""What SageMaker's Describe* and List* answer, built from the controller's state and the store's notes."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shoal.control.models import ComponentSpec
from shoal.control.resources import ComputeRequirements
from shoal.control.sagemaker.plane import SageMakerPlane, arn
from shoal.control.sagemaker.protocol import Body, Caller, validation
from shoal.control.sagemaker.shapes import ListRequest
from shoal.control.store import COMPONENT, ENDPOINT
from shoal.security.environment import redacted


# -- endpoints ------------------------------------------------------------------------------------------------
def endpoint_summary(plane: SageMakerPlane, caller: Caller, name: str) -> Body:
    meta = plane.store.meta(ENDPOINT, name)
    return {"EndpointName": name, "EndpointArn": arn(caller, "endpoint", name), "CreationTime": meta.created,
            "LastModifiedTime": meta.modified, "EndpointStatus": plane.endpoint_status(name).status}


def endpoint(plane: SageMakerPlane, caller: Caller, name: str) -> Body:
    spec, notes = plane.endpoint(name), plane.store.meta(ENDPOINT, name).notes
    variant = notes.get("Variant") or {}
    count, _gone = plane.c.runtime.instances(spec.instance_type, spec.instance_count)
    summary: Body = {"VariantName": plane.variant_name(name), "CurrentWeight": 1.0, "DesiredWeight": 1.0,
                     "CurrentInstanceCount": count, "DesiredInstanceCount": spec.instance_count,
                     "RoutingConfig": {"RoutingStrategy": spec.routing}}
    if "ManagedInstanceScaling" in variant:
        summary["ManagedInstanceScaling"] = variant["ManagedInstanceScaling"]
    out = endpoint_summary(plane, caller, name)
    if reason := plane.endpoint_status(name).reason:
        out["FailureReason"] = reason
    if config := notes.get("EndpointConfigName"):
        out["EndpointConfigName"] = config
    return {**out, "ProductionVariants": [summary]}


# -- inference components -----------------------------------------------------------------------------------------
def component_summary(plane: SageMakerPlane, caller: Caller, name: str) -> Body:
    comp, meta = plane.component(name), plane.store.meta(COMPONENT, name)
    endpoint_name = comp.spec.endpoint
    return {"InferenceComponentName": name, "InferenceComponentArn": arn(caller, "inference-component", name),
            "EndpointName": endpoint_name, "EndpointArn": arn(caller, "endpoint", endpoint_name),
            "VariantName": meta.notes.get("VariantName") or plane.variant_name(endpoint_name),
            "CreationTime": meta.created, "LastModifiedTime": meta.modified,
            "InferenceComponentStatus": comp.status.value}


def component(plane: SageMakerPlane, caller: Caller, name: str) -> Body:
    view = plane.c.component_view(name)
    notes = plane.store.meta(COMPONENT, name).notes
    out = component_summary(plane, caller, name)
    out["Specification"] = specification(view.spec, notes, out["CreationTime"])
    out["RuntimeConfig"] = {"DesiredCopyCount": view.desired_copies, "CurrentCopyCount": view.current_copies}
    if view.reason:
        out["FailureReason"] = view.reason
    if deployment := notes.get("LastDeploymentConfig"):
        out["LastDeploymentConfig"] = deployment
    return out


def specification(spec: ComponentSpec, notes: Body, created: float) -> Body:
    """The component's Specification: its model's name, or the container it runs (secrets hidden); an
    adapter's: its base and its artifact."""
    if spec.is_adapter:
        return {"BaseInferenceComponentName": spec.base, "Container": {"ArtifactUrl": notes.get("ArtifactUrl")
                                                                        or spec.model_id}}
    startup = {**notes.get("StartupParameters", {}),
               "ContainerStartupHealthCheckTimeoutInSeconds": spec.startup_timeout_s}
    out: Body = {"StartupParameters": startup, "ComputeResourceRequirements": compute(spec.compute)}
    if model := notes.get("ModelName"):
        return {"ModelName": model, **out}
    image = notes.get("Image") or f"shoal/{spec.engine}"
    container: Body = {"DeployedImage": {"SpecifiedImage": image, "ResolvedImage": image, "ResolutionTime": created},
                       "Environment": redacted(spec.env)}
    if artifact := notes.get("ArtifactUrl"):
        container["ArtifactUrl"] = artifact
    return {"Container": container, **out}


def compute(c: ComputeRequirements) -> Body:
    out: Body = {"NumberOfCpuCoresRequired": c.num_cpus, "MinMemoryRequiredInMb": c.min_memory_mb}
    if c.num_accelerators:
        out["NumberOfAcceleratorDevicesRequired"] = float(c.num_accelerators)
    if c.max_memory_mb is not None:
        out["MaxMemoryRequiredInMb"] = c.max_memory_mb
    return out


# -- models and endpoint configurations ----------------------------------------------------------------------------
def model(caller: Caller, body: Body) -> Body:
    def hidden(container: Body) -> Body:
        return {**container, "Environment": redacted(container["Environment"])} if "Environment" in container \
            else container

    out = {**body, "ModelArn": arn(caller, "model", body["ModelName"])}
    if "PrimaryContainer" in out:
        out["PrimaryContainer"] = hidden(out["PrimaryContainer"])
    if "Containers" in out:
        out["Containers"] = [hidden(c) for c in out["Containers"]]
    return out


# -- lists ------------------------------------------------------------------------------------------------------------
def listing(rows: list[Body], req: ListRequest, key: str, name: str, status: str | None = None,
            extra: Callable[[Body], bool] = lambda _row: True) -> Body:
    """Filter, sort and page rows as SageMaker's List* do (NameContains, times, StatusEquals, SortBy, SortOrder,
    MaxResults, NextToken)."""
    def keep(row: Body) -> bool:
        return ((req.name_contains is None or req.name_contains.lower() in row[name].lower())
                and _within(row.get("CreationTime"), req.creation_time_after, req.creation_time_before)
                and _within(row.get("LastModifiedTime"), req.last_modified_time_after, req.last_modified_time_before)
                and (req.status_equals is None or row.get(status or "") == req.status_equals)
                and extra(row))

    sort_key: dict[str, Callable[[Body], Any]] = {"Name": lambda r: r[name], "Status": lambda r: r.get(status or ""),
                                                  "CreationTime": lambda r: r["CreationTime"]}
    rows = sorted(filter(keep, rows), key=sort_key.get(req.sort_by, sort_key["CreationTime"]),
                  reverse=req.sort_order == "Descending")
    try:
        start = int(req.next_token or 0)
    except ValueError:
        raise validation(f"Invalid pagination token '{req.next_token}'.") from None
    out: Body = {key: rows[start:start + req.max_results]}
    if start + req.max_results < len(rows):
        out["NextToken"] = str(start + req.max_results)
    return out


def _within(when: float | None, after: Any, before: Any) -> bool:
    if when is None:
        return True
    return (after is None or when > after.timestamp()) and (before is None or when < before.timestamp())
