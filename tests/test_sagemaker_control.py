"""SageMaker's control plane on a real `shoal server`, through boto3's own `sagemaker` client: every operation,
good and bad input (error text in AWS's words, tested exactly), waiters, shoal's API seeing the same resources,
rolling updates under load with real engines on the real model."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

import boto3
import botocore.config
import httpx
import pytest
from botocore.exceptions import ClientError
from helpers import copy_info, server_process

from shoal.control.controller import BatchSize
from shoal.control.sagemaker.images import supported
from shoal.control.sagemaker.validate import service_model
from shoal.sdk import Model, ResourceRequirements, Session
from shoal.security.keys import Scope, append_key, new_key

TGI_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
             "2.0.1-tgi1.1.0-gpu-py39-cu118-ubuntu20.04")
LMI_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.28.0-lmi10.0.0-cu124"
GEMMA = {"HF_MODEL_ID": "gemma-3-270m", "MAX_TOTAL_TOKENS": "512", "HF_TOKEN": "hf_not_a_real_token"}
ACCOUNT_ARN = "arn:aws:sagemaker:us-east-1:000000000000"
ONE_COPY = {"NumberOfCpuCoresRequired": 1, "MinMemoryRequiredInMb": 1024}
BODY = json.dumps({"inputs": "The capital of France is", "parameters": {"max_new_tokens": 4}})
FAST = {"Delay": 1, "MaxAttempts": 120}  # waiter polling for tests (AWS's default is every 30 s)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sagemaker-state")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory holding a model file that is not a model: its copies fail at startup."""
    path = tmp_path_factory.mktemp("models")
    (path / "broken.gguf").write_bytes(b"GGUF" + bytes(60))  # the magic number, then nothing a loader can read
    return path


@pytest.fixture(scope="module")
def server(state_dir: Path, models_dir: Path) -> Iterator[str]:
    with server_process(state_dir, "--model-dir", str(models_dir)) as url:
        yield url


def _client(url: str, service: str):  # type: ignore[no-untyped-def]
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test", config=botocore.config.Config(retries={"max_attempts": 0}))


@pytest.fixture(scope="module")
def sm(server: str):  # type: ignore[no-untyped-def]
    return _client(server, "sagemaker")


@pytest.fixture(scope="module")
def runtime(server: str):  # type: ignore[no-untyped-def]
    return _client(server, "sagemaker-runtime")


