"""schemathesis against a live server with a real copy, from the server's own /openapi.json: every
operation, good and bad input (examples, coverage and fuzzing phases), with an API key so that it also
checks that every operation refuses requests without one. No 5xx, no hang, no crash, every answer as
documented. (The stateful phase is left out: it would delete the one real copy the others need.)"""
from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import server_process

from shoal.sdk import Model, ResourceRequirements, Session
from shoal.security.keys import Scope, append_key, new_key

pytestmark = pytest.mark.slow
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "response_headers_conformance,negative_data_rejection,unsupported_method,ignored_auth")
CONFIG = Path(__file__).parent / "schemathesis.toml"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    state = tmp_path_factory.mktemp("fuzz")
    key = new_key("fuzzer", Scope.ADMIN)
    append_key(state / "keys.json", key)
    secret = key.secret.get_secret_value()
    with server_process(state, "--api-keys", str(state / "keys.json"), "--default-component", "gemma") as url:
        Model("gemma-3-270m", name="gemma", session=Session(url, api_key=secret),
              env={"MAX_TOTAL_TOKENS": "96", "MAX_INPUT_LENGTH": "64", "MAX_BATCH_TOTAL_TOKENS": "2048"}).deploy(
            "fuzz", resources=ResourceRequirements(requests={"copies": 1, "num_cpus": 1, "memory": 512}))
        yield url, secret


def test_every_operation_survives_fuzzing_and_answers_as_documented(server: tuple[str, str]) -> None:
    url, secret = server
    # every documented operation but the document itself (schemathesis leaves out the URL it loaded)
    operations = sum(len(methods) for methods in httpx.get(f"{url}/openapi.json").json()["paths"].values()) - 1
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run", f"{url}/openapi.json",
         "-H", f"Authorization: Bearer {secret}", "-c", CHECKS, "--phases", "examples,coverage,fuzzing",
         "-n", "15", "--request-timeout", "120", "--seed", "1"],
        capture_output=True, text=True, timeout=1200)
    summary = run.stdout[-3000:]
    print(summary)  # pytest -s: the numbers docs/benchmarks.md's fuzzing table holds
    assert run.returncode == 0, summary
    assert f"Tested: {operations}" in summary, summary
    generated, passed = map(int, re.search(r"(\d+) generated, (\d+) passed", summary).groups())  # type: ignore[union-attr]
    assert generated == passed > 20 * operations, summary
    assert httpx.get(f"{url}/health").status_code == 200  # and the server is still up
