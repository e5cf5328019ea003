"""A small HTTP/1.1 server for ASGI apps, built on anyio and h11: no threads, any event loop.

It serves the simulator behind a real socket (``wmspanel_async.testing.serve``, loopback
only) and the exporter's ``/metrics`` (``wmspanel-async exporter``), on asyncio and on trio
alike, started and stopped by structured concurrency::

    async with serve_asgi(app, host="127.0.0.1", port=0) as (host, port):
        ...

One request travels: the listener accepts a connection -> ``_Connection`` reads the request
head (16 KiB at most) and body (1 MiB at most) through h11 -> the app is called with an ASGI
``http`` scope -> what it sends goes out through h11 -> the next request on the same
connection, until either side closes or the connection is idle for ``idle_timeout``.

No client can lock others out: once its first byte has come, a request must arrive whole
within ``request_timeout`` (however slowly its bytes trickle in), and when all
``max_connections`` are open, a newcomer takes the place of the connection that has waited
longest for a request (silent, trickling, or idle between requests), never of one whose
request is being answered.

An app that raises after starting its answer has the connection dropped mid-body; an
exception of ``drop_on`` raised before the answer drops the connection unanswered (how the
simulator's faults reach the client); any other exception before the answer gives 500.
"""

from __future__ import annotations

import http
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote

import anyio
import anyio.abc
import h11

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: The ASGI 3 application signature.
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("wmspanel_async.http")

MAX_REQUEST_HEAD = 16 * 1024
#: Request bodies above this are refused (413): no app served here takes more than a form.
MAX_REQUEST_BODY = 1024 * 1024

_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, h11.LocalProtocolError)


def reason_phrase(status_code: int) -> str:
    """Return the standard reason phrase of ``status_code``, or ``""`` for an unknown one."""
    try:
        return http.HTTPStatus(status_code).phrase
    except ValueError:
        return ""


