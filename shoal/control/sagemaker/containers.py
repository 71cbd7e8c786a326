"""From SageMaker's containers to shoal's components: the image picks the engine, HF_MODEL_ID (the Hugging
Face container's convention) or ModelDataUrl (a local path) the model, Environment the engine's settings."""
from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from pydantic import ValidationError

from shoal.control.api import problems
from shoal.control.models import ComponentSpec
from shoal.control.resources import ComputeRequirements
from shoal.control.sagemaker import shapes
from shoal.control.sagemaker.images import ImageError, engine_for, supported
from shoal.control.sagemaker.plane import SageMakerPlane
from shoal.control.sagemaker.protocol import validation
from shoal.security.environment import check_environment

DEFAULT_STARTUP_TIMEOUT_S = 600
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class Deployable:
    """What a container asks shoal to run."""

    image: str
    engine: str
    model_id: str
    env: dict[str, str]


def deployable(image: str | None, model_data: str | None, env: dict[str, str], where: str,
               data_field: str = "ModelDataUrl", also_allowed: Collection[str] = ()) -> Deployable:
    """Check a container (`where` names it in errors): an image shoal runs, a model on this machine, safe env."""
    if not image:
        raise validation(f"{where}.Image is required: shoal picks the engine from it. Supported: {supported()}.")
    try:
        engine = engine_for(image)
        check_environment(env, also_allowed)  # the server's list, and what its operator added (--allow-env)
    except (ImageError, ValueError) as exc:
        raise validation(str(exc)) from None
    if model_data:
        model_id = local_path(model_data, f"{where}.{data_field}")
    elif env.get("HF_MODEL_ID"):
        model_id = env["HF_MODEL_ID"]
    else:
        raise validation(f"{where} names no model: set Environment HF_MODEL_ID (a model shoal knows, e.g. "
                         f"gemma-3-270m, or a local .gguf path) or {data_field} (a local path)")
    return Deployable(image, engine, model_id, dict(env))


def local_path(url: str, where: str) -> str:
    """Model data on this machine: a path, or a file:// URL; S3 and the web are refused, saying so."""
    if _REMOTE.match(url) and not url.startswith("file://"):
        raise validation(f"{where} '{url}' is not on this machine: shoal reads model data from local paths (a path "
                         f"or file:// URL under the server's model directories), never from S3 or the web; copy the "
                         f"model there, or set Environment HF_MODEL_ID to a model shoal knows")
    return url.removeprefix("file://")


def model_container(model: dict, also_allowed: Collection[str] = ()) -> Deployable:
    """The one container of a stored SageMaker model."""
    container = shapes.Container.model_validate(model.get("PrimaryContainer") or model["Containers"][0])
    return container_deployable(container, "PrimaryContainer", also_allowed)


def container_deployable(container: shapes.Container, where: str, also_allowed: Collection[str] = ()) -> Deployable:
    if container.model_data_source and container.model_data_source.s3_data_source:
        local_path(container.model_data_source.s3_data_source.s3_uri, f"{where}.ModelDataSource.S3DataSource.S3Uri")
    return deployable(container.image, container.model_data_url, container.environment, where,
                      also_allowed=also_allowed)


def specified(plane: SageMakerPlane, spec: shapes.Specification) -> Deployable | None:
    """What an inference component's Specification deploys: its model's container, or its own (None: neither)."""
    if spec.model_name and spec.container:
        raise validation("Specification takes ModelName or Container, not both")
    extra = plane.c.policy.extra_env
    if spec.model_name:
        return model_container(plane.model(spec.model_name), extra)
    if spec.container:
        c = spec.container
        return deployable(c.image, c.artifact_url, c.environment, "Specification.Container", "ArtifactUrl", extra)
    return None


def compute(req: shapes.ComputeResourceRequirements) -> ComputeRequirements:
    accelerators = req.number_of_accelerator_devices_required or 0
    if accelerators != int(accelerators):
        raise validation("NumberOfAcceleratorDevicesRequired must be a whole number: shoal gives each copy whole "
                         "accelerators")
    try:
        return ComputeRequirements(num_accelerators=int(accelerators), num_cpus=req.number_of_cpu_cores_required or 1.0,
                                   min_memory_mb=req.min_memory_required_in_mb,
                                   max_memory_mb=req.max_memory_required_in_mb)
    except ValidationError as exc:
        raise validation(problems(exc)) from None


def component_spec(name: str, endpoint: str, what: Deployable, resources: ComputeRequirements, startup_s: int,
                   copies: int) -> ComponentSpec:
    try:
        return ComponentSpec(InferenceComponentName=name, EndpointName=endpoint, ModelId=what.model_id,
                             Environment=what.env, ComputeResourceRequirements=resources, Engine=what.engine,
                             ContainerStartupHealthCheckTimeoutInSeconds=startup_s, CopyCount=copies)
    except ValidationError as exc:
        raise validation(problems(exc)) from None


def adapter_spec(name: str, endpoint: str, spec: shapes.Specification) -> ComponentSpec:
    """An adapter inference component: a LoRA adapter (Container.ArtifactUrl: a local GGUF file, or an adapter
    shoal ships) that every copy of its base (BaseInferenceComponentName) serves; no compute or copies."""
    if spec.compute_resource_requirements is not None or spec.model_name:
        raise validation("An adapter inference component takes BaseInferenceComponentName and Container.ArtifactUrl "
                         "only: its base's copies serve it (no ModelName or ComputeResourceRequirements)")
    artifact = spec.container.artifact_url if spec.container else None
    if not artifact:
        raise validation("Specification.Container.ArtifactUrl is required for an adapter inference component: "
                         "the adapter's file (a local path under the server's model directories)")
    try:
        return ComponentSpec(InferenceComponentName=name, EndpointName=endpoint,
                             ModelId=local_path(artifact, "Specification.Container.ArtifactUrl"),
                             BaseInferenceComponentName=spec.base_inference_component_name)
    except ValidationError as exc:
        raise validation(problems(exc)) from None


def checked(spec: ComponentSpec) -> ComponentSpec:
    """A component spec changed field by field, validated again as a whole."""
    try:
        return ComponentSpec.model_validate(spec.model_dump(by_alias=True))
    except ValidationError as exc:
        raise validation(problems(exc)) from None


def startup_timeout(spec: shapes.Specification) -> int | None:
    params = spec.startup_parameters
    return params.container_startup_health_check_timeout_in_seconds if params else None
