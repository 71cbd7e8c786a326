"""Routing strategies, pools and admission, as pure units (the live gateway tests cover them over HTTP)."""
from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from shoal.engines.adapters import PassThrough
from shoal.engines.translate import TgiLimits
from shoal.errors import ApiError
from shoal.gateway.admission import Admission
from shoal.gateway.context import RequestContext, parse_json_object
from shoal.gateway.pool import Backend, PoolConfig, RoutingTable
from shoal.gateway.routing import STRATEGIES, Router, build_router
from shoal.gateway.routing.adapter_affinity import AdapterAffinity
from shoal.gateway.routing.least_outstanding import LeastOutstanding
from shoal.gateway.routing.power_of_two import PowerOfTwo
from shoal.gateway.routing.prefix_affinity import BOUND_ENV, PrefixAffinity
from shoal.gateway.routing.random_choice import Random
from shoal.gateway.routing.round_robin import RoundRobin
from shoal.security.environment import refused_variables


@dataclass
class Ask:
    """A request as a strategy reads it."""

    prefix_key: bytes | None = None
    adapter: str | None = None


def replicas(*loads: int) -> list[Backend]:
    return [Backend(id=f"c-{i}", address=f"http://127.0.0.1:{9000 + i}", in_flight=n) for i, n in enumerate(loads)]


def route(router: Router, copies: Sequence[Backend], key: bytes | None = None) -> Backend:
    """What the gateway does for a request that its chosen copy takes: choose, then `sent`."""
    pick = router.choose(Ask(key), copies)
    router.sent(pick)
    return pick.copy


def config(name: str, endpoint: str = "ep", **settings: str) -> PoolConfig:
    return PoolConfig(name, endpoint, "m", "shoal", PassThrough(), TgiLimits(2048), settings)


def test_least_outstanding_picks_the_least_loaded_and_rotates_ties() -> None:
    router = LeastOutstanding()
    assert route(router, replicas(3, 1, 2)).id == "c-1"
    tied = replicas(0, 0, 0)
    assert {route(router, tied).id for _ in range(6)} == {"c-0", "c-1", "c-2"}


def test_round_robin_cycles_and_random_covers() -> None:
    rs = replicas(9, 0, 0)
    rr = RoundRobin()
    assert [route(rr, rs).id for _ in range(6)] == ["c-0", "c-1", "c-2"] * 2
    assert set(Counter(route(Random(), rs).id for _ in range(300))) == {"c-0", "c-1", "c-2"}


def test_power_of_two_never_picks_the_busiest_of_two() -> None:
    rs = replicas(5, 0)
    assert all(route(PowerOfTwo(), rs).id == "c-1" for _ in range(20))
    assert route(PowerOfTwo(), replicas(7)).id == "c-0"


def test_prefix_affinity_sticks_then_spills_and_survives_scaling() -> None:
    router = PrefixAffinity(bound=2)
    rs = replicas(0, 0, 0, 0)
    homes = {key: route(router, rs, key).id for key in (b"alpha", b"beta", b"gamma", b"delta", b"eps",
                                                        b"zeta", b"eta", b"theta", b"iota", b"kappa")}
    assert all(route(router, rs, key).id == home for key, home in homes.items())  # same prefix, same copy
    assert len(set(homes.values())) > 1  # different prefixes spread
    survivors = [r for r in rs if r.id != homes[b"beta"]]  # a copy leaves: others keep their prefixes
    assert all(route(router, survivors, k).id == h for k, h in homes.items() if h != homes[b"beta"])
    busy = next(r for r in rs if r.id == homes[b"alpha"])
    busy.in_flight = 3  # more than `bound` over the least loaded: spill
    assert route(router, rs, b"alpha").id != busy.id


