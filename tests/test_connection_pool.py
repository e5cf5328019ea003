"""Over a real loopback socket: cancelling a request mid-flight leaves the pool usable."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator

import anyio
import anyio.abc
import pytest
from support import API_KEY, CLIENT_ID, SLICE_ID, sample_payload

from wmspanel_async import WMSPanelClient

pytestmark = pytest.mark.anyio


class TinyAPIServer:
    """A bare HTTP/1.1 keep-alive server: answers the sample payload, or hangs on demand."""

    def __init__(self) -> None:
        self.connections = 0
        self.hanging_request_arrived = anyio.Event()

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        self.connections += 1
        body = json.dumps(sample_payload("realtime_data")).encode()
        buffer = b""
        async with stream:
            while True:
                while b"\r\n\r\n" not in buffer:
                    try:
                        buffer += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                if b"stream=hang" in head:
                    self.hanging_request_arrived.set()
                    await anyio.sleep_forever()
                await stream.send(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )


@pytest.fixture
async def server() -> AsyncIterator[tuple[TinyAPIServer, str]]:
    tiny = TinyAPIServer()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, tiny.handle)
        yield tiny, f"http://127.0.0.1:{port}"
        task_group.cancel_scope.cancel()


async def test_cancelled_request_leaves_the_pool_usable(
    server: tuple[TinyAPIServer, str],
) -> None:
    """A request cancelled while waiting for its answer does not break later requests."""
    tiny, base_url = server
    async with WMSPanelClient(CLIENT_ID, API_KEY, base_url=base_url, max_connections=1) as client:
        assert (await client.realtime(SLICE_ID)).connected == 1
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(functools.partial(client.realtime, SLICE_ID, stream="hang"))
            await tiny.hanging_request_arrived.wait()
            task_group.cancel_scope.cancel()
        with anyio.fail_after(5):
            results = [await client.realtime(SLICE_ID) for _ in range(3)]
    assert [r.connected for r in results] == [1, 1, 1]
    # the broken connection was dropped and one new connection serves the rest
    assert tiny.connections == 2
