"""Autoscaling with real engines over HTTP: scale from zero, out and in under load with no failed request,
placement limits, the CLI and SDK, SageMaker's metric names, and Application Auto Scaling's API (its
operations in process against a real controller, and through boto3)."""
from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import botocore.config
import httpx
import psutil
import pytest
from helpers import labelled_metric, server_process

from shoal.control.autoscaling import aas_api
from shoal.control.autoscaling.scaler import Autoscaler
from shoal.control.controller import Controller
from shoal.control.models import ComponentSpec, EndpointSpec
from shoal.control.sagemaker.protocol import AwsError
from shoal.control.store import StateStore
from shoal.gateway.admission import Admission
from shoal.runtime.local import LocalRuntime
from shoal.sdk import Model, Predictor, ResourceRequirements, Session, ShoalApiError

BODY = {"inputs": "The capital of France is", "parameters": {"max_new_tokens": 8}}
HALF = {"num_cpus": 0.5, "memory": 512}
CONCURRENCY = "SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution"
DIMENSION = "sagemaker:inference-component:DesiredCopyCount"


def _wait(what: Callable[[], object], timeout: float = 90, every: float = 0.25) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := what():
            return value
        time.sleep(every)
    raise AssertionError(f"not reached within {timeout}s")


# -- the gateway's queue at zero copies, alone -----------------------------------------------------------------
def test_a_request_at_zero_copies_waits_for_a_copy_then_is_admitted_or_gets_503() -> None:
    async def scenario() -> None:
        gate = Admission(max_queue=1, queue_timeout_s=30)
        waiting = asyncio.create_task(gate.acquire(0, cold_start_timeout_s=5))
        await asyncio.sleep(0.01)
        with pytest.raises(Exception, match="no copy is in service yet and 1 requests are already waiting") as full:
            await gate.acquire(0, cold_start_timeout_s=5)
        assert full.value.status == 503
        gate.wake(1)  # a copy came into service
        await waiting
        assert gate.in_flight == 1 and gate.queued == 0
        gate.release(1)
        with pytest.raises(Exception, match="no copy came into service within 0.05s") as late:
            await gate.acquire(0, cold_start_timeout_s=0.05)
        assert late.value.status == 503 and gate.queued == 0

    asyncio.run(scenario())


# -- Application Auto Scaling's operations, in process, on a real controller --------------------------------------
async def _scaler(state_dir: Path) -> Autoscaler:
    """A real controller (state in SQLite, local runtime) with one component at zero copies, and its autoscaler."""
    controller = Controller(StateStore(state_dir / "state.db"), LocalRuntime(), state_dir)
    controller.create_endpoint(EndpointSpec(name="ep"))
    controller.create_component(ComponentSpec(name="gemma", endpoint="ep", model_id="gemma-3-270m", copies=0))
    return Autoscaler(controller, controller.store)


@pytest.fixture
def scaler(tmp_path: Path) -> Autoscaler:
    return asyncio.run(_scaler(tmp_path))


def _key(name: str = "gemma") -> dict:
    return {"ServiceNamespace": "sagemaker", "ResourceId": f"inference-component/{name}",
            "ScalableDimension": DIMENSION}


def _error(scaler: Autoscaler, op: str, body: dict) -> AwsError:
    with pytest.raises(AwsError) as exc:
        aas_api.call(scaler, op, body)
    return exc.value