def test_prefix_affinity_follows_the_longest_prefix_each_copy_was_sent() -> None:
    router = PrefixAffinity(bound=4)
    rs = replicas(0, 0)
    system_a, system_b = b"A" * 600, b"B" * 600  # two long system prompts
    first_a = route(router, rs, system_a + b" question 1")
    first_b = route(router, rs, system_b + b" question 1")
    for n in range(2, 6):  # new questions after a known system prompt go where that prompt is cached
        assert route(router, rs, system_a + b" question %d" % n) is first_a
        assert route(router, rs, system_b + b" question %d" % n) is first_b
    history = system_a + b" a long conversation " * 40
    first_a.in_flight = 10  # busy past the bound: the conversation goes to the other copy
    other = route(router, rs, history)
    assert other is not first_a
    first_a.in_flight = 0
    assert route(router, rs, history + b" next turn") is other  # the longer prefix it holds wins


def test_prefix_affinity_brings_a_spilled_prefix_home_when_the_load_falls() -> None:
    spills = []
    router = PrefixAffinity(bound=1, on_spill=lambda: spills.append(1))
    rs = replicas(0, 0)
    system = b"S" * 300
    home = route(router, rs, system + b" question 1")
    other = next(r for r in rs if r is not home)
    home.in_flight = 2  # past the bound: the next one spills, and the other copy is not taught the prefix
    assert route(router, rs, system + b" question 2") is other
    home.in_flight = 1  # within the bound, though busier: the prefix goes to the copy that holds it
    assert all(route(router, rs, system + b" question %d" % n) is home for n in range(3, 12))
    assert len(spills) == 1  # counted (the gateway's shoal_gateway_prefix_affinity_spills)


def test_prefix_affinity_keeps_each_prefix_on_one_copy_through_spills() -> None:
    router = PrefixAffinity(bound=1)
    rs = replicas(0, 0)
    systems = [bytes([65 + i]) * 300 for i in range(8)]
    owners = {}
    for system in systems:  # first sight: the least loaded copy takes the prefix
        owners[system] = route(router, rs, system + b" q0")
        owners[system].in_flight += 1
    for r in rs:
        r.in_flight = 0
    for n in range(1, 40):  # loads that swing past the bound now and then spill requests, never prefixes
        rs[0].in_flight, rs[1].in_flight = (n % 3, 0) if n % 2 else (0, n % 3)
        for system in systems:
            route(router, rs, system + b" q%d" % n)
    rs[0].in_flight = rs[1].in_flight = 0
    assert all(route(router, rs, system + b" last") is owners[system] for system in systems)
    assert Counter(r.id for r in owners.values()) == Counter({"c-0": 4, "c-1": 4})


def test_prefix_affinity_moves_prefixes_off_the_copy_their_traffic_overloads() -> None:
    router = PrefixAffinity(bound=1)
    rs = replicas(0, 0)
    a, b = rs
    systems = [bytes([65 + i]) * 300 for i in range(8)]
    b.in_flight = 5  # busy while the first six prefixes arrive: all six go to a
    assert all(route(router, rs, system + b" q0") is a for system in systems[:6])
    a.in_flight, b.in_flight = 5, 0
    assert all(route(router, rs, system + b" q0") is b for system in systems[6:])
    for n in range(1, 30):  # even traffic on all eight; a's spills move its prefixes to b until each holds four
        a.in_flight, b.in_flight = (2, 0) if n % 2 else (0, 0)
        for system in systems:
            route(router, rs, system + b" q%d" % n)
    a.in_flight = 0
    assert Counter(route(router, rs, system + b" last").id for system in systems) == Counter({"c-0": 4, "c-1": 4})


def test_prefix_affinity_teaches_a_hot_prefix_to_the_copies_its_traffic_fills() -> None:
    router = PrefixAffinity(bound=1)
    rs = replicas(0, 0)
    hot = b"H" * 400
    owner = route(router, rs, hot)
    other = next(r for r in rs if r is not owner)
    owner.in_flight = 2
    for _ in range(40):  # all the traffic on one prefix, its copy busy: the spills teach the other copy
        assert route(router, rs, hot) is other
    owner.in_flight = 1
    assert route(router, rs, hot) is other  # both hold it now: the less loaded one takes it


