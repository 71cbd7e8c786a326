"""The shoal server: control API, controller and gateway in one asyncio process, one port."""
from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from shoal import tracing
from shoal.apidoc import ApiDoc, Declared, Door, HeaderDoor, Op, Param, Reply
from shoal.control import sagemaker
from shoal.control.api import ControlApi
from shoal.control.autoscaling import aas_api
from shoal.control.autoscaling.scaler import Autoscaler
from shoal.control.controller import Controller
from shoal.control.models import CopyStatus
from shoal.control.store import StateStore
from shoal.control.supervisor import SupervisionSettings
from shoal.engines.base import ServerPolicy
from shoal.errors import ConfigError
from shoal.gateway.pool import RoutingTable
from shoal.gateway.readiness import Readiness, ReadinessReport
from shoal.gateway.routes import add_gateway_routes
from shoal.gateway.scrape import CopyMetrics
from shoal.gateway.upstream import GatewaySettings, Upstreams
from shoal.http import StopSignals, Timeouts, api_errors, body_deadline, drain, serve
from shoal.models.registry import default_model_dirs
from shoal.observability.catalog import ComponentReading
from shoal.observability.cloudwatch import wire as cloudwatch_wire
from shoal.observability.cloudwatch.operations import CloudWatch
from shoal.observability.limits import Limits
from shoal.observability.service import Observability
from shoal.observability.store import DEFAULT_RETENTION_DAYS
from shoal.protocol.responses import ErrorBody
from shoal.runtime.base import Runtime
from shoal.security.keys import KeyRing, Scope
from shoal.security.middleware import KeyPolicy, check_exposure, require_keys
from shoal.webconsole import WebConsole

log = logging.getLogger(__name__)
DEFAULT_STATE_DIR = Path.home() / ".shoal"


@dataclass
class ServerOptions:
    default_component: str | None = None  # for the TGI routes
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    supervision: SupervisionSettings = field(default_factory=SupervisionSettings)
    allow_command_engine: bool = False  # components may run any command line (engine `command`)
    keys: KeyRing = field(default_factory=lambda: KeyRing([]))  # API keys; none: no authentication
    insecure: bool = False  # serve a non-loopback address without keys
    model_dirs: tuple[Path, ...] | None = None  # where local model files may be (None: DEFAULT_MODEL_DIRS)
    extra_env: tuple[str, ...] = ()  # variables (or PREFIX*) components may set beyond the allowed list
    # On SIGTERM/SIGINT: stop listening, let requests in flight finish for at most this long, then stop copies.
    shutdown_timeout_s: float = 30.0
    timeouts: Timeouts = field(default_factory=Timeouts)  # idle connections, request bodies
    aws_region: str | None = None  # the region SigV4 signatures must name (None: any)
    tls: tuple[Path, Path] | None = None  # certificate chain and private key files: serve HTTPS
    metrics_retention_days: float = DEFAULT_RETENTION_DAYS  # CloudWatch's samples (1-minute resolution)
    bench_dirs: tuple[Path, ...] = ()  # where the web console looks for `shoal bench` results (results.json)
    otlp_endpoint: str | None = None  # OTLP/HTTP traces URL: trace requests (shoal.tracing); None: the environment's
    trace_sample_ratio: float | None = None  # share of requests traced (a caller's traceparent decides its own)


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """An HTTPS server context from PEM files (TLS 1.2 or newer), or ConfigError saying what is wrong."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use TLS certificate {cert} with key {key}: {exc}") from None
    return context


def make_runtime(kind: str = "local", ray_address: str = "auto") -> Runtime:
    """The runtime copies run on: processes on this machine, or Ray actors on a cluster."""
    if kind == "local":
        from shoal.runtime.local import LocalRuntime
        return LocalRuntime()
    if kind == "ray":
        try:
            from shoal.runtime.ray_runtime import RayRuntime
        except ImportError:
            raise ConfigError("the ray runtime needs Ray: pip install 'shoal[ray]'") from None
        return RayRuntime(ray_address)
    raise ConfigError(f"unknown runtime '{kind}' (local, ray)")


def _metrics(table: RoutingTable) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The server's metrics and every copy's engine metrics, labelled with endpoint, component and copy."""
    copies = CopyMetrics(table)

    async def metrics(_request: web.Request) -> web.StreamResponse:
        return web.Response(body=await copies.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})
    return metrics


