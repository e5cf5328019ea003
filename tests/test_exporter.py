"""The exporter's web side over a real socket: its pages, and the limits of its HTTP server.

The exporter runs in process (``serve_exporter`` inside ``keep_fresh()``, as the command
runs it) on a free loopback port, on asyncio and on trio; httpx and raw TCP talk to it.
"""

from __future__ import annotations

import anyio
import httpx
import pytest

import wmspanel_async
from wmspanel_async import Target
from wmspanel_async._exporter import exporter_app, serve_exporter
from wmspanel_async._http_server import MAX_REQUEST_BODY, send_text, serve_asgi
from wmspanel_async.prometheus import WMSPanelCollector
from wmspanel_async.testing import Simulator

pytestmark = pytest.mark.anyio

TIMEOUT = 10.0


async def test_pages_of_the_exporter() -> None:
    """/metrics has the figures, / links to it, /healthz says polling; no key anywhere."""
    simulator = Simulator.demo(seed=3)
    account = simulator.account
    target = Target(account.slices[1].id)
    names = {data_slice.id: data_slice.name for data_slice in account.slices}
    async with (
        simulator.client() as client,
        client.keep_fresh([target], interval=0.2) as fresh,
    ):
        await fresh.wait(target)
        async with serve_exporter(fresh, host="127.0.0.1", port=0, slice_names=names) as address:
            base_url = f"http://127.0.0.1:{address[1]}"
            async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as http:
                page, health, metrics = [
                    await http.get(path) for path in ("/", "/healthz", "/metrics")
                ]
                missing, posted = await http.get("/nope"), await http.post("/healthz")
    assert address[0] == "127.0.0.1"
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<a href="metrics">' in page.text
    assert (health.status_code, health.text) == (200, "ok: polling\n")
    assert metrics.status_code == 200
    assert metrics.headers["content-encoding"] == "gzip"  # httpx asks for it
    assert metrics.headers["server"].startswith("wmspanel-async-exporter/")
    assert f'wmspanel_connected{{data_slice="{target.data_slice}",server="",stream=""}} ' in (
        metrics.text
    )
    # What every Python exporter shows, and the build.
    for standard in ("process_cpu_seconds_total ", "process_start_time_seconds ", "python_info{"):
        assert f"\n{standard}" in metrics.text
    assert "\npython_gc_objects_collected_total{" in metrics.text
    assert f'\nwmspanel_exporter_build_info{{version="{wmspanel_async.__version__}"}} 1.0\n' in (
        metrics.text
    )
    assert 'wmspanel_data_slice_info{data_slice="' in metrics.text
    assert "wmspanel_poll_duration_seconds_count " in metrics.text  # the collector runs
    assert missing.status_code == 404
    assert (posted.status_code, posted.headers["allow"]) == (405, "GET")
    for answer in (page, health, metrics):
        assert account.api_key not in answer.text
        assert account.client_id not in answer.text