def error(call: Callable[..., Any], **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value


def message(call: Callable[..., Any], **kwargs: Any) -> str:
    exc = error(call, **kwargs)
    assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return exc.response["Error"]["Message"]


def wait_for(sm, name: str, ok: Callable[[dict], bool], timeout: float = 90) -> dict:  # type: ignore[no-untyped-def]
    """Poll DescribeInferenceComponent until `ok(answer)`."""
    deadline = time.monotonic() + timeout
    while True:
        answer = sm.describe_inference_component(InferenceComponentName=name)
        if ok(answer):
            return answer
        assert time.monotonic() < deadline, f"{name} never got there: {answer}"
        time.sleep(0.2)


def gone(sm, name: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            sm.describe_inference_component(InferenceComponentName=name)
        except ClientError as exc:
            assert exc.response["Error"]["Message"] == f"Could not find inference component \"{name}\"."
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} still there after {timeout}s")


def endpoint(sm: Any, name: str, instance_type: str = "ml.g5.12xlarge", **variant: Any) -> None:
    sm.create_endpoint_config(EndpointConfigName=f"{name}-config", ProductionVariants=[
        {"VariantName": "AllTraffic", "InstanceType": instance_type, "InitialInstanceCount": 1, **variant}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config")
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)


def remove(sm, name: str, components: tuple[str, ...] = ()) -> None:  # type: ignore[no-untyped-def]
    for component in components:
        sm.delete_inference_component(InferenceComponentName=component)
        gone(sm, component)
    sm.delete_endpoint(EndpointName=name)
    sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig=FAST)
    sm.delete_endpoint_config(EndpointConfigName=f"{name}-config")


# -- models --------------------------------------------------------------------------------------------------------
def test_models(sm, state_dir: Path) -> None:  # type: ignore[no-untyped-def]
    answer = sm.create_model(ModelName="Gemma-A", ExecutionRoleArn="arn:aws:iam::000000000000:role/shoal",
                             PrimaryContainer={"Image": TGI_IMAGE, "Environment": GEMMA})
    assert answer["ModelArn"] == f"{ACCOUNT_ARN}:model/gemma-a"  # AWS's ARNs spell names in lower case
    assert answer["ResponseMetadata"]["RequestId"] and answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    sm.create_model(ModelName="gemma-b", Containers=[{"Image": TGI_IMAGE, "ModelDataUrl": "gemma-3-270m"}])
    described = sm.describe_model(ModelName="Gemma-A")
    assert described["PrimaryContainer"]["Environment"] == {**GEMMA, "HF_TOKEN": "***"}  # secrets are never shown
    assert described["ExecutionRoleArn"].endswith(":role/shoal") and described["CreationTime"].year >= 2024
    assert sm.describe_model(ModelName="gemma-b")["Containers"][0]["ModelDataUrl"] == "gemma-3-270m"

    names = [m["ModelName"] for m in sm.list_models(SortBy="Name", SortOrder="Ascending")["Models"]]
    assert names == ["Gemma-A", "gemma-b"]
    page = sm.list_models(MaxResults=1, SortBy="Name", SortOrder="Ascending")
    assert [m["ModelName"] for m in page["Models"]] == ["Gemma-A"]
    assert [m["ModelName"] for m in sm.list_models(NextToken=page["NextToken"], MaxResults=1, SortBy="Name",
                                                   SortOrder="Ascending")["Models"]] == ["gemma-b"]
    assert [m["ModelName"] for m in sm.list_models(NameContains="-b")["Models"]] == ["gemma-b"]

    assert message(sm.create_model, ModelName="gemma-b", PrimaryContainer={"Image": TGI_IMAGE}) == \
        f"Cannot create already existing model \"{ACCOUNT_ARN}:model/gemma-b\"."
    sm.delete_model(ModelName="gemma-b")
    assert message(sm.describe_model, ModelName="gemma-b") == "Could not find model \"gemma-b\"."
    assert message(sm.delete_model, ModelName="gemma-b") == "Could not find model \"gemma-b\"."
    sm.delete_model(ModelName="Gemma-A")
    assert "hf_not_a_real_token" not in "".join(p.read_text() for p in state_dir.rglob("*.log"))


def test_models_shoal_cannot_run_are_refused_saying_why(sm) -> None:  # type: ignore[no-untyped-def]
    def create(**container: Any) -> str:
        return message(sm.create_model, ModelName="nope", PrimaryContainer=container)

    assert create(Image=TGI_IMAGE, ModelDataUrl="s3://bucket/model.tar.gz") == (
        "PrimaryContainer.ModelDataUrl 's3://bucket/model.tar.gz' is not on this machine: shoal reads model data from "
        "local paths (a path or file:// URL under the server's model directories), never from S3 or the web; copy "
        "the model there, or set Environment HF_MODEL_ID to a model shoal knows")
    assert create(Image="nginx:latest", Environment=GEMMA) == \
        f"Image 'nginx:latest' is not one shoal can run. Supported: {supported()}."
    assert "huggingface-pytorch-tgi-inference" in supported() and "djl-inference" in supported()
    assert create(Image=LMI_IMAGE, Environment=GEMMA) == (
        f"Image '{LMI_IMAGE}' runs on vLLM, which is not installed on this server (pip install vllm, on a machine "
        f"with NVIDIA GPUs); Hugging Face LLM (TGI) images run on shoal's built-in engine everywhere.")
    assert create(Image=TGI_IMAGE) == ("PrimaryContainer names no model: set Environment HF_MODEL_ID (a model "
                                       "shoal knows, e.g. gemma-3-270m, or a local .gguf path) or ModelDataUrl "
                                       "(a local path)")
    assert create(Environment=GEMMA).startswith("PrimaryContainer.Image is required: shoal picks the engine from it.")
    assert create(Image=TGI_IMAGE, Environment={**GEMMA, "LD_PRELOAD": "/tmp/x.so"}).startswith(
        "Environment may not set LD_PRELOAD")
    assert message(sm.create_model, ModelName="two", Containers=[{"Image": TGI_IMAGE}] * 2) == \
        "shoal runs one container per model; Containers has 2 (inference pipelines are not supported)"
    assert message(sm.create_model, ModelName="bad_name", PrimaryContainer={"Image": TGI_IMAGE}) == (
        "1 validation error detected: Value 'bad_name' at 'modelName' failed to satisfy constraint: Member must "
        "satisfy regular expression pattern: ^[a-zA-Z0-9]([\\-a-zA-Z0-9]*[a-zA-Z0-9])?")
    assert sm.list_models()["Models"] == []


# -- endpoint configurations and endpoints ------------------------------------------------------------------------
def test_endpoint_configs(sm) -> None:  # type: ignore[no-untyped-def]
    variant = {"VariantName": "AllTraffic", "InstanceType": "ml.g5.12xlarge", "InitialInstanceCount": 1,
               "ContainerStartupHealthCheckTimeoutInSeconds": 300, "RoutingConfig": {"RoutingStrategy": "RANDOM"},
               "ManagedInstanceScaling": {"Status": "ENABLED", "MinInstanceCount": 1, "MaxInstanceCount": 2}}
    answer = sm.create_endpoint_config(EndpointConfigName="cfg", ProductionVariants=[variant])
    assert answer["EndpointConfigArn"] == f"{ACCOUNT_ARN}:endpoint-config/cfg"
    described = sm.describe_endpoint_config(EndpointConfigName="cfg")
    assert described["ProductionVariants"] == [variant] and described["CreationTime"].year >= 2024
    assert [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]] == ["cfg"]
    assert message(sm.create_endpoint_config, EndpointConfigName="cfg", ProductionVariants=[variant]) == \
        f"Cannot create already existing endpoint configuration \"{ACCOUNT_ARN}:endpoint-config/cfg\"."

    def refused(**changes: Any) -> str:
        return message(sm.create_endpoint_config, EndpointConfigName="bad", ProductionVariants=[{**variant, **changes}])

    assert refused(InstanceType="ml.nope.xlarge").startswith("unknown instance type 'ml.nope.xlarge'; known: local, "
                                                             "ml.p4d.24xlarge")
    assert refused(RoutingConfig={"RoutingStrategy": "FASTEST"}) == (
        "1 validation error detected: Value 'FASTEST' at 'productionVariants.1.member.routingConfig.routingStrategy' "
        "failed to satisfy constraint: Member must satisfy enum value set: [LEAST_OUTSTANDING_REQUESTS, RANDOM, "
        "ROUND_ROBIN, POWER_OF_TWO, PREFIX_AFFINITY, ADAPTER_AFFINITY]")
    assert refused(ModelName="gemma").startswith("shoal serves inference-component-based endpoints")
    assert refused(ContainerStartupHealthCheckTimeoutInSeconds=5000) == (  # boto3 checks minimums, AWS maximums
        "1 validation error detected: Value 5000 at 'productionVariants.1.member.containerStartupHealthCheckTimeoutIn"
        "Seconds' failed to satisfy constraint: Member must have value less than or equal to 3600")
    assert message(sm.create_endpoint_config, EndpointConfigName="bad", ProductionVariants=[
        variant, {**variant, "VariantName": "Other"}]) == "shoal endpoints have one production variant; " \
                                                         "ProductionVariants has 2"
    sm.delete_endpoint_config(EndpointConfigName="cfg")
    assert message(sm.describe_endpoint_config, EndpointConfigName="cfg") == \
        "Could not find endpoint configuration \"cfg\"."


