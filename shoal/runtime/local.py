"""The local runtime: each copy is a process on this machine, pinned to its cores."""
from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket

import psutil

from shoal.runtime.base import CopyLaunch, LaunchError, describe_exit
from shoal.security.environment import copy_base_environment

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def usable_cores(cores: tuple[int, ...]) -> tuple[int, ...]:
    """The slot's cores that this machine has (a catalog instance type may have more than it)."""
    if not hasattr(os, "sched_getaffinity"):
        return ()
    have = os.sched_getaffinity(0)
    return tuple(c for c in cores if c in have)


def _child_setup(cores: tuple[int, ...]) -> None:
    """In the child before exec: pin to the copy's cores (those that exist here); die with the shoal server.
    (Each copy has a session of its own: a terminal's Ctrl-C reaches the server, which drains its requests,
    not the copies, which would drop them.)"""
    if cores:
        os.sched_setaffinity(0, cores)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: copies outlive a crashed server, the next start cleans nothing up
        pass


class LocalCopy:
    instance_lost = False  # this machine is the only instance

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.pid: int | None = proc.pid
        self.address = f"http://127.0.0.1:{port}"
        self._process: psutil.Process | None = None  # for CPU readings (psutil keeps the previous one)

    def exit_status(self) -> str | None:
        code = self.proc.returncode
        return None if code is None else describe_exit(code)

    def memory_mb(self) -> float | None:
        try:
            return psutil.Process(self.proc.pid).memory_info().rss / (1 << 20)
        except psutil.Error:
            return None

    def cpu_percent(self) -> float | None:
        try:
            if self._process is None:
                self._process = psutil.Process(self.proc.pid)
                self._process.cpu_percent(None)  # the first reading only starts the clock
                return None
            return self._process.cpu_percent(None)
        except psutil.Error:
            return None

    async def stop(self, grace_s: float = 10.0) -> None:
        if self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), grace_s)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()


class LocalRuntime:
    def instances(self, instance_type: str, wanted: int) -> tuple[int, frozenset[int]]:
        return wanted, frozenset()

    def missing_instances_hint(self, instance_type: str) -> str:
        return ""

    async def launch(self, launch: CopyLaunch) -> LocalCopy:
        port = free_port()
        argv, env = launch.plan.render("127.0.0.1", port)
        cores = usable_cores(launch.slot.cores)
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = launch.log_path.open("ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, env={**copy_base_environment(os.environ), **env}, stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
                preexec_fn=lambda: _child_setup(cores))
        except OSError as exc:  # the engine's program is not installed here, or not executable
            raise LaunchError(f"cannot run {argv[0]!r}: {exc.strerror or exc}", retry=False) from None
        finally:
            log.close()
        return LocalCopy(proc, port)

    async def close(self) -> None:
        return None
