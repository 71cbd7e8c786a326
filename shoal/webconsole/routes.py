"""The console's routes, declared in the route table like every other (door, key scope, answers):

- `GET /console` and `/console/static/...`: the page and its files, from the package (no CDN, no build);
  open, since they hold no data; the page asks for a key when the server has keys.
- `GET /console/api/session` (invoke scope: any key): which key the page holds and its scope, so the page
  shows only what that scope may use.
- `GET /console/api/state`, `/console/api/history`, `/console/api/copies/{id}/log`, `/console/api/bench...`
  (admin scope): what the page shows. They read what `/api/...` and `/metrics` already give an admin key
  (placement, copies and their logs' last lines, load), so they need the same key: an invoke key may send
  requests, not see where and how they run.
- Every change the page makes goes through shoal's control API (`/api/...`, admin), so its validation and
  error texts are the API's own.
"""
from __future__ import annotations

import hashlib
import math
import mimetypes
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import orjson
from aiohttp import web
from pydantic import BaseModel

from shoal.apidoc import ApiDoc, Op, Param, Reply
from shoal.control.autoscaling.scaler import Autoscaler
from shoal.control.controller import Controller
from shoal.errors import ApiError
from shoal.protocol.responses import ErrorBody
from shoal.security.keys import KeyRing, Scope
from shoal.security.middleware import KEY_NAME
from shoal.webconsole import bench, summary
from shoal.webconsole.history import LoadHistory

PAGE_HEADERS = {  # everything the page loads comes from this server
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated with the ETag: a new server version is seen at once
}


class SessionInfo(BaseModel):
    """The key the console uses, as the server sees it."""

    keys: bool  # the server checks keys
    key: str | None = None  # the key's name (never its secret)
    scope: Scope  # what the page may use: admin (everything) or invoke (inference routes only)


@dataclass(frozen=True)
class _Asset:
    body: bytes
    content_type: str
    etag: str


