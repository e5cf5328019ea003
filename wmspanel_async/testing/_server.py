"""The simulator on a loopback port: ``serve()`` over the package's small anyio and h11 server.

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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs

from .._http_server import ASGIApp, serve_asgi
from ._faults import SimulatedDisconnect


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
    async with serve_asgi(
        app,
        host=host,
        port=port,
        server_header=b"wmspanel-async-simulator",
        drop_on=(SimulatedDisconnect,),
    ) as (bound_host, bound_port):
        yield LoopbackServer(bound_host, bound_port)
