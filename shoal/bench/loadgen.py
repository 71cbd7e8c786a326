"""Virtual users. Closed loop (k6 `constant-vus`): each user sends its next request when the previous one
ends, until the duration is over; requests still open then get `grace_s` to finish (k6's gracefulStop)
and are counted as interrupted if they do not. Open loop: requests arrive at a constant or Poisson rate
whatever the answers, up to `max_in_flight`. Both can follow a schedule (shoal.bench.schedule): users or
arrivals per second that change over time."""
from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import orjson

from shoal.bench.workload import Target


@dataclass(slots=True)
class Record:
    """One request as the user saw it (times in seconds, monotonic)."""

    start: float
    end: float
    ok: bool
    status: int = 0
    error: str | None = None
    ttft: float | None = None
    gaps: list[float] = field(default_factory=list)  # between consecutive tokens
    tokens: int = 0
    copy: str | None = None

    @property
    def latency(self) -> float:
        return self.end - self.start


@dataclass
class Workload:
    target: Target
    prompts: list[str]
    max_new_tokens: int
    sample: bool = False
    timeout_s: float = 300.0

    def request(self, n: int) -> tuple[str, dict, bytes]:
        return self.target.request(self.prompts[n % len(self.prompts)], self.max_new_tokens, self.sample,
                                   seed=n if self.sample else None)


async def send(session: aiohttp.ClientSession, workload: Workload, n: int) -> Record:
    url, headers, body = workload.request(n)
    start = time.monotonic()
    record = Record(start, start, False)
    try:
        async with session.post(url, data=body, headers=headers) as response:
            record.status = response.status
            record.copy = response.headers.get("x-shoal-copy")
            if response.status != 200:
                await response.read()
                record.error = f"http_{response.status}"
            else:
                await _read_stream(response, record)
    except asyncio.TimeoutError:
        record.error = "timeout"
    except aiohttp.ClientError as exc:
        record.error = "connection" if isinstance(exc, aiohttp.ClientConnectionError) else "protocol"
    record.end = time.monotonic()
    record.ok = record.error is None
    return record


async def _read_stream(response: aiohttp.ClientResponse, record: Record) -> None:
    last = record.start
    async for line in response.content:
        if not line.startswith(b"data:") or line.startswith(b"data: [DONE]"):
            continue
        now = time.monotonic()
        if b'"error"' in line and "error" in orjson.loads(line[5:]):
            record.error = "stream_error"
            return
        if record.ttft is None:
            record.ttft = now - record.start
        else:
            record.gaps.append(now - last)
        last = now
        record.tokens += 1


def _session(workload: Workload, connections: int) -> aiohttp.ClientSession:
    """Keep-alive connections for the users; SHOAL_API_KEY, if set, is sent as a Bearer token (as the SDK)."""
    key = os.environ.get("SHOAL_API_KEY")
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections + 8),
                                 timeout=aiohttp.ClientTimeout(total=workload.timeout_s),
                                 headers={"Authorization": f"Bearer {key}"} if key else None)


@dataclass
class Run:
    records: list[Record]
    interrupted: int
    started: float
    duration_s: float  # the configured duration
    elapsed_s: float  # until the last request ended (at most duration + grace)


async def closed_loop(workload: Workload, vus: int, duration_s: float, grace_s: float = 30.0,
                      on_record: Callable[[Record], None] | None = None) -> Run:
    return await scheduled_users(workload, lambda _t: vus, vus, duration_s, grace_s, on_record)


async def scheduled_users(workload: Workload, vus_at: Callable[[float], float], peak: int, duration_s: float,
                          grace_s: float = 30.0, on_record: Callable[[Record], None] | None = None) -> Run:
    """`peak` users; user i sends while `vus_at(seconds since start)` rounds above i (k6's ramping-vus: a user
    ramped down finishes its request first)."""
    records: list[Record] = []
    started = time.monotonic()
    deadline = started + duration_s
    counter = iter(range(1 << 62))

    async def user(session: aiohttp.ClientSession, i: int) -> None:
        while (now := time.monotonic()) < deadline:
            if i >= int(vus_at(now - started) + 0.5):
                await asyncio.sleep(0.05)
                continue
            record = await send(session, workload, next(counter))
            records.append(record)
            if on_record:
                on_record(record)

    async with _session(workload, peak) as session:
        tasks = [asyncio.create_task(user(session, i)) for i in range(peak)]
        _done, pending = await asyncio.wait(tasks, timeout=duration_s + grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return Run(records, len(pending), started, duration_s, time.monotonic() - started)


async def open_loop(workload: Workload, rate: float, duration_s: float, poisson: bool = False,
                    max_in_flight: int = 1024, grace_s: float = 30.0, seed: int = 0,
                    on_record: Callable[[Record], None] | None = None) -> Run:
    return await scheduled_arrivals(workload, lambda _t: rate, duration_s, poisson, max_in_flight, grace_s, seed,
                                    on_record)


async def scheduled_arrivals(workload: Workload, rate_at: Callable[[float], float], duration_s: float,
                             poisson: bool = False, max_in_flight: int = 1024, grace_s: float = 30.0, seed: int = 0,
                             on_record: Callable[[Record], None] | None = None) -> Run:
    """Arrivals at `rate_at(seconds since start)` per second (k6's ramping-arrival-rate); none while it is 0."""
    records: list[Record] = []
    rng = random.Random(seed)
    started = time.monotonic()
    dropped = 0
    def collect(task: asyncio.Task) -> None:
        tasks.discard(task)
        if not task.cancelled():
            records.append(task.result())
            if on_record:
                on_record(task.result())

    tasks: set[asyncio.Task] = set()
    async with _session(workload, max_in_flight) as session:
        at, n = 0.0, 0
        while at < duration_s:
            if (rate := rate_at(at)) <= 0:
                at += 0.05
                continue
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            if len(tasks) >= max_in_flight:
                dropped += 1  # the generator itself is saturated: say so rather than queue silently
            else:
                task = asyncio.create_task(send(session, workload, n))
                tasks.add(task)
                task.add_done_callback(collect)
            n += 1
            at += rng.expovariate(rate) if poisson else 1.0 / rate
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            dropped += len(pending)
    return Run(records, dropped, started, duration_s, time.monotonic() - started)
