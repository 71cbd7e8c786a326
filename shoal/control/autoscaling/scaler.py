"""The autoscaler in the server: every second it samples each component's load from the gateway's
routing table (requests in flight + queued, requests answered), asks `decide` what its policy wants,
applies the answer through the controller (scale-in drains), and records every activity with its
cause and outcome. It also gives the gateway its scale-from-zero hook and reads the per-component
figures /metrics shows with SageMaker's names.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque

from prometheus_client import REGISTRY

from shoal.control.autoscaling.decide import (
    INVOCATIONS_WINDOW_S,
    Decision,
    LastActions,
    Sample,
    decide,
    rate_per_minute,
)
from shoal.control.autoscaling.policy import Activity, AutoscalingView, ScalingPolicy
from shoal.control.controller import Controller, PlacementRefused
from shoal.control.models import ComponentUpdate, CopyStatus, Status
from shoal.control.state import Component
from shoal.control.store import StateStore
from shoal.errors import ApiError
from shoal.gateway.metrics import ComponentRow, register_component_gauges
from shoal.gateway.pool import ColdStart

log = logging.getLogger(__name__)
KEEP_ACTIVITIES = 100  # per component


class Autoscaler:
    def __init__(self, controller: Controller, store: StateStore, interval_s: float = 1.0) -> None:
        self.c = controller
        self.store = store
        self.interval_s = interval_s
        self.policies: dict[str, ScalingPolicy] = {p.component: p for p in store.scaling_policies()}
        self.samples: dict[str, deque[Sample]] = {}
        self.last: dict[str, LastActions] = {}
        self.activities: dict[str, deque[Activity]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._collector = None

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._collector = register_component_gauges(self.metric_rows)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._collector:
            REGISTRY.unregister(self._collector)
            self._collector = None

    def poke(self) -> None:
        """Decide now, not at the next tick (a request found no copy)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # one bad tick must not end autoscaling
                log.exception("autoscaler tick failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    # -- policies (the APIs call these) ------------------------------------------------------------------
    def put(self, policy: ScalingPolicy) -> ScalingPolicy:
        self.c.component(policy.component)  # 404 when there is no such component
        self.policies[policy.component] = policy
        self.store.put_scaling_policy(policy)
        self._attach(policy.component)
        log.info("autoscaling %s: %s", policy.component, policy.describe())
        self.poke()
        return policy

    def get(self, component: str) -> ScalingPolicy | None:
        return self.policies.get(component)

    def delete(self, component: str) -> bool:
        if self.policies.pop(component, None) is None:
            return False
        self.store.delete_scaling_policy(component)
        self.c.table.set_cold_start(component, None)
        self.last.pop(component, None)
        return True

    def history(self, component: str) -> list[Activity]:
        """Newest first, as DescribeScalingActivities lists them."""
        if comp := self.c.components.get(component):
            self._settle(component, comp)
        return list(reversed(self.activities.get(component, ())))

    def view(self, component: str) -> AutoscalingView | None:
        policy = self.policies.get(component)
        if policy is None:
            return None
        first = policy.tracking[0] if policy.tracking else None
        if comp := self.c.components.get(component):
            self._settle(component, comp)
        history = self.activities.get(component)
        return AutoscalingView(min_copies=policy.min_copies, max_copies=policy.max_copies,
                               targets=[t.describe() for t in policy.tracking],
                               scale_out_cooldown_s=first.scale_out_cooldown_s if first else None,
                               scale_in_cooldown_s=first.scale_in_cooldown_s if first else None,
                               cold_start_timeout_s=policy.cold_start_timeout_s,
                               last_activity=history[-1] if history else None)

    def _attach(self, component: str) -> None:
        """Requests that find no copy of `component` wait for one (and ask for it) instead of a 503."""
        if (policy := self.policies.get(component)) is not None:
            cold_start = ColdStart(lambda: self._cannot_start(component), lambda: self._cold_request(component),
                                   policy.cold_start_timeout_s)
            self.c.table.set_cold_start(component, cold_start)

    def _cannot_start(self, component: str) -> str | None:
        """Why no copy of `component` can start on demand now, or None."""
        policy, comp = self.policies.get(component), self.c.components.get(component)
        if policy is None or comp is None:
            return "it has no autoscaling policy"
        if comp.status == Status.FAILED:
            return f"it is Failed ({comp.failure})"
        if comp.status == Status.DELETING:
            return "it is being deleted"
        if policy.max_copies == 0:
            return "its maximum copy count is 0"
        return None

    def _cold_request(self, component: str) -> None:
        """A request waits for a copy of `component`: decide now rather than at the next tick."""
        comp = self.c.components.get(component)
        if comp is not None and not comp.replicas:
            self.poke()

    # -- the loop ---------------------------------------------------------------------------------------
    def _keep_s(self, component: str) -> float:
        policy = self.policies.get(component)
        cooldowns = [t.scale_in_cooldown_s for t in policy.tracking] if policy else []
        return max([INVOCATIONS_WINDOW_S, *cooldowns]) + 5

    async def tick(self) -> None:
        now = time.monotonic()
        for name in [n for n in self.policies if n not in self.c.components]:  # a policy leaves with its component
            log.info("autoscaling %s: the component is gone; its policy too", name)
            self.delete(name)
        for name, comp in list(self.c.components.items()):
            pool = self.c.table.pools.get(name)
            if pool is None:
                continue
            samples = self.samples.setdefault(name, deque())
            load = pool.load()
            samples.append(Sample(now, load.in_flight + load.queued, load.invocations))
            while samples and samples[0].at < now - self._keep_s(name):
                samples.popleft()
            self._settle(name, comp)
            policy = self.policies.get(name)
            if policy is None or comp.status in (Status.FAILED, Status.DELETING):
                continue
            if comp.rolling and not comp.rolling.done():  # as SageMaker: no autoscaling during an update
                continue
            if pool.cold_start is None:
                self._attach(name)
            copies = len(comp.replicas)
            decision = decide(policy, list(samples), copies, self.last.get(name, LastActions()), now)
            if decision.changes(copies):
                await self._apply(name, policy, copies, decision, now, samples)
        for name in [n for n in self.samples if n not in self.c.components]:
            del self.samples[name]

    async def _apply(self, name: str, policy: ScalingPolicy, copies: int, decision: Decision, now: float,
                     samples: deque[Sample]) -> None:
        recent = [(round(s.at - now, 1), s.concurrency, s.invocations) for s in list(samples)[-5:]]
        log.info("autoscaling %s: %s (inputs: %s; copies %d; last %s; samples (age s, concurrency, invocations) "
                 "%s)", name, decision.cause, policy.describe(), copies, self.last.get(name), recent)
        activity = Activity(id=str(uuid.uuid4()), component=name, started_at=time.time(), from_copies=copies,
                            to_copies=decision.desired, cause=decision.cause)
        to = decision.desired
        try:
            await self.c.update_component(name, ComponentUpdate(copies=to))
        except ApiError as exc:  # the instances are full: as many as fit (placement is pure; a refusal changes nothing)
            short = f"cannot place copy {exc.copy_number}: {exc.short}" if isinstance(exc, PlacementRefused) \
                else exc.message
            for to in range(decision.desired - 1, copies, -1):
                try:
                    await self.c.update_component(name, ComponentUpdate(copies=to))
                    break
                except ApiError:
                    continue
            else:
                return self._failed(activity, short)
            activity.to_copies, activity.message = to, f"{to} of {decision.desired} copies: {short}"
        last = self.last.get(name, LastActions())
        self.last[name] = (LastActions(now, to, last.in_at) if to > copies
                           else LastActions(last.out_at, last.out_to, now))
        self._record(activity)

    def _failed(self, activity: Activity, message: str) -> None:
        history = self.activities.get(activity.component)
        previous = history[-1] if history else None
        if previous and previous.message and message in previous.message:
            return  # still the same: one activity, not one a second
        log.warning("autoscaling %s: %s; %s", activity.component, activity.cause, message)
        activity.status, activity.message, activity.ended_at = "Failed", message, time.time()
        self._record(activity)

    def _record(self, activity: Activity) -> None:
        history = self.activities.setdefault(activity.component, deque(maxlen=KEEP_ACTIVITIES))
        for older in history if activity.status != "Failed" else ():  # a failed attempt changed nothing
            if older.status == "InProgress":
                older.status, older.ended_at = "Overridden", time.time()
                older.message = f"overridden by: {activity.cause}"
        history.append(activity)

    def _settle(self, name: str, comp: Component) -> None:
        """An activity in progress ends when its copies serve (scale-out) or have left (scale-in)."""
        history = self.activities.get(name)
        if not history or history[-1].status != "InProgress":
            return
        activity = history[-1]
        if comp.status == Status.FAILED:
            activity.status, activity.ended_at, activity.message = "Failed", time.time(), comp.failure
            return
        serving = sum(r.status == CopyStatus.IN_SERVICE for r in comp.replicas)
        took = time.time() - activity.started_at
        if activity.to_copies > activity.from_copies and serving >= activity.to_copies:
            done = f"{_n(activity.to_copies)} in service after {took:.1f}s"
        elif (activity.to_copies < activity.from_copies and not comp.leaving
              and len(comp.replicas) <= activity.to_copies):
            done = f"drained and stopped in {took:.1f}s"
        else:
            return
        activity.status, activity.ended_at = "Successful", time.time()
        activity.message = f"{activity.message}; {done}" if activity.message else done

    # -- metrics (read when /metrics is scraped) --------------------------------------------------------------
    def metric_rows(self) -> list[ComponentRow]:
        rows = []
        now = time.monotonic()
        for name, comp in list(self.c.components.items()):
            pool = self.c.table.pools.get(name)
            if pool is None:
                continue
            desired = len(comp.replicas)
            samples = self.samples.get(name) or deque()
            rate = rate_per_minute(list(samples), now, INVOCATIONS_WINDOW_S) if samples else None
            per_minute = None if rate is None else rate / max(desired, 1)
            cpu, memory = _usage(comp)
            load = pool.load()
            rows.append(ComponentRow(pool.stats, desired, sum(r.status == CopyStatus.IN_SERVICE for r in comp.replicas),
                                     (load.in_flight + load.queued) / max(desired, 1), per_minute, cpu, memory))
        return rows


def _usage(comp: Component) -> tuple[float | None, float | None]:
    """Mean CPU % of reserved cores and memory % of the copies in service (where their runtime can tell)."""
    cpus, memories = [], []
    limit = comp.spec.compute.max_memory_mb
    for r in comp.replicas:
        if r.status != CopyStatus.IN_SERVICE or r.handle is None:
            continue
        if (rss := r.handle.memory_mb()) is not None and (budget := limit or r.slot.memory_mb):
            memories.append(100.0 * rss / budget)
        if (cpu := r.handle.cpu_percent()) is not None:
            cpus.append(cpu / max(r.slot.cpu_share, 1e-9))
    return (sum(cpus) / len(cpus) if cpus else None, sum(memories) / len(memories) if memories else None)


def _n(copies: int) -> str:
    return f"{copies} cop{'y' if copies == 1 else 'ies'}"
