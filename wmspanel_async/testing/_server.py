"""A small HTTP/1.1 server for ASGI apps on a loopback port, built on anyio and h11.

It exists so that the simulator can sit behind a real socket inside a test, on asyncio and on
trio alike, started and stopped by structured concurrency (``async with serve(app)``), with no
dependency beyond h11, which httpx already installs. It serves plain HTTP on loopback
addresses only: it is a test double, not a web server.

An app that raises after starting its answer has the connection dropped mid-body (how the
simulator's ``truncated`` fault reaches the client); ``SimulatedDisconnect`` raised before
the answer drops the connection unanswered; any other exception before the answer gives 500.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote

import anyio
import anyio.abc
import attrs
import h11

from ._faults import SimulatedDisconnect, reason_phrase
from ._simulator import ASGIApp, Message

logger = logging.getLogger("wmspanel_async.testing")

_MAX_REQUEST_HEAD = 16 * 1024
_SERVER_HEADER = (b"server", b"wmspanel-async-simulator")


@attrs.frozen
class LoopbackServer:
    """Where a served app listens.

    Attributes:
        host: The loopback address it is bound to.
        port: The port it is bound to.
    """

    host: str
    port: int

    @property
    def url(self) -> str:
        """The base URL to give a client, for example ``http://127.0.0.1:8080``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def _loopback_host(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        msg = (
            f"host {host!r} is not a loopback address; the simulator speaks plain HTTP and "
            "serves only this machine (use 127.0.0.1, ::1 or localhost)"
        )
        raise ValueError(msg)
    return str(address)


@asynccontextmanager
async def serve(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[LoopbackServer]:
    """Serve ``app`` on a loopback port for the duration of the ``async with`` block.

    Example::

        async with serve(Simulator()) as server:
            ...  # point a client at server.url

    Args:
        app: The ASGI app, usually a :class:`Simulator`.
        host: A loopback address (``127.0.0.1``, ``::1`` or ``localhost``).
        port: The port; 0 picks a free one (see ``LoopbackServer.port``).

    Yields:
        Where the app listens. It is ready to accept connections.

    Raises:
        ValueError: ``host`` is not a loopback address.
        OSError: The port cannot be bound (already in use, for example).
    """
    host = _loopback_host(host)
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    bound_port: int = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610
    server = LoopbackServer(host, bound_port)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        try:
            await _Connection(app, stream, server).run()
        except Exception:  # pragma: no cover - one broken connection must not stop the server
            logger.exception("a connection to the loopback server failed")

    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, handle)
        try:
            yield server
        finally:
            task_group.cancel_scope.cancel()


class _Connection:
    """One client connection: requests in, ASGI calls, answers out, until either side closes."""

    def __init__(
        self, app: ASGIApp, stream: anyio.abc.SocketStream, server: LoopbackServer
    ) -> None:
        self._app = app
        self._stream = stream
        self._server = server
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_REQUEST_HEAD)
        remote = stream.extra(anyio.abc.SocketAttribute.remote_address)  # noqa: S610
        self._client = (str(remote[0]), int(remote[1])) if isinstance(remote, tuple) else None

    async def run(self) -> None:
        async with self._stream:
            try:
                while await self._one_exchange():
                    self._h11.start_next_cycle()
            except h11.RemoteProtocolError as exc:
                await self._send_error(exc.error_status_hint)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, h11.LocalProtocolError):
                return

    async def _next_event(self) -> Any:
        while True:
            event = self._h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self._stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                data = b""
            self._h11.receive_data(data)

    async def _one_exchange(self) -> bool:
        """Serve one request; return whether the connection may carry another."""
        request = await self._next_event()
        if not isinstance(request, h11.Request):
            return False
        body = b""
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return False
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
            "server": (self._server.host, self._server.port),
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
                reason = reason_phrase(status)
                headers = [*message.get("headers", []), _SERVER_HEADER]
                await self._send(
                    h11.Response(status_code=status, headers=headers, reason=reason.encode())
                )
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    await self._send(h11.Data(data=message["body"]))
                if not message.get("more_body", False):
                    await self._send(h11.EndOfMessage())
                    answered.set()

        try:
            await self._app(scope, receive, send)
        except SimulatedDisconnect:
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
            await self._stream.send(data)

    async def _send_error(self, status: int) -> None:
        if self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = f"{status} {reason_phrase(status)}".encode()
        headers = [
            (b"content-type", b"text/plain"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            _SERVER_HEADER,
        ]
        try:
            await self._send(h11.Response(status_code=status, headers=headers))
            await self._send(h11.Data(data=body))
            await self._send(h11.EndOfMessage())
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, h11.LocalProtocolError):
            return