def build_app(controller: Controller, upstreams: Upstreams, options: ServerOptions, scaler: Autoscaler | None = None,
              readiness: Readiness | None = None, obs: Observability | None = None) -> web.Application:
    keys = options.keys
    plane = sagemaker.SageMakerPlane(controller)
    services = {sagemaker.TARGET_PREFIX: sagemaker.sagemaker_service(plane)}
    if scaler:
        services[aas_api.TARGET_PREFIX] = aas_api.service(scaler)  # Application Auto Scaling, same door
    aws_json = sagemaker.AwsJsonDoor(services)  # POST / with X-Amz-Target; TGI's POST / without
    doc = ApiDoc()  # the route table: routing, keys and the OpenAPI document
    cloudwatch = cloudwatch_wire.CloudWatchDoor(CloudWatch(obs)) if obs else None
    if cloudwatch:  # CloudWatch's JSON 1.0 and query protocols on POST / (its CBOR protocol has a route)
        obs.catalog.variant_of = plane.variant_name
        doc.add_header_door(HeaderDoor(cloudwatch_wire.claims, Declared(Door.CLOUDWATCH, Scope.ADMIN)))
    doc.add_header_door(HeaderDoor(aws_json.claims, Declared(Door.AWS_JSON, Scope.ADMIN)))
    policy = KeyPolicy(keys, options.aws_region, options.timeouts.body_s,
                       {Door.CLOUDWATCH: cloudwatch_wire.refusal})
    middlewares = [api_errors, *([require_keys(policy, doc)] if keys else []),  # keys: from headers, before bodies
                   body_deadline(options.timeouts.body_s), *([cloudwatch.middleware()] if cloudwatch else []),
                   aws_json.middleware()]
    app = web.Application(middlewares=middlewares, client_max_size=16 << 20)
    ControlApi(controller, scaler, obs.usage_report if obs else None).add_to(app, doc)
    add_gateway_routes(app, doc, controller.table, upstreams, options.default_component, plane.variant_name,
                       tuple(obs.observers) if obs else (), obs.gate if obs else None)
    if cloudwatch:
        doc.add(app, Op("POST", cloudwatch_wire.CBOR_PATH, cloudwatch.cbor, "CloudWatch GetMetricData, "
                        "GetMetricStatistics, ListMetrics (Smithy RPC v2 CBOR, boto3's `cloudwatch`)", "operations",
                        replies=(Reply(200, media_type="application/cbor"),
                                 Reply(400, media_type="application/cbor", description="CloudWatch's error")),
                        params=(Param("operation", description="GetMetricData, GetMetricStatistics, ListMetrics"),),
                        door=Door.CLOUDWATCH))
    doc.add(app, Op("GET", "/metrics", _metrics(controller.table), "Prometheus metrics: the server's and every "
                    "copy's (labelled endpoint, component, copy)", "operations",
                    replies=(Reply(200, media_type="text/plain"),)))
    readiness = readiness or Readiness(controller.table, detail=not keys)
    for path in ("/health", "/ping"):
        doc.add(app, Op("GET", path, readiness.health, "Ready to serve: 200 when every inference component has a "
                        "copy in service (or starts one on demand), 503 otherwise or while stopping",
                        "operations", replies=(Reply(200, ReadinessReport), Reply(503, ReadinessReport),
                                               Reply(404, ErrorBody)),
                        params=(Param("component", "query", "ask about one inference component"),), open=True))
    WebConsole(controller, scaler, keys, options.bench_dirs).add_to(app, doc)  # /console
    doc.add(app, Op("GET", "/live", readiness.live, "The server process answers (liveness)", "operations",
                    replies=(Reply(200, media_type="text/plain"),), open=True))
    doc.serve(app)
    return app


