"""Run llama.cpp's C++ server from the `xllamacpp` wheel, with llama-server's own flag names.

    python -m shoal.engines.xllamacpp_server --model M.gguf --host 127.0.0.1 --port 8080 -c 16384 -np 8
"""
from __future__ import annotations

import argparse
import os
import signal
import threading

from shoal.launch import COPY_TOKEN_ENV


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="xllamacpp_server", description=__doc__)
    p.add_argument("-m", "--model", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("-a", "--alias", default=None)
    p.add_argument("-c", "--ctx-size", type=int, default=4096)
    p.add_argument("-np", "--parallel", type=int, default=1)
    p.add_argument("-b", "--batch-size", type=int, default=2048)
    p.add_argument("-t", "--threads", type=int, default=1)
    p.add_argument("-ngl", "--n-gpu-layers", type=int, default=0)
    p.add_argument("-fa", "--flash-attn", choices=("on", "off", "auto"), default="auto")
    p.add_argument("--kv-unified", action="store_true")
    p.add_argument("-nr", "--no-repack", action="store_true", help="no extra CPU weight buffers (AMX, repacking)")
    p.add_argument("--chat-template", default=None)
    p.add_argument("--lora", action="append", default=[], help="a LoRA adapter, loaded and applied per request")
    p.add_argument("--metrics", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import xllamacpp as x

    args = parse_args(argv)
    params = x.CommonParams()
    params.model.path = args.model
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx, params.n_parallel, params.n_batch = args.ctx_size, args.parallel, args.batch_size
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = args.threads
    params.n_gpu_layers = args.n_gpu_layers
    params.flash_attn_type = {"on": x.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                              "off": x.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED,
                              "auto": x.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_AUTO}[args.flash_attn]
    params.kv_unified = args.kv_unified
    params.no_extra_bufts = args.no_repack
    params.endpoint_metrics = args.metrics
    if args.alias:
        params.model_alias = {args.alias}
    if args.chat_template:
        params.chat_template = args.chat_template
    if args.lora:  # loaded at start, applied only where a request asks (`lora`: [{"id", "scale"}])
        params.lora_init_without_apply = True
        params.lora_adapters = [_adapter(path) for path in args.lora]
    if token := os.environ.get(COPY_TOKEN_ENV):  # the copy answers only the gateway (its health route stays open)
        params.api_keys = [token]
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = x.Server(params)  # serves on its own threads until this process ends
    print(f"llama.cpp server listening on {server.listening_address}", flush=True)
    stop.wait()


def _adapter(path: str):  # type: ignore[no-untyped-def]
    import xllamacpp as x

    info = x.CommonAdapterLoraInfo()
    info.path, info.scale = path, 1.0
    return info


if __name__ == "__main__":
    main()
