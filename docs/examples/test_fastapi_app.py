"""Tests of fastapi_app against the simulator: no account, no network, no quota spent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from fastapi_app import create_app

from wmspanel_async.testing import Fault, Simulator

pytestmark = pytest.mark.anyio  # the tests run under anyio, on asyncio and on trio


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Start the app's lifespan, and give an HTTP client that calls the app in process."""
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as http,
    ):
        yield http


async def test_viewers_lists_every_slice(wmspanel_simulator: Simulator) -> None:
    """Every slice has a row with figures as soon as the app has started."""
    async with running(create_app(wmspanel_simulator.client)) as http:
        rows = (await http.get("/viewers")).json()
    assert [row["name"] for row in rows] == [
        "All streams",
        "Sports",
        "Europe edge",
        "Edges overview",
    ]
    assert all(row["connected"] > 0 and row["error"] is None for row in rows)


async def test_page_views_spend_no_api_calls(wmspanel_simulator: Simulator) -> None:
    """Requests read what the poller fetched: a hundred page views make no API call."""
    async with running(create_app(wmspanel_simulator.client)) as http:
        calls = wmspanel_simulator.calls_today()
        for _ in range(100):
            assert (await http.get("/viewers")).status_code == 200
        # At most the poller's first tick, due as soon as it starts.
        assert wmspanel_simulator.calls_today() - calls <= 1


async def test_a_failing_slice_shows_its_error(wmspanel_simulator: Simulator) -> None:
    """A slice that keeps failing shows the error's type; the others are unaffected."""
    sports = wmspanel_simulator.account.slices[1]
    # Three 503 in a row: the first try and both retries of this slice fail.
    wmspanel_simulator.inject(Fault.http_status(503, retry_after=0), times=3, data_slice=sports)
    async with running(create_app(wmspanel_simulator.client)) as http:
        row = (await http.get(f"/viewers/{sports.id}")).json()
        missing = await http.get(f"/viewers/{'0' * 24}")
    assert (row["name"], row["connected"], row["error"]) == ("Sports", None, "ServerError")
    assert missing.status_code == 404
