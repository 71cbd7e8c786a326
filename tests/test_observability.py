"""Observability on a real `shoal server` with a real copy: one scrape carries every copy's engine metrics (read
with Prometheus's own text parser), the Grafana dashboard reads only names that scrape has, a traced request
yields gateway and engine spans in one trace (exported over real OTLP/HTTP to a receiver here), and JSON logs
carry one line per request with its request and trace ids."""
from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from helpers import free_port, server_process, wait_for_component
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from shoal.errors import ConfigError
from shoal.sdk import Model, Predictor, ResourceRequirements, Session

BODY = {"inputs": "The capital of France is", "parameters": {"max_new_tokens": 4}}
HALF = ResourceRequirements(requests={"copies": 1, "num_cpus": 0.5, "memory": 512})
DASHBOARD = Path(__file__).parent.parent / "docs" / "grafana" / "shoal.json"


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP traces receiver: keeps every span it is sent, with its service's name."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, object]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    service = next(a.value.string_value for a in resource.resource.attributes
                                   if a.key == "service.name")
                    outer.spans.extend((service, s) for scope in resource.scope_spans for s in scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[tuple[str, Path]]:
    """Traced (spans batched for at most 200 ms, in the server and its copies) and logging JSON."""
    state = tmp_path_factory.mktemp("observed")
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}/v1/traces"
    with server_process(state, "--otlp-endpoint", endpoint, "--log-format", "json",
                        env={"OTEL_BSP_SCHEDULE_DELAY": "200"}) as url:
        Model("gemma-3-270m", name="gemma", env={"MAX_TOTAL_TOKENS": "512"}, session=Session(url)).deploy(
            "observed", resources=HALF)
        yield url, state


def scrape(url: str) -> dict[str, list]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    families: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in families, f"{family.name} twice in one scrape"
        families[family.name] = family.samples
    return families


def test_one_scrape_carries_every_copy_s_engine_metrics(server: tuple[str, Path]) -> None:
    url, _ = server
    assert httpx.post(f"{url}/generate", json=BODY, timeout=120).status_code == 200
    families = scrape(url)
    copy_id = Session(url).component("gemma")["copies"][0]["id"]
    where = {"endpoint": "observed", "component": "gemma", "copy": copy_id}
    assert [s.value for s in families["shoal_copy_up"] if s.labels == where] == [1.0]
    requests = [s for s in families["tgi_request_count"] if s.name == "tgi_request_count_total"]
    assert [s.labels for s in requests] == [where] and requests[0].value >= 1
    assert any(s.labels.get("copy") == copy_id for s in families["process_resident_memory_bytes"])
    assert any("copy" not in s.labels for s in families["process_resident_memory_bytes"])  # the server's own
    assert families["shoal_gateway_requests"]  # and the gateway's


def test_the_grafana_dashboard_reads_only_names_the_scrape_has(server: tuple[str, Path]) -> None:
    url, _ = server
    assert httpx.post(f"{url}/generate_stream", json=BODY, timeout=120).status_code == 200  # (time to first byte)
    names = {s.name for samples in scrape(url).values() for s in samples}
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    wanted = {n for e in exprs for n in re.findall(r"\b(?:shoal|tgi)_[a-z_]+", e)}
    optional = {"shoal_lora_adapter_switches_total", "shoal_gateway_rejected_total", "shoal_gateway_retries_total"}
    assert wanted - names <= optional, sorted(wanted - names)  # counters not yet incremented have no sample


def test_a_copy_leaves_the_scrape_with_its_labels(server: tuple[str, Path]) -> None:
    url, _ = server
    session = Session(url)
    Model("gemma-3-270m", name="brief", env={"MAX_TOTAL_TOKENS": "512"}, session=session).deploy(
        "observed", resources=HALF)
    assert any(s.labels.get("component") == "brief" for s in scrape(url)["tgi_request_count"])
    Predictor("observed", "brief", session).delete_inference_component()
    deadline = time.monotonic() + 60
    while any(c["spec"]["name"] == "brief" for c in session.components()):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    left = [(s.name, s.labels) for samples in scrape(url).values() for s in samples if s.labels.get("component") == "brief"]
    assert not left