def test_prefix_affinity_load_bound_spreads_one_hot_prefix() -> None:
    router = PrefixAffinity(bound=2)
    rs = replicas(0, 0, 0)
    hot = b"H" * 400
    picks = []
    for _ in range(12):  # requests that stay in flight: the holder fills up to the bound, then others take them
        chosen = route(router, rs, hot)
        chosen.in_flight += 1
        picks.append(chosen.id)
    loads = sorted(r.in_flight for r in rs)
    assert loads[-1] - loads[0] <= 3 and len(set(picks)) == 3  # no copy more than bound + 1 above another


def test_every_strategy_is_buildable_and_picks_one_of_the_candidates() -> None:
    for name in STRATEGIES:
        candidates = replicas(0, 1)
        router = build_router(name, "c", {})
        picks = {route(router, candidates, b"key").id for _ in range(20)}
        assert picks and picks <= {"c-0", "c-1"}, (name, picks)


def test_adapter_affinity_spreads_adapters_keeps_each_on_few_copies_and_spills_past_the_bound() -> None:
    router = AdapterAffinity(bound=2)
    copies = replicas(0, 0)

    def send(adapter: str | None) -> Backend:
        pick = router.choose(Ask(adapter=adapter), copies)
        router.sent(pick)
        pick.copy.in_flight += 1
        return pick.copy

    homes = {adapter: send(adapter) for adapter in ("french", "pirate", "caps", "list")}
    assert [c.id for c in homes.values()].count("c-0") == 2  # one adapter group per copy, in turn: 2 each
    for adapter, home in homes.items():  # while they run, more of the same adapter join them
        assert send(adapter) is home
    busy = homes["french"]
    other = next(c for c in copies if c is not busy)
    busy.in_flight, other.in_flight = 6, 0  # past the bound: the next french request spills
    assert send("french") is other
    busy.in_flight = other.in_flight = 3  # within the bound again: back to the copy with more french in flight
    assert send("french") is busy


def test_the_load_bound_comes_from_the_component_else_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    table = RoutingTable()
    table.set_endpoint("ep", "PREFIX_AFFINITY")
    monkeypatch.setenv(BOUND_ENV, "2")
    own = table.publish(config("own", **{BOUND_ENV: "3"}), lambda: "InService")
    server = table.publish(config("server"), lambda: "InService")
    assert own.router.bound == 3 and server.router.bound == 2  # type: ignore[attr-defined]
    monkeypatch.delenv(BOUND_ENV)
    assert build_router("PREFIX_AFFINITY", "c", {}).bound == 1  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="SHOAL_PREFIX_AFFINITY_BOUND must be a whole number, got 'two'"):
        build_router("PREFIX_AFFINITY", "c", {BOUND_ENV: "two"})


def test_a_component_may_set_every_routing_setting() -> None:
    settings = [name for strategy in STRATEGIES.values() for name in strategy.settings]
    assert {"SHOAL_PREFIX_AFFINITY_BOUND", "SHOAL_ADAPTER_AFFINITY_BOUND"} <= set(settings)
    assert refused_variables(dict.fromkeys(settings, "4")) == []


def test_a_retry_teaches_nothing_and_counts_once() -> None:
    """A copy that refused the request is never `sent` it: the strategy learns only of the copy that took it."""
    router = PrefixAffinity(bound=4)
    a, b = copies = replicas(0, 0)
    prompt = b"S" * 300 + b" question"
    refused = router.choose(Ask(prompt), copies)  # its connection is refused: no `sent`
    took = router.choose(Ask(prompt), [c for c in copies if c is not refused.copy])
    router.sent(took)
    assert router.match(refused.copy, router.prefix_hashes(prompt)) == 0
    assert router.match(took.copy, router.prefix_hashes(prompt)) > 0
    assert sum(router._counts.values()) == 1  # one request on this prefix, not two
    assert route(router, copies, b"S" * 300 + b" another") is took.copy  # the prefix lives where it was sent


