"""Test support: a raw HTTP server that misbehaves on purpose, and leak-hunting helpers.

Not the simulator: this server speaks HTTP/1.1 by hand over an anyio TCP listener on
127.0.0.1 (asyncio and trio alike), so that it can break the protocol where a real server
never would: reset a connection mid-headers, stall, dribble bytes, promise a body it never
sends, or echo the request line (with the API key in it) wherever a careless server might.

One *behaviour* answers each request::

    async with faulty_server(stall_before_headers) as server:
        client = WMSPanelClient(CLIENT_ID, API_KEY, base_url=server.url)
        ...
        assert len(server.requests) == 1

A behaviour is an async function taking an :class:`Exchange` (the request seen, and the
means to answer it well or badly). The server records every request it parsed, owns its
task group, and cancels its connections when the ``async with`` block ends.

Also here, for the fault matrix, the property tests and ``bench/soak.py``: a refused port,
the texts a user could print of an error, and counts of tasks and file descriptors.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import functools
import json
import logging
import os
import socket
import struct
import traceback
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from urllib.parse import parse_qsl

import anyio
import anyio.abc
import attrs

logger = logging.getLogger("tests.faulty_server")

#: The longest request head the server reads; the client's are a few hundred bytes.
MAX_HEAD = 16 * 1024
#: What the client refuses to read (``MAX_BODY_BYTES`` in ``_body.py``); bodies above it
#: are "oversize".
ONE_MIB = 1024 * 1024

REALTIME_OK = {
    "status": "Ok",
    "realtime_data": {"connected": 1, "bandwidth": 267784, "geo": [["BR", 1]]},
}
DATA_SLICES_OK = {
    "status": "Ok",
    "data_slices": [
        {"id": "53e03c9978a6fc8596000001", "name": "Full data slice"},
        {"id": "53e03ca678a6fc8599000001", "name": "DS2"},
    ],
}

_DISCONNECTED = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream)


@attrs.frozen
class SeenRequest:
    """One request as the server parsed it off the wire.

    Attributes:
        method: The request method, for example ``GET``.
        target: The raw request target, path and query, exactly as sent.
        headers: The header fields, names lower-cased, in order.
    """

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]

    @property
    def path(self) -> str:
        """The raw path, before any ``?``."""
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        """The raw query string, after the first ``?`` (without any ``#`` fragment)."""
        return self.target.partition("?")[2]

    @property
    def params(self) -> list[tuple[str, str]]:
        """The query parameters, decoded as a form-decoding server would, in order."""
        return parse_qsl(self.query, keep_blank_values=True)

    @property
    def request_line(self) -> str:
        """The request line, as a server that echoes it would quote it."""
        return f"{self.method} {self.target} HTTP/1.1"

    def param(self, name: str) -> str | None:
        """The value of parameter ``name`` (the first, if repeated), or ``None``."""
        return next((value for key, value in self.params if key == name), None)


class Exchange:
    """One request on one connection, and the means to answer it, well or badly.

    Attributes:
        request: The request.
        number: How many requests the server had parsed before this one (0 for the first),
            so that a behaviour can fail the first attempts of a call and then answer.
        server: The server, for behaviours that look at what it saw before.
    """

    def __init__(
        self,
        stream: anyio.abc.SocketStream,
        request: SeenRequest,
        number: int,
        server: FaultyServer,
    ) -> None:
        self._stream = stream
        self.request = request
        self.number = number
        self.server = server
        self.keep_alive = False

    async def send(self, data: bytes) -> None:
        """Send raw bytes; the client going away ends the behaviour (see ``Disconnected``)."""
        await self._stream.send(data)

    async def respond(
        self,
        status: int,
        body: bytes | str | object = b"",
        *,
        reason: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        content_type: str = "application/json",
        close: bool = False,
    ) -> None:
        """Send a complete, well-formed answer (a ``str`` or JSON-able ``body`` is encoded).

        The connection stays open for the client's next request unless ``close``.
        """
        if isinstance(body, str):
            data = body.encode()
        elif isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body).encode()
        fields = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(data))),
            *headers,
        ]
        if close:
            fields.append(("Connection", "close"))
        await self.send(head(status, reason, fields) + data)
        self.keep_alive = not close

    async def reset(self) -> None:
        """Abort the connection: the client sees a TCP reset (RST), not an orderly close."""
        raw = self._stream.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self._stream.aclose()

    async def close(self) -> None:
        """Close the connection in order (FIN), whatever was sent so far."""
        await self._stream.aclose()

    async def stall(self) -> None:
        """Send nothing more; return when the client goes away (or the server stops)."""
        try:
            while await self._stream.receive():
                pass
        except _DISCONNECTED:
            return

    async def trickle(self, data: bytes, *, every: float) -> None:
        """Send ``data`` one byte at a time, one byte every ``every`` seconds."""
        for index in range(len(data)):
            await self.send(data[index : index + 1])
            await anyio.sleep(every)