def test_endpoints_and_waiters(sm, server: str) -> None:  # type: ignore[no-untyped-def]
    variant = {"VariantName": "Main", "InstanceType": "ml.g5.12xlarge", "InitialInstanceCount": 1,
               "ManagedInstanceScaling": {"Status": "ENABLED", "MaxInstanceCount": 2}}
    sm.create_endpoint_config(EndpointConfigName="ep-one", ProductionVariants=[variant])
    sm.create_endpoint_config(EndpointConfigName="ep-two", ProductionVariants=[
        {**variant, "InitialInstanceCount": 2, "RoutingConfig": {"RoutingStrategy": "RANDOM"}}])
    sm.create_endpoint_config(EndpointConfigName="ep-huge",
                              ProductionVariants=[{**variant, "InitialInstanceCount": 65}])
    assert sm.create_endpoint(EndpointName="ep", EndpointConfigName="ep-one")["EndpointArn"] == \
        f"{ACCOUNT_ARN}:endpoint/ep"
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] in ("Creating", "InService")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="ep", WaiterConfig=FAST)
    described = sm.describe_endpoint(EndpointName="ep")
    assert described["EndpointConfigName"] == "ep-one"
    assert described["ProductionVariants"] == [{
        "VariantName": "Main", "CurrentWeight": 1.0, "DesiredWeight": 1.0, "CurrentInstanceCount": 1,
        "DesiredInstanceCount": 1, "RoutingConfig": {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"},
        "ManagedInstanceScaling": {"Status": "ENABLED", "MaxInstanceCount": 2}}]
    assert described["CreationTime"] <= described["LastModifiedTime"]
    assert [e["EndpointName"] for e in sm.list_endpoints(StatusEquals="InService")["Endpoints"]] == ["ep"]
    assert sm.list_endpoints(StatusEquals="Failed")["Endpoints"] == []
    # the same endpoint, as shoal's own API sees it
    assert httpx.get(f"{server}/api/endpoints/ep").json()["spec"]["instance_type"] == "ml.g5.12xlarge"

    sm.update_endpoint(EndpointName="ep", EndpointConfigName="ep-two")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="ep", WaiterConfig=FAST)
    described = sm.describe_endpoint(EndpointName="ep")
    assert described["EndpointConfigName"] == "ep-two"
    assert described["ProductionVariants"][0]["DesiredInstanceCount"] == 2
    assert described["ProductionVariants"][0]["RoutingConfig"] == {"RoutingStrategy": "RANDOM"}

    assert message(sm.create_endpoint, EndpointName="ep", EndpointConfigName="ep-one") == \
        f"Cannot create already existing endpoint \"{ACCOUNT_ARN}:endpoint/ep\"."
    assert message(sm.create_endpoint, EndpointName="other", EndpointConfigName="missing") == \
        "Could not find endpoint configuration \"missing\"."
    exc = error(sm.create_endpoint, EndpointName="huge", EndpointConfigName="ep-huge")
    assert exc.response["Error"]["Code"] == "ResourceLimitExceeded"
    assert exc.response["Error"]["Message"] == (
        "The account-level service limit 'ml.g5.12xlarge for endpoint usage' is 64 Instances, with current "
        "utilization of 2 Instances and a request delta of 65 Instances. Please use AWS Service Quotas to request an "
        "increase for this quota.")
    assert message(sm.create_endpoint, EndpointName="bad_name", EndpointConfigName="ep-one") == (
        "1 validation error detected: Value 'bad_name' at 'endpointName' failed to satisfy constraint: Member must "
        "satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")

    sm.delete_endpoint(EndpointName="ep")
    sm.get_waiter("endpoint_deleted").wait(EndpointName="ep", WaiterConfig=FAST)
    assert message(sm.describe_endpoint, EndpointName="ep") == "Could not find endpoint \"ep\"."
    assert message(sm.delete_endpoint, EndpointName="ep") == "Could not find endpoint \"ep\"."
    for name in ("ep-one", "ep-two", "ep-huge"):
        sm.delete_endpoint_config(EndpointConfigName=name)
    waiter = sm.get_waiter("endpoint_in_service")  # a waiter on an endpoint that does not exist fails at once
    with pytest.raises(Exception, match="Matched expected service error code: ValidationException"):
        waiter.wait(EndpointName="ep", WaiterConfig=FAST)


