"""The `shoal` command line."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from shoal.console import table_console
from shoal.errors import ShoalError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Many LLM replicas behind one endpoint.")
err = Console(stderr=True, soft_wrap=True)  # copy logs keep whole lines for failure reasons


@app.callback()
def _shoal() -> None:
    """Many LLM replicas behind one endpoint."""


def _setup_logging(level: str, log_format: str = "text") -> None:
    """Text lines, or one JSON object per line (`json`; then the gateway's access log is on: a line per request
    with its request and trace ids). The choice passes to the copies this process starts (SHOAL_LOG_FORMAT)."""
    from shoal.http import JsonFormatter, SafeFormatter

    if log_format not in ("text", "json"):
        raise typer.BadParameter(f"--log-format is text or json, not {log_format!r}")
    os.environ[LOG_FORMAT_ENV] = log_format
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else
                         SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health probe otherwise
    access = log_format == "json" or level.upper() == "DEBUG"
    logging.getLogger("shoal.access").setLevel(logging.INFO if access else logging.WARNING)


LOG_FORMAT_ENV = "SHOAL_LOG_FORMAT"
LogFormat = Annotated[str, typer.Option(envvar=LOG_FORMAT_ENV, help="text, or json: one JSON object per line "
                                                                     "(and an access log line per request)")]


@app.command()
def engine(
    model: Annotated[Optional[str], typer.Option(help="Registered model name or .gguf path (env HF_MODEL_ID)")] = None,
    host: Annotated[str, typer.Option(help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT", help="Port to bind")] = 8080,
    max_input_length: Annotated[Optional[int], typer.Option("--max-input-length", "--max-input-tokens")] = None,
    max_total_tokens: Annotated[Optional[int], typer.Option()] = None,
    max_batch_prefill_tokens: Annotated[Optional[int], typer.Option()] = None,
    max_batch_total_tokens: Annotated[Optional[int], typer.Option()] = None,
    max_concurrent_requests: Annotated[Optional[int], typer.Option()] = None,
    max_stop_sequences: Annotated[Optional[int], typer.Option()] = None,
    waiting_served_ratio: Annotated[Optional[float], typer.Option()] = None,
    max_waiting_tokens: Annotated[Optional[int], typer.Option()] = None,
    chat_template: Annotated[Optional[str], typer.Option(help="Jinja chat template, or a file holding one")] = None,
    num_threads: Annotated[Optional[int], typer.Option(help="Threads (default: CPUs this process may use)")] = None,
    log_level: Annotated[str, typer.Option(envvar="LOG_LEVEL")] = "info",
    log_format: LogFormat = "text",
) -> None:
    """Serve one copy of a model: a TGI-compatible server with continuous batching.

    Every setting also reads TGI's environment name (MAX_INPUT_LENGTH, MAX_TOTAL_TOKENS, ...);
    a flag wins over the environment."""
    _setup_logging(log_level, log_format)
    from shoal.engine.launch import run_engine
    from shoal.engine.settings import EngineSettings

    settings = EngineSettings.build(
        os.environ, model_id=model, max_input_length=max_input_length, max_total_tokens=max_total_tokens,
        max_batch_prefill_tokens=max_batch_prefill_tokens, max_batch_total_tokens=max_batch_total_tokens,
        max_concurrent_requests=max_concurrent_requests, max_stop_sequences=max_stop_sequences,
        waiting_served_ratio=waiting_served_ratio, max_waiting_tokens=max_waiting_tokens,
        chat_template=chat_template, num_threads=num_threads)
    run_engine(settings, host, port)


# -- the server ---------------------------------------------------------------------------------
DEFAULT_PORT = 8000
ShutdownTimeout = Annotated[float, typer.Option(
    envvar="SHOAL_SHUTDOWN_TIMEOUT", help="On SIGTERM/SIGINT: seconds requests in flight get to finish before the "
                                          "copies stop (a second signal stops at once)")]


@app.command()
def server(
    host: Annotated[str, typer.Option(help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for the control API and the gateway")] = DEFAULT_PORT,
    state_dir: Annotated[Optional[Path], typer.Option(help="Where state and copy logs live")] = None,
    default_component: Annotated[Optional[str], typer.Option(help="Component for the TGI routes")] = None,
    max_queue: Annotated[int, typer.Option(help="Requests a component may queue when all copies are busy")] = 256,
    queue_timeout: Annotated[float, typer.Option(help="Seconds a queued request waits before a 429")] = 30.0,
    first_byte_timeout: Annotated[float, typer.Option(
        help="Seconds a copy may take to start answering a request before the client gets a timeout error")] = 120.0,
    probe_interval: Annotated[float, typer.Option(help="Seconds between health probes of a serving copy")] = 2.0,
    probe_timeout: Annotated[float, typer.Option(help="Seconds a health probe may take")] = 5.0,
    probe_failures: Annotated[int, typer.Option(help="Failed probes in a row that restart a copy")] = 3,
    crash_limit: Annotated[int, typer.Option(help="Restarts within --crash-window that fail a copy")] = 5,
    crash_window: Annotated[float, typer.Option(help="Seconds over which restarts are counted")] = 600.0,
    allow_command_engine: Annotated[bool, typer.Option(
        help="Let components run any command line as their engine (engine `command`)")] = False,
    api_keys: Annotated[Optional[Path], typer.Option(
        envvar="SHOAL_API_KEYS_FILE", help="JSON file of API keys (`shoal keys create`); also SHOAL_API_KEYS")] = None,
    insecure: Annotated[bool, typer.Option(help="Serve a non-loopback address without API keys")] = False,
    allow_env: Annotated[Optional[list[str]], typer.Option(
        help="An environment variable (or PREFIX*) components may set beyond shoal's list (repeatable)")] = None,
    model_dir: Annotated[Optional[list[Path]], typer.Option(
        help="Where local model files may be (repeatable; default ~/.shoal/models, ~/.cache, the working dir)")] = None,
    runtime: Annotated[str, typer.Option(help="Where copies run: local (processes here) or ray")] = "local",
    ray_address: Annotated[str, typer.Option(help="Ray cluster: auto, local (start one), or host:port")] = "auto",
    shutdown_timeout: ShutdownTimeout = 30.0,
    idle_timeout: Annotated[float, typer.Option(
        help="Seconds a connection may stay open without sending a whole request head")] = 15.0,
    body_timeout: Annotated[float, typer.Option(help="Seconds a request's body may take to arrive")] = 30.0,
    aws_region: Annotated[Optional[str], typer.Option(
        help="The AWS region SigV4 signatures must name (default: any region)")] = None,
    tls_cert: Annotated[Optional[Path], typer.Option(help="PEM certificate chain: serve HTTPS")] = None,
    tls_key: Annotated[Optional[Path], typer.Option(help="PEM private key of --tls-cert")] = None,
    otlp_endpoint: Annotated[Optional[str], typer.Option(
        help="Trace requests with OpenTelemetry and export over OTLP/HTTP to this URL (e.g. "
             "http://127.0.0.1:4318/v1/traces; needs shoal[tracing]; default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)")] = None,
    trace_sample_ratio: Annotated[Optional[float], typer.Option(
        min=0.0, max=1.0, help="Share of requests traced when the caller sent no traceparent (a caller's "
                               "sampled flag is followed; default: OTEL_TRACES_SAMPLER_ARG, else 1)")] = None,
    metrics_retention_days: Annotated[float, typer.Option(
        min=0.01, help="Days of CloudWatch metric samples kept (1-minute resolution; state dir's observability.db)")] = 15.0,
    log_level: Annotated[str, typer.Option(envvar="LOG_LEVEL")] = "info",
    log_format: LogFormat = "text",
) -> None:
    """Run the shoal server: control API, copies and gateway, on one port."""
    _setup_logging(log_level, log_format)
    from shoal.control.supervisor import SupervisionSettings
    from shoal.gateway.upstream import GatewaySettings
    from shoal.http import Timeouts
    from shoal.security.keys import load_keys
    from shoal.server import DEFAULT_STATE_DIR, ServerOptions, make_runtime, run_server

    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("give both --tls-cert and --tls-key, or neither")

    options = ServerOptions(
        default_component=default_component, gateway=GatewaySettings(max_queue, queue_timeout, first_byte_timeout),
        supervision=SupervisionSettings(probe_interval, probe_timeout, probe_failures, crash_limit, crash_window),
        allow_command_engine=allow_command_engine, keys=load_keys(api_keys), insecure=insecure,
        model_dirs=tuple(model_dir) if model_dir else None, extra_env=tuple(allow_env or ()),
        shutdown_timeout_s=shutdown_timeout, timeouts=Timeouts(idle_timeout, body_timeout), aws_region=aws_region,
        tls=(tls_cert, tls_key) if tls_cert and tls_key else None, otlp_endpoint=otlp_endpoint,
        trace_sample_ratio=trace_sample_ratio, metrics_retention_days=metrics_retention_days)
    asyncio.run(run_server(host, port, state_dir or DEFAULT_STATE_DIR, make_runtime(runtime, ray_address), options))


@app.command()
def serve(
    model: Annotated[str, typer.Argument(help="Registered model name or .gguf path")] = "gemma-3-270m",
    copies: Annotated[int, typer.Option(min=1, help="How many copies")] = 2,
    cpus: Annotated[Optional[float], typer.Option(help="CPU cores per copy (default: an even share)")] = None,
    accelerators: Annotated[int, typer.Option(help="Accelerators per copy")] = 0,
    memory: Annotated[int, typer.Option(help="MinMemoryRequiredInMb per copy")] = 1024,
    env: Annotated[Optional[list[str]], typer.Option(help="Engine setting KEY=VALUE (TGI names)")] = None,
    host: Annotated[str, typer.Option(help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = DEFAULT_PORT,
    routing: Annotated[str, typer.Option(help="Routing strategy")] = "LEAST_OUTSTANDING_REQUESTS",
    engine: Annotated[str, typer.Option(help="Engine of each copy: shoal, llama-server, vllm, sglang, tgi")] = "shoal",
    shutdown_timeout: ShutdownTimeout = 30.0,
    log_level: Annotated[str, typer.Option(envvar="LOG_LEVEL")] = "info",
    log_format: LogFormat = "text",
) -> None:
    """One command: serve MODEL with N copies behind one endpoint until Ctrl-C (nothing is kept)."""
    _setup_logging(log_level, log_format)
    import tempfile

    from shoal.control.models import ComponentSpec, EndpointSpec
    from shoal.control.resources import ComputeRequirements, local_instance
    from shoal.errors import ApiError
    from shoal.sdk import component_name_for
    from shoal.server import ServerOptions, run_server

    share = local_instance().vcpus / copies
    per_copy = cpus or (float(int(share)) if share >= 1 else share)
    settings = dict(_pairs(env or []))
    name = component_name_for(model)

    async def deploy(controller) -> None:  # type: ignore[no-untyped-def]
        try:
            controller.create_endpoint(EndpointSpec(name="default", routing=routing))
            controller.create_component(ComponentSpec(
                name=name, endpoint="default", model_id=model, env=settings, copies=copies, engine=engine,
                compute=ComputeRequirements(num_accelerators=accelerators, num_cpus=per_copy, min_memory_mb=memory)))
        except ApiError as exc:
            err.print(f"[red]error:[/red] {exc.message}")
            os.kill(os.getpid(), signal.SIGTERM)
            return
        asyncio.create_task(_announce(controller, name, host, port))

    with tempfile.TemporaryDirectory(prefix="shoal-serve-") as state:
        options = ServerOptions(shutdown_timeout_s=shutdown_timeout)
        asyncio.run(run_server(host, port, Path(state), options=options, on_ready=deploy))


async def _first_answer(base: str, name: str) -> str | None:
    """Send one real request through the gateway (one new token); None once it is answered, else why not."""
    import httpx

    url = f"{base}/endpoints/default/invocations"
    body = {"inputs": "Hello", "parameters": {"max_new_tokens": 1}}
    async with httpx.AsyncClient(timeout=60) as client:
        try:
            answer = await client.post(url, json=body, headers={"X-Amzn-SageMaker-Inference-Component": name})
        except httpx.HTTPError as exc:
            return str(exc)
    return None if answer.status_code == 200 else f"{answer.status_code}: {answer.text[:200]}"


async def _announce(controller, name: str, host: str, port: int) -> None:  # type: ignore[no-untyped-def]
    """Say how to reach the copies once a real request through the gateway succeeds (or why it cannot)."""
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    while True:
        comp = controller.component(name)
        if comp.status.value == "Failed":
            err.print(f"[red]{name} failed:[/red] {comp.failure}")
            return
        if comp.status.value == "InService" and await _first_answer(base, name) is None:
            break
        await asyncio.sleep(0.2)
    err.print(f"[green]{name}: {len(comp.replicas)} copies in service[/green] behind {base}\n"
              f"  TGI:       curl {base}/generate -d '{{\"inputs\": \"Hello\", \"parameters\": "
              f"{{\"max_new_tokens\": 20}}}}' -H 'Content-Type: application/json'\n"
              f"  OpenAI:    {base}/v1/chat/completions (model \"{name}\")\n"
              f"  SageMaker: {base}/endpoints/default/invocations\n"
              f"  Metrics:   {base}/metrics")


def _pairs(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected KEY=VALUE, got '{item}'")
        out.append((key, value))
    return out


# -- client commands (talk to a running server) ---------------------------------------------
Url = Annotated[str, typer.Option("--url", envvar="SHOAL_URL", help="The shoal server")]
# Client commands send SHOAL_API_KEY (if set) as `Authorization: Bearer`: see shoal.sdk.Session.


@app.command()
def deploy(
    model: Annotated[str, typer.Argument(help="Registered model name or .gguf path")],
    endpoint: Annotated[str, typer.Option(help="Endpoint name (created if missing)")] = "default",
    name: Annotated[Optional[str], typer.Option(help="Inference component name")] = None,
    copies: Annotated[int, typer.Option(min=0)] = 1,
    cpus: Annotated[float, typer.Option(help="CPU cores per copy")] = 1.0,
    accelerators: Annotated[int, typer.Option(help="Accelerators per copy")] = 0,
    memory: Annotated[int, typer.Option(help="MinMemoryRequiredInMb per copy")] = 1024,
    max_memory: Annotated[Optional[int], typer.Option(help="MaxMemoryRequiredInMb per copy")] = None,
    instance_type: Annotated[str, typer.Option(help="Instance type of a new endpoint")] = "local",
    instance_count: Annotated[int, typer.Option(help="Instances of a new endpoint")] = 1,
    routing: Annotated[str, typer.Option(help="Routing strategy of a new endpoint")] = "LEAST_OUTSTANDING_REQUESTS",
    startup_timeout: Annotated[int, typer.Option(help="ContainerStartupHealthCheckTimeoutInSeconds")] = 600,
    env: Annotated[Optional[list[str]], typer.Option(help="Engine setting KEY=VALUE (TGI names)")] = None,
    engine: Annotated[str, typer.Option(
        help="Engine of each copy: shoal (built-in), llama-server, vllm, sglang, tgi, command")] = "shoal",
    engine_command: Annotated[Optional[str], typer.Option(
        help="For --engine command: the command line ({host} {port} {model} {threads} {accelerators})")] = None,
    engine_protocol: Annotated[Optional[str], typer.Option(help="For --engine command: tgi or openai")] = None,
    adapter_of: Annotated[Optional[str], typer.Option(
        help="MODEL is a LoRA adapter (a GGUF file, or one shoal ships) that this component's copies serve")] = None,
    url: Url = f"http://127.0.0.1:{DEFAULT_PORT}",
) -> None:
    """Deploy a model as an inference component and wait until it serves (or, with --adapter-of, an adapter of
    a deployed component)."""
    from shoal.sdk import Model, ResourceRequirements, Session

    limits = {"memory": max_memory} if max_memory else None
    resources = ResourceRequirements({"copies": copies, "num_accelerators": accelerators, "num_cpus": cpus,
                                      "memory": memory}, limits)
    predictor = Model(model, env=dict(_pairs(env or [])), name=name, session=Session(url), engine=engine,
                      engine_command=engine_command, engine_protocol=engine_protocol, adapter_of=adapter_of).deploy(
        endpoint, instance_type, instance_count, resources, startup_timeout, routing)
    _show_component(predictor.describe())


@app.command("ls")
def list_all(url: Url = f"http://127.0.0.1:{DEFAULT_PORT}") -> None:
    """Endpoints and their inference components."""
    from rich.table import Table

    from shoal.sdk import Session

    session = Session(url)
    table = Table("endpoint", "instances", "routing", "component", "model", "engine", "copies", "status",
                  "last scaling")
    for ep in session.endpoints():
        spec = ep["spec"]
        comps = session.components(spec["name"]) or [None]
        for c in comps:
            table.add_row(spec["name"], f"{spec['instance_type']} x{spec['instance_count']}", spec["routing"],
                          *(("", "", "", "", ep["status"], "") if c is None else (
                              c["spec"]["name"], c["spec"]["model_id"],
                              f"adapter of {c['spec']['base']}" if c["spec"].get("base") else c["spec"]["engine"],
                              "-" if c["spec"].get("base") else _copies(c), c["status"], _last_scaling(c))))
    table_console().print(table)


def _copies(c: dict) -> str:
    """In service / desired (+ draining)."""
    serving = sum(1 for r in c["copies"] if r["status"] == "InService")
    draining = f" (+{c['draining_copies']} draining)" if c.get("draining_copies") else ""
    return f"{serving}/{c.get('desired_copies', len(c['copies']))}{draining}"


def _last_scaling(c: dict) -> str:
    if not (auto := c.get("autoscaling")) or not (a := auto.get("last_activity")):
        return "" if not auto else "-"
    import time

    return f"{a['cause']} ({a['status']}, {time.time() - a['started_at']:.0f}s ago)"


@app.command()
def describe(name: Annotated[str, typer.Argument(help="Inference component name")],
             url: Url = f"http://127.0.0.1:{DEFAULT_PORT}") -> None:
    """Where each copy of a component runs, and how it is."""
    from shoal.sdk import Session

    _show_component(Session(url).component(name))


def _show_component(view: dict) -> None:
    from rich.table import Table

    spec = view["spec"]
    reason = f" ({view['reason']})" if view.get("reason") else ""
    console = table_console()
    if spec.get("base"):
        console.print(f"[bold]{spec['name']}[/bold] on {spec['endpoint']}: adapter {spec['model_id']} of "
                      f"{spec['base']} (its copies serve it), {view['status']}{reason}")
        return
    console.print(f"[bold]{spec['name']}[/bold] on {spec['endpoint']}: {spec['model_id']} "
                  f"(engine {spec['engine']}), {view['status']}{reason}")
    if view.get("adapters"):
        console.print(f"adapters: {', '.join(view['adapters'])}", markup=False)
    if auto := view.get("autoscaling"):
        console.print(f"copies: {_copies(view)} in service/desired; autoscaling {auto['min_copies']}-"
                      f"{auto['max_copies']} copies, {', '.join(auto['targets']) or 'no target tracking'}"
                      + (f" (cooldowns: out {auto['scale_out_cooldown_s']}s, in {auto['scale_in_cooldown_s']}s)"
                         if auto["targets"] else ""), markup=False)
        if a := auto.get("last_activity"):
            console.print(f"last scaling: {_last_scaling(view)}: {a['message'] or a['status']}", markup=False)
    table = Table("copy", "status", "instance", "accelerators", "cores", "memory MB", "address", "pid",
                  "restarts", "in flight", "reason")
    for r in view["copies"]:
        slot = r["slot"]
        table.add_row(r["id"], r["status"], str(slot["instance"]), ",".join(map(str, slot["accelerators"])) or "-",
                      ",".join(map(str, slot["cores"]))
                      + ("" if slot["cpu_share"] >= 1 else f" ({slot['cpu_share']:g})"),
                      str(slot["memory_mb"]), r["address"] or "-", str(r["pid"] or "-"), str(r["restarts"]),
                      str(r["in_flight"]), r["reason"] or "")
    console.print(table)


@app.command()
def scale(name: Annotated[str, typer.Argument(help="Inference component name")],
          copies: Annotated[int, typer.Argument(min=0, help="New copy count")],
          url: Url = f"http://127.0.0.1:{DEFAULT_PORT}") -> None:
    """Change a component's copy count (scale-in drains copies first)."""
    from shoal.sdk import Predictor, Session

    session = Session(url)
    endpoint = session.component(name)["spec"]["endpoint"]
    _show_component(Predictor(endpoint, name, session).update(copies=copies))