async def send_text(
    send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send a whole plain text answer, for the small apps served here."""
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def answer_lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge an ASGI ``lifespan`` scope's startup and shutdown: there is nothing to do."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


@asynccontextmanager
async def serve_asgi(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    server_header: bytes,
    drop_on: tuple[type[Exception], ...] = (),
    idle_timeout: float | None = None,
    request_timeout: float | None = None,
    max_connections: int | None = None,
) -> AsyncIterator[tuple[str, int]]:
    """Serve ``app`` on ``host`` and ``port`` for the duration of the ``async with`` block.

    Args:
        app: The ASGI app.
        host: The address to bind; ``""`` binds every interface.
        port: The port; 0 picks a free one.
        server_header: The ``Server`` header of every answer.
        drop_on: Exceptions that, raised by the app before it answers, drop the connection
            unanswered.
        idle_timeout: Seconds a connection may wait for its client (to start a request, or
            to take the answer) before it is closed; ``None`` waits forever.
        request_timeout: Seconds a request may take to arrive whole (head and body) once
            its first byte has come; ``None`` for no limit.
        max_connections: Connections served at once at most. A newcomer beyond them takes
            the place of the one that has waited longest for a request, or is closed at
            once if every one is being answered.

    Yields:
        The host and the port it listens on; it is ready to accept connections.

    Raises:
        OSError: The address cannot be bound (the port is in use, for example).
    """
    listener = await anyio.create_tcp_listener(local_host=host or None, local_port=port)
    bound_port: int = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610
    limit = math.inf if max_connections is None else max_connections
    connections: set[_Connection] = set()
    address = (host, bound_port)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        if len(connections) >= limit:
            waiting = [c for c in connections if c.waiting_since is not None]
            if not waiting:
                await stream.aclose()  # every place is answering: the client may retry
                return
            longest = min(waiting, key=lambda c: c.waiting_since or 0.0)
            connections.discard(longest)
            longest.shed()
        connection = _Connection(
            app,
            stream,
            address,
            server_header=server_header,
            drop_on=drop_on,
            idle_timeout=idle_timeout,
            request_timeout=request_timeout,
        )
        connections.add(connection)
        try:
            await connection.run()
        except Exception:  # pragma: no cover - one broken connection must not stop the server
            logger.exception("a connection to the HTTP server on %s:%d failed", *address)
        finally:
            connections.discard(connection)

    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, handle)
        try:
            yield address
        finally:
            task_group.cancel_scope.cancel()


class _Connection:
    """One client connection: requests in, ASGI calls, answers out, until either side closes."""

    def __init__(
        self,
        app: ASGIApp,
        stream: anyio.abc.SocketStream,
        address: tuple[str, int],
        *,
        server_header: bytes,
        drop_on: tuple[type[Exception], ...],
        idle_timeout: float | None,
        request_timeout: float | None,
    ) -> None:
        self._app = app
        self._stream = stream
        self._address = address
        self._server_header = (b"server", server_header)
        self._drop_on = drop_on
        self._idle_timeout = math.inf if idle_timeout is None else idle_timeout
        self._request_timeout = math.inf if request_timeout is None else request_timeout
        self._request_deadline = math.inf  # for the request arriving now
        self._scope = anyio.CancelScope()
        #: When it started waiting for a request; None while one is being answered.
        self.waiting_since: float | None = anyio.current_time()
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
        remote = stream.extra(anyio.abc.SocketAttribute.remote_address)  # noqa: S610
        self._client = (str(remote[0]), int(remote[1])) if isinstance(remote, tuple) else None

    def shed(self) -> None:
        """Close the connection, to give its place to a newcomer."""
        self._scope.cancel()

    async def run(self) -> None:
        async with self._stream:
            with self._scope:
                await self._serve()

    async def _serve(self) -> None:
        try:
            while await self._one_exchange():
                self._h11.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            await self._send_error(exc.error_status_hint)
        except _RequestTooLarge:
            await self._send_error(413)
        except (*_GONE, TimeoutError):
            return

    async def _next_event(self) -> Any:
        while True:
            event = self._h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            now = anyio.current_time()
            try:
                with anyio.fail_after(min(self._idle_timeout, self._request_deadline - now)):
                    data = await self._stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                data = b""
            if self._request_deadline == math.inf:  # its first bytes: the clock starts
                self._request_deadline = now + self._request_timeout
            self._h11.receive_data(data)

    async def _one_exchange(self) -> bool:
        """Serve one request; return whether the connection may carry another."""
        self.waiting_since = anyio.current_time()
        self._request_deadline = math.inf
        request = await self._next_event()
        if not isinstance(request, h11.Request):
            return False
        body = b""
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_REQUEST_BODY:
                    raise _RequestTooLarge
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return False
        self.waiting_since = None
        if not await self._call_app(request, body):
            return False
        return self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE

    async def _call_app(self, request: h11.Request, body: bytes) -> bool:
        """Run the app for ``request``; return whether its answer was complete."""
        target = request.target.decode("latin-1")
        raw_path, _, query = target.partition("?")
        path = unquote(raw_path)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version.decode(),
            "method": request.method.decode(),
            "scheme": "http",
            "path": path,
            "raw_path": raw_path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "root_path": "",
            "headers": [(name.lower(), value) for name, value in request.headers],
            "client": self._client,
            "server": self._address,
        }
        answered = anyio.Event()
        request_delivered = False

        async def receive() -> Message:
            nonlocal request_delivered
            if not request_delivered:
                request_delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await answered.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [*message.get("headers", []), self._server_header]
                reason = reason_phrase(status).encode()
                await self._send(h11.Response(status_code=status, headers=headers, reason=reason))
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    await self._send(h11.Data(data=message["body"]))
                if not message.get("more_body", False):
                    await self._send(h11.EndOfMessage())
                    answered.set()

        try:
            await self._app(scope, receive, send)
        except self._drop_on:
            return False
        except Exception:
            if self._h11.our_state is not h11.SEND_RESPONSE:
                return False  # the answer had started: all we can do is drop the connection
            logger.exception("the app failed on %s %s", scope["method"], path)
            await self._send_error(500)
            return False
        return answered.is_set()

    async def _send(self, event: h11.Event) -> None:
        data = self._h11.send(event)
        if data:
            with anyio.fail_after(self._idle_timeout):
                await self._stream.send(data)

    async def _send_error(self, status: int) -> None:
        if self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = f"{status} {reason_phrase(status)}".encode()
        headers = [
            (b"content-type", b"text/plain"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            self._server_header,
        ]
        try:
            await self._send(h11.Response(status_code=status, headers=headers))
            await self._send(h11.Data(data=body))
            await self._send(h11.EndOfMessage())
        except (*_GONE, TimeoutError):
            return


class _RequestTooLarge(Exception):
    """The request's body is larger than MAX_REQUEST_BODY."""
