"""The client commands against a running `shoal server`: deploy, ls, describe, invoke, scale, delete."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import server_process


def shoal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shoal.cli", *args], capture_output=True, text=True, timeout=180)


def test_cli_round_trip(tmp_path: Path) -> None:
    with server_process(tmp_path) as url:
        deployed = shoal("deploy", "gemma-3-270m", "--endpoint", "cli", "--name", "clitest", "--copies", "1",
                         "--cpus", "1", "--env", "MAX_TOTAL_TOKENS=512", "--url", url)
        assert deployed.returncode == 0, deployed.stderr
        assert "InService" in deployed.stdout
        listing = shoal("ls", "--url", url)
        assert "clitest" in listing.stdout and "1/1" in listing.stdout
        described = shoal("describe", "clitest", "--url", url)
        assert "clitest-0" in described.stdout and "InService" in described.stdout
        answer = shoal("invoke", "The capital of France is", "--endpoint", "cli", "--component", "clitest",
                       "--max-new-tokens", "5", "--url", url)
        assert answer.returncode == 0 and answer.stdout.strip()
        streamed = shoal("invoke", "The capital of France is", "--endpoint", "cli", "--max-new-tokens", "5",
                         "--stream", "--url", url)
        assert streamed.stdout.strip() == answer.stdout.strip()  # greedy, the same copy settings
        scaled = shoal("scale", "clitest", "2", "--url", url)
        assert scaled.returncode == 0 and "clitest-1" in scaled.stdout
        too_many = shoal("scale", "clitest", "3", "--url", url)
        assert too_many.returncode == 2 and "copy 3 of clitest does not fit" in too_many.stderr
        assert "Traceback" not in too_many.stderr
        deleted = shoal("delete", "cli", "--endpoint", "--cascade", "--url", url)
        assert deleted.returncode == 0
        assert "clitest" not in shoal("ls", "--url", url).stdout


def test_client_commands_say_when_no_server_answers() -> None:
    result = shoal("ls", "--url", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert "cannot reach the shoal server at http://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr
