"""Whether the gateway can serve: `GET /health` (and SageMaker's `/ping`) answer 200 only when every
inference component has a copy in service (or starts one on demand, scaling from zero), and 503 while
any has none or the server is stopping, with each component's state; `GET /live` says only that the
process answers. The routes need no key, so with keys on they name no component: counts only."""
from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel

from shoal.gateway.pool import Pool, RoutingTable
from shoal.http import json_response


class ComponentReadiness(BaseModel):
    name: str
    endpoint: str
    status: str  # the component's: Creating, InService, Updating, Failed, Deleting
    copies_in_service: int
    ready: bool
    reason: str | None = None  # why it cannot take a request now

    @classmethod
    def of(cls, pool: Pool) -> ComponentReadiness:
        serving, status = len(pool.serving()), pool.status()
        if serving:
            return cls(name=pool.name, endpoint=pool.config.endpoint, status=status, copies_in_service=serving,
                       ready=True)
        why_not = pool.cold_start.why_not() if pool.cold_start else "no copy is in service"
        return cls(name=pool.name, endpoint=pool.config.endpoint, status=status, copies_in_service=0,
                   ready=why_not is None, reason=None if why_not is None else f"{why_not} (status {status})")


class ReadinessReport(BaseModel):
    status: Literal["ready", "unavailable", "stopping"]
    ready: int  # components that can take a request now
    total: int
    components: list[ComponentReadiness] | None = None  # left out when the server has API keys


class Readiness:
    """The health routes over the routing table; `stopping` once the server has begun to shut down."""

    def __init__(self, table: RoutingTable, detail: bool = True) -> None:
        self.table = table
        self.detail = detail  # name the components (a server without keys)
        self.stopping = False

    def report(self, only: str | None = None) -> ReadinessReport:
        components = [ComponentReadiness.of(p) for name, p in self.table.pools.items() if only in (None, name)]
        ready = sum(c.ready for c in components)
        status = "stopping" if self.stopping else "ready" if ready == len(components) else "unavailable"
        return ReadinessReport(status=status, ready=ready, total=len(components),
                               components=components if self.detail else None)

    async def health(self, request: web.Request) -> web.StreamResponse:
        """200 when every component (or the one `?component=` names) can take a request now."""
        only = request.query.get("component")
        if only is not None and only not in self.table.pools:
            return json_response({"error": f"no inference component \"{only}\"", "error_type": "not_found"}, 404)
        report = self.report(only)
        return json_response(report.model_dump(exclude_none=True), 200 if report.status == "ready" else 503)

    async def live(self, _request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")
