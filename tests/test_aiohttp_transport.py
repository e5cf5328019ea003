"""``transport="aiohttp"``: what is its own: errors, the wire, the pool, TLS, logs, trio.

The fault matrix runs on this transport too, with the same expected error classes as on
httpx's: see ``test_fault_matrix.py``. Here is what only this transport has: how aiohttp's
errors map onto httpx's, the bare GET on the wire, the pool and its timeout, gzip, closing,
TLS, aiohttp's and asyncio's loggers, and the refusal of trio. aiohttp runs on asyncio only,
so these tests do too, except those that check that trio is refused.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.abc
import anyio.streams.tls
import httpx
import pytest
from faulty_server import (
    REALTIME_OK,
    Exchange,
    SeenRequest,
    answer,
    failing_first,
    faulty_server,
    head,
    healthy,
    refused_url,
    reset_mid_body,
    secret_fragment,
    stall_before_headers,
    texts_of,
)
from multidict import CIMultiDict, CIMultiDictProxy
from support import API_KEY, CLIENT_ID, SLICE_ID, python_command
from yarl import URL

from wmspanel_async import (
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    GeoEntry,
    InvalidResponseError,
    RealtimeStats,
    ServerError,
    Target,
    WMSPanelClient,
)
from wmspanel_async._aiohttp import AiohttpTransport, _httpx_errors

pytestmark = pytest.mark.anyio

NOW = dt.datetime(2026, 11, 26, 23, 0, tzinfo=dt.timezone.utc)
SAMPLE_STATS = RealtimeStats(
    connected=1, bandwidth=267784, geo=(GeoEntry(country="BR", connected=1),)
)


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp is asyncio's: these tests run there (trio's refusal is tested by anyio.run)."""
    return "asyncio"


def aiohttp_client(url: str, **options: Any) -> WMSPanelClient:
    """A client of ``url`` on the aiohttp transport, with the test credentials."""
    options.setdefault("clock", lambda: NOW)
    return WMSPanelClient(CLIENT_ID, API_KEY, base_url=url, transport="aiohttp", **options)


def inner_transport(client: WMSPanelClient) -> AiohttpTransport:
    """The client's aiohttp transport."""
    transport = client._transport
    assert isinstance(transport, AiohttpTransport)
    return transport


# Errors: each aiohttp failure under the httpx error of its meaning -----------------------


async def test_stall_is_a_read_timeout_in_the_chain() -> None:
    """A server that answers nothing gives APITimeoutError caused by httpx.ReadTimeout."""
    async with faulty_server(stall_before_headers) as server:
        async with aiohttp_client(server.url, timeout=0.2, max_retries=0) as client:
            with pytest.raises(APITimeoutError) as caught:
                await client.realtime(SLICE_ID)
    assert type(caught.value.__cause__) is httpx.ReadTimeout
    assert isinstance(caught.value.__cause__.__cause__, aiohttp.SocketTimeoutError)