async def test_healthz_is_503_when_not_polling() -> None:
    """An orchestrator sees 503 while the exporter starts or stops."""
    simulator = Simulator()
    async with simulator.client() as client:
        collector = WMSPanelCollector(client.keep_fresh(interval=30))
        app = exporter_app(collector, healthy=lambda: False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://exporter") as http:
            answer = await http.get("/healthz")
    assert (answer.status_code, answer.text) == (503, "not polling\n")


async def hello(scope: dict[str, object], receive: object, send: object) -> None:
    await send_text(send, 200, "hello\n")  # type: ignore[arg-type]


async def request(stream: anyio.abc.SocketStream, data: bytes) -> bytes:
    """Send ``data`` and return the whole answer that comes back (it has a content-length)."""
    await stream.send(data)
    received = b""
    with anyio.fail_after(TIMEOUT):
        while b"\r\n\r\n" not in received:
            received += await stream.receive()
        head, _, body = received.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += await stream.receive()
    return head + b"\r\n\r\n" + body


async def closed_by_server(stream: anyio.abc.SocketStream) -> bool:
    """Wait for the server to close the connection; return whether it did in time."""
    with anyio.move_on_after(TIMEOUT):
        try:
            while await stream.receive():
                pass
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return True
    return False


GET = b"GET / HTTP/1.1\r\nhost: test\r\n\r\n"


async def test_an_idle_connection_is_closed_after_the_idle_timeout() -> None:
    """A client that sends nothing (or stops half-way) does not hold a connection forever."""
    async with serve_asgi(
        hello, host="127.0.0.1", port=0, server_header=b"test", idle_timeout=0.2
    ) as (host, port):
        async with await anyio.connect_tcp(host, port) as quiet:
            assert await closed_by_server(quiet)
        async with await anyio.connect_tcp(host, port) as slow:
            await slow.send(b"GET / HTTP/1.1\r\nhost: te")
            assert await closed_by_server(slow)
        async with await anyio.connect_tcp(host, port) as served:
            assert (await request(served, GET)).startswith(b"HTTP/1.1 200 ")


async def test_a_newcomer_takes_the_place_of_the_longest_idle_connection() -> None:
    """At the limit, the connection idle the longest gives its place; one answering never."""
    release = anyio.Event()

    async def slow_at_slow(scope: dict[str, object], receive: object, send: object) -> None:
        if scope["path"] == "/slow":
            await release.wait()
        await send_text(send, 200, "hello\n")  # type: ignore[arg-type]

    async with serve_asgi(
        slow_at_slow, host="127.0.0.1", port=0, server_header=b"test", max_connections=2
    ) as (host, port):
        async with (
            await anyio.connect_tcp(host, port) as idle,
            await anyio.connect_tcp(host, port) as answering,
        ):
            assert (await request(idle, GET)).endswith(b"hello\n")  # then idle
            await answering.send(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n")
            async with await anyio.connect_tcp(host, port) as newcomer:
                assert (await request(newcomer, GET)).endswith(b"hello\n")
                assert await closed_by_server(idle)  # its place went to the newcomer
                async with await anyio.connect_tcp(host, port) as one_more:
                    # The newcomer is idle now: it gives its place, never the one answering.
                    assert (await request(one_more, GET)).endswith(b"hello\n")
                    assert await closed_by_server(newcomer)
            release.set()
            with anyio.fail_after(TIMEOUT):
                received = await answering.receive()
    assert received.startswith(b"HTTP/1.1 200 ")


async def test_every_place_answering_refuses_the_newcomer() -> None:
    """When every connection is being answered, a newcomer is closed at once."""
    release = anyio.Event()

    async def held(scope: dict[str, object], receive: object, send: object) -> None:
        await release.wait()
        await send_text(send, 200, "hello\n")  # type: ignore[arg-type]

    async with serve_asgi(
        held, host="127.0.0.1", port=0, server_header=b"test", max_connections=1
    ) as (host, port):
        async with await anyio.connect_tcp(host, port) as first:
            await first.send(GET)
            async with await anyio.connect_tcp(host, port) as second:
                assert await closed_by_server(second)
            release.set()
            with anyio.fail_after(TIMEOUT):
                assert (await first.receive()).startswith(b"HTTP/1.1 200 ")


async def test_a_request_trickling_in_is_cut_at_its_deadline() -> None:
    """A byte every 0.05 s stays within the idle timeout, not within the request's deadline."""
    async with serve_asgi(
        hello,
        host="127.0.0.1",
        port=0,
        server_header=b"test",
        idle_timeout=1.0,
        request_timeout=0.3,
    ) as (host, port):
        async with await anyio.connect_tcp(host, port) as trickling:
            started = anyio.current_time()
            with anyio.fail_after(TIMEOUT):
                try:
                    for byte in b"GET / HTTP/1.1\r\nhost: " + b"x" * 1000:
                        await trickling.send(bytes([byte]))
                        await anyio.sleep(0.05)  # the client's pace, not a wait for an event
                except (anyio.BrokenResourceError, anyio.EndOfStream, OSError):
                    pass
                assert await closed_by_server(trickling)
            took = anyio.current_time() - started
    assert 0.3 <= took < 1.0


async def test_two_hundred_slow_connections_cannot_lock_a_scrape_out() -> None:
    """200 silent and 200 trickling connections of one peer: a scrape is answered in < 3 s."""
    simulator = Simulator.demo(seed=3)
    target = Target(simulator.account.slices[0].id)
    async with (
        simulator.client() as client,
        client.keep_fresh([target], interval=0.5) as fresh,
        anyio.create_task_group() as task_group,
    ):
        await fresh.wait(target)
        async with serve_exporter(fresh, host="127.0.0.1", port=0) as (host, port):
            connected, all_connected = 0, anyio.Event()

            async def hold(trickle: bool) -> None:
                nonlocal connected
                try:
                    async with await anyio.connect_tcp(host, port) as stream:
                        connected += 1
                        if connected == 400:
                            all_connected.set()
                        while True:
                            if trickle:
                                await stream.send(b"G")
                            await anyio.sleep(0.5)  # a slow client's pace
                except (anyio.BrokenResourceError, anyio.EndOfStream, OSError):
                    return  # shed, or cut at its request's deadline

            for number in range(400):
                task_group.start_soon(hold, number % 2 == 0)
            with anyio.fail_after(TIMEOUT):
                await all_connected.wait()  # the attack is on when we scrape
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as http:
                started = anyio.current_time()
                with anyio.fail_after(3):
                    answer = await http.get("/metrics")
                took = anyio.current_time() - started
            task_group.cancel_scope.cancel()
    assert answer.status_code == 200
    assert "wmspanel_connected{" in answer.text
    assert took < 3


async def test_a_request_body_over_the_limit_is_refused_with_413() -> None:
    """Bodies above 1 MiB are not read into memory."""
    async with serve_asgi(hello, host="127.0.0.1", port=0, server_header=b"test") as address:
        async with await anyio.connect_tcp(*address) as stream:
            size = 2 * MAX_REQUEST_BODY
            head = f"POST / HTTP/1.1\r\nhost: test\r\ncontent-length: {size}\r\n\r\n".encode()
            answer = await request(stream, head + b"x" * (MAX_REQUEST_BODY + 1))
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in answer
