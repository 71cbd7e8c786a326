"""A component's pool lives through its updates: a rolling update under load, with real copies, never
sends a copy more requests than its MAX_CONCURRENT_REQUESTS, and requests queued while it rolls are
answered (the pool used to be rebuilt on each publish, its counts back at 0 and its queue orphaned)."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
from helpers import labelled_metric, server_process

from shoal.sdk import Model, ResourceRequirements, Session

BODY = {"inputs": "The capital of France is", "parameters": {"max_new_tokens": 6}}
LIMIT = 2


def test_a_rolling_update_under_load_keeps_every_copy_within_its_concurrency(tmp_path: Path) -> None:
    with server_process(tmp_path, "--max-queue", "64", "--queue-timeout", "60") as url:
        predictor = Model("gemma-3-270m", name="rolled", env={"MAX_CONCURRENT_REQUESTS": str(LIMIT)},
                          session=Session(url)).deploy(
            "rolled", resources=ResourceRequirements(requests={"copies": 2, "num_cpus": 0.5, "memory": 512}))
        codes: list[int] = []
        peak: dict[str, float] = {}
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(timeout=120) as client:
                while not stop.is_set():
                    answer = client.post(f"{url}/endpoints/rolled/invocations", json=BODY,
                                         headers={"X-Amzn-SageMaker-Inference-Component": "rolled"})
                    codes.append(answer.status_code)

        def watch() -> None:
            while not stop.is_set():
                for labels, value in labelled_metric(url, "shoal_gateway_copy_in_flight").items():
                    peak[labels] = max(peak.get(labels, 0), value)
                time.sleep(0.05)

        threads = [threading.Thread(target=load) for _ in range(3 * LIMIT)] + [threading.Thread(target=watch)]
        for t in threads:
            t.start()
        try:
            time.sleep(2)
            predictor.update(env={"MAX_CONCURRENT_REQUESTS": str(LIMIT), "MAX_TOTAL_TOKENS": "1024"})  # rolls
            view = predictor.describe()
            assert view["status"] == "InService" and view["spec"]["env"]["MAX_TOTAL_TOKENS"] == "1024"
            time.sleep(1)
        finally:
            stop.set()
            for t in threads:
                t.join(120)
        assert codes and set(codes) == {200}, sorted(set(codes))  # a copy past its limit answers 429: a 424 here
        assert len(peak) >= 3  # old and new copies both served
        assert max(peak.values()) <= LIMIT, peak