@app.command()
def invoke(
    prompt: Annotated[str, typer.Argument(help="The inputs")],
    endpoint: Annotated[str, typer.Option(help="Endpoint name")] = "default",
    component: Annotated[Optional[str], typer.Option(help="Inference component name")] = None,
    max_new_tokens: Annotated[int, typer.Option()] = 50,
    stream: Annotated[bool, typer.Option(help="Print tokens as they come")] = False,
    url: Url = f"http://127.0.0.1:{DEFAULT_PORT}",
) -> None:
    """Send one request through the gateway, as SageMaker's runtime would."""
    from shoal.sdk import Predictor, Session

    predictor = Predictor(endpoint, component, Session(url))
    body = {"inputs": prompt, "parameters": {"max_new_tokens": max_new_tokens}}
    if not stream:
        typer.echo(predictor.predict(body)[0]["generated_text"])
        return
    for event in predictor.predict_stream(body):
        typer.echo("" if event["token"]["special"] else event["token"]["text"], nl=False)
    typer.echo()


@app.command()
def delete(
    name: Annotated[str, typer.Argument(help="Inference component (or endpoint, with --endpoint)")],
    endpoint: Annotated[bool, typer.Option("--endpoint", help="Delete an endpoint")] = False,
    cascade: Annotated[bool, typer.Option(help="With --endpoint: delete its components too")] = False,
    url: Url = f"http://127.0.0.1:{DEFAULT_PORT}",
) -> None:
    """Delete an inference component (draining its copies) or an endpoint."""
    from shoal.sdk import Session

    session = Session(url)
    if endpoint:
        session.call("DELETE", f"/api/endpoints/{name}" + ("?cascade=true" if cascade else ""))
    else:
        session.call("DELETE", f"/api/inference-components/{name}")
    typer.echo(f"deleted {name}")


