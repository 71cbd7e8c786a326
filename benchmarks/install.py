"""Install time: what a newcomer waits for, and what llama.cpp's source build spends it on.

1. The README's first command from a fresh clone (`.ci/newcomer.py`), with an empty pip cache and again
   with the cache the first run filled: seconds until the endpoint is ready, then to the first answer.
2. llama-cpp-python's source build alone (`pip wheel`, no cache), as llama-cpp-python builds it by default
   and with shoal's CMAKE_ARGS (packaging/llama-cpp-lean.cmake), in alternating order.

    python benchmarks/install.py --builds 1 --out results/install.json

Standard library only, like .ci/newcomer.py: it runs before any virtual environment exists.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
LEAN = f"-DCMAKE_PROJECT_INCLUDE={ROOT / 'packaging' / 'llama-cpp-lean.cmake'}"


def readme_run(cache: Path) -> tuple[float, float]:
    """Seconds to ready and to the first answer, for the README's first command with pip cache `cache`."""
    env = {**os.environ, "PIP_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, str(ROOT / ".ci" / "newcomer.py")], env=env, capture_output=True,
                         text=True, check=True).stdout
    found = re.search(r"ready after (\d+)s; first answer ([\d.]+)s later", out)
    assert found, out
    return float(found[1]), float(found[2])


def build(cmake_args: str) -> float:
    """Seconds for `pip wheel` of llama-cpp-python from source, with no cache."""
    with tempfile.TemporaryDirectory() as wheels:
        env = {**os.environ, "CMAKE_ARGS": cmake_args, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-q", "-w", wheels,
                        "--no-binary", "llama-cpp-python", LLAMA_CPP_PYTHON], env=env, check=True)
        return time.monotonic() - started


def cpu() -> str:
    text = Path("/proc/cpuinfo").read_text()
    name = re.search(r"model name\s*:\s*(.*)", text)
    flags = set(re.search(r"flags\s*:\s*(.*)", text)[1].split())  # type: ignore[index]
    isa = "AMX" if "amx_tile" in flags else "AVX-512" if "avx512f" in flags else "AVX2"
    return f"{name[1] if name else platform.processor()} ({isa}, {os.cpu_count()} cores)"


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--builds", type=int, default=1, help="source builds of each kind (alternating)")
    args.add_argument("--skip-readme", action="store_true", help="only the source builds")
    args.add_argument("--out", type=Path, default=Path("results/install.json"))
    opts = args.parse_args()
    result: dict = {"cpu": cpu()}
    if not opts.skip_readme:
        with tempfile.TemporaryDirectory(prefix="pip-cache-") as cache:
            result["cold"] = readme_run(Path(cache))
            result["warm"] = readme_run(Path(cache))
    default, lean = [], []
    for _ in range(opts.builds):
        default.append(build(""))
        lean.append(build(LEAN))
    result["build_default_s"], result["build_lean_s"] = default, lean
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(result, indent=2))
    print(f"CPU: {result['cpu']}")
    print("| what | seconds |\n|---|---:|")
    if "cold" in result:
        print(f"| README command 1, empty pip cache: ready / first answer | {result['cold'][0]:.0f} / "
              f"+{result['cold'][1]:.1f} |")
        print(f"| README command 1, warm pip cache: ready / first answer | {result['warm'][0]:.0f} / "
              f"+{result['warm'][1]:.1f} |")
    print(f"| llama-cpp-python source build, its defaults (median of {len(default)}) | "
          f"{statistics.median(default):.0f} |")
    print(f"| the same with shoal's CMAKE_ARGS (lean: libllama + ggml only) | {statistics.median(lean):.0f} |")


if __name__ == "__main__":
    main()
