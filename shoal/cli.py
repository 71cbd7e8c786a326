"""The `shoal` command line."""
from __future__ import annotations

import logging
import os
from typing import Annotated, Optional

import typer
from rich.console import Console

from shoal.errors import ShoalError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Many LLM replicas behind one endpoint.")
err = Console(stderr=True)


@app.callback()
def _shoal() -> None:
    """Many LLM replicas behind one endpoint."""


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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
) -> None:
    """Serve one copy of a model: a TGI-compatible server with continuous batching.

    Every setting also reads TGI's environment name (MAX_INPUT_LENGTH, MAX_TOTAL_TOKENS, ...);
    a flag wins over the environment."""
    _setup_logging(log_level)
    from shoal.engine.launch import run_engine
    from shoal.engine.settings import EngineSettings

    settings = EngineSettings.build(
        os.environ, model_id=model, max_input_length=max_input_length, max_total_tokens=max_total_tokens,
        max_batch_prefill_tokens=max_batch_prefill_tokens, max_batch_total_tokens=max_batch_total_tokens,
        max_concurrent_requests=max_concurrent_requests, max_stop_sequences=max_stop_sequences,
        waiting_served_ratio=waiting_served_ratio, max_waiting_tokens=max_waiting_tokens,
        chat_template=chat_template, num_threads=num_threads)
    run_engine(settings, host, port)


def main() -> None:
    try:
        app()
    except ShoalError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