def test_a_traced_request_yields_gateway_and_engine_spans_in_the_caller_s_trace(
        server: tuple[str, Path], receiver: Receiver) -> None:
    url, _ = server
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    answer = httpx.post(f"{url}/generate", json=BODY, timeout=120,
                        headers={"traceparent": f"00-{trace_id}-{parent}-01"})
    assert answer.status_code == 200
    deadline = time.monotonic() + 15
    wanted = {"POST /generate", "admission", "route", "first byte", "engine POST /generate", "engine queue",
              "engine prefill", "engine decode"}
    while True:
        spans = {s.name: (service, s) for service, s in receiver.spans if s.trace_id.hex() == trace_id}
        if wanted <= set(spans) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert wanted <= set(spans), sorted(spans)
    service, root = spans["POST /generate"]
    assert service == "shoal" and root.parent_span_id.hex() == parent  # the caller's trace, continued
    for child in ("admission", "route", "first byte"):
        assert spans[child][1].parent_span_id == root.span_id
    engine_service, engine = spans["engine POST /generate"]
    assert engine_service == "shoal-engine" and engine.parent_span_id == spans["first byte"][1].span_id
    for phase in ("engine queue", "engine prefill", "engine decode"):
        assert spans[phase][1].parent_span_id == engine.span_id
    queue, prefill, decode = (spans[p][1] for p in ("engine queue", "engine prefill", "engine decode"))
    assert queue.end_time_unix_nano <= prefill.start_time_unix_nano + 1000 <= decode.start_time_unix_nano + 2000
    attributes = {a.key: a.value for a in spans["route"][1].attributes}
    assert attributes["shoal.copy"].string_value == Session(url).component("gemma")["copies"][0]["id"]


def test_json_logs_have_one_line_per_request_with_its_ids(server: tuple[str, Path]) -> None:
    url, state = server
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    answer = httpx.post(f"{url}/generate", json=BODY, timeout=120,
                        headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"})
    rid = answer.headers["x-request-id"]
    log = next(state.glob("server-*.log"))
    deadline = time.monotonic() + 10
    while not (lines := [json.loads(line) for line in log.read_text().splitlines()
                         if line.startswith("{") and rid in line]):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert lines == [{**lines[0], "request_id": rid, "trace_id": trace_id, "route": "tgi", "path": "/generate",
                      "component": "gemma", "adapter": None, "status": 200}]
    assert lines[0]["level"] == "info" and lines[0]["ms"] > 0
    copy_log = next((state / "logs").glob("gemma-*.log"))
    assert all(json.loads(line)["logger"] for line in copy_log.read_text().splitlines() if line.startswith("{"))
    wait_for_component(Session(url), "gemma", lambda v: v["status"] == "InService")


def test_sampling_follows_the_callers_flag_else_the_ratio() -> None:
    """In-process, an in-memory exporter: ratio 0 traces nothing of its own, yet follows a caller that sampled;
    a caller's unsampled traceparent (or a malformed one) is passed on unchanged or ignored."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from shoal import tracing

    exporter = InMemorySpanExporter()
    tracing.enable("test", exporter=exporter, sample_ratio=0.0)
    try:
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        sampled, unsampled = f"00-{trace_id}-00f067aa0ba902b7-01", f"00-{trace_id}-00f067aa0ba902b7-00"
        for headers in ({}, {"traceparent": "00-nonsense-01"}):
            with tracing.server_span("root", headers) as root, tracing.span("child") as child:
                out: dict[str, str] = {}
                tracing.inject(out)
            assert root is None and child is None and out == {}
        with tracing.server_span("root", {"traceparent": unsampled}) as root:
            out = {}
            tracing.inject(out)
        assert root is None and out == {"traceparent": unsampled}  # a proxy passes the caller's decision on
        with tracing.server_span("root", {"traceparent": sampled}) as root, tracing.span("child"):
            out = {}
            tracing.inject(out)
        assert tracing.trace_id(root) == trace_id and out["traceparent"].startswith(f"00-{trace_id}-")
        assert out["traceparent"] != sampled  # the child's own span id, not the caller's
        assert sorted(s.name for s in exporter.get_finished_spans()) == ["child", "root"]
    finally:
        tracing.disable()
    assert tracing.configured_ratio({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                                     "OTEL_TRACES_SAMPLER_ARG": "0.25"}) == 0.25
    assert tracing.configured_ratio({"OTEL_TRACES_SAMPLER_ARG": "0.25"}) == 1.0
    with pytest.raises(ConfigError, match="OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1, not 'half'"):
        tracing.configured_ratio({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"})
