"""What this machine's CPU can do, and which llama.cpp weight buffers are safe on it.

llama.cpp places weights in "extra" CPU buffer types when the CPU supports them: AMX tiles on Intel
Xeons with AMX, and repacked (interleaved) blocks for Q4_0 / Q4_K / IQ4_NL on AVX2 and newer. Its AMX
path segfaults in the first decode (llama.cpp #20824), and llama.cpp can only switch the extra buffer
types on or off together (`use_extra_bufts`). So `auto` turns them off on a CPU with AMX, and off on
AVX-512 CPUs, where repacking measured no faster (`python benchmarks/cpu_buffers.py`: prefill 0.94x,
decode 1.00-1.02x on an AMD EPYC with AVX-512); on AVX2-only CPUs it keeps llama.cpp's default (on),
whose repacked kernels were written for AVX2. SHOAL_CPU_EXTRA_BUFFERS=on|off|auto overrides.
"""
from __future__ import annotations

from enum import Enum
from functools import lru_cache
from pathlib import Path

AMX_FLAGS = frozenset({"amx_tile", "amx_int8", "amx_bf16"})


class ExtraBuffers(str, Enum):
    AUTO = "auto"
    ON = "on"
    OFF = "off"


@lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """(model name, feature flags) of this machine's first CPU, from /proc/cpuinfo; ("", {}) elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "", frozenset()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the first processor's block is enough
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields.get("model name", ""), frozenset(fields.get("flags", "").split())


def has_amx(flags: frozenset[str] | None = None) -> bool:
    return bool(AMX_FLAGS & (cpu_info()[1] if flags is None else flags))


def use_extra_buffers(setting: ExtraBuffers | str = ExtraBuffers.AUTO, flags: frozenset[str] | None = None) -> bool:
    """Whether llama.cpp may put weights in its extra CPU buffer types (AMX, repacked blocks)."""
    choice = ExtraBuffers(setting)
    if choice is ExtraBuffers.AUTO:  # off: AMX crashes (llama.cpp #20824); repacking measured no faster on
        return False  # AVX-512 or AVX2 (benchmarks/cpu_buffers.py, docs/benchmarks.md)
    return choice is ExtraBuffers.ON


def describe_cpu() -> str:
    """One line for logs and benchmark tables: model, widest vector unit, AMX or not."""
    name, flags = cpu_info()
    vector = next((v for v in ("avx512f", "avx2", "avx") if v in flags), "no AVX")
    return f"{name or 'unknown CPU'} ({vector.upper()}{', AMX' if has_amx(flags) else ''})"