Behaviour = Callable[[Exchange], Awaitable[None]]


def head(status: int, reason: str | None, headers: Sequence[tuple[str, str]]) -> bytes:
    """Encode a status line and header fields (``reason`` defaults to a plain phrase)."""
    reason = REASONS.get(status, "Whatever") if reason is None else reason
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


REASONS = {
    200: "OK",
    301: "Moved Permanently",
    302: "Found",
    307: "Temporary Redirect",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class FaultyServer:
    """A running faulty server; see :func:`faulty_server`.

    Attributes:
        url: The base URL to give a client, ``http://127.0.0.1:PORT``.
        requests: Every request parsed so far, in order of arrival (unless not recording).
        request_count: How many requests were parsed so far, recorded or not.
        connections: Connections accepted so far.
        errors: Exceptions raised by behaviours (a bug in the test, not in the client).
    """

    def __init__(self, url: str, behaviour: Behaviour, *, record: bool = True) -> None:
        self.url = url
        self.behaviour = behaviour
        self.record = record
        self.requests: list[SeenRequest] = []
        self.request_count = 0
        self.connections = 0
        self.errors: list[Exception] = []

    def __repr__(self) -> str:
        return f"<FaultyServer {self.url} requests={self.request_count}>"

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        self.connections += 1
        buffer = b""
        async with stream:
            try:
                while True:
                    request, buffer = await _read_request(stream, buffer)
                    if request is None:
                        return
                    exchange = Exchange(stream, request, self.request_count, self)
                    self.request_count += 1
                    if self.record:
                        self.requests.append(request)
                    await self.behaviour(exchange)
                    if not exchange.keep_alive:
                        return
            except _DISCONNECTED:
                return
            except OSError:  # a reset client, as the platform words it
                return
            except Exception as exc:  # a broken behaviour: record it for the test to see
                self.errors.append(exc)
                logger.exception("a faulty-server behaviour failed")


async def _read_request(
    stream: anyio.abc.SocketStream, buffer: bytes
) -> tuple[SeenRequest | None, bytes]:
    """Read one request head (GET: no body); ``None`` if the client closed first."""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEAD:
            return None, b""
        try:
            buffer += await stream.receive()
        except _DISCONNECTED:
            return None, b""
    raw, _, rest = buffer.partition(b"\r\n\r\n")
    line, *fields = raw.decode("latin-1").split("\r\n")
    method, target, _version = line.split(" ", 2)
    headers = tuple(
        (name.strip().lower(), value.strip())
        for name, _, value in (field.partition(":") for field in fields)
    )
    return SeenRequest(method, target, headers), rest


@asynccontextmanager
async def faulty_server(
    behaviour: Behaviour,
    *,
    host: str = "127.0.0.1",
    record: bool = True,
    sock: socket.socket | None = None,
) -> AsyncIterator[FaultyServer]:
    """Serve ``behaviour`` on a free port of ``host`` for the ``async with`` block.

    The block owns the server's tasks: leaving it cancels every connection still open
    (stalled ones included) and closes the listener. With ``record=False`` requests are
    only counted, not kept (for long runs that watch the process's memory). With ``sock``,
    a bound TCP socket (one that refused connections so far), it listens on that one.
    """
    if sock is None:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=0)
    else:
        sock.listen()
        listener = await anyio.abc.SocketListener.from_socket(sock)
        host = listener.extra(anyio.abc.SocketAttribute.local_address)[0]
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    server = FaultyServer(f"http://{host}:{port}", behaviour, record=record)
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, server._handle, task_group)
        try:
            yield server
        finally:
            task_group.cancel_scope.cancel()


