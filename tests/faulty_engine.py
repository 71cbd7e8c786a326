"""A stand-in engine that can be told to fail, for the supervision tests that no real engine can be made
to do on demand: stop answering (a hung process), report its model loop dead (/health 503), or take a
request and never answer it. It speaks enough of TGI for the gateway. Tests that use it say so in
their names."""
from __future__ import annotations

import argparse
import asyncio
import time

from aiohttp import web

STATE = {"health": "ok", "answer": "now"}


async def health(_request: web.Request) -> web.Response:
    if STATE["health"] == "dead":
        return web.json_response({"error": "the model loop is not running", "error_type": "unhealthy"}, status=503)
    return web.Response(text="ok")


async def fault(request: web.Request) -> web.Response:
    """POST {"health": "ok" | "dead" | "hang", "answer": "now" | "never"}."""
    STATE.update(await request.json())
    if STATE["health"] == "hang":
        asyncio.get_running_loop().call_soon(time.sleep, 3600)  # the whole process stops answering
    return web.Response(text="ok")


CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"


async def invocations(request: web.Request) -> web.Response:
    if STATE["answer"] == "never":
        await asyncio.sleep(3600)
    echo = {CUSTOM_ATTRIBUTES: request.headers[CUSTOM_ATTRIBUTES]} if CUSTOM_ATTRIBUTES in request.headers else {}
    return web.json_response([{"generated_text": "stand-in answer"}], headers=echo)  # as a container may


async def generate(_request: web.Request) -> web.Response:
    if STATE["answer"] == "never":
        await asyncio.sleep(3600)
    return web.json_response({"generated_text": "stand-in answer"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/fault", fault)
    app.router.add_post("/invocations", invocations)
    app.router.add_post("/generate", generate)
    app.router.add_post("/v1/completions", generate)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