@pytest.mark.skipif(sys.platform != "linux", reason="Linux drops SYNs to a full backlog")
@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_connecting_too_long_is_a_connect_timeout(transport: str) -> None:
    """A connection not accepted within the connect timeout is APITimeoutError, in that time."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # never accepted: once its queue is full, connecting hangs
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        try:
            async with WMSPanelClient(
                CLIENT_ID,
                API_KEY,
                base_url=f"http://127.0.0.1:{port}",
                transport=transport,  # type: ignore[arg-type]
                timeout=httpx.Timeout(5.0, connect=0.3),
                max_retries=0,
            ) as client:
                started = anyio.current_time()
                with pytest.raises(APITimeoutError) as caught:
                    await client.realtime(SLICE_ID)
                elapsed = anyio.current_time() - started
        finally:
            for filler in fillers:
                filler.close()
    assert type(caught.value.__cause__) is httpx.ConnectTimeout
    assert 0.27 < elapsed < 2
    assert secret_fragment(texts_of(caught.value), API_KEY) is None


async def test_reset_mid_body_is_a_read_error_not_a_timeout() -> None:
    """A reset while the body streams is httpx.ReadError under APIConnectionError."""
    async with faulty_server(reset_mid_body) as server:
        async with aiohttp_client(server.url, max_retries=0) as client:
            with pytest.raises(APIConnectionError) as caught:
                await client.realtime(SLICE_ID)
    assert type(caught.value) is APIConnectionError
    assert type(caught.value.__cause__) is httpx.ReadError


async def test_refused_port_is_a_connect_error() -> None:
    """A port that refuses connections is httpx.ConnectError under APIConnectionError."""
    with refused_url() as url:
        async with aiohttp_client(url, max_retries=0) as client:
            with pytest.raises(APIConnectionError) as caught:
                await client.realtime(SLICE_ID)
    assert type(caught.value) is APIConnectionError
    assert type(caught.value.__cause__) is httpx.ConnectError


# The wire --------------------------------------------------------------------------------


@asynccontextmanager
async def bodyless_server() -> AsyncIterator[tuple[str, list[bytes], list[bytes], anyio.Event]]:
    """A server that reads request heads only (as servers do for GET) and answers each.

    Yields its URL, the heads read, what was left unread when the client hung up, and an
    event set then.
    """
    heads: list[bytes] = []
    leftovers: list[bytes] = []
    hung_up = anyio.Event()
    body = json.dumps(REALTIME_OK).encode()
    fields = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]

    async def handle(stream: anyio.abc.SocketStream) -> None:
        buffer = b""
        async with stream:
            try:
                while True:
                    while b"\r\n\r\n" not in buffer:
                        buffer += await stream.receive()
                    request_head, _, buffer = buffer.partition(b"\r\n\r\n")
                    heads.append(request_head)
                    await stream.send(head(200, None, fields) + body)
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                leftovers.append(buffer)
                hung_up.set()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, handle)
        yield f"http://127.0.0.1:{port}", heads, leftovers, hung_up
        task_group.cancel_scope.cancel()


async def test_get_sends_no_body_and_the_connection_stays_in_step() -> None:
    """Two GETs on one connection arrive as two bare heads: no body, no framing header."""
    async with bodyless_server() as (url, heads, leftovers, hung_up):
        async with aiohttp_client(url, max_retries=0) as client:
            assert await client.realtime(SLICE_ID) == SAMPLE_STATS
            assert await client.realtime(SLICE_ID) == SAMPLE_STATS
        with anyio.fail_after(5):
            await hung_up.wait()
    assert [request_head.split(b" ", 1)[0] for request_head in heads] == [b"GET", b"GET"]
    for request_head in heads:
        names = [line.split(b":")[0].lower() for line in request_head.split(b"\r\n")[1:]]
        assert b"transfer-encoding" not in names
        assert b"content-length" not in names
    assert leftovers == [b""]  # one connection, and not one byte after the second head


async def test_request_head_is_the_one_httpx_sends() -> None:
    """Both transports send the same request line and header fields, in the same order."""
    seen: dict[str, SeenRequest] = {}
    for transport in ("httpx", "aiohttp"):
        async with faulty_server(healthy) as server:
            async with WMSPanelClient(
                CLIENT_ID, API_KEY, base_url=server.url, transport=transport
            ) as client:
                await client.realtime(SLICE_ID, stream="a&b=c#d", server="e f+g%26?/=;")
        [seen[transport]] = server.requests
    assert seen["aiohttp"].target == seen["httpx"].target
    assert seen["aiohttp"].headers[0][0] == seen["httpx"].headers[0][0] == "host"  # ports differ
    assert seen["aiohttp"].headers[1:] == seen["httpx"].headers[1:]


async def test_connections_are_reused_and_bounded_by_max_connections() -> None:
    """Six calls at once on a pool of two use two kept-alive connections, two at a time."""
    in_flight, most = 0, 0
    both_busy = anyio.Event()

    async def answer_in_pairs(exchange: Exchange) -> None:
        # Each request waits for the other connection's, so the calls overlap for sure.
        nonlocal in_flight, most, both_busy
        in_flight += 1
        most = max(most, in_flight)
        if in_flight == 2:
            both_busy.set()
        with anyio.fail_after(5):
            await both_busy.wait()
        in_flight -= 1
        if in_flight == 0:
            both_busy = anyio.Event()
        await healthy(exchange)

    async with faulty_server(answer_in_pairs) as server:
        async with aiohttp_client(server.url, max_connections=2) as client:
            # Six streams: six calls for one target at once would share one request.
            targets = [Target(SLICE_ID, stream=f"stream-{number}") for number in range(6)]
            snapshots = await client.realtime_many(targets, concurrency=6)
    assert [snapshot.stats for snapshot in snapshots] == [SAMPLE_STATS] * 6
    assert (most, server.connections, server.request_count) == (2, 2, 6)


async def test_no_free_connection_in_time_is_a_pool_timeout() -> None:
    """A call that waits longer than the pool timeout for a connection is APITimeoutError."""
    arrived = anyio.Event()

    async def stall_and_tell(exchange: Exchange) -> None:
        arrived.set()
        await stall_before_headers(exchange)

    async with faulty_server(stall_and_tell) as server:
        timeout = httpx.Timeout(5.0, pool=0.2)
        async with (
            aiohttp_client(server.url, timeout=timeout, max_connections=1, max_retries=0) as client,
            anyio.create_task_group() as task_group,
        ):
            # Holds the one connection (another target's: the same one's would be shared).
            task_group.start_soon(partial(client.realtime, SLICE_ID, stream="held"))
            with anyio.fail_after(5):
                await arrived.wait()
            started = anyio.current_time()
            with pytest.raises(APITimeoutError) as caught:
                await client.realtime(SLICE_ID)
            elapsed = anyio.current_time() - started
            task_group.cancel_scope.cancel()
    assert type(caught.value.__cause__) is httpx.PoolTimeout
    assert "pool of 1" in str(caught.value.__cause__)
    assert 0.18 < elapsed < 1.5
    assert server.request_count == 1  # the second call never reached the server


async def reset_at_once(exchange: Exchange) -> None:
    """Read the request, then reset the connection before a byte of answer."""
    await exchange.reset()


async def test_a_request_reset_before_its_answer_gives_its_slot_back() -> None:
    """On a pool of one, a call reset before its answer frees the slot: the next succeeds.

    No PoolTimeout for the next call, and not the pool timeout's wait either.
    """
    timeout = httpx.Timeout(5.0, pool=0.5)
    async with faulty_server(failing_first(1, reset_at_once)) as server:
        async with aiohttp_client(
            server.url, timeout=timeout, max_connections=1, max_retries=0
        ) as client:
            with pytest.raises(APIConnectionError):
                await client.realtime(SLICE_ID)
            slots = inner_transport(client)._slots
            assert slots is not None
            assert slots.value == 1
            started = anyio.current_time()
            assert await client.realtime(SLICE_ID) == SAMPLE_STATS
            assert anyio.current_time() - started < 0.4
    assert server.request_count == 2


async def test_a_refused_connection_gives_its_slot_back() -> None:
    """On a pool of one, a refused call frees the slot: once the port listens, calls succeed.

    No PoolTimeout for the next call, and not the pool timeout's wait either.
    """
    timeout = httpx.Timeout(5.0, pool=0.5)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening yet: connections are refused
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with aiohttp_client(url, timeout=timeout, max_connections=1, max_retries=0) as client:
            with pytest.raises(APIConnectionError) as caught:
                await client.realtime(SLICE_ID)
            assert type(caught.value.__cause__) is httpx.ConnectError
            slots = inner_transport(client)._slots
            assert slots is not None
            assert slots.value == 1
            async with faulty_server(healthy, sock=sock) as server:
                assert server.url == url
                started = anyio.current_time()
                assert await client.realtime(SLICE_ID) == SAMPLE_STATS
                assert anyio.current_time() - started < 0.4
    assert server.request_count == 1


async def test_a_body_over_the_bound_is_refused_while_it_streams() -> None:
    """1 MiB and more of a body that never ends is refused at once, not read to a timeout."""

    async def endless(exchange: Exchange) -> None:
        fields = [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")]
        await exchange.send(head(200, None, fields))
        chunk = b" " * 65536
        for _ in range(17):  # 1 MiB + 64 KiB, then nothing more, ever
            await exchange.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await exchange.stall()

    async with faulty_server(endless) as server:
        async with aiohttp_client(server.url, timeout=10.0, max_retries=0) as client:
            started = anyio.current_time()
            with pytest.raises(InvalidResponseError, match="more than 1048576 bytes"):
                await client.realtime(SLICE_ID)
            assert anyio.current_time() - started < 5


async def test_reason_phrase_reaches_the_error() -> None:
    """The server's own reason phrase is in the error's text, as on httpx's transport."""
    async with faulty_server(answer(503, {}, reason="Upstream Napping")) as server:
        async with aiohttp_client(server.url, max_retries=0) as client:
            with pytest.raises(ServerError, match="503 Upstream Napping"):
                await client.realtime(SLICE_ID)


