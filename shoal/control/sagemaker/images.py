"""Which engine runs a SageMaker container image.

Hugging Face's LLM containers (TGI, what `get_huggingface_llm_image_uri("huggingface")` returns) run on
shoal's TGI-compatible built-in engine; LMI and vLLM containers on vLLM, where it is installed;
`shoal/<engine>` names any of shoal's engines. Anything else is refused with this list.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass

from shoal.engines import ENGINES
from shoal.engines.base import program

_ECR = r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/"
BY_NAME = tuple(name for name in ENGINES if name != "command")  # `command` needs a command line, not an image


@dataclass(frozen=True)
class ImageFamily:
    description: str
    pattern: re.Pattern[str]
    engine: str


FAMILIES = (
    ImageFamily("Hugging Face LLM (TGI) images, as get_huggingface_llm_image_uri(\"huggingface\") returns "
                "(<account>.dkr.ecr.<region>.amazonaws.com/huggingface-pytorch-tgi-inference:<tag>)",
                re.compile(_ECR + r"huggingface-pytorch-tgi-inference[:@]"), "shoal"),
    ImageFamily("TGI's own image (ghcr.io/huggingface/text-generation-inference:<tag>)",
                re.compile(r"^ghcr\.io/huggingface/text-generation-inference([:@]|$)"), "shoal"),
    ImageFamily("LMI images (<account>.dkr.ecr.<region>.amazonaws.com/djl-inference:<version>-lmi<...>)",
                re.compile(_ECR + r"djl-inference:[^/]*lmi"), "vllm"),
    ImageFamily("vLLM images (vllm/vllm-openai:<tag>, <account>.dkr.ecr.<region>.amazonaws.com/vllm:<tag>)",
                re.compile(r"^((docker\.io/)?vllm/vllm-openai|" + _ECR[1:] + r"vllm)([:@]|$)"), "vllm"),
)
_BY_NAME = re.compile(r"^shoal(/(?P<engine>[a-z-]+))?(:[\w.-]+)?$")


class ImageError(ValueError):
    """An image shoal cannot run here; the message says what it can."""


def supported() -> str:
    kinds = "; ".join(f"{f.description} run on engine {f.engine}" for f in FAMILIES)
    return f"{kinds}; shoal/<engine> runs one of shoal's engines by name ({', '.join(BY_NAME)})"


def engine_for(image: str) -> str:
    """The engine kind that runs `image`, or ImageError saying what is supported (or what is missing)."""
    engine = _match(image)
    if engine is None:
        raise ImageError(f"Image '{image}' is not one shoal can run. Supported: {supported()}.")
    if engine == "vllm" and not shutil.which(program("vllm")):
        raise ImageError(f"Image '{image}' runs on vLLM, which is not installed on this server (pip install vllm, "
                         f"on a machine with NVIDIA GPUs); Hugging Face LLM (TGI) images run on shoal's built-in "
                         f"engine everywhere.")
    return engine


def _match(image: str) -> str | None:
    if named := _BY_NAME.match(image):
        engine = named.group("engine") or "shoal"
        return engine if engine in BY_NAME else None
    return next((f.engine for f in FAMILIES if f.pattern.search(image)), None)