keys_app = typer.Typer(no_args_is_help=True, help="API keys for `shoal server --api-keys FILE`.")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A name for the key (shown in logs instead of the secret)")],
    scope: Annotated[str, typer.Option(help="admin (everything) or invoke (inference routes only)")] = "invoke",
    file: Annotated[Path, typer.Option(help="The key file to add it to")] = Path.home() / ".shoal" / "keys.json",
    requests_per_minute: Annotated[Optional[int], typer.Option(
        min=1, help="Refuse its inference requests past this many per minute (429, Retry-After)")] = None,
    tokens_per_minute: Annotated[Optional[int], typer.Option(
        min=1, help="Refuse its inference requests once its answers used this many tokens in a minute")] = None,
) -> None:
    """Make a key and add it to the key file; print its secret once."""
    from shoal.security.keys import KeyLimits, Scope, append_key, new_key

    limits = KeyLimits(requests_per_minute=requests_per_minute, tokens_per_minute=tokens_per_minute) \
        if requests_per_minute or tokens_per_minute else None
    try:
        key = new_key(name, Scope(scope), limits)
    except ValueError:
        raise typer.BadParameter(f"--scope must be admin or invoke, not {scope!r}") from None
    append_key(file, key)
    typer.echo(f"added key {name!r} ({scope}) to {file}\n"
               f"  Bearer token (SHOAL_API_KEY, OpenAI api_key): {key.secret.get_secret_value()}\n"
               f"  AWS credentials (boto3, sagemaker SDK): aws_access_key_id={key.access_key_id} "
               f"aws_secret_access_key={key.secret.get_secret_value()}")


