"""CloudWatch's query API against a real server with real traffic: boto3's `cloudwatch` client (RPC v2 CBOR, and
the JSON 1.0 and query protocols its model also lists) reads the Invocations the client sent and ModelLatency
percentiles that agree with the client's own clock; samples survive a restart; the pieces alone (sketch,
store, operations) on made-up samples."""
from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.config
import botocore.session
import httpx
import pytest
from botocore.loaders import Loader
from helpers import server_process

from shoal.observability.cloudwatch.operations import CloudWatch, CloudWatchError
from shoal.observability.hooks import Finished
from shoal.observability.service import Observability
from shoal.observability.sketch import Dist
from shoal.observability.tokens import Tokens
from shoal.sdk import Model, ResourceRequirements, Session

BODY = {"inputs": "Write a list of the planets of the solar system:", "parameters": {"max_new_tokens": 12}}
CREDENTIALS = {"region_name": "us-east-1", "aws_access_key_id": "test", "aws_secret_access_key": "test"}
NO_RETRIES = botocore.config.Config(retries={"max_attempts": 0})
IC = [{"Name": "InferenceComponentName", "Value": "gem"}]
VARIANT = [{"Name": "EndpointName", "Value": "cw"}, {"Name": "VariantName", "Value": "AllTraffic"}]