# -- inference components -----------------------------------------------------------------------------------------
def test_inference_component_lifecycle(sm, runtime, server: str) -> None:  # type: ignore[no-untyped-def]
    sm.create_model(ModelName="gemma", PrimaryContainer={"Image": TGI_IMAGE, "Environment": GEMMA})
    endpoint(sm, "life", ContainerStartupHealthCheckTimeoutInSeconds=120)
    answer = sm.create_inference_component(
        InferenceComponentName="gemma-ic", EndpointName="life", VariantName="AllTraffic",
        Specification={"ModelName": "gemma", "ComputeResourceRequirements": ONE_COPY}, RuntimeConfig={"CopyCount": 1})
    assert answer["InferenceComponentArn"] == f"{ACCOUNT_ARN}:inference-component/gemma-ic"
    sm.create_inference_component(  # a component of its own container, no copies yet
        InferenceComponentName="idle", EndpointName="life",
        Specification={"Container": {"Image": TGI_IMAGE, "Environment": GEMMA}, "ComputeResourceRequirements": {
            "NumberOfCpuCoresRequired": 1, "MinMemoryRequiredInMb": 512, "MaxMemoryRequiredInMb": 2048},
            "StartupParameters": {"ContainerStartupHealthCheckTimeoutInSeconds": 90}}, RuntimeConfig={"CopyCount": 0})
    described = wait_for(sm, "gemma-ic", lambda d: d["InferenceComponentStatus"] == "InService")
    assert described["RuntimeConfig"] == {"DesiredCopyCount": 1, "CurrentCopyCount": 1}
    assert described["Specification"] == {
        "ModelName": "gemma", "StartupParameters": {"ContainerStartupHealthCheckTimeoutInSeconds": 120},
        "ComputeResourceRequirements": {"NumberOfCpuCoresRequired": 1.0, "MinMemoryRequiredInMb": 1024}}
    assert (described["EndpointName"], described["VariantName"]) == ("life", "AllTraffic")
    assert described["EndpointArn"] == f"{ACCOUNT_ARN}:endpoint/life" and "FailureReason" not in described
    idle = sm.describe_inference_component(InferenceComponentName="idle")["Specification"]
    assert idle["Container"]["DeployedImage"]["SpecifiedImage"] == TGI_IMAGE
    assert idle["Container"]["Environment"]["HF_TOKEN"] == "***"
    assert idle["ComputeResourceRequirements"]["MaxMemoryRequiredInMb"] == 2048

    def listed(**filters: Any) -> list[str]:
        return [c["InferenceComponentName"] for c in sm.list_inference_components(**filters)["InferenceComponents"]]

    assert listed(EndpointNameEquals="life", SortBy="Name", SortOrder="Ascending") == ["gemma-ic", "idle"]
    assert listed(NameContains="GEMMA") == ["gemma-ic"] and listed(VariantNameEquals="Other") == []
    assert listed(StatusEquals="InService", SortBy="CreationTime", SortOrder="Descending") == ["idle", "gemma-ic"]
    first = sm.list_inference_components(MaxResults=1, SortBy="Name", SortOrder="Ascending")
    assert [c["InferenceComponentName"] for c in first["InferenceComponents"]] == ["gemma-ic"]
    assert listed(MaxResults=1, NextToken=first["NextToken"], SortBy="Name", SortOrder="Ascending") == ["idle"]
    pages = sm.get_paginator("list_inference_components").paginate(PaginationConfig={"PageSize": 1})
    assert sorted(c["InferenceComponentName"] for page in pages for c in page["InferenceComponents"]) == \
        ["gemma-ic", "idle"]

    answer = runtime.invoke_endpoint(EndpointName="life", InferenceComponentName="gemma-ic", Body=BODY,
                                     ContentType="application/json")
    assert json.loads(answer["Body"].read())[0]["generated_text"]

    sm.update_inference_component_runtime_config(InferenceComponentName="gemma-ic",
                                                 DesiredRuntimeConfig={"CopyCount": 2})
    assert sm.describe_inference_component(InferenceComponentName="gemma-ic")["RuntimeConfig"]["DesiredCopyCount"] == 2
    wait_for(sm, "gemma-ic", lambda d: d["RuntimeConfig"]["CurrentCopyCount"] == 2
             and d["InferenceComponentStatus"] == "InService")

    assert message(sm.delete_endpoint, EndpointName="life") == (
        "Cannot delete endpoint with inference component associated. Please delete inference component and try it "
        "again.")
    assert message(sm.create_inference_component, InferenceComponentName="gemma-ic", EndpointName="life",
                   Specification={"ModelName": "gemma", "ComputeResourceRequirements": ONE_COPY},
                   RuntimeConfig={"CopyCount": 1}) == \
        f"Cannot create already existing inference component \"{ACCOUNT_ARN}:inference-component/gemma-ic\"."
    sm.delete_inference_component(InferenceComponentName="gemma-ic")  # answers at once, deletes in the background
    assert sm.describe_inference_component(InferenceComponentName="gemma-ic")["InferenceComponentStatus"] in \
        ("Deleting", "InService")
    gone(sm, "gemma-ic")
    assert message(sm.delete_inference_component, InferenceComponentName="gemma-ic") == \
        "Could not find inference component \"gemma-ic\"."
    remove(sm, "life", ("idle",))
    sm.delete_model(ModelName="gemma")


