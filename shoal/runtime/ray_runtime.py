"""The Ray runtime: copies run on a Ray cluster; each Ray node is an instance.

A node is an instance of type T when it declares the custom resource `shoal:T` (for example
`ray start --resources '{"shoal:ml.p4d.24xlarge": 1}'`). shoal's own placement picks the instance, the
cores and the memory; the copy is then submitted as a placement group with one bundle pinned to that
node by its `ray.io/node-id` label (a hard constraint), and an actor in that bundle starts the engine
process on the node and reports its address. If the bundle is not ready in time, the placement group's
scheduling state tells "no room now" (retried) from "can never fit" (the component fails).
`address="local"` starts a one-machine Ray whose node is the instance type `local`.
Requires the `ray` extra: `pip install shoal[ray]`.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
from pathlib import Path

import ray
from ray.exceptions import RayActorError, RayError
from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from shoal.launch import LaunchPlan
from shoal.runtime.base import CopyLaunch, LaunchError, describe_exit
from shoal.security.environment import copy_base_environment

log = logging.getLogger(__name__)
POLL_S = 0.5


def resource_name(instance_type: str) -> str:
    """The custom resource a Ray node declares to be an instance of this type."""
    return f"shoal:{instance_type}"


class EngineHost:
    """The Ray actor of one copy: starts the engine process on its node and watches it."""

    def __init__(self, plan: LaunchPlan, cores: list[int], log_path: str) -> None:
        host = ray.util.get_node_ip_address()
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        command, env = plan.render(host, port)
        gpus = ray.get_gpu_ids()  # Ray assigned this actor's accelerators on its node
        env = {**copy_base_environment(os.environ), **env, "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus)}
        usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        pinned = set(cores) if set(cores) <= usable else None  # a fake node's core ids may not exist here
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            self.proc = subprocess.Popen(command, env=env,
                                         stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=(lambda: os.sched_setaffinity(0, pinned)) if pinned else None)
        self.address = f"http://{host}:{port}"

    def describe(self) -> tuple[str, int]:
        return self.address, self.proc.pid

    def poll(self) -> tuple[int | None, float | None]:
        import psutil

        try:
            rss = psutil.Process(self.proc.pid).memory_info().rss / (1 << 20)
        except psutil.Error:
            rss = None
        return self.proc.poll(), rss

    def stop(self, grace_s: float) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class RayCopy:
    def __init__(self, actor: ray.actor.ActorHandle, pg: object, address: str, pid: int) -> None:
        self.actor, self.pg, self.address, self.pid = actor, pg, address, pid
        self.instance_lost = False
        self._ended: str | None = None
        self._rss: float | None = None
        self._watch = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while self._ended is None:
            try:
                code, self._rss = await self.actor.poll.remote()
            except (RayActorError, RayError) as exc:
                self.instance_lost = True
                self._ended = f"lost with its Ray node or actor ({type(exc).__name__})"
                return
            if code is not None:
                self._ended = describe_exit(code)
                return
            await asyncio.sleep(POLL_S)

    def exit_status(self) -> str | None:
        return self._ended

    def memory_mb(self) -> float | None:
        return self._rss

    def cpu_percent(self) -> float | None:
        return None  # the copy's process is on another node

    async def stop(self, grace_s: float = 10.0) -> None:
        self._watch.cancel()
        try:
            await asyncio.wait_for(self.actor.stop.remote(grace_s), grace_s + 5)
        except (RayError, asyncio.TimeoutError):
            pass
        ray.kill(self.actor)
        remove_placement_group(self.pg)


class RayRuntime:
    def __init__(self, address: str = "auto", placement_wait_s: float = 30.0) -> None:
        if not ray.is_initialized():
            local = address == "local"  # a one-node Ray for trying it out: this machine, type `local`
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, resources={resource_name("local"): 1} if local else None)
        self.placement_wait_s = placement_wait_s
        self._actor = ray.remote(EngineHost)
        self._index: dict[str, dict[str, int]] = {}  # instance type -> node id -> stable instance index

    def _nodes(self, instance_type: str) -> dict[str, int]:
        """Stable indexes for the nodes of a type: a node keeps its index; a new node gets the next one."""
        index = self._index.setdefault(instance_type, {})
        for node in sorted(ray.nodes(), key=lambda n: n["NodeID"]):
            if node["Alive"] and node["Resources"].get(resource_name(instance_type)) and node["NodeID"] not in index:
                index[node["NodeID"]] = len(index)
        return index

    def missing_instances_hint(self, instance_type: str) -> str:
        name = resource_name(instance_type)
        return (f"no Ray node declares the resource {name!r}: start every node meant as a {instance_type} "
                f"instance with `ray start ... --resources='{{\"{name}\": 1}}'` (or `shoal server --runtime ray "
                f"--ray-address local` to try it on this machine as instance type local)")

    def instances(self, instance_type: str, wanted: int) -> tuple[int, frozenset[int]]:
        index = self._nodes(instance_type)
        alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        gone = frozenset(i for node, i in index.items() if node not in alive)
        return min(wanted + len(gone), len(index)), gone

    async def launch(self, launch: CopyLaunch):  # type: ignore[no-untyped-def]
        slot = launch.slot
        node = next((n for n, i in self._nodes(launch.instance_type).items() if i == slot.instance), None)
        if node is None:
            raise LaunchError(f"no Ray node is instance {slot.instance} of {launch.instance_type}", retry=True)
        cpus = slot.cpu_share if slot.cpu_share < 1 else float(len(slot.cores))
        bundle = {"CPU": cpus, "memory": float(slot.memory_mb << 20)}
        if slot.accelerators:
            bundle["GPU"] = float(len(slot.accelerators))
        pg = placement_group([bundle], strategy="STRICT_PACK", bundle_label_selector=[{"ray.io/node-id": node}])
        if not await asyncio.to_thread(pg.wait, self.placement_wait_s):
            state = placement_group_table(pg).get("stats", {}).get("scheduling_state", "UNKNOWN")
            remove_placement_group(pg)
            if state == "INFEASIBLE":
                raise LaunchError(f"can never fit on node {node[:8]}: {bundle} exceeds what it has ({state})", False)
            raise LaunchError(f"no room now on node {node[:8]} for {bundle} ({state})", retry=True)
        actor = self._actor.options(
            num_cpus=cpus, num_gpus=len(slot.accelerators), memory=slot.memory_mb << 20,
            scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0),
        ).remote(launch.plan, list(slot.cores), str(launch.log_path))
        try:
            address, pid = await actor.describe.remote()
        except RayError as exc:
            remove_placement_group(pg)
            raise LaunchError(f"the copy's actor failed to start: {exc}", retry=True) from None
        return RayCopy(actor, pg, address, pid)

    async def close(self) -> None:
        return None