def cloudwatch(url: str, protocol: str | None = None, tmp: Path | None = None):  # type: ignore[no-untyped-def]
    """boto3's cloudwatch client; with `protocol`, its service model rewritten to speak that one (json, query), as
    an older SDK or another client would."""
    if protocol is None:
        return boto3.client("cloudwatch", endpoint_url=url, config=NO_RETRIES, **CREDENTIALS)
    assert tmp is not None
    model = Loader().load_service_model("cloudwatch", "service-2")
    model["metadata"].update(protocol=protocol, protocols=[protocol])
    where = tmp / protocol / "cloudwatch" / "2010-08-01"
    where.mkdir(parents=True, exist_ok=True)
    (where / "service-2.json.gz").write_bytes(gzip.compress(json.dumps(model).encode()))
    core = botocore.session.get_session()
    core.get_component("data_loader").search_paths.insert(0, str(tmp / protocol))
    return boto3.Session(botocore_session=core).client("cloudwatch", endpoint_url=url, config=NO_RETRIES,
                                                       **CREDENTIALS)


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One copy of the default model; 10 InvokeEndpoint and 3 InvokeEndpointWithResponseStream requests, each
    timed by the client."""
    with server_process(tmp_path_factory.mktemp("cw")) as url:
        Model("gemma-3-270m", name="gem", session=Session(url)).deploy(
            "cw", resources=ResourceRequirements(requests={"copies": 1, "num_cpus": 1, "memory": 1024}))
        runtime = boto3.client("sagemaker-runtime", endpoint_url=url, config=NO_RETRIES, **CREDENTIALS)
        start = dt.datetime.now(dt.UTC)
        seconds = []
        for _ in range(10):
            began = time.perf_counter()
            runtime.invoke_endpoint(EndpointName="cw", Body=json.dumps(BODY), ContentType="application/json")["Body"].read()
            seconds.append(time.perf_counter() - began)
        for _ in range(3):
            began = time.perf_counter()
            stream = runtime.invoke_endpoint_with_response_stream(EndpointName="cw", Body=json.dumps(BODY),
                                                                  ContentType="application/json")
            assert b"".join(event["PayloadPart"]["Bytes"] for event in stream["Body"])
            seconds.append(time.perf_counter() - began)
        deadline = time.monotonic() + 5  # a request is recorded as its handler ends, maybe just after the client read it
        while httpx.get(f"{url}/api/usage").json()["rows"][0]["requests"] < 13 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield {"url": url, "start": start - dt.timedelta(seconds=1), "seconds": seconds,
               "end": dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)}


def _sum(client, metric: str, dims: list[dict], traffic: dict) -> float:  # type: ignore[no-untyped-def]
    answer = client.get_metric_data(
        MetricDataQueries=[{"Id": "m", "MetricStat": {"Metric": {"Namespace": "AWS/SageMaker", "MetricName": metric,
                                                                 "Dimensions": dims}, "Period": 3600, "Stat": "Sum"}}],
        StartTime=traffic["start"], EndTime=traffic["end"])
    (result,) = answer["MetricDataResults"]
    assert result["StatusCode"] == "Complete" and result["Label"] == metric
    return sum(result["Values"])


def test_invocations_sum_equals_the_requests_sent(traffic: dict) -> None:
    client = cloudwatch(traffic["url"])  # boto3's default: RPC v2 CBOR
    assert _sum(client, "Invocations", IC, traffic) == 13
    assert _sum(client, "Invocations", VARIANT, traffic) == 13  # the endpoint's variant: every component
    assert _sum(client, "Invocation4XXErrors", IC, traffic) == 0
    assert _sum(client, "InvocationsPerCopy", IC, traffic) == 13  # one copy


def test_model_latency_percentiles_agree_with_the_client(traffic: dict) -> None:
    answer = cloudwatch(traffic["url"]).get_metric_statistics(
        Namespace="AWS/SageMaker", MetricName="ModelLatency", Dimensions=IC, StartTime=traffic["start"],
        EndTime=traffic["end"], Period=3600, Statistics=["SampleCount", "Average", "Maximum"],
        ExtendedStatistics=["p50", "p90"])
    (point,) = answer["Datapoints"]
    assert point["Unit"] == "Microseconds" and point["SampleCount"] == 13
    client = traffic["seconds"]
    for q, name in ((0.5, "p50"), (0.9, "p90")):
        ours, theirs = point["ExtendedStatistics"][name] / 1e6, nearest_rank(client, q)
        assert abs(ours / theirs - 1) < 0.10, (name, ours, theirs)
    assert abs(point["Average"] / 1e6 / (sum(client) / len(client)) - 1) < 0.10
    assert point["Maximum"] / 1e6 <= max(client)  # the client's clock runs around the server's


@pytest.mark.parametrize("protocol", ["json", "query"])
def test_other_protocols_answer_the_same(traffic: dict, protocol: str, tmp_path: Path) -> None:
    client = cloudwatch(traffic["url"], protocol, tmp_path)
    assert _sum(client, "Invocations", IC, traffic) == 13
    answer = client.get_metric_statistics(Namespace="AWS/SageMaker", MetricName="ModelLatency", Dimensions=IC,
                                          StartTime=traffic["start"], EndTime=traffic["end"], Period=3600,
                                          Statistics=["SampleCount"], ExtendedStatistics=["p99"])
    (point,) = answer["Datapoints"]
    assert point["SampleCount"] == 13 and point["ExtendedStatistics"]["p99"] > 0
    assert isinstance(point["Timestamp"], dt.datetime)
    names = {m["MetricName"] for m in client.list_metrics(Namespace="AWS/SageMaker", Dimensions=IC)["Metrics"]}
    assert {"Invocations", "ModelLatency", "OverheadLatency", "InvocationsPerCopy"} <= names
    with pytest.raises(client.exceptions.InvalidParameterValueException) as err:
        client.get_metric_statistics(Namespace="AWS/SageMaker", MetricName="Invocations", StartTime=traffic["start"],
                                     EndTime=traffic["end"], Period=90, Statistics=["Sum"])
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_refusals_in_cloudwatch_words(traffic: dict) -> None:
    client = cloudwatch(traffic["url"])
    when = {"StartTime": traffic["start"], "EndTime": traffic["end"]}
    with pytest.raises(client.exceptions.InvalidParameterCombinationException) as err:
        client.get_metric_statistics(Namespace="AWS/SageMaker", MetricName="Invocations", Period=60, **when)
    assert err.value.response["Error"]["Message"] == ("At least one of the parameters Statistics and "
                                                      "ExtendedStatistics must be specified.")
    with pytest.raises(client.exceptions.InvalidParameterCombinationException) as err:
        client.get_metric_statistics(Namespace="AWS/SageMaker", MetricName="Invocations", Period=60,
                                     Statistics=["Sum"], StartTime=traffic["start"] - dt.timedelta(days=2),
                                     EndTime=traffic["end"])
    assert "exceeds the limit of 1,440" in err.value.response["Error"]["Message"]
    with pytest.raises(client.exceptions.InvalidParameterValueException):
        client.get_metric_data(MetricDataQueries=[{"Id": "m", "MetricStat": {
            "Metric": {"Namespace": "AWS/SageMaker", "MetricName": "Invocations"}, "Period": 60, "Stat": "p200"}}],
            **when)
    with pytest.raises(client.exceptions.InvalidParameterValueException):
        client.get_metric_data(MetricDataQueries=[{"Id": "e", "Expression": "SEARCH('{AWS/SageMaker}', 'Sum')"}],
                               **when)
    # an unknown series is no error: no datapoints, as CloudWatch answers
    assert client.get_metric_statistics(Namespace="AWS/SageMaker", MetricName="Invocations", Period=60,
                                        Statistics=["Sum"], Dimensions=[{"Name": "InferenceComponentName",
                                                                         "Value": "nope"}], **when)["Datapoints"] == []


def test_metric_math_and_pages(traffic: dict) -> None:
    metric = {"Namespace": "AWS/SageMaker", "MetricName": "Invocations", "Dimensions": IC}
    answer = cloudwatch(traffic["url"]).get_metric_data(
        MetricDataQueries=[{"Id": "calls", "MetricStat": {"Metric": metric, "Period": 3600, "Stat": "Sum"},
                            "ReturnData": False},
                           {"Id": "errors", "MetricStat": {"Metric": {**metric, "MetricName": "Invocation5XXErrors"},
                                                           "Period": 3600, "Stat": "Sum"}, "ReturnData": False},
                           {"Id": "rate", "Expression": "100 * errors / calls", "Label": "error rate"},
                           {"Id": "calls2", "Expression": "calls * 2"}],
        StartTime=traffic["start"], EndTime=traffic["end"], MaxDatapoints=1)
    rate, doubled = answer["MetricDataResults"]
    assert rate["Label"] == "error rate" and rate["Values"] == [0.0]
    assert doubled["Values"] == [] and doubled["StatusCode"] == "PartialData" and answer["NextToken"]


def test_copy_count_cpu_and_memory_are_sampled(traffic: dict) -> None:
    client, deadline = cloudwatch(traffic["url"]), time.monotonic() + 40

    def points(namespace: str, metric: str) -> list[dict]:
        """Sampled every 10 s (CPU from the second sample of a copy on: the first starts its clock)."""
        while True:
            found = client.get_metric_statistics(Namespace=namespace, MetricName=metric, Dimensions=IC,
                                                 StartTime=traffic["start"], EndTime=traffic["end"], Period=3600,
                                                 Statistics=["Maximum", "Average", "SampleCount"])["Datapoints"]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(1)

    (copies,) = points("Shoal", "CurrentCopyCount")
    assert copies["Maximum"] == 1 and copies["Unit"] == "Count"
    for metric in ("CPUUtilizationNormalized", "MemoryUtilizationNormalized"):
        (point,) = points("/aws/sagemaker/InferenceComponents", metric)
        assert point["Unit"] == "Percent" and point["SampleCount"] >= 1 and point["Average"] >= 0
    (concurrency,) = points("AWS/SageMaker", "ConcurrentRequestsPerCopy")
    assert concurrency["SampleCount"] >= 1
    tokens = client.get_metric_statistics(Namespace="Shoal", MetricName="GeneratedTokens", Dimensions=IC,
                                          StartTime=traffic["start"], EndTime=traffic["end"], Period=3600,
                                          Statistics=["Sum"])["Datapoints"]
    assert tokens[0]["Sum"] == 13 * 12


def test_samples_survive_a_restart(tmp_path: Path) -> None:
    """A component with no copy: each request is a 503, counted as Invocation5XXErrors; the server stops (SIGTERM
    flushes memory to disk) and starts again on the same state directory."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    query = {"Namespace": "AWS/SageMaker", "MetricName": "Invocation5XXErrors",
             "Dimensions": [{"Name": "InferenceComponentName", "Value": "idle"}], "StartTime": start,
             "Period": 3600, "Statistics": ["Sum", "SampleCount"]}
    with server_process(tmp_path) as url:
        Session(url).call("POST", "/api/endpoints", {"EndpointName": "quiet"})
        Session(url).call("POST", "/api/inference-components", {"InferenceComponentName": "idle", "EndpointName": "quiet",
                                                                "ModelId": "gemma-3-270m", "CopyCount": 0})
        for _ in range(3):
            answer = httpx.post(f"{url}/v1/completions", json={"model": "idle", "prompt": "Hi", "max_tokens": 1})
            assert answer.status_code == 503
        end = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
        before = cloudwatch(url).get_metric_statistics(EndTime=end, **query)["Datapoints"]
    assert before and before[0]["Sum"] == 3
    with server_process(tmp_path) as url:
        after = cloudwatch(url).get_metric_statistics(EndTime=end, **query)["Datapoints"]
        usage = httpx.get(f"{url}/api/usage", params={"component": "idle"}).json()["rows"]
    assert after == before
    assert [(r["requests"], r["errors"]) for r in usage] == [(3, 3)]