def test_bad_inference_components_are_refused_saying_why(sm) -> None:  # type: ignore[no-untyped-def]
    sm.create_model(ModelName="small", PrimaryContainer={"Image": TGI_IMAGE, "Environment": GEMMA})
    endpoint(sm, "refusals")

    def create(spec: dict, copies: int = 1, **extra: Any) -> str:
        return message(sm.create_inference_component, InferenceComponentName="nope", EndpointName="refusals",
                       Specification=spec, RuntimeConfig={"CopyCount": copies}, **extra)

    gpu = {"NumberOfAcceleratorDevicesRequired": 1, "NumberOfCpuCoresRequired": 1, "MinMemoryRequiredInMb": 1024}
    assert create({"ModelName": "small", "ComputeResourceRequirements": gpu}, copies=5) == (
        "copy 5 of nope does not fit: it needs 1 accelerator(s); 4 in all, 0 free on ml.g5.12xlarge x1; taken by "
        "nope (4 copies)")
    assert create({"ModelName": "missing", "ComputeResourceRequirements": ONE_COPY}) == \
        "Could not find model \"missing\"."
    assert create({"ModelName": "small", "ComputeResourceRequirements": ONE_COPY}, VariantName="Other") == \
        "Could not find variant \"Other\" in endpoint \"refusals\"."
    assert message(sm.create_inference_component, InferenceComponentName="nope", EndpointName="missing",
                   Specification={"ModelName": "small", "ComputeResourceRequirements": ONE_COPY},
                   RuntimeConfig={"CopyCount": 1}) == "Could not find endpoint \"missing\"."
    assert create({"Container": {"Image": TGI_IMAGE, "Environment": {**GEMMA, "MAX_INPUT_LENGTH": "600"}},
                   "ComputeResourceRequirements": ONE_COPY}) == \
        "MAX_INPUT_LENGTH must be < MAX_TOTAL_TOKENS. Given: 600 and 512"
    assert create({"Container": {"Image": TGI_IMAGE, "Environment": {**GEMMA, "SHOAL_PREFIX_AFFINITY_BOUND": "two"}},
                   "ComputeResourceRequirements": ONE_COPY}) == \
        "SHOAL_PREFIX_AFFINITY_BOUND must be a whole number, got 'two'"
    assert create({"Container": {"Image": TGI_IMAGE, "Environment": {"HF_MODEL_ID": "meta-llama/Llama-2-13b-chat-hf"}},
                   "ComputeResourceRequirements": ONE_COPY}) == (
        "Model 'meta-llama/Llama-2-13b-chat-hf' is not on this machine and shoal does not download weights at run "
        "time. Use a local .gguf path or a registered model (gemma-3-270m).")
    assert create({"ModelName": "small", "ComputeResourceRequirements": {**ONE_COPY,
                                                                          "NumberOfAcceleratorDevicesRequired": 1.5}}) \
        == "NumberOfAcceleratorDevicesRequired must be a whole number: shoal gives each copy whole accelerators"
    assert create({"ModelName": "small", "ComputeResourceRequirements": ONE_COPY,
                   "StartupParameters": {"ContainerStartupHealthCheckTimeoutInSeconds": 4000}}) == (
        "1 validation error detected: Value 4000 at 'specification.startupParameters.containerStartupHealthCheck"
        "TimeoutInSeconds' failed to satisfy constraint: Member must have value less than or equal to 3600")
    assert message(sm.describe_inference_component, InferenceComponentName="nope") == \
        "Could not find inference component \"nope\"."
    assert message(sm.update_inference_component, InferenceComponentName="nope",
                   RuntimeConfig={"CopyCount": 1}) == "Could not find inference component \"nope\"."
    assert sm.list_inference_components(EndpointNameEquals="refusals")["InferenceComponents"] == []
    remove(sm, "refusals")
    sm.delete_model(ModelName="small")


