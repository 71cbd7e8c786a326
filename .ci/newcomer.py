#!/usr/bin/env python3
"""The README's main job, run as a newcomer runs it (standard library only: it runs before any venv).

Reads the README's first command (the first ```bash block), runs it in a fresh clone of this repository
(its own `.venv`, no extras), waits until the served endpoint is ready, sends one real generation request
through it, checks the answer has generated text, then stops it as a terminal's Ctrl-C does (SIGINT to
its process group) and checks that it exits cleanly and leaves no process behind. Prints the timings.

    python3 .ci/newcomer.py [--port 8000] [--timeout 1800] [--keep DIR]
    python3 .ci/newcomer.py --print-command 2      # the README's test command
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_command(number: int = 1) -> str:
    """The README's `number`th ```bash block: 1 serves the default model, 2 runs the tests."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    if len(blocks) < number:
        sys.exit(f"README.md has no bash block number {number}")
    return blocks[number - 1].strip()


def get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def post(url: str, body: dict, timeout: float = 120) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {"error": exc.read().decode()}


def processes_under(directory: Path) -> list[str]:
    """Processes whose command line names `directory` (the clone's venv: the server and its copies)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(directory) in cmdline and proc.name != str(os.getpid()):
                found.append(f"{proc.name}: {cmdline.strip()}")
    return found


def fail(message: str, log: Path, proc: subprocess.Popen | None = None) -> None:
    """Stop the command's whole process group, if it still runs, and exit with `message` and its output's end."""
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    tail = log.read_text(errors="replace").splitlines()[-40:] if log.exists() else []
    sys.exit(f"newcomer check FAILED: {message}\n--- last lines of its output ({log}) ---\n" + "\n".join(tail))


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--port", type=int, default=8000, help="the port the README's command serves on")
    args.add_argument("--timeout", type=float, default=1800, help="seconds to wait for install + serving")
    args.add_argument("--keep", type=Path, help="clone here and keep it (default: a temporary directory)")
    args.add_argument("--print-command", type=int, metavar="N", help="print the README's Nth command and exit")
    opts = args.parse_args()
    if opts.print_command:
        print(readme_command(opts.print_command))
        return
    command = readme_command(1)
    work = opts.keep or Path(tempfile.mkdtemp(prefix="shoal-newcomer-"))
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(work)], check=True)
    log = work.parent / f"{work.name}.log"
    base = f"http://127.0.0.1:{opts.port}"
    try:
        get(f"{base}/health")
        sys.exit(f"newcomer check FAILED: something already answers on port {opts.port}; stop it first")
    except OSError:
        pass  # the port is free
    print(f"newcomer: running the README's first command in {work}:\n  {command}", flush=True)
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    with log.open("wb") as out:
        proc = subprocess.Popen(["bash", "-c", command], cwd=work, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    while True:
        if proc.poll() is not None:
            fail(f"the command exited with {proc.returncode} before it served", log)
        if time.monotonic() - started > opts.timeout:
            fail(f"not ready after {opts.timeout:g}s", log, proc)
        try:
            status, _ = get(f"{base}/health")
        except OSError:
            status = 0
        if status == 200:
            break
        time.sleep(1)
    ready = time.monotonic()
    status, answer = post(f"{base}/generate", {"inputs": "The capital of France is",
                                                "parameters": {"max_new_tokens": 20}})
    answered = time.monotonic()
    text = answer.get("generated_text") if isinstance(answer, dict) else None
    if status != 200 or not isinstance(text, str) or not text.strip():
        fail(f"the generation request got {status}: {answer}", log, proc)
    print(f"newcomer: ready after {ready - started:.0f}s; first answer {answered - ready:.1f}s later: {text!r}")
    if "copies in service" not in log.read_text(errors="replace"):
        fail("the endpoint answered but the command never said its copies were in service", log, proc)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        fail("still running 60s after Ctrl-C", log, proc)
    time.sleep(1)
    if left := processes_under(work):
        fail("processes outlived it:\n  " + "\n  ".join(left), log)
    if code != 0:
        fail(f"it exited with {code} after Ctrl-C", log)
    print(f"newcomer: stopped cleanly (exit 0, no process left); total {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