# -- the pieces alone -------------------------------------------------------------------------------------------
def test_sketch_percentiles_are_within_one_percent_and_merge() -> None:
    values = [1000 * 1.37 ** (i % 40) + i for i in range(4000)]
    halves = Dist(), Dist()
    for i, v in enumerate(values):
        halves[i % 2].add(v)
    merged = Dist()
    for half in halves:
        merged.merge(Dist.restore(half.count, half.total, half.minimum, half.maximum, half.histogram()))
    assert merged.count == 4000 and merged.minimum == min(values) and merged.maximum == max(values)
    for q in (0.01, 0.5, 0.9, 0.99, 0.999):
        assert abs(merged.quantile(q) / nearest_rank(values, q) - 1) <= 0.0101
    zeros = Dist()
    for v in (0.0, 0.0, 1.0):
        zeros.add(v)
    assert zeros.quantile(0.5) == 0.0 and zeros.quantile(0.99) == pytest.approx(1.0, rel=0.01)
    assert zeros.total / zeros.count == 1 / 3


def test_operations_on_made_up_samples(tmp_path: Path) -> None:
    async def run() -> None:
        obs = Observability(tmp_path)
        await obs.start()
        cw, at = CloudWatch(obs), 1_800_000_000.0  # on a minute
        record = obs.observers[0]
        for i in range(120):  # two minutes, 60 requests each; one 5xx
            record(Finished(at=at + i, door="openai", status=500 if i == 7 else 200, total_s=0.2, endpoint="e",
                            component="c", copies=2, copy_status=500 if i == 7 else 200, model_s=0.1 + i / 1000,
                            tokens=Tokens(10, 5, 4)))
        await obs.flush()  # both minutes in SQLite; one more sample of the second stays in memory
        record(Finished(at=at + 119, door="openai", status=200, total_s=0.2, endpoint="e", component="c", copies=2,
                        copy_status=200, model_s=0.1))
        base = {"Namespace": "AWS/SageMaker", "Dimensions": [{"Name": "InferenceComponentName", "Value": "c"}],
                "StartTime": at + 5, "EndTime": at + 180}
        answer = await cw.get_metric_statistics({**base, "MetricName": "Invocations", "Period": 60,
                                                 "Statistics": ["Sum"]})
        assert [(p["Timestamp"].timestamp(), p["Sum"]) for p in answer["Datapoints"]] == [(at, 60.0), (at + 60, 61.0)]
        answer = await cw.get_metric_statistics({**base, "MetricName": "Invocation5XXErrors", "Period": 120,
                                                 "Statistics": ["Average", "Sum", "SampleCount"]})
        assert answer["Datapoints"][0]["Sum"] == 1 and answer["Datapoints"][0]["SampleCount"] == 121
        answer = await cw.get_metric_statistics({**base, "MetricName": "InvocationsPerCopy", "Period": 120,
                                                 "Statistics": ["Sum"]})
        assert answer["Datapoints"][0]["Sum"] == 60.5
        answer = await cw.get_metric_statistics({**base, "MetricName": "ModelLatency", "Period": 60, "Unit": "Seconds",
                                                 "Statistics": ["Sum"]})
        assert answer["Datapoints"] == []  # another unit: none, as CloudWatch
        with pytest.raises(CloudWatchError) as err:
            await cw.get_metric_statistics({**base, "MetricName": "Invocations", "Period": 60})
        assert err.value.code == "InvalidParameterCombination"
        with pytest.raises(CloudWatchError) as err:
            await cw.get_metric_data({"MetricDataQueries": [{"Id": "M1", "Expression": "1"}], **base})
        assert err.value.code == "InvalidParameterValue"
        listed = await cw.list_metrics({"Dimensions": [{"Name": "EndpointName"}]})
        assert {m["MetricName"] for m in listed["Metrics"]} >= {"Invocations", "ModelLatency", "OverheadLatency"}
        assert all({d["Name"] for d in m["Dimensions"]} == {"EndpointName", "VariantName"} for m in listed["Metrics"])
        await obs.stop()
        again = Observability(tmp_path)  # what was kept comes back
        assert (await CloudWatch(again).get_metric_statistics({**base, "MetricName": "Invocations", "Period": 120,
                                                              "Statistics": ["Sum"]}))["Datapoints"][0]["Sum"] == 121
        await again.stop()
    asyncio.run(run())


def test_old_minutes_leave_after_the_retention(tmp_path: Path) -> None:
    async def run() -> None:
        obs = Observability(tmp_path, retention_days=1)
        now = time.time()
        for age_days in (3, 0):
            obs.observers[0](Finished(at=now - age_days * 86400, door="tgi", status=200, total_s=0.1, endpoint="e",
                                      component="c", copy_status=200, model_s=0.1))
        await obs.flush()
        gone = await asyncio.to_thread(obs.metrics.prune)
        obs.metrics.forget(gone)
        minutes = await obs.minutes(next(k for k in obs.metrics.units if k.metric == "Invocations"
                                         and k.dims[0][0] == "InferenceComponentName"), 0, int(now) + 60)
        assert sum(d.count for d in minutes.values()) == 1
        await obs.stop()
    asyncio.run(run())