def test_a_copy_that_cannot_start_fails_with_a_reason(sm, models_dir: Path) -> None:  # type: ignore[no-untyped-def]
    endpoint(sm, "broken")
    sm.create_inference_component(
        InferenceComponentName="broken", EndpointName="broken", RuntimeConfig={"CopyCount": 1}, Specification={
            "Container": {"Image": TGI_IMAGE, "ArtifactUrl": f"file://{models_dir / 'broken.gguf'}"},
            "ComputeResourceRequirements": ONE_COPY})
    described = wait_for(sm, "broken", lambda d: d["InferenceComponentStatus"] == "Failed")
    assert described["FailureReason"].startswith("broken-0: engine exited with code")
    assert described["Specification"]["Container"]["ArtifactUrl"] == f"file://{models_dir / 'broken.gguf'}"
    assert [c["InferenceComponentName"] for c in sm.list_inference_components(
        StatusEquals="Failed")["InferenceComponents"]] == ["broken"]
    remove(sm, "broken", ("broken",))


def test_one_source_of_truth_with_shoals_own_api(sm, server: str) -> None:  # type: ignore[no-untyped-def]
    session = Session(server)
    Model("gemma-3-270m", name="from-shoal", env={"HF_TOKEN": "hf_x"}, session=session).deploy(
        "shared", "ml.g5.12xlarge", resources=ResourceRequirements(requests={"copies": 0, "num_cpus": 1}), wait=False)
    assert "shared" in [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]]
    described = sm.describe_inference_component(InferenceComponentName="from-shoal")
    assert described["Specification"]["Container"]["DeployedImage"]["SpecifiedImage"] == "shoal/shoal"
    assert described["Specification"]["Container"]["Environment"] == {"HF_TOKEN": "***"}
    assert (described["VariantName"], described["InferenceComponentStatus"]) == ("AllTraffic", "InService")
    sm.create_inference_component(InferenceComponentName="from-sagemaker", EndpointName="shared", Specification={
        "Container": {"Image": "shoal/llama-server", "Environment": {"HF_MODEL_ID": "gemma-3-270m"}},
        "ComputeResourceRequirements": ONE_COPY}, RuntimeConfig={"CopyCount": 0})
    seen = {c["spec"]["name"]: c for c in session.components("shared")}
    assert seen["from-sagemaker"]["spec"]["engine"] == "llama-server"
    assert seen["from-sagemaker"]["spec"]["model_id"] == "gemma-3-270m"
    session.call("DELETE", "/api/inference-components/from-shoal")
    gone(sm, "from-shoal")
    sm.delete_inference_component(InferenceComponentName="from-sagemaker")
    gone(sm, "from-sagemaker")
    session.call("DELETE", "/api/endpoints/shared")
    assert message(sm.describe_endpoint, EndpointName="shared") == "Could not find endpoint \"shared\"."


# -- the protocol ---------------------------------------------------------------------------------------------------
def test_json_protocol_and_the_doors_beside_it(server: str) -> None:
    def post(target: str | None, body: bytes) -> httpx.Response:
        headers = {"Content-Type": "application/x-amz-json-1.1"} | ({"X-Amz-Target": target} if target else {})
        return httpx.post(f"{server}/", content=body, headers=headers)

    answer = post("SageMaker.ListEndpoints", b"{}")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/x-amz-json-1.1"
    assert answer.headers["x-amzn-RequestId"] and answer.json()["Endpoints"] == []
    answer = post("SageMaker.DescribeEndpoint", b'{"EndpointName": "ghost"}')
    assert answer.status_code == 400
    assert answer.json() == {"__type": "ValidationException", "message": "Could not find endpoint \"ghost\"."}
    assert post("SageMaker.DescribeEndpoint", b"{}").json()["message"] == (
        "1 validation error detected: Value null at 'endpointName' failed to satisfy constraint: Member must not be "
        "null")
    assert post("SageMaker.CreateInferenceComponent", json.dumps({
        "InferenceComponentName": "x", "EndpointName": "y", "RuntimeConfig": {"CopyCount": "2"}}).encode()).json() == {
        "__type": "SerializationException", "message": "STRING_VALUE can not be converted to an Integer"}
    assert post("SageMaker.ListEndpoints", b"not json").json()["__type"] == "SerializationException"
    unknown = post("SageMaker.CreateTrainingJob", b"{}").json()
    assert unknown["__type"] == "UnknownOperationException" and "CreateInferenceComponent" in unknown["message"]
    # Application Auto Scaling answers behind the same door
    aas = _client(server, "application-autoscaling")
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    # without the header, POST / is TGI's route (no component deployed: it says so in TGI's words)
    assert post(None, b'{"inputs": "hi"}').json()["error_type"] == "validation"


