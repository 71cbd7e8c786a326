"""The gateway's send path over real loopback TCP: a copy that drops a kept-alive connection, and copies that
have or have not loaded an adapter."""
from __future__ import annotations

import asyncio

from shoal.engines.adapters import Asked, EngineCall, PassThrough
from shoal.engines.translate import TgiLimits
from shoal.errors import ApiError
from shoal.gateway.context import RequestContext
from shoal.gateway.pool import PoolConfig, RoutingTable
from shoal.gateway.upstream import Upstreams

ANSWER = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}'


async def _copy_that_drops_second_requests(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers the first request of each connection and keeps it open; closes it, unanswered, when a second
    request arrives on it (as a server whose keep-alive ran out does, racing the client's next request)."""
    for n in range(2):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length"))
        await reader.readexactly(length)
        if n == 1:
            break
        writer.write(ANSWER)
        await writer.drain()
    writer.close()


def test_a_dropped_keep_alive_connection_is_retried_on_the_same_copy() -> None:
    async def scenario() -> list[int]:
        server = await asyncio.start_server(_copy_that_drops_second_requests, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        table = RoutingTable()
        table.set_endpoint("ep", "LEAST_OUTSTANDING_REQUESTS")
        pool = table.publish(PoolConfig("only", "ep", "m", "shoal", PassThrough(), TgiLimits(2048)),
                             lambda: "InService")
        table.add_backend("only", "only-0", f"http://127.0.0.1:{port}", limit=4)
        upstreams = Upstreams(table)
        await upstreams.start()
        statuses = []
        try:
            for _ in range(3):  # the 2nd and 3rd go out on a kept-alive connection the copy then drops
                request = RequestContext("tgi", pool, Asked.GENERATE, {}, b"{}", False)
                async with upstreams.send(request, EngineCall("/generate", b"{}")) as answer:
                    statuses.append(answer.status)
        finally:
            await upstreams.close()
            server.close()
        return statuses

    assert asyncio.run(scenario()) == [200, 200, 200]  # one copy, never marked unreachable: no 503


async def _answer_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request of its connection with `{}`, until the client closes it."""
    try:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            await reader.readexactly(length)
            writer.write(ANSWER)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def test_an_adapter_s_requests_go_only_to_the_copies_that_have_loaded_it() -> None:
    """While an adapter loads (it was just deployed), requests naming it go to the copies that have it, and to
    none (a 503 that says so) while none has; the base's requests go anywhere."""
    async def scenario() -> tuple[list[str], list[str], str, list[str]]:
        server = await asyncio.start_server(_answer_each, "127.0.0.1", 0)
        address = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        table = RoutingTable()
        table.set_endpoint("ep", "LEAST_OUTSTANDING_REQUESTS")
        pool = table.publish(PoolConfig("base", "ep", "m", "shoal", PassThrough(), TgiLimits(2048),
                                        adapters=("ahoy",)), lambda: "InService")
        table.add_adapter("ahoy", "base")
        table.add_backend("base", "base-0", address, adapters=["ahoy"])
        table.add_backend("base", "base-1", address)  # still loading it
        upstreams = Upstreams(table)
        await upstreams.start()

        async def copies(adapter: str | None, n: int = 4) -> list[str]:
            out = []
            for _ in range(n):
                request = RequestContext("tgi", pool, Asked.GENERATE, {}, b"{}", False, adapter=adapter)
                async with upstreams.send(request, EngineCall("/generate", b"{}")) as answer:
                    out.append(answer.backend.id)
            return out

        try:
            loaded_on_one, base = await copies("ahoy"), await copies(None)
            table.set_copy_adapters("base", "base-0", [])  # as if the adapter had left and come back
            try:
                await copies("ahoy", 1)
                refused = ""
            except ApiError as exc:
                refused = f"{exc.status} {exc.message}"
            table.set_copy_adapters("base", "base-1", ["ahoy"])
            return loaded_on_one, base, refused, await copies("ahoy")
        finally:
            await upstreams.close()
            server.close()

    loaded_on_one, base, refused, loaded_on_other = asyncio.run(scenario())
    assert set(loaded_on_one) == {"base-0"} and set(base) == {"base-0", "base-1"}
    assert refused == '503 inference component "ahoy" is not loaded on a copy of its base "base" yet (it is being ' \
                      'created): retry shortly'
    assert set(loaded_on_other) == {"base-1"}
