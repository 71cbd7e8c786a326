"""Which engine runs a SageMaker container image.

Each engine kind lists the images it runs (`EngineKind.images`): Hugging Face's LLM containers (TGI, what
`get_huggingface_llm_image_uri("huggingface")` returns) run on shoal's TGI-compatible built-in engine; LMI
and vLLM containers on vLLM, where it is installed. `shoal/<engine>` names any of shoal's engines that
needs no command line. Anything else is refused with this list.
"""
from __future__ import annotations

import re

from shoal.engines import ENGINES

_BY_NAME = re.compile(r"^shoal(/(?P<engine>[a-z-]+))?(:[\w.-]+)?$")


def by_name() -> tuple[str, ...]:
    return tuple(name for name in ENGINES if name != "command")  # `command` needs a command line, not an image


class ImageError(ValueError):
    """An image shoal cannot run here; the message says what it can."""


def supported() -> str:
    kinds = "; ".join(f"{family.description} run on engine {kind.name}"
                      for kind in ENGINES.values() for family in kind.images)
    return f"{kinds}; shoal/<engine> runs one of shoal's engines by name ({', '.join(by_name())})"


def engine_for(image: str) -> str:
    """The engine kind that runs `image`, or ImageError saying what is supported (or what is missing)."""
    engine = _match(image)
    if engine is None:
        raise ImageError(f"Image '{image}' is not one shoal can run. Supported: {supported()}.")
    kind = ENGINES[engine]
    if not kind.installed():
        raise ImageError(f"Image '{image}' runs on {kind.label or kind.name}, which is not installed on this server "
                         f"({kind.install_hint}); Hugging Face LLM (TGI) images run on shoal's built-in engine "
                         f"everywhere.")
    return engine


def _match(image: str) -> str | None:
    if named := _BY_NAME.match(image):
        engine = named.group("engine") or "shoal"
        return engine if engine in by_name() else None
    return next((kind.name for kind in ENGINES.values() for family in kind.images if family.pattern.search(image)),
                None)
