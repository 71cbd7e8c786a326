"""Fixtures: a real engine process serving the real gemma-3-270m model, shared by the session."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import engine_process, until_idle


@pytest.fixture(scope="session")
def engine_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with engine_process(tmp_path_factory.mktemp("engine"), MAX_INPUT_LENGTH=512, MAX_TOTAL_TOKENS=1024,
                        MAX_BATCH_TOTAL_TOKENS=8192) as url:
        yield url


@pytest.fixture(autouse=True)
def _shared_engine_idle(request: pytest.FixtureRequest) -> None:
    """A test on the session's shared engine starts when the engine runs nothing else: tests compare greedy
    answers with each other, and another test's leftover request in the batch could move a near-tie."""
    if "engine_url" in request.fixturenames:
        until_idle(request.getfixturevalue("engine_url"))