async def test_gzip_body_is_decoded_once() -> None:
    """A gzip-encoded answer is decoded by httpx above, not also by aiohttp."""
    import gzip

    async def gzipped(exchange: Exchange) -> None:
        await exchange.respond(
            200,
            gzip.compress(json.dumps(REALTIME_OK).encode()),
            headers=[("Content-Encoding", "gzip")],
        )

    async with faulty_server(gzipped) as server:
        async with aiohttp_client(server.url, max_retries=0) as client:
            assert await client.realtime(SLICE_ID) == SAMPLE_STATS


async def test_aclose_closes_the_session_and_its_connector() -> None:
    """Closing the client closes aiohttp's session and connector; a second close is a no-op."""
    async with faulty_server(healthy) as server:
        client = aiohttp_client(server.url)
        transport = inner_transport(client)
        assert repr(transport) == "<AiohttpTransport max_connections=10>"
        async with client:
            await client.realtime(SLICE_ID)
            session = transport._session
            assert session is not None
            connector = session.connector
            assert connector is not None
        assert session.closed
        assert connector.closed
        assert transport._session is None
        await transport.aclose()


async def test_a_response_gives_its_connection_back_once() -> None:
    """Closing a response frees its slot of the pool once, however often it is closed."""
    transport = AiohttpTransport(max_connections=1)
    async with faulty_server(healthy) as server:
        for _ in range(3):
            request = httpx.Request("GET", f"{server.url}/v1/realtime_data")
            response = await transport.handle_async_request(request)
            assert json.loads(await response.aread()) == REALTIME_OK
            await response.aclose()
            await response.stream.aclose()  # type: ignore[attr-defined]
            assert transport._slots is not None
            assert transport._slots.value == 1
        await transport.aclose()
    assert server.connections == 1


