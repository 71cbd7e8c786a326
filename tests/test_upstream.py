"""The gateway's send path against a copy that drops a kept-alive connection, over real loopback TCP."""
from __future__ import annotations

import asyncio

from shoal.engines.adapters import Asked, EngineCall, PassThrough
from shoal.engines.translate import TgiLimits
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
