"""HTTP helpers shared by the engine and the gateway (aiohttp + orjson)."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import logging
import re
import signal
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from shoal.errors import ApiError

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status=status,
                        content_type="application/json", headers=headers)


def error_response(error: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    return json_response(error.body(), error.status, headers)


_OPENAI_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
                 422: "invalid_request_error", 424: "server_error", 429: "rate_limit_exceeded",
                 503: "service_unavailable", 504: "timeout"}


def openai_error_response(error: ApiError) -> web.Response:
    """An error in OpenAI's shape, which OpenAI's clients read their message from."""
    headers = {"Retry-After": "1"} if error.status == 429 else None
    kind = _OPENAI_TYPES.get(error.status, "api_error")
    return json_response({"error": {"message": error.message, "type": kind, "param": None,
                                    "code": error.error_type}}, error.status, headers)


def sse(data: Any) -> bytes:
    """One server-sent event holding `data` as JSON (TGI's framing: `data:{...}`)."""
    return b"data:" + orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n\n"


async def start_sse(request: web.Request, headers: dict[str, str] | None = None) -> web.StreamResponse:
    response = web.StreamResponse(headers={**SSE_HEADERS, **(headers or {})})
    await response.prepare(request)
    return response


@web.middleware
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """ApiError -> its JSON body and status; anything unexpected -> 500 without a traceback."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kept = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}  # 405 must say what is
        return json_response({"error": exc.reason, "error_type": "http"}, exc.status, kept)
    except (ConnectionResetError, OSError) as exc:  # the client went away mid-response
        log.debug("client disconnected: %s", exc)
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_response({"error": "internal server error", "error_type": "internal"}, 500)


def _is_malformed_request(record: logging.LogRecord) -> bool:
    return bool(record.exc_info and isinstance(record.exc_info[1], BadHttpMessage))


class _QuietMalformedRequests(logging.Filter):
    """aiohttp answers a request it cannot parse with 400 and logs a traceback at ERROR; keep it at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _is_malformed_request(record):
            log.debug("malformed request refused with 400: %s", record.exc_info[1])  # type: ignore[index]
            return False
        return True


logging.getLogger("aiohttp.server").addFilter(_QuietMalformedRequests())


@dataclass(frozen=True)
class Timeouts:
    """How long a client may take (the defaults are documented in README, "Locking the doors"):
    `idle_s`: a connection that has not sent a whole request head (new, between requests, or trickling its
    headers) is closed after this; `body_s`: a request's body must have arrived within this."""

    idle_s: float = 15.0
    body_s: float = 30.0


async def read_body(request: web.Request, timeout_s: float) -> bytes:
    """The whole body (aiohttp keeps it for the handler), or 408 if it does not arrive in time."""
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {timeout_s:g}s", "timeout") from None


def body_deadline(timeout_s: float) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """A middleware: the request's body is read, within `timeout_s`, before its handler runs."""
    @web.middleware
    async def read_in_time(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.can_read_body:
            await read_body(request, timeout_s)
        return await handler(request)
    return read_in_time


def bearer_only(token: str, open_paths: frozenset[str] = frozenset({"/health", "/ping"})
                ) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """A middleware: every route but `open_paths` answers only `Authorization: Bearer <token>` (a copy's
    credential, which only its gateway holds); 401 before the body is read."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if request.path not in open_paths and not hmac.compare_digest(given, expected):
            return error_response(ApiError(401, "this copy answers only its gateway", "unauthorized"))
        return await handler(request)
    return check


async def serve(app: web.Application, host: str, port: int, shutdown_timeout_s: float = 60.0,
                timeouts: Timeouts | None = None, ssl_context: ssl.SSLContext | None = None) -> web.AppRunner:
    """Start `app` on host:port; a client that disconnects cancels its handler (frees its slot).
    `runner.cleanup()` stops listening, then lets requests in flight finish for up to `shutdown_timeout_s`.
    (Body timeouts are `body_deadline`'s: add it to the app's middlewares.)"""
    timeouts = timeouts or Timeouts()
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=shutdown_timeout_s,
                           keepalive_timeout=timeouts.idle_s)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True, ssl_context=ssl_context).start()
    return runner


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x1b]|[\n\r]")


class SafeFormatter(logging.Formatter):
    """Log lines that a request cannot forge: control characters and line breaks in a message (a path, a
    header) are written escaped; tracebacks keep their lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, exception; a record with `fields` (the
    access log's: request and trace ids, route, component, status, ms) carries them instead of its message."""

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")
        out: dict[str, Any] = {"time": when, "level": record.levelname.lower(), "logger": record.name}
        fields = getattr(record, "fields", None)
        out.update(fields if isinstance(fields, dict) else {"message": record.getMessage()})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class StopSignals:
    """SIGINT and SIGTERM: the first asks for a graceful stop (`requested`), a second one to stop now (`forced`)."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.forced = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._received, sig)

    def _received(self, sig: signal.Signals) -> None:
        if self.requested.is_set():
            log.warning("%s again: stopping now", sig.name)
            self.forced.set()
        self.requested.set()


async def drain(runner: web.AppRunner, forced: asyncio.Event) -> None:
    """Stop listening and let requests in flight finish (within the runner's shutdown timeout), unless
    `forced` is set first."""
    cleanup = asyncio.ensure_future(runner.cleanup())
    force = asyncio.ensure_future(forced.wait())
    await asyncio.wait({cleanup, force}, return_when=asyncio.FIRST_COMPLETED)
    force.cancel()
    if not cleanup.done():
        cleanup.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cleanup