# TLS -------------------------------------------------------------------------------------


def self_signed(directory: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:  # pragma: no cover - openssl is on our machines
        if os.environ.get("CI"):
            pytest.fail("openssl is needed to make a test certificate")
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    command += ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    command += ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)  # noqa: S603
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_tls_certificates_are_verified(transport: str, tmp_path: Path) -> None:
    """A server whose certificate no CA signed is refused: APIConnectionError, before the GET."""
    context = self_signed(tmp_path)
    handshakes: list[str] = []
    handshake_over = anyio.Event()

    async def handle(stream: anyio.abc.SocketStream) -> None:
        try:
            await anyio.streams.tls.TLSStream.wrap(stream, server_side=True, ssl_context=context)
            handshakes.append("done")  # pragma: no cover - the client must refuse
        except (ssl.SSLError, OSError, anyio.BrokenResourceError, anyio.EndOfStream):
            handshakes.append("refused")
        finally:
            handshake_over.set()
            await stream.aclose()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, handle)
        async with WMSPanelClient(
            CLIENT_ID,
            API_KEY,
            base_url=f"https://127.0.0.1:{port}",
            transport=transport,  # type: ignore[arg-type]
            max_retries=0,
        ) as client:
            with pytest.raises(APIConnectionError, match="CERTIFICATE_VERIFY_FAILED") as caught:
                await client.realtime(SLICE_ID)
        with anyio.fail_after(5):
            await handshake_over.wait()
        task_group.cancel_scope.cancel()
    assert type(caught.value) is APIConnectionError
    assert type(caught.value.__cause__) is httpx.ConnectError
    assert handshakes == ["refused"]


