"""The exporter's web side: /metrics, a short page at /, and /healthz, on a port of its own.

``wmspanel-async exporter`` (``cli/_exporter.py``) decides what to poll and opens the
``keep_fresh()`` block; :func:`serve_exporter` does the rest inside it: it feeds the
collector's poll duration histogram, and serves the app on the small anyio and h11 server
of ``_http_server`` (no threads, asyncio or trio) until the block is left.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Info,
)

from ._http_server import ASGIApp, Receive, Scope, Send, answer_lifespan, send_text, serve_asgi
from ._prometheus import WMSPanelCollector, metrics_app
from ._version import __version__

if TYPE_CHECKING:
    from ._fresh import FreshSnapshots

#: Seconds a connection may stay idle (or a client take to read an answer) before it is
#: closed: Prometheus opens a new one if it needs to.
IDLE_TIMEOUT = 30.0
#: Seconds a request may take to arrive whole once it has begun: a scrape's head comes in
#: one packet, and a client that trickles it in holds no place longer than this.
REQUEST_TIMEOUT = 5.0
#: Connections served at once at most: a few Prometheus servers and a probe need far fewer.
#: A newcomer beyond them takes the place of the connection idle the longest.
MAX_CONNECTIONS = 64

_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>WMSPanel exporter</title></head>
<body>
<h1>WMSPanel exporter</h1>
<p>Realtime figures of WMSPanel for Prometheus, polled in the background within the
account's daily calls: a scrape never calls the API.</p>
<ul>
<li><a href="metrics">metrics</a>: the figures, in the Prometheus text format</li>
<li><a href="healthz">healthz</a>: 200 while polling runs</li>
</ul>
<p>wmspanel-async {version}</p>
</body>
</html>
"""


def exporter_registry(collector: WMSPanelCollector) -> CollectorRegistry:
    """Return what the exporter's ``/metrics`` serves: ``collector`` and the standard metrics.

    Those every Python exporter shows: ``process_*`` (CPU, memory, open files, start time),
    ``python_info`` and ``python_gc_*``, and ``wmspanel_exporter_build_info{version=...}``.
    """
    registry = CollectorRegistry(auto_describe=False)
    for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR, collector):
        registry.register(standard)
    build = Info("wmspanel_exporter_build", "The version of wmspanel-async", registry=registry)
    build.info({"version": __version__})
    return registry


def exporter_app(collector: WMSPanelCollector, *, healthy: Callable[[], bool]) -> ASGIApp:
    """Return the exporter's ASGI app.

    Args:
        collector: What ``/metrics`` serves, with the standard metrics of a Python exporter.
        healthy: Whether ``/healthz`` answers 200 (or 503) now.
    """
    metrics = metrics_app(exporter_registry(collector))
    page = _PAGE.format(version=__version__).encode()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        path = scope["path"]
        if path == "/metrics":
            await metrics(scope, receive, send)
        elif scope["method"] != "GET":
            await send_text(send, 405, "only GET is supported\n", [(b"allow", b"GET")])
        elif path == "/":
            headers = [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(page)).encode()),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": page})
        elif path == "/healthz":
            if healthy():
                await send_text(send, 200, "ok: polling\n")
            else:
                await send_text(send, 503, "not polling\n")
        else:
            await send_text(send, 404, "not found: see /metrics\n")

    return app


@asynccontextmanager
async def serve_exporter(
    fresh: FreshSnapshots,
    *,
    host: str,
    port: int,
    slice_names: Mapping[str, str] | None = None,
) -> AsyncIterator[tuple[str, int]]:
    """Serve the metrics of ``fresh`` on ``host`` and ``port`` until the block is left.

    Use it inside the ``keep_fresh()`` block. ``/healthz`` answers 200 while the poller
    runs: once the collector's subscription to every new snapshot is open, until the block
    is left. A poller that fails raises its error out of this block, which ends the command.

    Args:
        fresh: The poller, entered.
        host: The address to bind; ``""`` binds every interface.
        port: The port; 0 picks a free one.
        slice_names: Data slice names by id, read at every scrape.

    Yields:
        The host and port it listens on.

    Raises:
        OSError: The address cannot be bound.
    """
    collector = WMSPanelCollector(fresh, slice_names=slice_names)
    polling = False

    async def observe(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        nonlocal polling
        try:
            await collector.run(task_status=task_status)
        finally:
            polling = False

    app = exporter_app(collector, healthy=lambda: polling)
    # Bound first, so that a port in use is an OSError of its own, not in a task group's.
    async with (
        serve_asgi(
            app,
            host=host,
            port=port,
            server_header=f"wmspanel-async-exporter/{__version__}".encode(),
            idle_timeout=IDLE_TIMEOUT,
            request_timeout=REQUEST_TIMEOUT,
            max_connections=MAX_CONNECTIONS,
        ) as address,
        anyio.create_task_group() as task_group,
    ):
        await task_group.start(observe)
        polling = True
        yield address
        task_group.cancel_scope.cancel()
