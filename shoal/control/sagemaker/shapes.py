"""The request shapes shoal reads, with SageMaker's field names (`ModelName`, `ProductionVariants`, ...).

AWS's constraints on them are checked before, from botocore's service model (validate.py); these models
give the operations typed access to what they use. Members shoal does not use are kept as sent where a
Describe shows them (models and endpoint configurations are stored as they came).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_pascal


class Shape(BaseModel):
    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True, extra="allow")


# -- models -------------------------------------------------------------------------------------------
class S3DataSource(Shape):
    s3_uri: str


class ModelDataSource(Shape):
    s3_data_source: S3DataSource | None = None


class Container(Shape):
    image: str | None = None
    model_data_url: str | None = None  # a local path (or file://) on shoal
    model_data_source: ModelDataSource | None = None
    environment: dict[str, str] = {}


class CreateModel(Shape):
    model_name: str
    primary_container: Container | None = None
    containers: list[Container] | None = None


class ModelName(Shape):
    model_name: str


# -- endpoint configurations and endpoints ----------------------------------------------------------------
class RoutingConfig(Shape):
    routing_strategy: str


class ProductionVariant(Shape):
    variant_name: str
    model_name: str | None = None
    instance_type: str | None = None
    initial_instance_count: int = 1
    container_startup_health_check_timeout_in_seconds: int | None = None
    routing_config: RoutingConfig | None = None
    serverless_config: dict[str, Any] | None = None


class CreateEndpointConfig(Shape):
    endpoint_config_name: str
    production_variants: list[ProductionVariant]


class EndpointConfigName(Shape):
    endpoint_config_name: str


class CreateEndpoint(Shape):
    endpoint_name: str
    endpoint_config_name: str


UpdateEndpoint = CreateEndpoint  # the same two members


class EndpointName(Shape):
    endpoint_name: str


# -- inference components -------------------------------------------------------------------------------
class ComputeResourceRequirements(Shape):
    number_of_cpu_cores_required: float | None = None
    number_of_accelerator_devices_required: float | None = None
    min_memory_required_in_mb: int
    max_memory_required_in_mb: int | None = None


class StartupParameters(Shape):
    model_data_download_timeout_in_seconds: int | None = None
    container_startup_health_check_timeout_in_seconds: int | None = None


class ContainerSpecification(Shape):
    image: str | None = None
    artifact_url: str | None = None
    environment: dict[str, str] = {}


class Specification(Shape):
    model_name: str | None = None
    container: ContainerSpecification | None = None
    startup_parameters: StartupParameters | None = None
    compute_resource_requirements: ComputeResourceRequirements | None = None
    base_inference_component_name: str | None = None


class RuntimeConfig(Shape):
    copy_count: int


class CreateInferenceComponent(Shape):
    inference_component_name: str
    endpoint_name: str
    variant_name: str | None = None
    specification: Specification | None = None
    runtime_config: RuntimeConfig | None = None


class CapacitySize(Shape):
    type: Literal["COPY_COUNT", "CAPACITY_PERCENT"]
    value: int


class RollingUpdatePolicy(Shape):
    maximum_batch_size: CapacitySize
    wait_interval_in_seconds: int
    rollback_maximum_batch_size: CapacitySize | None = None


class DeploymentConfig(Shape):
    rolling_update_policy: RollingUpdatePolicy


class UpdateInferenceComponent(Shape):
    inference_component_name: str
    specification: Specification | None = None
    runtime_config: RuntimeConfig | None = None
    deployment_config: DeploymentConfig | None = None


class UpdateRuntimeConfig(Shape):
    inference_component_name: str
    desired_runtime_config: RuntimeConfig


class InferenceComponentName(Shape):
    inference_component_name: str


# -- lists --------------------------------------------------------------------------------------------------
class ListRequest(Shape):
    """Every List* filter shoal serves; each operation's model says which it takes."""

    sort_by: str = "CreationTime"
    sort_order: Literal["Ascending", "Descending"] = "Descending"
    next_token: str | None = None
    max_results: int = 10
    name_contains: str | None = None
    creation_time_before: datetime | None = None
    creation_time_after: datetime | None = None
    last_modified_time_before: datetime | None = None
    last_modified_time_after: datetime | None = None
    status_equals: str | None = None
    endpoint_name_equals: str | None = None
    variant_name_equals: str | None = None