# Errors, one by one ----------------------------------------------------------------------

URL_WITH_KEY = f"http://127.0.0.1:1/v1/realtime_data?data_slice={SLICE_ID}&api_key={API_KEY}"


def response_error() -> aiohttp.ClientResponseError:
    """What aiohttp raises for an answer that is not HTTP: its text quotes the whole URL."""
    url = URL(URL_WITH_KEY)
    info = aiohttp.RequestInfo(url, "GET", CIMultiDictProxy(CIMultiDict()), url)
    return aiohttp.ClientResponseError(info, (), status=400, message="Bad status line")


ERRORS: dict[str, tuple[Callable[[], Exception], type[httpx.TransportError]]] = {
    "connect-timeout": (
        lambda: aiohttp.ConnectionTimeoutError(f"Connection timeout to host {URL_WITH_KEY}"),
        httpx.ConnectTimeout,
    ),
    "read-timeout": (lambda: aiohttp.SocketTimeoutError("Timeout on reading"), httpx.ReadTimeout),
    "server-timeout": (
        lambda: aiohttp.ServerTimeoutError(f"Timeout on {URL_WITH_KEY}"),
        httpx.ReadTimeout,
    ),
    "bare-timeout": (TimeoutError, httpx.ReadTimeout),
    "fingerprint": (
        lambda: aiohttp.ServerFingerprintMismatch(b"a", b"b", "127.0.0.1", 443),
        httpx.ConnectError,
    ),
    "disconnected": (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    "not-http": (response_error, httpx.RemoteProtocolError),
    "short-body": (
        lambda: aiohttp.ClientPayloadError("Response payload is not completed"),
        httpx.ReadError,
    ),
    "reset": (lambda: aiohttp.ClientOSError(104, "Connection reset by peer"), httpx.ReadError),
    "bare-reset": (lambda: ConnectionResetError(104, "Connection reset by peer"), httpx.ReadError),
    "closed": (lambda: aiohttp.ClientConnectionError("Connection closed"), httpx.ReadError),
    "other": (lambda: aiohttp.InvalidURL(URL_WITH_KEY), httpx.TransportError),
}


@pytest.mark.parametrize("name", ERRORS)
def test_aiohttp_error_becomes_the_httpx_error_of_its_meaning(name: str) -> None:
    """Each aiohttp error becomes its httpx error; no text of the chain keeps the URL's query."""
    make, expected = ERRORS[name]
    with pytest.raises(httpx.TransportError) as caught, _httpx_errors():
        raise make()
    assert type(caught.value) is expected
    text = texts_of(caught.value)
    assert secret_fragment(text, API_KEY) is None, text
    assert "data_slice=" not in text
    assert isinstance(caught.value.__cause__, Exception)
    assert str(caught.value) == f"{type(caught.value.__cause__).__name__}: {caught.value.__cause__}"


def test_errors_of_ours_pass_through() -> None:
    """An error that is not the network's (a bug) is not dressed up as a transport error."""
    with pytest.raises(KeyError), _httpx_errors():
        raise KeyError("x")


# Logs ------------------------------------------------------------------------------------


async def test_aiohttp_and_asyncio_loggers_never_show_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While a client lives, its key is blanked in aiohttp's and asyncio's records at DEBUG."""
    caplog.set_level(logging.DEBUG)
    names = ("aiohttp.client", "aiohttp.internal", "asyncio")
    async with aiohttp_client("http://127.0.0.1:1"):
        for name in names:
            logging.getLogger(name).debug("Error while closing connector: %r", URL_WITH_KEY)
            try:
                raise response_error()
            except aiohttp.ClientResponseError:
                logging.getLogger(name).exception("Exception in eof callback")
    assert [record.name for record in caplog.records] == [n for n in names for _ in "ab"]
    for record in caplog.records:
        assert secret_fragment(record.getMessage(), API_KEY) is None
    assert "ClientResponseError" in caplog.text  # the traceback is there, without the key
    assert secret_fragment(caplog.text, API_KEY) is None


# Choosing the transport ------------------------------------------------------------------


def test_trio_is_refused_when_the_client_is_made_in_its_loop() -> None:
    """Made inside trio's event loop, a client with transport="aiohttp" raises at once."""

    async def make() -> None:
        WMSPanelClient(CLIENT_ID, API_KEY, transport="aiohttp")

    with pytest.raises(ConfigurationError, match="asyncio only, and this is trio"):
        anyio.run(make, backend="trio")


def test_trio_is_refused_at_first_use_when_the_client_is_made_outside() -> None:
    """Made outside any loop, the client refuses trio at its first use, sending nothing."""
    client = WMSPanelClient(CLIENT_ID, API_KEY, transport="aiohttp")

    async def use() -> None:
        with pytest.raises(ConfigurationError, match="asyncio only, and this is trio"):
            async with client:
                pass  # pragma: no cover - never entered
        with pytest.raises(ConfigurationError, match="asyncio only, and this is trio"):
            await client.realtime(SLICE_ID)
        await client.aclose()

    anyio.run(use, backend="trio")
    assert inner_transport(client)._session is None


def test_the_transport_itself_refuses_to_run_outside_asyncio() -> None:
    """Used directly under trio, the transport raises ConfigurationError, not a crash."""

    async def send() -> None:
        transport = AiohttpTransport(max_connections=1)
        await transport.handle_async_request(httpx.Request("GET", "http://127.0.0.1:1/"))

    with pytest.raises(ConfigurationError, match="asyncio only"):
        anyio.run(send, backend="trio")


def run_python(code: str, directory: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as a script in a new interpreter (measured by coverage if this run is)."""
    script = directory / "script.py"
    script.write_text(code, encoding="utf-8")
    return subprocess.run(  # noqa: S603 - our own interpreter
        [*python_command(measured=False), str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_importing_the_package_does_not_import_aiohttp(tmp_path: Path) -> None:
    """A client on the default transport never imports aiohttp; asking for it does."""
    result = run_python(
        "import sys\n"
        "from wmspanel_async import WMSPanelClient\n"
        "WMSPanelClient('c', 'k')\n"
        "print('aiohttp' in sys.modules)\n"
        "WMSPanelClient('c', 'k', transport='aiohttp')\n"
        "print('aiohttp' in sys.modules)\n",
        tmp_path,
    )
    assert result.stdout.split() == ["False", "True"]


def test_without_aiohttp_the_error_says_what_to_install(tmp_path: Path) -> None:
    """transport="aiohttp" without aiohttp is a ConfigurationError naming the extra."""
    result = run_python(
        "import sys\n"
        "sys.modules['aiohttp'] = None  # as if not installed\n"
        "from wmspanel_async import ConfigurationError, WMSPanelClient\n"
        "try:\n"
        "    WMSPanelClient('c', 'k', transport='aiohttp')\n"
        "except ConfigurationError as error:\n"
        "    print(error)\n",
        tmp_path,
    )
    assert result.stdout.startswith('transport="aiohttp" needs aiohttp, which cannot be imported')
    assert result.stdout.rstrip().endswith('pip install "wmspanel-async[aiohttp]"')