def test_a_server_with_keys_takes_sigv4_from_its_keys(tmp_path: Path) -> None:
    """boto3 signs with a key's id and secret; an invoke-scope key cannot reach the control plane."""
    path = tmp_path / "keys.json"
    admin, invoke = new_key("ops", Scope.ADMIN), new_key("app", Scope.INVOKE)
    append_key(path, admin)
    append_key(path, invoke)

    def client(url: str, key, secret: str | None = None):  # type: ignore[no-untyped-def]
        return boto3.client("sagemaker", endpoint_url=url, region_name="eu-west-1",
                            aws_access_key_id=key.access_key_id,
                            aws_secret_access_key=secret or key.secret.get_secret_value(),
                            config=botocore.config.Config(retries={"max_attempts": 0}))

    with server_process(tmp_path / "state", "--api-keys", str(path)) as url:
        sm = client(url, admin)
        arn_ = sm.create_endpoint_config(EndpointConfigName="keyed", ProductionVariants=[
            {"VariantName": "AllTraffic", "InstanceType": "ml.g5.12xlarge"}])["EndpointConfigArn"]
        assert arn_ == "arn:aws:sagemaker:eu-west-1:000000000000:endpoint-config/keyed"  # the caller's region
        denied = error(client(url, invoke).list_endpoints).response["Error"]
        assert denied["Code"] == "AccessDeniedException"
        assert error(client(url, admin, "wrong-secret").list_endpoints).response["Error"]["Code"] == \
            "InvalidSignatureException"


def test_every_operation_the_issue_names_is_served() -> None:
    from shoal.control.sagemaker import OPERATIONS

    model = service_model("sagemaker")
    assert set(OPERATIONS) <= set(model.operation_names)
    assert {"CreateModel", "DescribeModel", "ListModels", "DeleteModel", "CreateEndpointConfig",
            "DescribeEndpointConfig", "ListEndpointConfigs", "DeleteEndpointConfig", "CreateEndpoint",
            "DescribeEndpoint", "ListEndpoints", "UpdateEndpoint", "DeleteEndpoint", "CreateInferenceComponent",
            "DescribeInferenceComponent", "ListInferenceComponents", "UpdateInferenceComponent",
            "UpdateInferenceComponentRuntimeConfig", "DeleteInferenceComponent"} == set(OPERATIONS)


# -- rolling updates ------------------------------------------------------------------------------------------------
class Load:
    """Requests through the SageMaker runtime in a few threads until stopped; every status code kept."""

    def __init__(self, server: str, endpoint_name: str, component: str, threads: int = 2) -> None:
        self.codes: list[int] = []
        self._stop = threading.Event()
        self._url = f"{server}/endpoints/{endpoint_name}/invocations"
        self._headers = {"X-Amzn-SageMaker-Inference-Component": component, "Content-Type": "application/json"}
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(timeout=120) as client:
            while not self._stop.is_set():
                self.codes.append(client.post(self._url, content=BODY, headers=self._headers).status_code)

    def __enter__(self) -> Self:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


def _copies(server: str, name: str) -> list[dict]:
    return httpx.get(f"{server}/api/inference-components/{name}").json()["copies"]


ROLLING = {"RollingUpdatePolicy": {"MaximumBatchSize": {"Type": "COPY_COUNT", "Value": 1}, "WaitIntervalInSeconds": 1,
                                   "RollbackMaximumBatchSize": {"Type": "COPY_COUNT", "Value": 1}}}


def test_batch_sizes() -> None:
    assert [BatchSize(copies=2).of(8), BatchSize(percent=50).of(8), BatchSize(percent=10).of(8)] == [2, 4, 1]


