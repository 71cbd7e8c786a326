"""`command`: any server command line, for engines shoal has no recipe for. Off unless the shoal server
was started with --allow-command-engine (a command line is code).

The template may use {host}, {port}, {model}, {threads} and {accelerators} (comma-separated ids); the
component's variables, TGI settings included, reach the process as they are, with HF_MODEL_ID and
CUDA_VISIBLE_DEVICES. It speaks TGI's routes unless the component says `openai`.
"""
from __future__ import annotations

import shlex

from shoal.engines.base import (
    CANONICAL_SETTINGS,
    Deployment,
    EngineConfigError,
    EngineKind,
    EngineProtocol,
    device_env,
    threads_of,
)
from shoal.launch import LaunchPlan, Slot

PLACEHOLDERS = ("{host}", "{port}", "{model}", "{threads}", "{accelerators}")


class Command(EngineKind):
    name = "command"
    protocol = EngineProtocol.TGI
    description = "any command line (needs `shoal server --allow-command-engine`)"
    honoured = CANONICAL_SETTINGS  # passed on as environment variables: the command decides

    def protocol_of(self, d: Deployment) -> EngineProtocol:
        return d.protocol or self.protocol

    def check(self, d: Deployment) -> None:
        if not d.command or not d.command.strip():
            raise EngineConfigError("engine command needs EngineCommand: the command line to run, e.g. "
                                    "'my-server --host {host} --port {port} --model {model}'")
        if "{port}" not in d.command:
            raise EngineConfigError("EngineCommand must pass {port} to the server (and usually {host})")
        try:
            shlex.split(d.command)
        except ValueError as exc:
            raise EngineConfigError(f"EngineCommand is not a valid command line: {exc}") from None

    def check_model(self, d: Deployment) -> None:
        return None  # the command knows what a model id means to it

    def launch_plan(self, d: Deployment, slot: Slot) -> LaunchPlan:
        assert d.command is not None
        values = {"{model}": d.model_id, "{threads}": str(threads_of(slot)),
                  "{accelerators}": ",".join(str(a) for a in slot.accelerators)}
        argv = []
        for arg in shlex.split(d.command):
            for key, value in values.items():
                arg = arg.replace(key, value)
            argv.append(arg)
        return LaunchPlan(tuple(argv), {**d.env, "HF_MODEL_ID": d.model_id, **device_env(slot)})
