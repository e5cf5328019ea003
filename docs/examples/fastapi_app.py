"""Live viewer counts in a FastAPI backend: one client and one poller per process.

Run it with ``uvicorn fastapi_app:app``, with the credentials in ``WMSPANEL_CLIENT_ID`` and
``WMSPANEL_API_KEY``. ``GET /viewers`` lists every data slice's latest figures, and
``GET /viewers/{slice_id}`` one slice's; neither calls the API: they read what the poller
fetched last.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, HTTPException, Request

from wmspanel_async import Snapshot, Target, WMSPanelClient

#: Seconds between two polls of a slice: 10 slices every 60 s make 14,400 calls a day, just
#: within WMSPanel's 15,000 (the poller polls less often, and logs it, if they would not fit).
INTERVAL = 60.0


@dataclasses.dataclass
class Board:
    """The latest figures of each data slice, as the poller hands them over."""

    names: dict[str, str]
    figures: dict[str, Snapshot] = dataclasses.field(default_factory=dict)
    errors: dict[str, str] = dataclasses.field(default_factory=dict)

    def take(self, snapshot: Snapshot) -> None:
        """Keep a slice's figures, or note why its last poll failed (keeping its figures)."""
        slice_id = snapshot.target.data_slice
        if snapshot.error is None:
            self.figures[slice_id] = snapshot
            self.errors.pop(slice_id, None)
        else:
            self.errors[slice_id] = type(snapshot.error).__name__

    def row(self, slice_id: str) -> dict[str, Any]:
        """Return what the API shows of one slice."""
        snapshot = self.figures.get(slice_id)
        stats = snapshot.stats if snapshot is not None else None
        return {
            "id": slice_id,
            "name": self.names[slice_id],
            "connected": stats.connected if stats is not None else None,
            "bandwidth": stats.bandwidth if stats is not None else None,
            "as_of": snapshot.fetched_at.isoformat() if snapshot is not None else None,
            "error": self.errors.get(slice_id),
        }


async def keep_fresh(
    client: WMSPanelClient, targets: list[Target], board: Board, interval: float
) -> None:
    """Poll ``targets`` until cancelled, handing every snapshot to ``board``."""
    # A 403 (a revoked key, a new server IP) must not take the web app down: it shows as
    # each slice's error, and the poller logs it once as a WARNING.
    async with client.poll(targets, interval=interval, raise_on_auth_error=False) as snapshots:
        async for snapshot in snapshots:
            board.take(snapshot)


def create_app(
    make_client: Callable[[], WMSPanelClient] = WMSPanelClient, interval: float = INTERVAL
) -> FastAPI:
    """Return the app; tests pass ``make_client=simulator.client``.

    Args:
        make_client: Makes the process's one client, inside the app's event loop.
        interval: Seconds between two polls of a slice.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Made here, not at import: a client belongs to the event loop that runs the app.
        async with make_client() as client, anyio.create_task_group() as task_group:
            slices = await client.data_slices()
            board = Board(names={data_slice.id: data_slice.name for data_slice in slices})
            targets = [Target(data_slice) for data_slice in slices]
            # One round now, so that the first page shows figures, then the poller.
            for snapshot in await client.realtime_many(targets):
                board.take(snapshot)
            app.state.board = board
            task_group.start_soon(keep_fresh, client, targets, board, interval)
            yield
            task_group.cancel_scope.cancel()

    app = FastAPI(lifespan=lifespan)

    @app.get("/viewers")
    async def viewers(request: Request) -> list[dict[str, Any]]:
        board: Board = request.app.state.board
        return [board.row(slice_id) for slice_id in board.names]

    @app.get("/viewers/{slice_id}")
    async def viewers_of(slice_id: str, request: Request) -> dict[str, Any]:
        board: Board = request.app.state.board
        if slice_id not in board.names:
            raise HTTPException(status_code=404, detail=f"no data slice {slice_id}")
        return board.row(slice_id)

    return app


app = create_app()
