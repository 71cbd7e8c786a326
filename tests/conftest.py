"""Fixtures: a real engine process serving the real gemma-3-270m model, shared by the session."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import engine_process


@pytest.fixture(scope="session")
def engine_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with engine_process(tmp_path_factory.mktemp("engine"), MAX_INPUT_LENGTH=512, MAX_TOTAL_TOKENS=1024,
                        MAX_BATCH_TOTAL_TOKENS=8192) as url:
        yield url