def test_register_put_describe_delete_deregister(scaler: Autoscaler) -> None:
    arn = aas_api.call(scaler, "RegisterScalableTarget", {**_key(), "MinCapacity": 0, "MaxCapacity": 4})
    assert arn["ScalableTargetARN"].startswith("arn:aws:application-autoscaling:")
    aas_api.call(scaler, "RegisterScalableTarget", {**_key(), "MaxCapacity": 3})  # an update keeps the minimum
    assert (scaler.get("gemma").min_copies, scaler.get("gemma").max_copies) == (0, 3)
    answer = aas_api.call(scaler, "PutScalingPolicy", {
        **_key(), "PolicyName": "conc", "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 4.0, "PredefinedMetricSpecification": {
            "PredefinedMetricType": CONCURRENCY}, "ScaleInCooldown": 60, "ScaleOutCooldown": 10}})
    assert answer["PolicyARN"].endswith(":resource/sagemaker/inference-component/gemma:policyName/conc")
    aas_api.call(scaler, "PutScalingPolicy", {**_key(), "PolicyName": "from-zero", "PolicyType": "StepScaling",
                                              "StepScalingPolicyConfiguration": {
                                                  "AdjustmentType": "ChangeInCapacity", "Cooldown": 60,
                                                  "StepAdjustments": [{"ScalingAdjustment": 2}]}})
    policy = scaler.get("gemma")
    assert policy.describe() == "0-3 copies, concurrency 4 per copy" and policy.from_zero == 2
    assert policy.tracking[0].scale_in_cooldown_s == 60
    targets = aas_api.call(scaler, "DescribeScalableTargets", {"ServiceNamespace": "sagemaker"})["ScalableTargets"]
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [
        ("inference-component/gemma", 0, 3)]
    assert aas_api.call(scaler, "DescribeScalableTargets", {"ServiceNamespace": "ecs"}) == {"ScalableTargets": []}
    policies = aas_api.call(scaler, "DescribeScalingPolicies", {"ServiceNamespace": "sagemaker",
                                                                "ResourceId": "inference-component/gemma"})
    assert {(p["PolicyName"], p["PolicyType"]) for p in policies["ScalingPolicies"]} == {
        ("conc", "TargetTrackingScaling"), ("from-zero", "StepScaling")}
    conc = next(p for p in policies["ScalingPolicies"] if p["PolicyName"] == "conc")
    assert conc["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 4.0
    aas_api.call(scaler, "DeleteScalingPolicy", {**_key(), "PolicyName": "from-zero"})
    assert _error(scaler, "DeleteScalingPolicy", {**_key(), "PolicyName": "from-zero"}).message == (
        "No scaling policy found for service namespace: sagemaker, resource ID: inference-component/gemma, "
        f"scalable dimension: {DIMENSION}, policy name: from-zero")
    aas_api.call(scaler, "DeregisterScalableTarget", _key())
    assert scaler.get("gemma") is None and scaler.store.scaling_policies() == []
    e = _error(scaler, "DeregisterScalableTarget", _key())
    assert e.code == "ObjectNotFoundException" and e.message.startswith("No scalable target found for service "
                                                                        "namespace: sagemaker")


def test_bad_input_in_aws_words(scaler: Autoscaler) -> None:
    def validation(op: str, body: dict) -> str:
        e = _error(scaler, op, body)
        assert (e.code, e.status) == ("ValidationException", 400), e.message
        return e.message

    assert validation("RegisterScalableTarget", {**_key(), "MinCapacity": 3, "MaxCapacity": 1}) == \
        "Maximum capacity cannot be less than minimum capacity"
    assert validation("RegisterScalableTarget", {**_key(), "MinCapacity": -1, "MaxCapacity": 1}) == \
        "Minimum capacity cannot be less than 0"
    assert validation("RegisterScalableTarget", {**_key(), "MaxCapacity": 1}) == "Minimum capacity must be specified"
    assert validation("RegisterScalableTarget", {**_key("nope"), "MinCapacity": 0, "MaxCapacity": 1}) == \
        "Could not find inference component \"nope\"."
    for resource in ("endpoint/ep/variant/AllTraffic", "inference-component/", "inference-component/a/b"):
        assert validation("RegisterScalableTarget", {**_key(), "ResourceId": resource, "MinCapacity": 0,
                                                     "MaxCapacity": 1}) == aas_api.UNSUPPORTED
    assert validation("RegisterScalableTarget", {**_key(), "ScalableDimension": "ecs:service:DesiredCount",
                                                 "MinCapacity": 0, "MaxCapacity": 1}) == aas_api.UNSUPPORTED
    message = validation("RegisterScalableTarget", {"ServiceNamespace": "nope", "ResourceId": "x"})
    assert message.startswith("2 validation errors detected: Value null at 'scalableDimension' failed to satisfy "
                              "constraint: Member must not be null; Value 'nope' at 'serviceNamespace' failed to "
                              "satisfy constraint: Member must satisfy enum value set: [ecs, ")
    policy = {**_key(), "PolicyName": "p", "PolicyType": "TargetTrackingScaling"}
    e = _error(scaler, "PutScalingPolicy", {**policy, "TargetTrackingScalingPolicyConfiguration": {
        "TargetValue": 4.0, "PredefinedMetricSpecification": {"PredefinedMetricType": CONCURRENCY}}})
    assert e.code == "ObjectNotFoundException"
    assert e.message == ("No scalable target registered for service namespace: sagemaker, resource ID: "
                         f"inference-component/gemma, scalable dimension: {DIMENSION}")
    aas_api.call(scaler, "RegisterScalableTarget", {**_key(), "MinCapacity": 0, "MaxCapacity": 2})

    def put(config: dict) -> str:
        return validation("PutScalingPolicy", {**policy, "TargetTrackingScalingPolicyConfiguration": config})

    assert put({"TargetValue": 0.0, "PredefinedMetricSpecification": {"PredefinedMetricType": CONCURRENCY}}) == (
        "1 validation error detected: Value '0.0' at 'targetTrackingScalingPolicyConfiguration.targetValue' failed "
        "to satisfy constraint: Member must have value greater than 0")
    assert put({"TargetValue": -2, "PredefinedMetricSpecification": {"PredefinedMetricType": CONCURRENCY}}) \
        .startswith("1 validation error detected: Value '-2.0'")
    assert put({"TargetValue": 4, "PredefinedMetricSpecification": {"PredefinedMetricType": "QueueDepth"}}).startswith(
        "1 validation error detected: Value 'QueueDepth' at 'targetTrackingScalingPolicyConfiguration."
        "predefinedMetricSpecification.predefinedMetricType' failed to satisfy constraint: Member must satisfy enum "
        "value set: [")
    assert put({"TargetValue": 50, "PredefinedMetricSpecification": {
        "PredefinedMetricType": "ECSServiceAverageCPUUtilization"}}).startswith(
        "The predefined metric type ECSServiceAverageCPUUtilization is not supported for the scalable dimension "
        f"{DIMENSION}")
    assert _error(scaler, "TagResource", {}).code == "UnknownOperationException"


# -- a shoal server with real engines -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with server_process(tmp_path_factory.mktemp("autoscaling"), "--queue-timeout", "60") as url:
        yield url


def _deploy(url: str, name: str, copies: int = 0, **resources: float) -> Predictor:
    return Model("gemma-3-270m", name=name, env={"MAX_TOTAL_TOKENS": "512"}, session=Session(url)).deploy(
        name, resources=ResourceRequirements(requests={"copies": copies, **(resources or HALF)}))


def _post(url: str, endpoint: str, body: dict = BODY, client: httpx.Client | None = None) -> httpx.Response:
    return (client or httpx).post(f"{url}/endpoints/{endpoint}/invocations", json=body, timeout=120,
                                  headers={"X-Amzn-SageMaker-Inference-Component": endpoint})


def test_scale_from_zero_serves_the_first_request_then_goes_back_to_zero(server: str) -> None:
    predictor = _deploy(server, "cold")
    try:
        state = predictor.autoscale(0, 1, target_concurrency=4, scale_in_cooldown=2, scale_out_cooldown=0)
        assert state["desired_copies"] == 0 and state["policy"]["min_copies"] == 0
        started = time.monotonic()
        r = _post(server, "cold")
        cold_start = time.monotonic() - started
        assert r.status_code == 200 and r.json()[0]["generated_text"], r.text
        first = predictor.autoscaling()["activities"][-1]
        assert (first["from_copies"], first["to_copies"]) == (0, 1)
        assert first["cause"] == "1 request waiting at 0 copies: 0 → 1 copy"
        assert first["status"] == "Successful" and "1 copy in service after" in first["message"]
        assert labelled_metric(server, "shoal_gateway_cold_start_wait_seconds_count")['component="cold"'] == 1
        assert cold_start < 120  # the number itself is measured in benchmarks/autoscale.sh
        back = _wait(lambda: (v := predictor.describe())["desired_copies"] == 0 and v["draining_copies"] == 0 and v)
        last = back["autoscaling"]["last_activity"]
        assert last["cause"] == "concurrency 0 per copy (peak over 2s) < target 4: 1 → 0 copies"
        assert _post(server, "cold").status_code == 200  # and again from zero
    finally:
        predictor.delete_endpoint(cascade=True)


@pytest.mark.slow
def test_load_up_then_down_adds_and_drains_copies_without_a_failed_request(server: str) -> None:
    predictor = _deploy(server, "wave", copies=1)
    codes: list[int] = []
    stops = [threading.Event() for _ in range(3)]

    def user(stop: threading.Event) -> None:
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                codes.append(_post(server, "wave", {**BODY, "parameters": {"max_new_tokens": 24}}, client).status_code)

    threads = [threading.Thread(target=user, args=(s,)) for s in stops]
    try:
        predictor.autoscale(0, 2, target_concurrency=1, scale_in_cooldown=3, scale_out_cooldown=0)
        for t in threads:
            t.start()
        _wait(lambda: predictor.describe()["current_copies"] == 2)
        out = next(a for a in predictor.autoscaling()["activities"] if a["to_copies"] == 2)
        assert re.fullmatch(r"concurrency [\d.]+ per copy > target 1: 1 → 2 copies( \(maximum 2\))?", out["cause"])
        stops[0].set(), stops[1].set()  # one user keeps going while a copy drains
        _wait(lambda: (v := predictor.describe())["desired_copies"] == 1 and v["draining_copies"] == 0)
        scale_in = predictor.autoscaling()["activities"][0]
        assert scale_in["cause"].endswith("< target 1: 2 → 1 copy") and scale_in["status"] == "Successful"
        stops[2].set()
        _wait(lambda: (v := predictor.describe())["desired_copies"] == 0 and v["draining_copies"] == 0)
    finally:
        for s in stops:
            s.set()
        for t in threads:
            if t.is_alive():
                t.join()
        predictor.delete_endpoint(cascade=True)
    assert codes and set(codes) == {200}, f"{len(codes)} requests: {codes.count(200)} succeeded, codes {set(codes)}"


def test_placement_limits_stop_scale_out_with_the_reason(server: str) -> None:
    half_machine = psutil.virtual_memory().total // (1 << 20) // 2 - 64  # two copies fit; the third does not
    predictor = _deploy(server, "full", copies=1, num_cpus=0.5, memory=half_machine)
    try:
        predictor.autoscale(3, 4, target_concurrency=4)
        activity = _wait(lambda: next((a for a in predictor.autoscaling()["activities"] if a["message"]), None))
        assert activity["cause"] == "below the minimum of 3 copies: 1 → 3 copies"
        assert activity["to_copies"] == 2 and activity["message"].startswith(
            f"2 of 3 copies: cannot place copy 3: it needs {half_machine} MB memory; ")
        assert "taken by full (2 copies)" in activity["message"]
        view = _wait(lambda: (v := predictor.describe())["current_copies"] == 2 and v)
        assert view["desired_copies"] == 2
        time.sleep(2.5)  # the scaler keeps trying each second, and says so once
        assert sum("cannot place copy 3" in (a["message"] or "") for a in predictor.autoscaling()["activities"]) == 1
    finally:
        predictor.delete_endpoint(cascade=True)


def test_shoal_api_refuses_bad_policies(server: str) -> None:
    predictor = _deploy(server, "strict")
    try:
        with pytest.raises(ShoalApiError, match="Maximum capacity cannot be less than minimum capacity"):
            predictor.autoscale(3, 1)
        with pytest.raises(ShoalApiError, match="TargetConcurrency: Input should be greater than 0"):
            predictor.autoscale(0, 1, target_concurrency=0)
        with pytest.raises(ShoalApiError, match="has no autoscaling policy") as none:
            predictor.autoscaling()
        assert none.value.status == 404
        with pytest.raises(ShoalApiError, match="Could not find inference component \"ghost\"") as ghost:
            Predictor("strict", "ghost", Session(server)).autoscale(0, 1)
        assert ghost.value.status == 404
        r = _post(server, "strict")  # zero copies and no policy: at once, as SageMaker words it
        assert r.status_code == 400 and r.headers["x-amzn-ErrorType"].startswith("ValidationError")
        assert r.json()["message"].startswith("Inference Component has no capacity to process this request.")
    finally:
        predictor.delete_endpoint(cascade=True)


def test_cli_autoscale_describe_ls_and_sagemaker_metrics(server: str) -> None:
    predictor = _deploy(server, "clied")

    def shoal(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "shoal.cli", *args, "--url", server], capture_output=True,
                              text=True, timeout=60, env={"COLUMNS": "250", "PATH": ""})
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    try:
        out = shoal("autoscale", "clied", "--min", "0", "--max", "1", "--target-concurrency", "3",
                    "--scale-in-cooldown", "600")
        assert "autoscaling 0-1 copies, concurrency 3 per copy (cooldowns: out 300s, in 600s)" in out
        assert _post(server, "clied").status_code == 200
        described = shoal("describe", "clied")
        assert "copies: 1/1 in service/desired" in described
        assert "last scaling: 1 request waiting at 0 copies: 0 → 1 copy (Successful" in described
        assert "1 request waiting at 0 copies: 0 → 1 copy (Successful" in shoal("ls")
        assert "1 request waiting at 0 copies" in shoal("autoscale", "clied")
        text = httpx.get(f"{server}/metrics").text
        labels = '{EndpointName="clied",InferenceComponentName="clied"}'
        for name in ("Invocations_total", "Invocation4XXErrors_total", "Invocation5XXErrors_total",
                     "InvocationModelErrors_total", "InvocationsPerCopy", "ConcurrentRequestsPerCopy",
                     "MemoryUtilizationNormalized", "DesiredCopyCount", "CurrentCopyCount", "ModelLatency_count",
                     "OverheadLatency_count"):
            assert f"{name}{labels}" in text, name
        assert labelled_metric(server, "Invocations_total")[labels[1:-1]] == 1
        assert labelled_metric(server, "DesiredCopyCount")[labels[1:-1]] == 1
        _wait(lambda: "CPUUtilizationNormalized" + labels in httpx.get(f"{server}/metrics").text, 10)
        assert "autoscaling off" in shoal("autoscale", "clied", "--off")
        assert predictor.describe()["autoscaling"] is None
    finally:
        predictor.delete_endpoint(cascade=True)


