"""Live viewer counts in a FastAPI backend: one poller per process, any number of readers.

Run it with ``uvicorn fastapi_app:app --timeout-graceful-shutdown 5`` and open
http://127.0.0.1:8000/. With ``WMSPANEL_CLIENT_ID`` and ``WMSPANEL_API_KEY`` set it shows
your account; without them, a simulated one (in process, nothing to configure).

- ``GET /``: the live page, each slice's viewers, bandwidth and trend, updated as they come.
- ``GET /api/slices``: every data slice's latest figures; ``GET /api/slices/{id}``: one's.
- ``GET /events``: the same figures as Server-Sent Events, one event per new snapshot.

No request calls the API: the endpoints read what ``client.keep_fresh()`` polled last.
The lifespan applies ``LOGGING``, so that the package's lines ("is down", "recovered")
come out with time, level and logger name beside uvicorn's.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import fastapi
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

from wmspanel_async import DataSlice, FreshSnapshots, Target, WMSPanelClient
from wmspanel_async.testing import Simulator

logger = logging.getLogger("fastapi_app")

#: Seconds between two polls of a slice of a real account: 10 slices every 60 s make 14,400
#: calls a day, just within WMSPanel's 15,000 (the poller polls less often, and logs it, if
#: the calls would not last the day).
INTERVAL = 60.0
#: The same for the simulated account, whose ten million calls a day allow a lively page.
SIMULATED_INTERVAL = 1.0
#: How long a browser waits before it reconnects a broken event stream, in milliseconds.
RECONNECT_MS = 2000

#: The package's loggers (and this app's) to stderr, with time, level and logger name, at
#: INFO: uvicorn configures only its own loggers, which this leaves as they are.
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        # "is down" (WARNING), "recovered" (INFO), retries and a stretched schedule.
        "wmspanel_async": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "fastapi_app": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "httpx": {"level": "WARNING"},  # not a line per request
    },
}

PAGE = Path(__file__).with_name("fastapi_page.html").read_text(encoding="utf-8")
#: WMSPanel's ids; a path with anything else is refused (422) before it is looked up.
SliceId = Annotated[str, fastapi.Path(pattern=r"^[0-9a-f]{24}$")]


class Board:
    """What the endpoints read: the account's slices, and the poller that keeps them fresh."""

    def __init__(self, fresh: FreshSnapshots, slices: list[DataSlice]) -> None:
        self.fresh = fresh
        self.names = {data_slice.id: data_slice.name for data_slice in slices}

    def row(self, slice_id: str) -> dict[str, Any]:
        """Return a slice's latest figures, from memory.

        Raises:
            HTTPException: 404, the account has no such slice.
        """
        if slice_id not in self.names:
            raise HTTPException(status_code=404, detail=f"no data slice {slice_id} here")
        return self.describe(Target(slice_id))

    def describe(self, target: Target) -> dict[str, Any]:
        """Return what the page shows of a target: its last figures, and the current error.

        During an outage the page keeps the last figures on show, with the error's type
        beside them: ``last_success()`` gives the figures (it keeps the last good ones),
        ``get()`` the latest poll, failed or not, for its error.
        """
        figures = self.fresh.last_success(target)
        latest = self.fresh.get(target)
        stats = figures.stats if figures is not None else None
        error = latest.error if latest is not None else None
        return {
            "id": target.data_slice,
            "name": self.names[target.data_slice],
            "connected": stats.connected if stats is not None else None,
            "bandwidth": stats.bandwidth if stats is not None else None,
            "countries": [[geo.country, geo.connected] for geo in stats.geo[:3]] if stats else [],
            "as_of": figures.fetched_at.isoformat() if figures is not None else None,
            # The type only: the messages name the account's client id, for your logs (the
            # poller logs them), not for a public page.
            "error": type(error).__name__ if error is not None else None,
        }

    async def events(self) -> AsyncGenerator[str, None]:
        """Yield Server-Sent Events: the latest figures of each slice, then each new one."""
        yield f"retry: {RECONNECT_MS}\n\n"
        # One subscription per browser, with a bounded buffer of its own: a slow browser
        # loses its oldest snapshots, and never slows the poller or the other browsers.
        # Iteration ends when the app shuts down (its keep_fresh() block is left).
        async with self.fresh.subscribe() as snapshots:
            async for snapshot in snapshots:
                yield f"data: {json.dumps(self.describe(snapshot.target))}\n\n"


class EventStream(StreamingResponse):
    """A ``text/event-stream`` response that closes its events' generator when it ends."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncGenerator[str, None]) -> None:
        # no-transform: proxies must pass each event on at once, not gzip or buffer them.
        super().__init__(events, headers={"Cache-Control": "no-cache, no-transform"})
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the events until the browser leaves or the stream ends."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            # A browser that leaves while an event is being written leaves the generator
            # paused at its yield: close it now, so that its subscription ends now.
            await self._events.aclose()


def create_app(
    make_client: Callable[[], WMSPanelClient] = WMSPanelClient,
    interval: float = INTERVAL,
    logging_config: dict[str, Any] | None = None,
) -> FastAPI:
    """Return the app; tests pass ``make_client=simulator.client``.

    Args:
        make_client: Makes the process's one client, inside the app's event loop.
        interval: Seconds between two polls of a slice.
        logging_config: Applied with ``logging.config.dictConfig`` as the app starts (in
            each worker); ``None`` leaves logging as it is (tests capture it their way).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if logging_config is not None:
            logging.config.dictConfig(logging_config)
        # Made here, not at import: a client belongs to the event loop that runs the app.
        async with make_client() as client:
            slices = await client.data_slices()
            targets = [Target(data_slice) for data_slice in slices]
            # A refused key (403) shows as each slice's error, and the page keeps its last
            # figures while someone fixes the key (keep_fresh's raise_on_auth_error=False).
            # first_poll_now: every slice at once, so that the first page has figures.
            async with client.keep_fresh(targets, interval=interval, first_poll_now=True) as fresh:
                app.state.board = Board(fresh, slices)
                yield

    app = FastAPI(title="Live viewers", lifespan=lifespan)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    @app.get("/api/slices")
    async def every_slice(request: Request) -> list[dict[str, Any]]:
        board: Board = request.app.state.board
        return [board.row(slice_id) for slice_id in board.names]

    @app.get("/api/slices/{slice_id}")
    async def one_slice(request: Request, slice_id: SliceId) -> dict[str, Any]:
        board: Board = request.app.state.board
        return board.row(slice_id)

    @app.get("/events")
    async def events(request: Request) -> EventStream:
        board: Board = request.app.state.board
        return EventStream(board.events())

    return app


def from_environment() -> tuple[Callable[[], WMSPanelClient], float]:
    """Return how to make the client, and the interval: for your account, or a simulated one."""
    if os.environ.get("WMSPANEL_CLIENT_ID") or os.environ.get("WMSPANEL_API_KEY"):
        return WMSPanelClient, INTERVAL  # it says so if one of the two is missing
    logger.warning("WMSPANEL_CLIENT_ID and WMSPANEL_API_KEY are not set: simulating an account")
    return Simulator.demo().client, SIMULATED_INTERVAL


app = create_app(*from_environment(), logging_config=LOGGING)
