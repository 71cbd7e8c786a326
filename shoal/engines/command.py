"""`command`: any server command line, for engines shoal has no recipe for. Off unless the shoal server
was started with --allow-command-engine (a command line is code).

Its options (EngineOptions; EngineCommand and EngineProtocol are shorthands for them): `command`, a
template that may use {host}, {port}, {model}, {threads} and {accelerators} (comma-separated ids); and
`protocol`, tgi (default) or openai. The component's variables, TGI settings included, reach the process as
they are, with HF_MODEL_ID and CUDA_VISIBLE_DEVICES.
"""
from __future__ import annotations

import shlex

from shoal.engines.base import (
    CANONICAL_SETTINGS,
    Deployment,
    EngineConfigError,
    EngineKind,
    EngineProtocol,
    ServerPolicy,
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
    options = {"command": "the command line ({host} {port} {model} {threads} {accelerators})",
               "protocol": "what it speaks: tgi (default) or openai"}

    def protocol_of(self, d: Deployment) -> EngineProtocol:
        return EngineProtocol(d.options.get("protocol") or self.protocol.value)

    def refusal(self, policy: ServerPolicy) -> str | None:
        if policy.allow_command_engine:
            return None
        return ("engine 'command' runs any command line on this server; it is off unless the server is started "
                "with --allow-command-engine")

    def check(self, d: Deployment, policy: ServerPolicy | None = None) -> None:
        if why := self.refusal(policy or ServerPolicy()):
            raise EngineConfigError(why)
        self.check_options(d)
        command = d.options.get("command", "")
        if not command.strip():
            raise EngineConfigError("engine command needs EngineCommand: the command line to run, e.g. "
                                    "'my-server --host {host} --port {port} --model {model}'")
        if "{port}" not in command:
            raise EngineConfigError("EngineCommand must pass {port} to the server (and usually {host})")
        try:
            shlex.split(command)
        except ValueError as exc:
            raise EngineConfigError(f"EngineCommand is not a valid command line: {exc}") from None
        if d.options.get("protocol", "tgi") not in {p.value for p in EngineProtocol}:
            raise EngineConfigError(f"EngineProtocol must be tgi or openai, got {d.options['protocol']!r}")

    def check_model(self, d: Deployment, policy: ServerPolicy) -> None:
        return None  # the command knows what a model id means to it

    def launch_plan(self, d: Deployment, slot: Slot) -> LaunchPlan:
        values = {"{model}": d.model_id, "{threads}": str(threads_of(slot)),
                  "{accelerators}": ",".join(str(a) for a in slot.accelerators)}
        argv = []
        for arg in shlex.split(d.options["command"]):
            for key, value in values.items():
                arg = arg.replace(key, value)
            argv.append(arg)
        return LaunchPlan(tuple(argv), {**d.env, "HF_MODEL_ID": d.model_id, **device_env(slot)})
