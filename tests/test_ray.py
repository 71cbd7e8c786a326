"""The Ray runtime on a fake multi-node cluster: nodes of 8 GPUs, 96 CPUs and 1152 GiB (ml.p4d.24xlarge)."""
from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import ray
from helpers import copy_info, server_process, wait_for_component
from ray.cluster_utils import Cluster

from shoal.launch import LaunchPlan, Slot
from shoal.runtime.base import CopyLaunch, LaunchError
from shoal.sdk import Model, ResourceRequirements, Session, ShoalApiError

pytestmark = pytest.mark.slow
P4D = {"num_cpus": 96, "num_gpus": 8, "memory": 1152 * (1 << 30), "resources": {"shoal:ml.p4d.24xlarge": 1}}
SEED = {"copies": 8, "num_accelerators": 1, "num_cpus": 10, "memory": 100 * 1024}
STAND_IN = f"{sys.executable} {Path(__file__).parent / 'stand_in_engine.py'} --host {{host}} --port {{port}}"
BODY = {"inputs": "The capital of France is", "parameters": {"max_new_tokens": 4}}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(3):
        c.add_node(**P4D)
    c.wait_for_nodes()
    yield c
    ray.shutdown()  # a test below connects this process as a driver
    c.shutdown()


def _instance_nodes(cluster: Cluster) -> list:
    """The fake nodes in the order shoal numbers instances (sorted node ids)."""
    return sorted((n for n in cluster.list_all_nodes() if not n.head), key=lambda n: n.node_id)


def test_real_engines_on_two_fake_nodes(cluster: Cluster, tmp_path: Path) -> None:
    with server_process(tmp_path, "--runtime", "ray", "--ray-address", cluster.address) as url:
        session = Session(url)
        resources = ResourceRequirements(requests={"copies": 2, "num_accelerators": 5, "num_cpus": 1,
                                                   "memory": 1024})
        predictor = Model("gemma-3-270m", name="real", session=session).deploy(
            "two-nodes", "ml.p4d.24xlarge", 2, resources)
        try:
            view = predictor.describe()
            assert sorted(c["slot"]["instance"] for c in view["copies"]) == [0, 1]
            answers = [httpx.post(f"{url}/endpoints/two-nodes/invocations", json=BODY, timeout=60) for _ in range(6)]
            texts = {r.json()[0]["generated_text"] for r in answers}
            assert len(texts) == 1 and texts.pop()  # greedy: both copies answer the same
            assert {r.headers["x-shoal-copy"] for r in answers} == {c["id"] for c in view["copies"]}  # both served
        finally:
            predictor.delete_endpoint(cascade=True)


@pytest.fixture(scope="module")
def stand_in_server(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with server_process(tmp_path_factory.mktemp("ray"), "--runtime", "ray", "--ray-address", cluster.address,
                        "--allow-command-engine") as url:
        yield url


def test_seed_component_fills_a_node_then_spans_two_and_a_25th_copy_does_not_fit(stand_in_server: str) -> None:
    session = Session(stand_in_server)
    predictor = Model("llama-2-7b.gguf", name="seed", session=session, engine="command", engine_command=STAND_IN
                      ).deploy("p4d", "ml.p4d.24xlarge", 3, ResourceRequirements(requests=SEED))
    view = predictor.describe()
    assert [c["slot"]["instance"] for c in view["copies"]] == [0] * 8
    devices = {copy_info(c)["cuda_visible_devices"] for c in view["copies"]}
    assert devices == {str(i) for i in range(8)}  # Ray gave each copy its own accelerator
    view = predictor.update(copies=12)
    assert sorted(c["slot"]["instance"] for c in view["copies"]) == [0] * 8 + [1] * 4
    with pytest.raises(ShoalApiError, match=r"copy 25 of seed does not fit.*ml.p4d.24xlarge x3"):
        predictor.update(copies=25)


def test_losing_a_node_re_places_its_copies_and_requests_keep_succeeding(
        cluster: Cluster, stand_in_server: str) -> None:
    session = Session(stand_in_server)
    codes: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                codes.append(client.post(f"{stand_in_server}/endpoints/p4d/invocations", json=BODY).status_code)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(1)
        cluster.remove_node(_instance_nodes(cluster)[1])
        view = wait_for_component(session, "seed", lambda v: v["status"] == "InService" and all(
            c["slot"]["instance"] != 1 for c in v["copies"]))
        time.sleep(1)
    finally:
        stop.set()
        worker.join()
    assert sorted(c["slot"]["instance"] for c in view["copies"]) == [0] * 8 + [2] * 4
    assert sum(c["restarts"] for c in view["copies"]) == 4
    assert codes and set(codes) == {200}, f"{codes.count(200)} of {len(codes)} succeeded"


def test_no_room_now_is_told_from_can_never_fit(cluster: Cluster, tmp_path: Path) -> None:
    from ray.util.placement_group import placement_group, remove_placement_group

    from shoal.runtime.ray_runtime import RayRuntime

    g5 = cluster.add_node(num_cpus=48, num_gpus=4, memory=192 * (1 << 30), resources={"shoal:ml.g5.12xlarge": 1})
    cluster.wait_for_nodes()
    runtime = RayRuntime(cluster.address, placement_wait_s=2)
    assert runtime.instances("ml.g5.12xlarge", 1) == (1, frozenset())

    def launch(gpus: int) -> None:
        slot = Slot(0, tuple(range(gpus)), (0,), 1.0, 1024)
        plan = LaunchPlan(("true",))
        asyncio.run(runtime.launch(CopyLaunch("probe", plan, slot, tmp_path / "probe.log", "ml.g5.12xlarge")))

    try:
        with pytest.raises(LaunchError, match="can never fit") as never:
            launch(8)
        assert never.value.retry is False
        hog = placement_group([{"GPU": 4.0}], bundle_label_selector=[{"ray.io/node-id": g5.node_id}])
        assert hog.wait(10)
        with pytest.raises(LaunchError, match="no room now") as later:
            launch(1)
        assert later.value.retry is True
        remove_placement_group(hog)
    finally:
        cluster.remove_node(g5)


def test_an_instance_type_no_node_declares_says_which_resource_to_declare(stand_in_server: str) -> None:
    session = Session(stand_in_server)
    with pytest.raises(ShoalApiError) as err:
        Model("x.gguf", name="nowhere", session=session, engine="command", engine_command=STAND_IN).deploy(
            "g5", "ml.g5.xlarge", 1, ResourceRequirements(requests={"copies": 1, "num_cpus": 1}))
    assert err.value.status == 400
    assert "shoal:ml.g5.xlarge" in err.value.message and "ray start" in err.value.message


def test_ray_local_trial_as_the_readme_says(tmp_path: Path) -> None:
    """`shoal server --runtime ray --ray-address local` starts a one-node Ray that is instance type local."""
    with server_process(tmp_path, "--runtime", "ray", "--ray-address", "local") as url:
        session = Session(url)
        predictor = Model("gemma-3-270m", name="trial", session=session).deploy(
            "trial", resources=ResourceRequirements(requests={"copies": 1, "num_cpus": 1, "memory": 1024}))
        try:
            assert predictor.predict(BODY)[0]["generated_text"]
        finally:
            predictor.delete_endpoint(cascade=True)