@pytest.mark.slow
def test_scale_from_zero_on_the_ray_runtime(tmp_path: Path) -> None:
    with server_process(tmp_path, "--runtime", "ray", "--ray-address", "local") as url:
        predictor = _deploy(url, "rayed")
        predictor.autoscale(0, 1, target_concurrency=4, scale_in_cooldown=2)
        r = _post(url, "rayed")
        assert r.status_code == 200 and r.json()[0]["generated_text"], r.text
        assert predictor.autoscaling()["activities"][0]["cause"] == "1 request waiting at 0 copies: 0 → 1 copy"
        _wait(lambda: (v := predictor.describe())["desired_copies"] == 0 and v["draining_copies"] == 0)
        assert _post(url, "rayed").status_code == 200


# -- boto3 application-autoscaling against the server ----------------------------------------------------------------
def _aas(url: str):  # type: ignore[no-untyped-def]
    return boto3.client("application-autoscaling", endpoint_url=url, region_name="eu-west-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=botocore.config.Config(retries={"max_attempts": 0}))


def test_boto3_application_autoscaling_end_to_end(server: str) -> None:
    predictor = _deploy(server, "boto")
    aas = _aas(server)
    key = {"ServiceNamespace": "sagemaker", "ResourceId": "inference-component/boto", "ScalableDimension": DIMENSION}
    try:
        with pytest.raises(aas.exceptions.ObjectNotFoundException, match="No scalable target registered for service "
                                                                         "namespace: sagemaker, resource ID: "
                                                                         "inference-component/boto"):
            aas.put_scaling_policy(PolicyName="p", PolicyType="TargetTrackingScaling", **key,
                                   TargetTrackingScalingPolicyConfiguration={"TargetValue": 4.0})
        arn = aas.register_scalable_target(**key, MinCapacity=0, MaxCapacity=1)["ScalableTargetARN"]
        assert arn.startswith("arn:aws:application-autoscaling:eu-west-1:000000000000:scalable-target/")
        tracking = {"TargetValue": 4.0, "PredefinedMetricSpecification": {"PredefinedMetricType": CONCURRENCY},
                    "ScaleInCooldown": 2, "ScaleOutCooldown": 0}
        aas.put_scaling_policy(PolicyName="conc", PolicyType="TargetTrackingScaling", **key,
                               TargetTrackingScalingPolicyConfiguration=tracking)
        aas.put_scaling_policy(PolicyName="from-zero", PolicyType="StepScaling", **key,  # SageMaker's recipe
                               StepScalingPolicyConfiguration={"AdjustmentType": "ChangeInCapacity",
                                                               "MetricAggregationType": "Maximum", "Cooldown": 60,
                                                               "StepAdjustments": [{"MetricIntervalLowerBound": 0,
                                                                                    "ScalingAdjustment": 1}]})
        target = aas.describe_scalable_targets(ServiceNamespace="sagemaker",
                                               ResourceIds=[key["ResourceId"]])["ScalableTargets"][0]
        assert (target["MinCapacity"], target["MaxCapacity"], target["ScalableTargetARN"]) == (0, 1, arn)
        assert target["CreationTime"].year >= 2024
        policies = aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=key["ResourceId"])
        assert {(p["PolicyName"], p["PolicyType"]) for p in policies["ScalingPolicies"]} == {
            ("conc", "TargetTrackingScaling"), ("from-zero", "StepScaling")}
        assert r_ok(_post(server, "boto"))  # at zero copies: waits for one, then served
        activity = aas.describe_scaling_activities(ServiceNamespace="sagemaker", ResourceId=key["ResourceId"]
                                                   )["ScalingActivities"][0]
        assert activity["Cause"] == "1 request waiting at 0 copies: 0 → 1 copy"
        assert activity["Description"] == "Setting desired copy count to 1." and activity["StatusCode"] == "Successful"
        assert activity["StartTime"] <= activity["EndTime"]

        for bad, error in (({"MinCapacity": 3, "MaxCapacity": 1},
                            "Maximum capacity cannot be less than minimum capacity"),
                           ({"ResourceId": "inference-component/ghost", "MinCapacity": 0, "MaxCapacity": 1},
                            "Could not find inference component \"ghost\"."),
                           ({"ResourceId": "endpoint/boto/variant/AllTraffic", "MinCapacity": 0, "MaxCapacity": 1},
                            "Unsupported service namespace, resource type or scalable dimension")):
            with pytest.raises(aas.exceptions.ValidationException) as exc:
                aas.register_scalable_target(**{**key, **bad})
            assert exc.value.response["Error"]["Message"] == error
        for config, error in (({**tracking, "TargetValue": 0.0}, "Member must have value greater than 0"),
                              ({**tracking, "PredefinedMetricSpecification": {"PredefinedMetricType": "Latency"}},
                               ("Value 'Latency' at 'targetTrackingScalingPolicyConfiguration."
                                "predefinedMetricSpecification.predefinedMetricType' failed to satisfy constraint"))):
            with pytest.raises(aas.exceptions.ValidationException, match=re.escape(error)):
                aas.put_scaling_policy(PolicyName="bad", PolicyType="TargetTrackingScaling", **key,
                                       TargetTrackingScalingPolicyConfiguration=config)
        aas.delete_scaling_policy(PolicyName="from-zero", **key)
        with pytest.raises(aas.exceptions.ObjectNotFoundException, match="No scaling policy found"):
            aas.delete_scaling_policy(PolicyName="from-zero", **key)
        aas.deregister_scalable_target(**key)
        assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
        assert predictor.describe()["autoscaling"] is None
    finally:
        predictor.delete_endpoint(cascade=True)


def r_ok(response: httpx.Response) -> bool:
    return response.status_code == 200 and bool(response.json()[0]["generated_text"])