def _assets() -> dict[str, _Asset]:
    """The package's static files, read once: name (below static/) -> bytes, type, ETag."""
    out: dict[str, _Asset] = {}
    root = resources.files("shoal.webconsole") / "static"

    def walk(folder, prefix: str) -> None:  # type: ignore[no-untyped-def]
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            elif entry.is_file():
                name = f"{prefix}{entry.name}"
                body = entry.read_bytes()
                kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
                if kind.startswith("text/") or kind.endswith("javascript"):
                    kind += "; charset=utf-8"
                out[name] = _Asset(body, kind, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')
    walk(root, "")
    return out


def _json(data: object) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


class WebConsole:
    def __init__(self, controller: Controller, scaler: Autoscaler | None, keys: KeyRing,
                 bench_dirs: tuple[Path, ...] = ()) -> None:
        self.c = controller
        self.scaler = scaler
        self.keys = keys
        self.bench_dirs = bench_dirs
        self.history = LoadHistory(controller)
        self.assets = _assets()

    # -- the page -----------------------------------------------------------------------------------------
    def _asset(self, request: web.Request, name: str) -> web.StreamResponse:
        asset = self.assets.get(name)
        if asset is None:
            raise ApiError(404, f"the console has no file {name!r}", "not_found")
        headers = {**PAGE_HEADERS, "ETag": asset.etag}
        if request.headers.get("If-None-Match") == asset.etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=asset.body, headers={**headers, "Content-Type": asset.content_type})

    async def page(self, request: web.Request) -> web.StreamResponse:
        return self._asset(request, "index.html")

    async def static(self, request: web.Request) -> web.StreamResponse:
        return self._asset(request, request.match_info["name"])

    async def vendor(self, request: web.Request) -> web.StreamResponse:
        return self._asset(request, "vendor/" + request.match_info["name"])

    # -- data -----------------------------------------------------------------------------------------------
    async def session(self, request: web.Request) -> web.StreamResponse:
        if not self.keys:
            return _json(SessionInfo(keys=False, scope=Scope.ADMIN).model_dump(mode="json"))
        name = request.get(KEY_NAME)
        key = next((k for k in self.keys.keys if k.name == name), None)
        return _json(SessionInfo(keys=True, key=name, scope=key.scope if key else Scope.INVOKE).model_dump(mode="json"))

    async def state(self, _request: web.Request) -> web.StreamResponse:
        self.history.watch()
        return _json({**summary.state(self.c, self.scaler, bool(self.keys)),
                      "interval_s": self.history.interval_s, "window_s": self.history.window_s})

    async def load_history(self, request: web.Request) -> web.StreamResponse:
        self.history.watch()
        text = request.query.get("since", "0")
        try:
            since = float(text)
        except ValueError:
            since = math.nan
        if math.isnan(since):
            raise ApiError(400, f"since must be a number of seconds since the epoch, not {text!r}", "validation")
        samples = self.history.since(since)
        return _json({"samples": samples, "interval_s": self.history.interval_s,
                      "window_s": self.history.window_s, "watched": self.history.watched})

    async def copy_log(self, request: web.Request) -> web.StreamResponse:
        copy_id = request.match_info["id"]
        found = summary.copy_log(self.c, copy_id)
        if found is None:
            raise ApiError(404, f"Could not find copy \"{copy_id}\".", "not_found")
        return _json(found)

    async def bench_list(self, _request: web.Request) -> web.StreamResponse:
        results = bench.find(self.bench_dirs)
        return _json({"folders": [str(d) for d in self.bench_dirs],
                      "results": [{"id": r.id, "label": r.label, "modified": r.modified} for r in results]})

    async def bench_result(self, request: web.Request) -> web.StreamResponse:
        wanted = request.match_info["id"]
        result = next((r for r in bench.find(self.bench_dirs) if r.id == wanted), None)
        data = bench.load(result) if result else None
        if result is None or data is None:
            raise ApiError(404, f"no shoal bench result with id {wanted!r}", "not_found")
        return _json({"id": result.id, "label": result.label, "modified": result.modified, **data})

    # -- wiring ---------------------------------------------------------------------------------------------
    def add_to(self, app: web.Application, doc: ApiDoc) -> None:
        missing = (Reply(404, ErrorBody, description="no such file, copy or result"),)
        file = Reply(200, description="a file of the console (HTML, JavaScript, CSS), from the package")
        for op in (
            Op("GET", "/console", self.page, "The web console (asks for a key when the server has keys)", "console",
               replies=(Reply(200, media_type="text/html"),), open=True),
            Op("GET", "/console/static/{name}", self.static, "The console's scripts and styles", "console",
               replies=(file, *missing), params=(Param("name", description="file name"),), open=True),
            Op("GET", "/console/static/vendor/{name}", self.vendor, "The console's vendored library (uPlot)",
               "console", replies=(file, *missing), params=(Param("name", description="file name"),), open=True),
            Op("GET", "/console/api/session", self.session, "The key the console holds and its scope", "console",
               replies=(Reply(200, SessionInfo),), scope=Scope.INVOKE),
            Op("GET", "/console/api/state", self.state, "Endpoints, instances, components and every copy where "
               "it runs, with autoscaling and its latest activities", "console",
               replies=(Reply(200, description="the console's view of the server"),)),
            Op("GET", "/console/api/history", self.load_history, "Load samples of every component and copy "
               "(every 2 s, the last 15 minutes)", "console",
               replies=(Reply(200, description="samples, oldest first"), Reply(400, ErrorBody)),
               params=(Param("since", "query", "only samples taken after this time (epoch seconds)", "number"),)),
            Op("GET", "/console/api/copies/{id}/log", self.copy_log, "The last lines of a copy's log", "console",
               replies=(Reply(200, description="the copy's last log lines"), *missing),
               params=(Param("id", description="copy id"),)),
            Op("GET", "/console/api/bench", self.bench_list, "shoal bench results the server can show", "console",
               replies=(Reply(200, description="results, newest first"),)),
            Op("GET", "/console/api/bench/{id}", self.bench_result, "One shoal bench result (its JSON)", "console",
               replies=(Reply(200, description="the result's meta and points"), *missing),
               params=(Param("id", description="result id from the listing"),)),
        ):
            doc.add(app, op)

        async def start(_app: web.Application) -> None:
            await self.history.start()

        async def stop(_app: web.Application) -> None:
            await self.history.stop()

        app.on_startup.append(start)
        app.on_cleanup.append(stop)