def test_a_pool_survives_a_publish_and_changes_router_only_with_the_strategy() -> None:
    async def scenario() -> None:
        table = RoutingTable(max_queue=4, queue_timeout_s=5)
        table.set_endpoint("ep", "PREFIX_AFFINITY")
        pool = table.publish(config("c"), lambda: "InService")
        table.add_backend("c", "c-0", "http://127.0.0.1:1", limit=1)
        router = pool.router
        await pool.admission.acquire(pool.capacity())  # the only slot
        queued = asyncio.create_task(pool.admission.acquire(pool.capacity()))
        await asyncio.sleep(0.01)
        assert table.publish(config("c"), lambda: "Updating") is pool  # an update: same pool, same router, queue
        assert pool.router is router and pool.admission.in_flight == 1 and pool.admission.queued == 1
        table.add_backend("c", "c-1", "http://127.0.0.1:2", limit=1)  # a new copy takes the queued request
        await asyncio.wait_for(queued, 1)
        assert pool.admission.in_flight == 2
        table.set_endpoint("ep", "ROUND_ROBIN")  # another strategy: a new router, the same pool and counts
        assert table.pools["c"] is pool and isinstance(pool.router, RoundRobin) and pool.admission.in_flight == 2

    asyncio.run(scenario())


def test_a_copy_at_its_limit_is_not_a_candidate_and_capacity_is_the_sum_of_limits() -> None:
    table = RoutingTable()
    table.set_endpoint("ep")
    pool = table.publish(config("c"), lambda: "InService")
    table.add_backend("c", "old", "http://127.0.0.1:1", limit=2)
    table.add_backend("c", "new", "http://127.0.0.1:2", limit=4)  # a rolling update's copy with another limit
    assert pool.capacity() == 6
    old = pool.backend("old")
    assert old is not None
    old.in_flight = 2
    assert [b.id for b in pool.serving() if b.has_room] == ["new"]


def test_admission_queues_in_order_then_refuses() -> None:
    async def scenario() -> list[str]:
        gate = Admission(max_queue=2, queue_timeout_s=5)
        order: list[str] = []
        await gate.acquire(capacity=1)  # the only slot

        async def wait(name: str) -> None:
            await gate.acquire(capacity=1)
            order.append(name)

        first, second = asyncio.create_task(wait("first")), asyncio.create_task(wait("second"))
        await asyncio.sleep(0.01)
        assert gate.queued == 2
        with pytest.raises(ApiError, match="2 requests are already waiting") as full:
            await gate.acquire(capacity=1)
        assert full.value.status == 429
        gate.release(capacity=1)
        await first
        gate.release(capacity=1)
        await second
        gate.release(capacity=1)
        assert gate.in_flight == 0
        return order

    assert asyncio.run(scenario()) == ["first", "second"]


def test_admission_times_out_and_new_copies_admit_waiters() -> None:
    async def scenario() -> None:
        gate = Admission(max_queue=4, queue_timeout_s=0.05)
        await gate.acquire(capacity=1)
        with pytest.raises(ApiError, match="no copy was free within 0.05s"):
            await gate.acquire(capacity=1)
        assert gate.queued == 0 and gate.in_flight == 1
        gate.queue_timeout_s = 5
        waiter = asyncio.create_task(gate.acquire(capacity=1))
        await asyncio.sleep(0.01)
        gate.wake(capacity=2)  # a second copy came into service
        await asyncio.wait_for(waiter, 1)
        assert gate.in_flight == 2

    asyncio.run(scenario())


def test_prefix_key_reads_each_protocol_and_odd_bodies_are_refused() -> None:
    table = RoutingTable()
    table.set_endpoint("ep")
    pool = table.publish(config("c"), lambda: "InService")

    def key(raw: bytes) -> bytes | None:
        from shoal.engines.adapters import Asked
        return RequestContext("tgi", pool, Asked.GENERATE, parse_json_object(raw), raw, False).prefix_key

    assert key(b'{"inputs": "abc", "parameters": {}}') == b"abc"
    assert key(b'{"prompt": "' + b"x" * 10000 + b'"}') == b"x" * 8192
    assert key(b'{"messages": [{"role": "user", "content": "hi"}]}').startswith(b'[{"role":"user"')  # type: ignore
    assert key(b"{}") is None
    for odd in (b"[1, 2]", b"not json"):
        with pytest.raises(ApiError) as refused:
            parse_json_object(odd)
        assert refused.value.status == 422
