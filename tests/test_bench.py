"""The load generator's arithmetic against a controlled upstream, and `shoal bench` end to end."""
from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from helpers import free_port

from shoal.bench.loadgen import Record, Run, Workload, closed_loop, open_loop
from shoal.bench.stats import Slo, summarize
from shoal.bench.sweep import Config
from shoal.bench.workload import PromptMaker, Target

TOKEN_GAP = 0.025  # the upstream streams 4 tokens, 25 ms apart: 100 ms a request, TTFT 25 ms


async def _controlled(port: int) -> web.AppRunner:
    """Every request takes 100 ms; every 5th (by arrival) fails with a 500."""
    state = {"n": 0}

    async def stream(request: web.Request) -> web.StreamResponse:
        n = state["n"]
        state["n"] += 1
        if n % 5 == 0:
            await asyncio.sleep(4 * TOKEN_GAP)
            return web.json_response({"error": "boom", "error_type": "generation"}, status=500)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "x-shoal-copy": f"c{n % 2}"})
        await response.prepare(request)
        for _ in range(4):
            await asyncio.sleep(TOKEN_GAP)
            await response.write(b'data:{"token":{"id":1,"text":"x"}}\n\n')
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/generate_stream", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _with_upstream(fn):  # type: ignore[no-untyped-def]
    port = free_port()
    runner = await _controlled(port)
    try:
        workload = Workload(Target("tgi", f"http://127.0.0.1:{port}"), ["hi"], max_new_tokens=4)
        return await fn(workload)
    finally:
        await runner.cleanup()


def test_closed_loop_counts_rates_and_success_exactly() -> None:
    run: Run = asyncio.run(_with_upstream(lambda w: closed_loop(w, vus=4, duration_s=1.0, grace_s=1.0)))
    stats = summarize(run, "controlled", "vus=4", Slo(ttft=0.05))
    # each user starts requests at ~0, 0.1, ..., 0.9 s: 10 each; the 11th would start after the end
    assert stats.requests == 40 and stats.interrupted == 0
    assert stats.req_per_s == 40.0
    assert stats.success_pct == 80.0 and stats.errors == {"http_500": 8}
    assert stats.output_tokens_per_s == 32 * 4 / 1.0
    assert stats.latency_p50_s == pytest.approx(0.100, abs=0.015)
    assert stats.ttft_p50_s == pytest.approx(TOKEN_GAP, abs=0.012)
    assert stats.itl_mean_s == pytest.approx(TOKEN_GAP, abs=0.012)
    assert stats.goodput_req_per_s == 32.0  # every success met TTFT <= 50 ms
    assert stats.copy_share == {"c0": 0.5, "c1": 0.5}


def test_open_loop_constant_rate_sends_exactly_rate_times_duration() -> None:
    run: Run = asyncio.run(_with_upstream(lambda w: open_loop(w, rate=20, duration_s=1.0)))
    stats = summarize(run, "controlled", "rate=20/s")
    assert stats.requests == 20 and stats.success_pct == 80.0 and stats.req_per_s == 20.0


def test_open_loop_poisson_arrivals_follow_the_seed() -> None:
    run: Run = asyncio.run(_with_upstream(lambda w: open_loop(w, rate=20, duration_s=1.0, poisson=True, seed=3)))
    rng, at, expected = random.Random(3), 0.0, 0
    while at < 1.0:
        expected += 1
        at += rng.expovariate(20)
    assert len(run.records) == expected


def test_grace_period_interrupts_what_does_not_finish() -> None:
    run: Run = asyncio.run(_with_upstream(lambda w: closed_loop(w, vus=2, duration_s=0.05, grace_s=0.01)))
    assert run.interrupted == 2 and run.records == []


def test_summary_percentiles_are_numpys() -> None:
    latencies = [0.1 * (i + 1) for i in range(10)]
    records = [Record(0.0, lat, True, 200, ttft=lat / 2, gaps=[0.01, 0.03], tokens=3) for lat in latencies]
    records.append(Record(0.0, 5.0, False, 429, error="http_429"))
    stats = summarize(Run(records, 0, 0.0, 2.0, 2.0), "x", "vus=1", Slo(latency=0.55))
    assert stats.requests == 11 and stats.req_per_s == 5.5
    assert stats.success_pct == pytest.approx(100 * 10 / 11)
    assert stats.latency_p50_s == pytest.approx(float(np.percentile(latencies, 50)))
    assert stats.latency_p90_s == pytest.approx(float(np.percentile(latencies, 90)))
    assert stats.latency_p99_s == pytest.approx(float(np.percentile(latencies, 99)))
    assert stats.latency_mean_s == pytest.approx(0.55)
    assert stats.itl_mean_s == pytest.approx(0.02) and stats.output_tokens_per_s == 15.0
    assert stats.goodput_req_per_s == 2.5  # five requests within 0.55 s, over 2 s
    assert stats.errors == {"http_429": 1}


def test_config_parsing() -> None:
    c = Config.parse("2 copies x 1 core:copies=2,cpus=1,routing=ROUND_ROBIN,env.MAX_BATCH_TOTAL_TOKENS=8192")
    assert (c.name, c.copies, c.cpus, c.routing, c.env) == ("2 copies x 1 core", 2, 1.0, "ROUND_ROBIN",
                                                             {"MAX_BATCH_TOTAL_TOKENS": "8192"})
    with pytest.raises(ValueError, match="unknown configuration key 'gpus'"):
        Config.parse("x:gpus=1")