async def run_server(host: str, port: int, state_dir: Path, runtime: Runtime | None = None,
                     options: ServerOptions | None = None,
                     on_ready: Callable[[Controller], Awaitable[None]] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; then drain (no new requests, those in flight finish within
    `options.shutdown_timeout_s`; a second signal cuts it short) and stop every copy. `on_ready` runs once
    the port is open."""
    options = options or ServerOptions()
    if not options.bench_dirs:  # `shoal bench` writes results/bench by default, beside where it ran
        options = replace(options, bench_dirs=(state_dir / "bench", Path.cwd() / "results"))
    check_exposure(host, options.keys, options.insecure)
    if endpoint := options.otlp_endpoint or tracing.configured_endpoint():
        ratio = tracing.configured_ratio() if options.trace_sample_ratio is None else options.trace_sample_ratio
        os.environ.update({tracing.ENDPOINT_ENV: endpoint, tracing.SAMPLER_ENV: "parentbased_traceidratio",
                           tracing.SAMPLER_ARG_ENV: str(ratio)})  # the copies it starts trace alike
        tracing.enable("shoal", endpoint, sample_ratio=ratio)
    os.umask(0o077)  # state, logs and keys are the server's own: files 0600, directories 0700
    signals = StopSignals()
    store = StateStore(state_dir / "state.db")
    table = RoutingTable(options.gateway.max_queue, options.gateway.queue_timeout_s)
    policy = ServerPolicy(options.allow_command_engine, options.model_dirs or default_model_dirs(), options.extra_env)
    controller = Controller(store, runtime or make_runtime(), state_dir, table, options.supervision, policy)
    upstreams = Upstreams(table, options.gateway)
    await upstreams.start()
    await controller.restore()
    scaler = Autoscaler(controller, store)  # autoscaling policies: decisions every second, scale from zero
    await scaler.start()
    readiness = Readiness(table, detail=not options.keys)
    obs = Observability(state_dir, components=lambda full: _readings(controller, full),
                        limits=_key_limits(options.keys), retention_days=options.metrics_retention_days)
    await obs.start()  # CloudWatch's metrics and usage per key (state_dir/observability.db)
    app = build_app(controller, upstreams, options, scaler, readiness, obs)
    ssl_context = tls_context(*options.tls) if options.tls else None
    site = await serve(app, host, port, options.shutdown_timeout_s, options.timeouts, ssl_context)
    log.info("shoal server on %s://%s:%d (state in %s)", "https" if ssl_context else "http", host, port, state_dir)
    try:
        if on_ready:
            await on_ready(controller)
        await signals.requested.wait()
    finally:
        readiness.stopping = True
        log.info("stopping: no new requests; %d in flight get up to %gs to finish (--shutdown-timeout; a second "
                 "Ctrl-C stops now)", upstreams.in_flight(), options.shutdown_timeout_s)
        controller.closing()
        await scaler.stop()
        await drain(site, signals.forced)
        await obs.stop()  # what the last requests left in memory goes to disk
        log.info("stopping the copies")
        await controller.close()
        await upstreams.close()
        store.close()
        tracing.disable()  # exports what is batched


def _key_limits(keys: KeyRing) -> dict[str, Limits]:
    return {k.name: Limits(k.limits.requests_per_minute, k.limits.tokens_per_minute) for k in keys.keys if k.limits}


def _readings(controller: Controller, full: bool) -> list[ComponentReading]:
    """Each component's copies and load for CloudWatch's samples; with `full`, each copy's CPU (% of its reserved
    cores) and memory (% of MaxMemoryRequiredInMb, else of its reservation) too."""
    out = []
    for name, comp in list(controller.components.items()):
        if (pool := controller.table.pools.get(name)) is None:
            continue
        serving = [r for r in comp.replicas if r.status == CopyStatus.IN_SERVICE and r.handle is not None]
        cpu: list[float] = []
        memory: list[float] = []
        for r in serving if full else ():
            assert r.handle is not None
            if (used := r.handle.cpu_percent()) is not None:
                cpu.append(used / max(r.slot.cpu_share, 1e-9))
            if (rss := r.handle.memory_mb()) is not None and (budget := comp.spec.compute.max_memory_mb or
                                                               r.slot.memory_mb):
                memory.append(100.0 * rss / budget)
        load = pool.load()
        out.append(ComponentReading(comp.spec.endpoint, name, len(comp.replicas), len(serving),
                                    load.in_flight + load.queued, cpu, memory))
    return out
