"""One copy's life: launch on its slot, wait until healthy, watch it, restart it, give up on it.

- Startup: the engine's health route must answer 200 within ContainerStartupHealthCheckTimeoutInSeconds.
  A copy that exits or times out first is Failed, and the reason quotes the last lines of its log.
- In service: the process is watched (exit, memory over MaxMemoryRequiredInMb) and its health route is
  probed every `probe_interval_s`, at once when the gateway reports it kept a request waiting; after
  `probe_failures` failed probes in a row it is taken out of routing and restarted.
- Restarts back off exponentially (1 s .. 30 s). A copy restarted `crash_limit` times within
  `crash_window_s` is Failed: its reason says what happened (exit code or signal, last log lines).
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from shoal.control.models import CopyStatus
from shoal.control.state import Component, Replica
from shoal.engines import engine_kind
from shoal.gateway.pool import RoutingTable
from shoal.runtime.base import CopyLaunch, LaunchError, Runtime, log_tail

log = logging.getLogger(__name__)
WATCH_INTERVAL_S = 0.5
MAX_BACKOFF_S = 30.0
DRAIN_TIMEOUT_S = 120.0


@dataclass
class SupervisionSettings:
    probe_interval_s: float = 2.0  # health probes of copies in service
    probe_timeout_s: float = 5.0
    probe_failures: int = 3  # in a row: the copy is restarted
    crash_limit: int = 5  # restarts within crash_window_s: the copy is Failed
    crash_window_s: float = 600.0


class Supervisor:
    def __init__(self, runtime: Runtime, table: RoutingTable, log_dir: Path,
                 settings: SupervisionSettings | None = None) -> None:
        self.runtime = runtime
        self.table = table
        self.log_dir = log_dir
        self.settings = settings or SupervisionSettings()
        self.closing = False  # the server is stopping: copies that end are not restarted
        self._http = httpx.AsyncClient(timeout=self.settings.probe_timeout_s)

    async def close(self) -> None:
        await self._http.aclose()

    def log_path(self, replica: Replica) -> Path:
        return self.log_dir / f"{replica.id}.log"

    async def run(self, comp: Component, replica: Replica, instance_type: str,
                  relocate: Callable[[Replica], bool]) -> None:
        """Keep `replica` running until it is stopped or fails; `relocate` re-places a copy whose instance
        is gone (False if it cannot be)."""
        backoff = 1.0
        while not replica.stopping:
            launched = time.monotonic()
            try:
                replica.handle = await self.runtime.launch(self._launch(comp, replica, instance_type))
            except LaunchError as exc:
                replica.reason = exc.reason
                if not exc.retry:
                    return self.fail(comp, replica, exc.reason)
                replica.status = CopyStatus.STARTING
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            if problem := await self._wait_healthy(comp, replica):
                await replica.handle.stop(grace_s=2)
                return self.fail(comp, replica, self._with_log(replica, problem))
            self._enter_service(comp, replica)
            why = await self._watch(comp, replica)
            if replica.stopping or self.closing:
                return
            self.table.remove_backend(comp.spec.name, replica.id)
            await replica.handle.stop(grace_s=2)
            replica.restarts += 1
            if (n := replica.restarts_within(self.settings.crash_window_s)) >= self.settings.crash_limit:
                return self.fail(comp, replica, self._with_log(
                    replica, f"restarted {n} times in {self.settings.crash_window_s:g}s, so shoal stopped trying; "
                             f"last: {why}"))
            replica.status, replica.reason = CopyStatus.RESTARTING, why
            log.warning("%s %s; restarting in %.0fs", replica.id, why, backoff)
            if replica.handle.instance_lost and not relocate(replica):
                return
            backoff = 1.0 if time.monotonic() - launched > 2 * MAX_BACKOFF_S else min(backoff * 2, MAX_BACKOFF_S)
            await asyncio.sleep(backoff)

    def _launch(self, comp: Component, replica: Replica, instance_type: str) -> CopyLaunch:
        """The copy's process, with a credential of its own (new at each start) that only the gateway presents."""
        kind = engine_kind(replica.spec.engine)
        replica.token = secrets.token_urlsafe(24)
        replica.adapters = tuple(comp.adapters.items())
        deployment = replace(replica.spec.deployment(), adapters=replica.adapters)
        plan = kind.with_credential(kind.launch_plan(deployment, replica.slot), replica.token)
        replica.health_path = plan.health_path
        return CopyLaunch(replica.id, plan, replica.slot, self.log_path(replica), instance_type)

    def _enter_service(self, comp: Component, replica: Replica) -> None:
        assert replica.handle is not None
        replica.status, replica.reason = CopyStatus.IN_SERVICE, None
        replica.suspect.clear()
        kind = engine_kind(replica.spec.engine)
        self.table.add_backend(comp.spec.name, replica.id, replica.handle.address,
                               kind.copy_concurrency(replica.spec.deployment()), replica.token,
                               adapters=replica.adapter_names)
        log.info("%s in service at %s", replica.id, replica.address)
        if kind.loads_adapters_live and replica.adapters != tuple(comp.adapters.items()):
            asyncio.create_task(self.sync_adapters(comp, replica))  # adapters that came or went while it started

    async def sync_adapters(self, comp: Component, replica: Replica) -> None:
        """Have a running copy serve the component's adapters as they are now (the built-in engine loads them
        beside the requests it runs: PUT /adapters with the whole set). One call at a time per copy, each
        sending the set as it is when its turn comes, so changes in quick succession end in the latest."""
        async with replica.adapters_lock:
            wanted = tuple(comp.adapters.items())
            if replica.handle is None or replica.status != CopyStatus.IN_SERVICE or wanted == replica.adapters:
                return
            try:
                answer = await self._http.put(f"{replica.handle.address}/adapters", timeout=120,
                                              json={"adapters": [{"name": n, "path": p} for n, p in wanted]},
                                              headers={"Authorization": f"Bearer {replica.token}"})
            except httpx.HTTPError as exc:
                stopping = replica.status != CopyStatus.IN_SERVICE  # it left meanwhile: nothing to load
                log.log(logging.INFO if stopping else logging.WARNING, "%s could not load its adapters: %s",
                        replica.id, str(exc) or type(exc).__name__)
                return
            if answer.status_code != 200:
                log.warning("%s refused its adapters: %s %s", replica.id, answer.status_code, answer.text[:300])
                return
            replica.adapters = wanted
            self.table.set_copy_adapters(comp.spec.name, replica.id, replica.adapter_names)
            log.info("%s serves adapters %s", replica.id, ", ".join(replica.adapter_names) or "none")

    def fail(self, comp: Component, replica: Replica, reason: str) -> None:
        self.table.remove_backend(comp.spec.name, replica.id)
        replica.status, replica.reason = CopyStatus.FAILED, reason
        if not replica.trial:  # a rolling update's new copy failing fails the update (it rolls back)
            comp.failure = f"{replica.id}: {reason}"
        log.error("%s failed: %s", replica.id, reason)

    async def drain(self, comp: Component, replica: Replica) -> None:
        """No new requests for the copy; its requests in flight finish (within DRAIN_TIMEOUT_S)."""
        replica.status = CopyStatus.DRAINING
        await self.table.withdraw(comp.spec.name, replica.id, DRAIN_TIMEOUT_S)

    async def stop(self, comp: Component, replica: Replica, drain: bool) -> None:
        replica.stopping = True
        if drain and replica.status == CopyStatus.IN_SERVICE:
            await self.drain(comp, replica)
        self.table.remove_backend(comp.spec.name, replica.id)
        if replica.task:
            replica.task.cancel()
        if replica.handle:
            await replica.handle.stop()

    def _with_log(self, replica: Replica, problem: str) -> str:
        """A reason a user can act on: what happened, and what the copy itself said last."""
        tail = log_tail(self.log_path(replica))
        if not tail:
            return problem
        return f"{problem}. Last lines of its log ({self.log_path(replica)}):\n  " + "\n  ".join(tail)

    async def _wait_healthy(self, comp: Component, replica: Replica) -> str | None:
        assert replica.handle is not None
        timeout_s = replica.spec.startup_timeout_s
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (ended := replica.handle.exit_status()) is not None:
                return f"engine {ended} during startup"
            if await self._probe(comp, replica) is None:
                return None
            await asyncio.sleep(0.2)
        return f"no healthy answer from its health route within ContainerStartupHealthCheckTimeoutInSeconds={timeout_s}"

    async def _probe(self, comp: Component, replica: Replica) -> str | None:
        """None if the copy's health route says 200; what went wrong otherwise."""
        assert replica.handle is not None
        path = replica.health_path
        try:
            response = await self._http.get(replica.handle.address + path)
        except httpx.TimeoutException:
            return f"no answer from {path} within {self.settings.probe_timeout_s:g}s"
        except httpx.HTTPError as exc:
            return f"{path} unreachable ({type(exc).__name__})"
        if response.status_code != 200:
            return f"{path} answered {response.status_code} {response.text[:200]!r}"
        return None

    async def _watch(self, comp: Component, replica: Replica) -> str:
        """Why the copy must leave service: it ended, grew past its memory limit, or stopped answering its
        health probes."""
        assert replica.handle is not None
        limit = replica.spec.compute.max_memory_mb
        failures, next_probe = 0, time.monotonic() + self.settings.probe_interval_s
        while not replica.stopping:
            if (ended := replica.handle.exit_status()) is not None:
                return ended
            if limit and (used := replica.handle.memory_mb() or 0) > limit:
                return f"used {used:.0f} MB, over MaxMemoryRequiredInMb={limit}"
            if replica.suspect.is_set() or time.monotonic() >= next_probe:
                replica.suspect.clear()
                problem = await self._probe(comp, replica)
                failures = failures + 1 if problem else 0
                if failures >= self.settings.probe_failures:
                    return f"stopped answering its health checks ({failures} in a row failed; last: {problem})"
                next_probe = time.monotonic() + (WATCH_INTERVAL_S if failures else self.settings.probe_interval_s)
            try:
                await asyncio.wait_for(replica.suspect.wait(), WATCH_INTERVAL_S)
            except TimeoutError:
                pass
        return "stopping"