@contextmanager
def refused_url() -> Iterator[str]:
    """A base URL whose port refuses connections: bound (so nobody takes it), not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


# -- behaviours ----------------------------------------------------------------------------


async def healthy(exchange: Exchange) -> None:
    """Answer the documented sample JSON of whichever endpoint was asked, keeping alive."""
    body = DATA_SLICES_OK if exchange.request.path.endswith("/data_slices") else REALTIME_OK
    await exchange.respond(200, body)


def answer(
    status: int,
    body: bytes | str | object = b"",
    *,
    reason: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    content_type: str = "application/json",
) -> Behaviour:
    """Answer every request with this status, body and headers, then close."""

    async def behaviour(exchange: Exchange) -> None:
        await exchange.respond(
            status, body, reason=reason, headers=headers, content_type=content_type, close=True
        )

    return behaviour


async def close_unanswered(exchange: Exchange) -> None:
    """Read the request, then close the connection without a byte of answer."""
    await exchange.close()


async def garbage_status_line(exchange: Exchange) -> None:
    """Answer something that is not HTTP at all, then close."""
    await exchange.send(b"HELLO THERE\r\n\r\n")
    await exchange.close()


async def reset_mid_headers(exchange: Exchange) -> None:
    """Send half a header block, then reset the connection."""
    await exchange.send(b"HTTP/1.1 200 OK\r\nContent-Type: appl")
    await exchange.reset()


async def reset_mid_body(exchange: Exchange) -> None:
    """Send the headers and a tenth of the promised body, then reset the connection."""
    body = json.dumps(REALTIME_OK).encode()
    fields = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    await exchange.send(head(200, None, fields) + body[: len(body) // 10])
    await exchange.reset()


async def stall_before_headers(exchange: Exchange) -> None:
    """Read the request and answer nothing, until the client gives up."""
    await exchange.stall()


async def stall_after_headers(exchange: Exchange) -> None:
    """Send the headers of a 200 with a body, then nothing more, until the client gives up."""
    fields = [("Content-Type", "application/json"), ("Content-Length", "100")]
    await exchange.send(head(200, None, fields))
    await exchange.stall()


def trickle(every: float = 0.05) -> Behaviour:
    """Send a whole healthy answer, status line included, one byte every ``every`` s."""

    async def behaviour(exchange: Exchange) -> None:
        body = json.dumps(REALTIME_OK).encode()
        fields = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        await exchange.trickle(head(200, None, fields) + body, every=every)
        await exchange.close()

    return behaviour


async def short_body(exchange: Exchange) -> None:
    """Promise a larger body (Content-Length) than is sent, then close in order."""
    body = json.dumps(REALTIME_OK).encode()
    fields = [("Content-Type", "application/json"), ("Content-Length", str(len(body) + 50))]
    await exchange.send(head(200, None, fields) + body)
    await exchange.close()


def oversize(*, declared: bool) -> Behaviour:
    """Answer 1 MiB + 1 byte of JSON-looking body, with a Content-Length or chunked."""

    async def behaviour(exchange: Exchange) -> None:
        size = ONE_MIB + 1
        chunk = b" " * (64 * 1024)
        if declared:
            fields = [("Content-Type", "application/json"), ("Content-Length", str(size))]
            await exchange.send(head(200, None, fields))
            sent = 0
            while sent < size:
                piece = chunk[: size - sent]
                await exchange.send(piece)
                sent += len(piece)
        else:
            fields = [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")]
            await exchange.send(head(200, None, fields))
            sent = 0
            while sent < size:
                piece = chunk[: size - sent]
                await exchange.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
            await exchange.send(b"0\r\n\r\n")
        await exchange.close()

    return behaviour


async def html(exchange: Exchange) -> None:
    """Answer 200 with an HTML page, as a captive portal or a misrouted proxy would."""
    page = "<!DOCTYPE html><html><body><h1>Welcome</h1><p>Please log in.</p></body></html>"
    await exchange.respond(200, page, content_type="text/html", close=True)


async def wrong_types(exchange: Exchange) -> None:
    """Answer the documented envelope with a string where ``connected`` is an integer."""
    data = {"connected": "many", "bandwidth": 267784, "geo": [["BR", 1]]}
    await exchange.respond(200, {"status": "Ok", "realtime_data": data}, close=True)


# Echoing servers: each quotes what it received (so the key) somewhere in its answer.


def echo_reason(status: int, body: object = None) -> Behaviour:
    """Answer ``status`` with the whole request line, key included, as the reason phrase."""

    async def behaviour(exchange: Exchange) -> None:
        payload = REALTIME_OK if body is None else body
        await exchange.respond(status, payload, reason=exchange.request.request_line, close=True)

    return behaviour


async def echo_in_json_message(exchange: Exchange) -> None:
    """Answer a non-"Ok" status whose ``message`` quotes the request line."""
    await exchange.respond(
        200,
        {"status": "Error", "message": f"cannot serve {exchange.request.request_line}"},
        close=True,
    )


async def echo_in_json_status(exchange: Exchange) -> None:
    """Answer a JSON ``status`` that is the query string (key among it) itself."""
    await exchange.respond(200, {"status": exchange.request.query}, close=True)


async def echo_in_text_body(exchange: Exchange) -> None:
    """Answer 200 with a non-JSON text body that is the query string (key among it)."""
    await exchange.respond(200, exchange.request.query, content_type="text/plain", close=True)


async def echo_in_mistyped_field(exchange: Exchange) -> None:
    """Answer a string ``connected`` that quotes the key the server received."""
    key = exchange.request.param("api_key")
    data = {"connected": f"api_key={key} is not allowed", "bandwidth": 1, "geo": []}
    await exchange.respond(200, {"status": "Ok", "realtime_data": data}, close=True)


def json_escaped(text: str) -> str:
    """Return ``text`` with every character written as a JSON ``\\uXXXX`` escape."""
    return "".join(f"\\u{ord(char):04x}" for char in text)


async def echo_upper_case_message(exchange: Exchange) -> None:
    """Answer a non-"Ok" status whose ``message`` quotes ``API_KEY=<KEY>`` in upper case."""
    key = exchange.request.param("api_key") or ""
    body = {"status": "Error", "message": f"API_KEY={key.upper()} is not valid"}
    await exchange.respond(200, body, close=True)


def echo_upper_case_reason(status: int) -> Behaviour:
    """Answer ``status`` with the request line, in upper case, as the reason phrase."""

    async def behaviour(exchange: Exchange) -> None:
        reason = exchange.request.request_line.upper()
        await exchange.respond(status, REALTIME_OK, reason=reason, close=True)

    return behaviour


def echo_escaped(template: str, *, cut_at: int) -> Behaviour:
    """Answer the JSON ``template`` with ``{key}``: the key JSON-escaped, where a quote cuts.

    ``{pad}`` is filled so that the key starts ``cut_at - 16`` characters into the decoded
    text it stands in: a quote cut at ``cut_at`` characters would keep 16 of them.
    """

    async def behaviour(exchange: Exchange) -> None:
        key = exchange.request.param("api_key") or ""
        text = template.replace("{pad}", "x" * (cut_at - 16)).replace("{key}", json_escaped(key))
        await exchange.respond(200, text.encode(), close=True)

    return behaviour


async def nul_in_echoed_header(exchange: Exchange) -> None:
    """Answer a header that quotes the request line with a NUL byte in it: not HTTP."""
    value = f"{exchange.request.request_line}\x00"
    fields = [("Content-Type", "application/json"), ("X-Echo", value), ("Content-Length", "2")]
    await exchange.send(head(200, None, fields) + b"{}")
    await exchange.close()


@functools.cache
def gzip_bomb(mebibytes: int) -> bytes:
    """Return ``mebibytes`` MiB of zeros, gzipped to about 1 KiB a MiB, without a trailer.

    Built fast: after a full flush the compressor starts afresh, so each further MiB of
    zeros compresses to the same bytes. The client must stop long before the missing end.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(ONE_MIB)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first + again * (mebibytes - 1)


