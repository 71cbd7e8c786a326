"""A stand-in for `shoal engine` in the Ray placement-scale tests: 12 real engines (400 MB and a model
thread each) do not fit in this machine's 2 cores and 24 GiB beside a 4-node fake cluster. It speaks
enough of the TGI contract for the gateway (health, invocations) and says which copy answered and
which accelerators Ray gave it. The end-to-end Ray test runs the real engine."""
from __future__ import annotations

import argparse
import os

from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    me = {"port": args.port, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
          "model": os.environ.get("HF_MODEL_ID", "")}

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def info(_request: web.Request) -> web.Response:
        return web.json_response(me)

    async def invocations(_request: web.Request) -> web.Response:
        return web.json_response([{"generated_text": f"copy on port {args.port}"}])

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/info", info)
    app.router.add_post("/invocations", invocations)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
