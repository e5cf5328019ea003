"""The client against the simulator: in process and through a real loopback socket alike.

Through the socket, each test runs on both transports: httpx's (the default) and aiohttp's
(``transport="aiohttp"``), which is asyncio's only: conftest.py leaves the trio runs of
that variant out, and tests/test_aiohttp_transport.py pins that trio is refused.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx
import pytest

from wmspanel_async import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    DataSlice,
    GeoEntry,
    InvalidResponseError,
    RateLimitError,
    RealtimeStats,
    ServerError,
    Target,
    WMSPanelClient,
)
from wmspanel_async.testing import Account, Fault, Simulator, serve

pytestmark = pytest.mark.anyio

NOON = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.timezone.utc)
SAMPLE_SLICE = "53e03c9978a6fc8596000001"

Connect = Callable[..., Awaitable[WMSPanelClient]]


#: How a test reaches the simulator: in process, or through a loopback socket on a transport.
CONNECTIONS = ["in-process", "loopback-httpx", "loopback-aiohttp"]


@pytest.fixture(params=CONNECTIONS)
async def connect(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Connect]:
    """Open clients to a simulator's first account, in process or through a loopback socket.

    The returned function takes the simulator and ``WMSPanelClient`` options (``api_key``
    among them); the clients and servers are closed when the test ends.
    """
    transport = request.param.removeprefix("loopback-")
    async with AsyncExitStack() as stack:

        async def open_client(
            simulator: Simulator, *, api_key: str | None = None, **options: Any
        ) -> WMSPanelClient:
            if request.param == "in-process":
                client = simulator.client(api_key=api_key, **options)
            else:
                server = await stack.enter_async_context(serve(simulator))
                account = simulator.account
                options.setdefault("daily_limit", max(account.daily_limit, 1))
                client = WMSPanelClient(
                    account.client_id,
                    api_key or account.api_key,
                    base_url=server.url,
                    transport=transport,
                    **options,
                )
            return await stack.enter_async_context(client)

        yield open_client


async def test_documented_answers(connect: Connect) -> None:
    """The sample account gives the documented slices and realtime figures."""
    client = await connect(Simulator([Account.sample()]))
    assert await client.data_slices() == [
        DataSlice(id="53e03c9978a6fc8596000001", name="Full data slice"),
        DataSlice(id="53e03ca678a6fc8599000001", name="DS2"),
    ]
    assert await client.realtime(SAMPLE_SLICE) == RealtimeStats(
        connected=1, bandwidth=267784, geo=(GeoEntry(country="BR", connected=1),)
    )


async def test_every_parameter_combination(connect: Connect) -> None:
    """Slice, stream, server and stream + server all answer, and the parts add up."""
    simulator = Simulator(seed=4, clock=lambda: NOON)
    client = await connect(simulator)
    account = simulator.account
    whole = (await client.data_slices())[0]
    total = await client.realtime(whole)
    streams = [await client.realtime(whole, stream=s.id) for s in account.streams]
    servers = [await client.realtime(whole.id, server=s.id) for s in account.servers]
    one = account.streams[0]
    combined = [
        await client.realtime(whole, stream=one.id, server=server.id) for server in account.servers
    ]
    assert total.connected == sum(stats.connected for stats in streams)
    assert total.bandwidth == sum(stats.bandwidth for stats in servers)
    assert sum(stats.connected for stats in combined) == streams[0].connected
    assert len(total.geo) == 20


async def test_wrong_key_is_an_authentication_error_without_the_key(connect: Connect) -> None:
    """A wrong key gives AuthenticationError (403), and its text does not contain the key."""
    wrong = "f" * 32
    client = await connect(Simulator(), api_key=wrong)
    with pytest.raises(AuthenticationError) as caught:
        await client.data_slices()
    assert caught.value.status_code == 403
    assert wrong not in str(caught.value)


async def test_caller_outside_the_whitelist(connect: Connect) -> None:
    """A whitelist without this machine's address gives AuthenticationError."""
    client = await connect(Simulator([Account.generate(0, whitelist=["203.0.113.0/24"])]))
    with pytest.raises(AuthenticationError, match="whitelist"):
        await client.data_slices()