def encoded(body: bytes, encoding: str, *, declared: bool = True) -> Behaviour:
    """Answer 200 with ``body`` as it is, under ``Content-Encoding: encoding``, then close.

    With ``declared=False`` there is no ``Content-Length``: the body ends when the
    connection does. It is sent 64 KiB at a time, as a network would deliver it.
    """

    async def behaviour(exchange: Exchange) -> None:
        fields = [("Content-Type", "application/json"), ("Content-Encoding", encoding)]
        if declared:
            fields.append(("Content-Length", str(len(body))))
        await exchange.send(head(200, None, fields))
        for start in range(0, len(body), 64 * 1024):
            await exchange.send(body[start : start + 64 * 1024])
        await exchange.close()

    return behaviour


def redirect(status: int, to: str) -> Behaviour:
    """Redirect to the same request target (key included) on the base URL ``to``."""

    async def behaviour(exchange: Exchange) -> None:
        location = to.rstrip("/") + exchange.request.target
        await exchange.respond(
            status, b"", headers=[("Location", location)], content_type="text/plain", close=True
        )

    return behaviour


def failing_first(count: int, failure: Behaviour, then: Behaviour = healthy) -> Behaviour:
    """Answer the server's first ``count`` requests with ``failure``, later ones with ``then``."""

    async def behaviour(exchange: Exchange) -> None:
        await (failure if exchange.number < count else then)(exchange)

    return behaviour


