"""Start one engine: resolve the model, load it (with a progress bar), serve HTTP until stopped."""
from __future__ import annotations

import asyncio
import logging
import os

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from shoal import tracing
from shoal.engine.engine import Engine
from shoal.engine.runners.llamacpp import LlamaCppRunner
from shoal.engine.server import build_app
from shoal.engine.settings import EngineSettings
from shoal.hardware import describe_cpu, use_extra_buffers
from shoal.http import StopSignals, drain, serve
from shoal.launch import COPY_TOKEN_ENV
from shoal.models.registry import canonical_name, resolve

log = logging.getLogger(__name__)


def load_runner(settings: EngineSettings) -> LlamaCppRunner:
    """Load the model (the scheduler's thread decodes once before /health says 200)."""
    path = resolve(settings.model_id)
    extra_buffers = use_extra_buffers(settings.extra_buffers)
    with Progress(TextColumn("loading {task.description}"), BarColumn(), TimeElapsedColumn(),
                  transient=True) as progress:
        task = progress.add_task(path.name, total=1.0)
        runner = LlamaCppRunner(
            canonical_name(settings.model_id), path,
            n_ctx=settings.context_tokens,
            n_batch=settings.max_batch_prefill_tokens + settings.max_sequences,
            n_seq_max=settings.sequence_ids, n_threads=settings.threads,
            n_gpu_layers=-1 if settings.num_gpus else 0, flash_attention=settings.flash_attention,
            extra_buffers=extra_buffers, on_progress=lambda p: progress.update(task, completed=p))
    log.info("loaded %s (%s, %s) with %d threads on %s; extra CPU weight buffers %s", runner.info.model_id,
             runner.info.description, runner.info.device, settings.threads, describe_cpu(),
             "on" if extra_buffers else "off")
    return runner


async def serve_engine(settings: EngineSettings, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT; then stop listening and let requests in flight finish (at most
    `settings.shutdown_timeout_s`; a second signal stops at once)."""
    signals = StopSignals()
    if endpoint := tracing.configured_endpoint():
        tracing.enable("shoal-engine", endpoint, sample_ratio=tracing.configured_ratio())
    engine = Engine(settings, load_runner(settings))
    app = build_app(engine, copy_token=os.environ.get(COPY_TOKEN_ENV) or None)
    site = await serve(app, host, port, settings.shutdown_timeout_s)
    log.info("engine for %s listening on http://%s:%d", engine.runner.info.model_id, host, port)
    await signals.requested.wait()
    log.info("stopping: %d requests in flight get up to %gs to finish", engine.in_flight, settings.shutdown_timeout_s)
    await drain(site, signals.forced)
    tracing.disable()  # exports what is batched


def run_engine(settings: EngineSettings, host: str, port: int) -> None:
    asyncio.run(serve_engine(settings, host, port))