@app.command()
def usage(
    key: Annotated[Optional[str], typer.Option(help="Only this API key's (its name)")] = None,
    component: Annotated[Optional[str], typer.Option(help="Only this inference component's")] = None,
    since: Annotated[Optional[str], typer.Option(
        help="From when: a duration back from now (90m, 24h, 7d) or a time (ISO 8601); default: all that is kept")] = None,
    by: Annotated[Optional[str], typer.Option(help="A row per hour or day")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The API's answer, as JSON")] = False,
    url: Url = f"http://127.0.0.1:{DEFAULT_PORT}",
) -> None:
    """Usage per API key and inference component: requests, errors, tokens (GET /api/usage)."""
    import json
    import time
    from urllib.parse import urlencode

    from rich.table import Table

    from shoal.sdk import Session

    query = {"key": key, "component": component, "by": by, "start": _since(since, time.time()) if since else None}
    report = Session(url).call("GET", "/api/usage?" + urlencode({k: v for k, v in query.items() if v is not None}))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(*(["hour" if by == "hour" else "day"] if by else []), "key", "component", "requests", "errors",
                  "throttled", "prompt tokens", "cached", "generated", "total tokens")
    for r in report["rows"]:
        when = [time.strftime("%Y-%m-%d %H:00" if by == "hour" else "%Y-%m-%d", time.gmtime(r["start"]))] if by else []
        table.add_row(*when, r["key"] or "(no key)", r["component"] or "-", *(str(r[f]) for f in (
            "requests", "errors", "throttled", "prompt_tokens", "cached_tokens", "generated_tokens", "total_tokens")))
    table_console().print(table)


def _since(text: str, now: float) -> str:
    """`90m`, `24h`, `7d` back from `now` (epoch seconds), or the ISO 8601 time as given."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return str(now - float(text[:-1]) * units[text[-1]])
    return text


@app.command()
def bench(
    url: Url = f"http://127.0.0.1:{DEFAULT_PORT}",
    kind: Annotated[str, typer.Option(help="shoal | sagemaker | tgi | openai: the target's protocol")] = "shoal",
    endpoint: Annotated[str, typer.Option(help="Endpoint (shoal / sagemaker targets)")] = "default",
    component: Annotated[Optional[str], typer.Option(help="Inference component (or OpenAI model)")] = None,
    vus: Annotated[Optional[str], typer.Option(help="Closed loop: virtual users per point, e.g. 1,2,4,8")] = None,
    rate: Annotated[Optional[str], typer.Option(help="Open loop: arrivals per second per point, e.g. 1,2,4")] = None,
    schedule: Annotated[Optional[str], typer.Option(
        help="Load that changes over time, e.g. ramp:1-16:60,hold:16:60,ramp:16-1:60 (virtual users; stages "
             "ramp:A-B:S, hold:N:S, step:N:S); records the component's copies over time")] = None,
    schedule_rate: Annotated[bool, typer.Option(
        help="The --schedule's values are arrivals per second (open loop), not virtual users")] = False,
    poisson: Annotated[bool, typer.Option(help="Open loop: Poisson arrivals instead of constant")] = False,
    duration: Annotated[float, typer.Option(help="Seconds per point")] = 60.0,
    grace: Annotated[float, typer.Option(help="Seconds open requests may finish after a point")] = 30.0,
    prompt_tokens: Annotated[int, typer.Option(help="Exact prompt length in tokens")] = 256,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens generated per request")] = 32,
    vary_prompts: Annotated[bool, typer.Option(help="64 different prompts of that length, not one")] = False,
    prompts_file: Annotated[Optional[Path], typer.Option(help="JSONL of {\"prompt\": ...}")] = None,
    sample: Annotated[bool, typer.Option(help="Sample (seeded per request) instead of greedy")] = False,
    tokenizer: Annotated[str, typer.Option(help="Model whose tokenizer sizes the prompts")] = "gemma-3-270m",
    slo_ttft: Annotated[Optional[float], typer.Option(help="Goodput SLO: time to first token, s")] = None,
    slo_latency: Annotated[Optional[float], typer.Option(help="Goodput SLO: request latency, s")] = None,
    slo_itl: Annotated[Optional[float], typer.Option(help="Goodput SLO: mean inter-token latency, s")] = None,
    deploy_model: Annotated[Optional[str], typer.Option("--deploy", help="Deploy this model per configuration")] = None,
    config: Annotated[Optional[list[str]], typer.Option(help="NAME:copies=2,cpus=1,routing=...,env.KEY=V")] = None,
    out: Annotated[Path, typer.Option(help="Folder for results.json, results.csv and plots")] = Path("results/bench"),
) -> None:
    """Load-test an endpoint with virtual users and report throughput, latency, TTFT, tokens/s."""
    _setup_logging("warning")
    from shoal.bench.main import BenchPlan, run
    from shoal.bench.stats import Slo
    from shoal.bench.sweep import Config, Load
    from shoal.bench.workload import Target

    if sum(x is not None for x in (vus, rate, schedule)) != 1:
        raise typer.BadParameter("give one of --vus (closed loop), --rate (open loop) or --schedule")
    if config and not deploy_model:
        raise typer.BadParameter("--config needs --deploy MODEL: each configuration is deployed in turn")
    if kind not in ("shoal", "sagemaker", "tgi", "openai"):
        raise typer.BadParameter(f"unknown --kind '{kind}'")
    if schedule:
        from shoal.bench.schedule import Schedule

        try:
            loads = [Load(schedule=Schedule.parse(schedule), of_rate=schedule_rate, poisson=poisson)]
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    else:
        loads = ([Load(vus=int(v)) for v in vus.split(",")] if vus else
                 [Load(rate=float(r), poisson=poisson) for r in (rate or "").split(",")])
    slo = Slo(slo_ttft, slo_latency, slo_itl) if any(x is not None for x in (slo_ttft, slo_latency, slo_itl)) else None
    plan = BenchPlan(Target(kind, url, endpoint, component, component), loads, duration, grace, prompt_tokens,  # type: ignore[arg-type]
                     max_new_tokens, vary_prompts, prompts_file, sample, tokenizer, slo, out, deploy_model,
                     [Config.parse(c) for c in config or []])
    asyncio.run(run(plan))


@app.command("plan")
def plan_command(
    model: Annotated[Optional[str], typer.Argument(
        help="A known model (llama-2-13b, or its Hugging Face id) or a config.json path (or its folder)")] = None,
    seed: Annotated[bool, typer.Option("--seed", help="The seed's table: Llama 2 7B/13B/70B, fp16 and GPTQ")] = False,
    instance_type: Annotated[str, typer.Option(help="Instance type")] = "ml.p4d.24xlarge",
    quantize: Annotated[Optional[str], typer.Option(
        help="HF_MODEL_QUANTIZE: gptq, awq, bitsandbytes, eetq, fp8, ... or a GGUF type (default fp16)")] = None,
    max_batch_total_tokens: Annotated[int, typer.Option(min=1, help="MAX_BATCH_TOTAL_TOKENS (the KV cache)")] = 16384,
    max_total_tokens: Annotated[int, typer.Option(min=1, help="MAX_TOTAL_TOKENS")] = 4096,
    kv_cache_dtype: Annotated[str, typer.Option(help="KV_CACHE_DTYPE: fp16, bf16, fp8")] = "fp16",
    cpus: Annotated[Optional[float], typer.Option(help="CPU cores per copy (default 1; --seed: 10)")] = None,
    memory: Annotated[Optional[int], typer.Option(
        help="MinMemoryRequiredInMb per copy (default 1024; --seed: 102400)")] = None,
    prompt_tokens: Annotated[int, typer.Option(min=1, help="Roofline: prompt tokens per request")] = 1000,
    new_tokens: Annotated[int, typer.Option(min=1, help="Roofline: new tokens per request")] = 50,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Which copies of a model fit an instance type and why, with a roofline requests/s (nothing is downloaded)."""
    import json

    from rich.table import Table

    from shoal.control import plan as planning

    if seed == (model is not None):
        raise typer.BadParameter("give a MODEL or --seed")
    limits = planning.Limits(max_batch_total_tokens, max_total_tokens, kv_cache_dtype=kv_cache_dtype)
    workload = planning.Workload(prompt_tokens, new_tokens)
    plans = (planning.seed_plans(instance_type, limits, workload, cpus, memory) if seed else
             [planning.plan(model or "", instance_type, quantize, limits, workload, cpus, memory)])
    if json_output:
        typer.echo(json.dumps(planning.as_json(plans, seed), indent=2))
    else:
        headers, rows = planning.table_rows(plans, seed)
        table = Table(*headers)
        for row in rows:
            table.add_row(*row)
        console = table_console()
        console.print(planning.heading(plans[0]), markup=False, highlight=False)
        console.print(table)
        for line in planning.notes(plans):
            console.print(line, markup=False, highlight=False)
    if not seed and not plans[0].copies:
        raise typer.Exit(1)


@app.command()
def autoscale(
    name: Annotated[str, typer.Argument(help="Inference component name")],
    min_copies: Annotated[Optional[int], typer.Option("--min", min=0, help="Fewest copies (0: scale to zero)")] = None,
    max_copies: Annotated[Optional[int], typer.Option("--max", min=0, help="Most copies")] = None,
    target_concurrency: Annotated[Optional[float], typer.Option(
        help="Target requests per copy, in flight + queued")] = None,
    target_invocations: Annotated[Optional[float], typer.Option(
        help="Target invocations per copy per minute")] = None,
    scale_out_cooldown: Annotated[int, typer.Option(help="Seconds the copies a scale-out asked for count as "
                                                         "serving")] = 300,
    scale_in_cooldown: Annotated[int, typer.Option(help="Seconds of lower load before a scale-in, and between "
                                                        "two")] = 300,
    cold_start_timeout: Annotated[float, typer.Option(help="Seconds a request at zero copies waits for one "
                                                           "before a 503")] = 300.0,
    off: Annotated[bool, typer.Option("--off", help="Stop autoscaling (the copies stay as they are)")] = False,
    url: Url = f"http://127.0.0.1:{DEFAULT_PORT}",
) -> None:
    """Autoscale a component's copies (target tracking, scale to zero), or show its policy and activities."""
    import time

    from rich.table import Table

    from shoal.sdk import Predictor, Session

    session = Session(url)
    predictor = Predictor(session.component(name)["spec"]["endpoint"], name, session)
    if off:
        predictor.autoscale(None)
        typer.echo(f"{name}: autoscaling off")
        return
    if (min_copies is None) != (max_copies is None):
        raise typer.BadParameter("give both --min and --max (or neither, to show the policy)")
    state = predictor.autoscaling() if min_copies is None else predictor.autoscale(
        min_copies, max_copies, target_concurrency=target_concurrency, target_invocations=target_invocations,
        scale_out_cooldown=scale_out_cooldown, scale_in_cooldown=scale_in_cooldown,
        cold_start_timeout=cold_start_timeout)
    _show_component(predictor.describe())
    table = Table("started", "from", "to", "cause", "status", "outcome")
    for a in state["activities"][:10]:
        table.add_row(time.strftime("%H:%M:%S", time.localtime(a["started_at"])), str(a["from_copies"]),
                      str(a["to_copies"]), a["cause"], a["status"], a["message"] or "")
    table_console().print(table)


def main() -> None:
    try:
        app()
    except ShoalError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