def rotating_5xx(retry_after: str | None = "0") -> Behaviour:
    """Answer 500, 502, 503, 504 in turn (with ``Retry-After`` if given), then close."""
    statuses = (500, 502, 503, 504)

    async def behaviour(exchange: Exchange) -> None:
        status = statuses[exchange.number % len(statuses)]
        headers = [] if retry_after is None else [("Retry-After", retry_after)]
        await exchange.respond(status, {"error": "overloaded"}, headers=headers, close=True)

    return behaviour


def rate_limited(retry_after: str | None) -> Behaviour:
    """Answer 429, with this ``Retry-After`` header value (``None``: no header)."""
    headers = [] if retry_after is None else [("Retry-After", retry_after)]
    return answer(429, {"error": "slow down"}, headers=headers)


def http_date(when: dt.datetime) -> str:
    """Format an aware datetime as an HTTP date (IMF-fixdate)."""
    return email.utils.format_datetime(when.astimezone(dt.timezone.utc), usegmt=True)


# -- leak hunting --------------------------------------------------------------------------


def texts_of(error: BaseException) -> str:
    """Everything a user, or an error reporter, could see of an error.

    Its message, repr and traceback; and of every exception it leads to (causes, contexts,
    group members, exceptions in arguments), the text, repr, arguments and attributes,
    which reporters such as Sentry serialise.
    """
    parts = ["".join(traceback.format_exception(error))]
    pending: list[object] = [error]
    visited: set[int] = set()
    while pending:
        seen = pending.pop()
        if not isinstance(seen, BaseException) or id(seen) in visited:
            continue
        visited.add(id(seen))
        parts += [str(seen), repr(seen), repr(seen.args), repr(getattr(seen, "__dict__", {}))]
        pending += [seen.__cause__, seen.__context__, *seen.args]
        pending += getattr(seen, "exceptions", None) or ()
    return "\n".join(parts)


def secret_fragment(text: str, secret: str, length: int = 12) -> str | None:
    """Return a piece of ``secret`` (``length`` characters at least) found in ``text``, in any case.

    A message cut at 40 or 80 characters can keep half a key: that leaks as surely as the
    whole key, and replacing the whole key cannot catch it. A hex key reads the same in
    upper case.
    """
    length = min(length, len(secret))
    text, secret = text.lower(), secret.lower()
    for start in range(len(secret) - length + 1):
        piece = secret[start : start + length]
        if piece in text:
            return piece
    return None


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def running_tasks() -> int:
    """How many tasks the current event loop runs."""
    return len(anyio.get_running_tasks())


async def settle(measure: Callable[[], int], target: int, *, within: float = 2.0) -> int:
    """Poll ``measure`` until it is at most ``target`` or ``within`` seconds pass; return it.

    asyncio closes a transport's socket one loop iteration after ``close()``, so a count
    taken right after ``aclose()`` can still include it.
    """
    step = 0.01
    for _ in range(round(within / step)):
        if measure() <= target:
            break
        await anyio.sleep(step)
    return measure()
