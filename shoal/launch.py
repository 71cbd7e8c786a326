"""What one copy runs and where: the slot placement gives it, and the launch plan its engine kind makes.

Shared by placement (shoal.control), the engine kinds' recipes (shoal.engines) and the runtimes
(shoal.runtime), none of which needs to know the others.
"""
from __future__ import annotations

from dataclasses import dataclass, field

HOST, PORT = "{host}", "{port}"  # placeholders in a LaunchPlan, filled in by the runtime
COPY_TOKEN_ENV = "SHOAL_COPY_TOKEN"  # a copy's credential: the gateway presents it, the engine checks it


@dataclass(frozen=True)
class Slot:
    """Where one copy runs: an instance, its accelerators and cores, a memory budget."""

    instance: int
    accelerators: tuple[int, ...]
    cores: tuple[int, ...]
    cpu_share: float  # of the cores above (fractional copies share one core)
    memory_mb: int


@dataclass(frozen=True)
class LaunchPlan:
    """The process of one copy: its command line and environment (with `{host}` / `{port}` left for
    the runtime), and the route that says it is ready."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/health"

    def render(self, host: str, port: int) -> tuple[list[str], dict[str, str]]:
        def fill(text: str) -> str:
            return text.replace(HOST, host).replace(PORT, str(port))
        return [fill(a) for a in self.argv], {k: fill(v) for k, v in self.env.items()}