async def test_lite_slice_stream_is_an_api_error(connect: Connect) -> None:
    """Asking a lite slice for a stream gives APIError with the API's reason."""
    simulator = Simulator()
    client = await connect(simulator)
    lite = next(s for s in simulator.account.slices if s.lite)
    with pytest.raises(APIError) as caught:
        await client.realtime(lite.id, stream=simulator.account.streams[0].id)
    assert caught.value.status == "Error"
    assert caught.value.api_message == (
        f"data slice {lite.id} is a lite slice: it has no per-stream realtime data"
    )


async def test_transient_failures_are_retried(connect: Connect) -> None:
    """503 with Retry-After 0, then a dropped connection, then success: one call, three tries."""
    simulator = Simulator()
    client = await connect(simulator)
    simulator.inject(Fault.http_status(503, retry_after=0))
    simulator.inject(Fault.disconnect())
    slices = await client.data_slices()
    assert len(slices) == 4
    assert [record.status_code for record in simulator.requests] == [503, 0, 200]
    assert client.quota.used == 3
    assert simulator.calls_today() == 1


async def test_failures_after_the_last_retry(connect: Connect) -> None:
    """Each kind of fault ends in its error when no retry is left."""
    simulator = Simulator()
    client = await connect(simulator, max_retries=0)
    expected: list[tuple[Fault, type[Exception]]] = [
        (Fault.http_status(500), ServerError),
        (Fault.truncated(), APIConnectionError),
        (Fault.disconnect(), APIConnectionError),
        (Fault.malformed(), InvalidResponseError),
        (Fault.status("Error", "overloaded"), APIError),
    ]
    for fault, error in expected:
        simulator.inject(fault)
        with pytest.raises(error):
            await client.data_slices()


async def test_daily_limit_is_a_rate_limit_error_not_retried(connect: Connect) -> None:
    """Past the account's limit the client gets RateLimitError with the wait until midnight."""
    account = Account.generate(0, daily_limit=2)
    ten_pm = dt.datetime(2026, 3, 2, 22, 0, tzinfo=dt.timezone.utc)
    simulator = Simulator([account], start=ten_pm)
    # The client's own ledger lets it through; its clock agrees with the simulator's, since
    # it cuts a Retry-After to the time left until its own midnight.
    client = await connect(simulator, daily_limit=100, clock=lambda: ten_pm)
    await client.data_slices()
    await client.data_slices()
    with pytest.raises(RateLimitError) as caught:
        await client.data_slices()
    assert caught.value.retry_after == pytest.approx(7200, abs=5)
    assert len(simulator.requests) == 3  # a two-hour Retry-After is not slept through


#: In process the simulator runs on the virtual clock, and times are exact; through a
#: loopback socket the clock is real, and the bounds leave room for a loaded machine.
VIRTUAL_IN_PROCESS = pytest.mark.parametrize(
    "connect",
    [pytest.param("in-process", marks=pytest.mark.virtual_time), *CONNECTIONS[1:]],
    indirect=True,
)


def on_virtual_clock(request: pytest.FixtureRequest) -> bool:
    """Whether this test runs on the virtual clock (the in-process variant)."""
    return request.node.get_closest_marker("virtual_time") is not None


@VIRTUAL_IN_PROCESS
async def test_slow_answer_times_out(connect: Connect, request: pytest.FixtureRequest) -> None:
    """An answer slower than the client's timeout is an APITimeoutError, in that time."""
    simulator = Simulator()
    client = await connect(simulator, timeout=0.2, max_retries=0)
    simulator.inject(Fault.slow(30))
    started = anyio.current_time()
    with pytest.raises(APITimeoutError):
        await client.data_slices()
    elapsed = anyio.current_time() - started
    if on_virtual_clock(request):
        assert elapsed == pytest.approx(0.2, abs=1e-5)
    else:  # never early; far below the 30 s answer and the default 10 s timeout
        assert 0.15 < elapsed < 5