@pytest.mark.slow
def test_rolling_update_brings_new_copies_up_first_and_fails_no_request(sm: Any, server: str) -> None:
    endpoint(sm, "rolling")
    spec = {"Container": {"Image": TGI_IMAGE, "Environment": GEMMA}, "ComputeResourceRequirements": ONE_COPY}
    sm.create_inference_component(InferenceComponentName="roll", EndpointName="rolling", Specification=spec,
                                  RuntimeConfig={"CopyCount": 2})
    wait_for(sm, "roll", lambda d: d["InferenceComponentStatus"] == "InService")
    before = {c["pid"] for c in _copies(server, "roll")}
    serving: list[int] = []
    with Load(server, "rolling", "roll") as load:
        sm.update_inference_component(
            InferenceComponentName="roll", DeploymentConfig=ROLLING, Specification={
                **spec, "Container": {"Image": TGI_IMAGE, "Environment": {**GEMMA, "MAX_TOTAL_TOKENS": "768"}}})
        described = wait_for(sm, "roll", lambda d: serving.append(
            sum(c["status"] == "InService" for c in _copies(server, "roll"))) or
            d["InferenceComponentStatus"] == "InService", timeout=180)
    assert load.codes and set(load.codes) == {200}, f"{len(load.codes)} requests, codes {set(load.codes)}"
    assert min(serving) >= 2, f"copies in service while rolling: {serving}"  # new copies up before old ones leave
    copies = _copies(server, "roll")
    assert len(copies) == 2 and before.isdisjoint(c["pid"] for c in copies)
    assert all(copy_info(c)["max_total_tokens"] == 768 for c in copies)
    assert described["LastDeploymentConfig"] == ROLLING and "FailureReason" not in described
    assert described["Specification"]["Container"]["Environment"]["MAX_TOTAL_TOKENS"] == "768"
    remove(sm, "rolling", ("roll",))


@pytest.mark.slow
def test_a_failed_roll_rolls_back_and_fails_no_request(sm: Any, server: str, models_dir: Path) -> None:
    endpoint(sm, "rollback")
    spec = {"Container": {"Image": TGI_IMAGE, "Environment": GEMMA}, "ComputeResourceRequirements": ONE_COPY}
    sm.create_inference_component(InferenceComponentName="steady", EndpointName="rollback", Specification=spec,
                                  RuntimeConfig={"CopyCount": 2})
    wait_for(sm, "steady", lambda d: d["InferenceComponentStatus"] == "InService")
    before = {c["pid"] for c in _copies(server, "steady")}
    with Load(server, "rollback", "steady") as load:
        sm.update_inference_component(InferenceComponentName="steady", DeploymentConfig=ROLLING, Specification={
            **spec, "Container": {"Image": TGI_IMAGE, "ArtifactUrl": str(models_dir / "broken.gguf")}})
        assert sm.describe_inference_component(InferenceComponentName="steady")["InferenceComponentStatus"] == \
            "Updating"
        assert message(sm.update_inference_component_runtime_config, InferenceComponentName="steady",
                       DesiredRuntimeConfig={"CopyCount": 3}) == \
            f"Cannot update in-progress inference component \"{ACCOUNT_ARN}:inference-component/steady\"."
        described = wait_for(sm, "steady", lambda d: d["InferenceComponentStatus"] != "Updating", timeout=180)
    assert described["InferenceComponentStatus"] == "InService"
    assert described["FailureReason"].startswith("the update was rolled back: steady-2: engine exited with code")
    assert {c["pid"] for c in _copies(server, "steady")} == before  # the old copies never left
    assert described["Specification"]["Container"]["Environment"]["HF_MODEL_ID"] == "gemma-3-270m"
    assert load.codes and set(load.codes) == {200}, f"{len(load.codes)} requests, codes {set(load.codes)}"
    remove(sm, "rollback", ("steady",))


@pytest.mark.slow
def test_an_endpoint_without_instances_fails_with_the_reason(tmp_path: Path) -> None:
    """On Ray, an endpoint's instances are the nodes that declare its type: with none, it is Failed, saying why."""
    with server_process(tmp_path, "--runtime", "ray", "--ray-address", "local") as url:
        sm = _client(url, "sagemaker")
        sm.create_endpoint_config(EndpointConfigName="nowhere-config", ProductionVariants=[
            {"VariantName": "AllTraffic", "InstanceType": "ml.p4d.24xlarge", "InitialInstanceCount": 1}])
        sm.create_endpoint(EndpointName="nowhere", EndpointConfigName="nowhere-config")
        with pytest.raises(Exception, match="Waiter encountered a terminal failure state: For expression "
                                            "\"EndpointStatus\" we matched expected path: \"Failed\""):
            sm.get_waiter("endpoint_in_service").wait(EndpointName="nowhere", WaiterConfig=FAST)
        described = sm.describe_endpoint(EndpointName="nowhere")
        assert described["FailureReason"].startswith("no Ray node declares the resource 'shoal:ml.p4d.24xlarge'")
        assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 0
        sm.delete_endpoint(EndpointName="nowhere")  # a Failed endpoint can be deleted
        sm.get_waiter("endpoint_deleted").wait(EndpointName="nowhere", WaiterConfig=FAST)