def test_prompts_have_the_exact_token_count(engine_url: str) -> None:
    import httpx

    maker = PromptMaker("gemma-3-270m")
    for tokens, variant in ((256, 0), (100, 3), (17, 0)):
        prompt = maker.make(tokens, variant)
        assert len(httpx.post(f"{engine_url}/tokenize", json={"inputs": prompt}).json()) == tokens


def test_shoal_bench_cli_against_an_engine(engine_url: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "shoal.cli", "bench", "--url", engine_url, "--kind", "tgi",
                           "--vus", "1,2", "--duration", "2", "--prompt-tokens", "64", "--max-new-tokens", "8",
                           "--slo-ttft", "5", "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    assert [p["load"] for p in data["points"]] == ["vus=1", "vus=2"]
    assert all(p["success_pct"] == 100.0 and p["requests"] > 0 for p in data["points"])
    assert all((tmp_path / f).stat().st_size > 0 for f in ("results.csv", "throughput.png", "latency.png"))
    assert "shoal bench" in proc.stdout  # the table (columns are cut to the terminal width)


# -- load schedules ---------------------------------------------------------------------------------------------
def test_schedule_stages() -> None:
    from shoal.bench.schedule import Schedule

    s = Schedule.parse("ramp:1-16:60,hold:16:60s,step:2:30,ramp:2-0:10")
    assert (s.duration, s.peak) == (160.0, 16.0)
    assert [s.at(t) for t in (0, 30, 60, 119, 120, 150, 155, 160, 999)] == [1, 8.5, 16, 16, 2, 2, 1, 0, 0]
    for bad, why in (("ramp:1:60", "a ramp goes FROM-TO"), ("hold:1-2:5", "a hold has one value"),
                     ("spike:9:5", "cannot read stage 'spike:9:5'"), ("hold:1:0", "lasts no time"), ("", "empty")):
        with pytest.raises(ValueError, match=why):
            Schedule.parse(bad)


def test_closed_loop_schedule_adds_users_as_it_goes() -> None:
    from shoal.bench import timeline
    from shoal.bench.loadgen import scheduled_users
    from shoal.bench.schedule import Schedule

    sched = Schedule.parse("hold:2:0.5,hold:4:0.5")
    run: Run = asyncio.run(_with_upstream(lambda w: scheduled_users(w, sched.at, 4, sched.duration, 1.0)))
    rows = timeline.build(run, sched, [], bucket_s=0.1)
    assert max(r["in_flight"] for r in rows[:5]) <= 2 and max(r["in_flight"] for r in rows[6:10]) == 4
    assert [r["load"] for r in rows[:10]] == [2] * 5 + [4] * 5 and run.interrupted == 0


def test_open_loop_schedule_follows_the_rate_and_pauses_at_zero() -> None:
    from shoal.bench.loadgen import scheduled_arrivals
    from shoal.bench.schedule import Schedule

    sched = Schedule.parse("hold:10:0.5,hold:0:0.5,hold:20:0.5")
    run: Run = asyncio.run(_with_upstream(lambda w: scheduled_arrivals(w, sched.at, sched.duration)))
    starts = [r.start - run.started for r in run.records]
    first, idle, last = ([t for t in starts if a <= t < b] for a, b in ((0, 0.5), (0.5, 1.0), (1.0, 2.0)))
    assert len(first) == 5 and idle == [] and abs(len(last) - 10) <= 1


def test_copy_seconds_and_cold_starts_from_polled_copies() -> None:
    from shoal.bench.timeline import CopySample, cold_start_requests, copy_seconds

    samples = [CopySample(0.0, 0, 0, 0), CopySample(1.0, 1, 0, 0), CopySample(3.0, 1, 1, 0),
               CopySample(6.0, 2, 2, 0), CopySample(8.0, 0, 0, 2), CopySample(9.0, 0, 0, 0)]
    assert copy_seconds(samples, 10.0) == 1 * 2 + 1 * 3 + 2 * 2 + 2 * 1
    records = [Record(100.5, 103.0, True, 200, ttft=2.4), Record(102.0, 104.0, True, 200, ttft=1.2),
               Record(104.0, 105.0, True, 200, ttft=0.1), Record(108.5, 110.0, True, 200, ttft=1.0)]
    cold = cold_start_requests(Run(records, 0, 100.0, 10.0, 10.0), samples)
    assert [r.start for r in cold] == [100.5, 108.5]  # the first request of each spell without a copy


def test_shoal_bench_cli_with_a_schedule(engine_url: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "shoal.cli", "bench", "--url", engine_url, "--kind", "tgi",
                           "--schedule", "hold:1:2,ramp:1-2:2", "--prompt-tokens", "16", "--max-new-tokens", "4",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    point = json.loads((tmp_path / "results.json").read_text())["points"][0]
    assert point["load"] == "vus~hold:1:2,ramp:1-2:2" and point["success_pct"] == 100.0
    assert [row["load"] for row in point["timeline"]][:4] == [1, 1, 1.25, 1.75]
    assert point["copy_seconds"] is None  # a bare engine has no copies to poll
    assert all((tmp_path / f).stat().st_size > 0 for f in ("timeline.png", "timeline-tgi.csv"))