@VIRTUAL_IN_PROCESS
async def test_many_targets_at_once(connect: Connect, request: pytest.FixtureRequest) -> None:
    """realtime_many fetches every slice concurrently; each snapshot has its figures."""
    simulator = Simulator(latency=0.5)
    client = await connect(simulator, max_connections=12)
    targets = [Target(s.id) for s in simulator.account.slices] * 3
    started = anyio.current_time()
    snapshots = await client.realtime_many(targets, concurrency=12)
    elapsed = anyio.current_time() - started
    if on_virtual_clock(request):
        assert elapsed == pytest.approx(0.5, abs=1e-5)  # all 12 answers at once
    else:  # one after another, 12 answers of 0.5 s would take 6 s
        assert elapsed < 3
    assert [snapshot.target for snapshot in snapshots] == targets
    assert all(snapshot.stats is not None for snapshot in snapshots)


async def test_key_is_in_no_log_record(connect: Connect, caplog: pytest.LogCaptureFixture) -> None:
    """Through retries and failures, no log record carries the API key."""
    caplog.set_level(logging.DEBUG)
    simulator = Simulator()
    client = await connect(simulator, max_retries=1)
    simulator.inject(Fault.http_status(503, retry_after=0), times=2)
    with pytest.raises(ServerError):
        await client.data_slices()
    await client.data_slices()
    assert caplog.records
    assert simulator.account.api_key not in caplog.text


# The loopback server itself ------------------------------------------------------------------


async def raw_exchange(url: str, request: bytes) -> bytes:
    port = int(url.rsplit(":", 1)[1])
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(request)
        answer = b""
        with anyio.fail_after(5):
            while True:
                try:
                    answer += await stream.receive()
                except anyio.EndOfStream:
                    return answer


async def test_server_keeps_connections_alive() -> None:
    """Several requests travel over one kept-alive connection."""
    simulator = Simulator()
    async with serve(simulator) as server, httpx.AsyncClient(base_url=server.url) as http:
        for _ in range(3):
            response = await http.get("/v1/data_slices")
            assert response.status_code == 403
            assert response.headers["server"] == "wmspanel-async-simulator"
    assert server.url == f"http://127.0.0.1:{server.port}"


async def test_server_answers_400_to_garbage() -> None:
    """A request that is not HTTP gets 400 and a closed connection."""
    async with serve(Simulator()) as server:
        answer = await raw_exchange(server.url, b"NOT HTTP AT ALL\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.endswith(b"400 Bad Request")


async def test_server_answers_500_when_the_app_fails() -> None:
    """An app that fails before answering gets 500; one that fails midway is cut off."""

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/midway":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
        msg = "boom"
        raise RuntimeError(msg)

    async with serve(broken) as server, httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/")).status_code == 500
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get("/midway")


async def test_server_reads_request_bodies_and_unanswered_apps() -> None:
    """A request body reaches the app; an app that never answers has the connection closed."""
    bodies: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        bodies.append(message["body"])
        if scope["path"] == "/answer":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async with serve(app) as server, httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.post("/answer", content=b"hello")).status_code == 204
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post("/silent", content=b"x" * 100_000)
    assert bodies == [b"hello", b"x" * 100_000]


@pytest.mark.parametrize("host", ["192.0.2.1", "example.com", "0.0.0.0"])  # noqa: S104
async def test_server_refuses_non_loopback_hosts(host: str) -> None:
    """The server binds loopback addresses only."""
    with pytest.raises(ValueError, match="not a loopback address"):
        async with serve(Simulator(), host=host):
            pass


async def test_server_on_ipv6_loopback_and_localhost() -> None:
    """::1 URLs are bracketed; localhost binds 127.0.0.1."""
    async with serve(Simulator(), host="localhost") as server:
        assert server.host == "127.0.0.1"
    try:
        async with serve(Simulator(), host="::1") as server:
            async with httpx.AsyncClient(base_url=server.url) as http:
                assert (await http.get("/v1/data_slices")).status_code == 403
        assert server.url == f"http://[::1]:{server.port}"
    except OSError:  # pragma: no cover - a machine without IPv6
        pytest.skip("no IPv6 loopback here")


async def test_server_port_in_use() -> None:
    """A port already taken raises OSError."""
    async with serve(Simulator()) as first:
        with pytest.raises(OSError, match="in use"):
            async with serve(Simulator(), port=first.port):
                pass
