"""Tests of fastapi_app against the simulator: no account, no network, no quota spent."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
import trio.testing
from fastapi import FastAPI
from fastapi_app import LOGGING, create_app

from wmspanel_async import Target
from wmspanel_async.testing import Account, Fault, Simulator

pytestmark = pytest.mark.anyio  # the tests run under anyio, on asyncio and on trio

INTERVAL = 0.25  # seconds between two polls of a slice
SLICES = ["All streams", "Sports", "Europe edge", "Edges overview"]


@pytest.fixture
def wmspanel_account() -> Account:
    """The simulated account, with calls enough that fast polls are never stretched.

    4 slices every 0.25 s make 1.4 million calls a day: a limit below that would stretch
    the schedule early in the UTC day (when most of the day is left) and not late in it.
    """
    return Account.generate(0, daily_limit=10_000_000)


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Start the app's lifespan, and give an HTTP client that calls the app in process."""
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as http,
    ):
        yield http


async def polled_once(app: FastAPI) -> None:
    """Wait for every slice's first snapshot (the first polls are spread over an interval)."""
    fresh = app.state.board.fresh
    with anyio.fail_after(5 * INTERVAL):
        for target in fresh.targets:
            await fresh.wait(target)


def realtime_calls(simulator: Simulator) -> int:
    """Return the realtime calls the simulator counted against the daily limit."""
    return sum(1 for r in simulator.requests if r.path == "/v1/realtime_data" and r.counted)


async def test_every_slice_has_its_figures(wmspanel_simulator: Simulator) -> None:
    """Once polled, every slice has figures, and one slice's row is the same as in the list."""
    app = create_app(wmspanel_simulator.client, INTERVAL)
    async with running(app) as http:
        await polled_once(app)
        rows = (await http.get("/api/slices")).json()
        one = (await http.get(f"/api/slices/{rows[1]['id']}")).json()
    assert [row["name"] for row in rows] == SLICES
    for row in rows:
        assert row["connected"] > 0
        assert row["bandwidth"] > 0
        assert len(row["countries"]) == 3
        assert row["as_of"].endswith("+00:00")
        assert row["error"] is None
    assert one == rows[1]


async def test_a_failing_slice_shows_its_error_and_keeps_its_figures(
    wmspanel_simulator: Simulator,
) -> None:
    """A slice whose polls fail shows the error's type beside its last figures."""
    app = create_app(wmspanel_simulator.client, INTERVAL)
    async with running(app) as http:
        await polled_once(app)
        fresh = app.state.board.fresh
        sports = Target(wmspanel_simulator.account.slices[1].id)
        wmspanel_simulator.inject(Fault.http_status(503), times=1000, target=sports)
        snapshot = fresh.get(sports)
        with anyio.fail_after(5 * INTERVAL):
            while snapshot.error is None:  # a poll already under way may still succeed
                snapshot = await fresh.wait(sports, newer_than=snapshot)
        kept = fresh.last_success(sports)
        response = await http.get("/api/slices")
        one = await http.get(f"/api/slices/{sports.data_slice}")
    assert wmspanel_simulator.account.api_key not in response.text
    rows = {row["name"]: row for row in response.json()}
    assert rows["Sports"]["error"] == "ServerError"
    assert rows["Sports"]["connected"] == kept.stats.connected > 0
    assert rows["Sports"]["as_of"] == kept.fetched_at.isoformat()
    assert all(rows[name]["error"] is None for name in SLICES if name != "Sports")
    assert one.json() == rows["Sports"]  # one slice's endpoint keeps its figures too


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """Put back the loggers LOGGING configures, as they were, after the test."""
    names = [*LOGGING["loggers"], "uvicorn.error"]
    saved = {}
    for name in names:
        log = logging.getLogger(name)
        saved[name] = (log.level, list(log.handlers), log.propagate, log.disabled)
    yield
    for name, (level, handlers, propagate, disabled) in saved.items():
        log = logging.getLogger(name)
        log.setLevel(level)
        log.handlers[:] = handlers
        log.propagate, log.disabled = propagate, disabled


@pytest.mark.usefixtures("logging_restored")
async def test_the_packages_log_lines_come_out_with_time_level_and_logger(
    wmspanel_simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With LOGGING applied in the lifespan, "is down" (WARNING) and "recovered" (INFO) show."""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)  # where LOGGING's handler writes
    uvicorn_error = logging.getLogger("uvicorn.error")  # as uvicorn configures it, before us
    uvicorn_error.addHandler(logging.NullHandler())
    app = create_app(wmspanel_simulator.client, INTERVAL, logging_config=LOGGING)
    async with running(app):
        await polled_once(app)
        fresh = app.state.board.fresh
        sports = Target(wmspanel_simulator.account.slices[1].id)
        # Three polls answered 503 (the poller does not retry them), then it recovers.
        wmspanel_simulator.inject(Fault.http_status(503, retry_after=0), times=3, target=sports)
        snapshot = fresh.get(sports)
        with anyio.fail_after(10 * INTERVAL):
            while snapshot.error is None:
                snapshot = await fresh.wait(sports, newer_than=snapshot)
            while snapshot.error is not None:
                snapshot = await fresh.wait(sports, newer_than=snapshot)
    log = stderr.getvalue()
    stamp = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    down = rf"{stamp} WARNING wmspanel_async\.poller: {sports} is down: ServerError: "
    recovered = rf"{stamp} INFO wmspanel_async\.poller: {sports} recovered after \d+ failed polls"
    assert re.search(down, log, flags=re.MULTILINE), log
    assert re.search(recovered, log, flags=re.MULTILINE), log
    assert "HTTP Request" not in log  # httpx's line per request stays quiet
    assert wmspanel_simulator.account.api_key not in log
    assert not uvicorn_error.disabled
    assert uvicorn_error.handlers  # uvicorn's loggers are left as they were


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/slices/" + "0" * 24, 404),  # well-formed, but not a slice of this account
        ("/api/slices/not-an-id", 422),
        ("/api/slices/" + "A" * 24, 422),  # ids are lowercase hex
        ("/api/slices/" + "0" * 10_000, 422),
        ("/api/slices/%00", 422),
        ("/api/slices/..%2F..%2Fevents", 404),
    ],
)
async def test_unknown_and_malformed_slice_ids_are_refused(
    wmspanel_simulator: Simulator, path: str, status: int
) -> None:
    """A slice id the account does not have gets 404, one that is no id at all 422."""
    async with running(create_app(wmspanel_simulator.client, INTERVAL)) as http:
        with anyio.fail_after(5):
            response = await http.get(path)
    assert response.status_code == status
    if status == 404:
        assert response.json()["detail"] in {"Not Found", f"no data slice {'0' * 24} here"}


async def test_the_page_is_self_contained(wmspanel_simulator: Simulator) -> None:
    """The page loads nothing from elsewhere, and listens to the event stream."""
    async with running(create_app(wmspanel_simulator.client, INTERVAL)) as http:
        response = await http.get("/")
    assert response.headers["content-type"].startswith("text/html")
    assert 'id="targets"' in response.text
    assert 'new EventSource("events")' in response.text
    assert "http://" not in response.text
    assert "https://" not in response.text


class Browser:
    """Listens to ``GET /events`` as a browser does, calling the app directly.

    httpx's ASGITransport hands over a response only once it is complete, and an event
    stream never is: so the test plays the server's side of the connection.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.events: list[dict[str, Any]] = []
        self.first_event = anyio.Event()
        self.leave = anyio.Event()  # set: the browser closes the page

    async def listen(self, leave_after: int | None = None) -> None:
        """Read events until the response ends, or until ``leave_after`` events came."""
        asked = False

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self.leave.wait()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                assert message["status"] == 200
            for block in message.get("body", b"").decode().split("\n\n"):
                if block.startswith("data: "):
                    self.events.append(json.loads(block.removeprefix("data: ")))
                    self.first_event.set()
            if leave_after is not None and len(self.events) >= leave_after:
                self.leave.set()

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/events",
            "raw_path": b"/events",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"app"), (b"accept", b"text/event-stream")],
            "client": ("127.0.0.1", 50000),
            "server": ("app", 80),
        }
        await self.app(scope, receive, send)


async def test_the_event_stream_sends_each_new_snapshot(wmspanel_simulator: Simulator) -> None:
    """/events starts with every slice's latest figures, then sends each new poll's."""
    app = create_app(wmspanel_simulator.client, INTERVAL)
    browser = Browser(app)
    async with running(app):
        await polled_once(app)
        with anyio.fail_after(10 * INTERVAL):
            await browser.listen(leave_after=12)
        # The browser left: its subscription ended with its response.
        assert app.state.board.fresh.stats.subscribers == 0
    events = browser.events
    assert len(events) >= 12
    assert {event["name"] for event in events[:4]} == set(SLICES)  # the latest of each
    for later in events[4:12]:
        first = next(event for event in events if event["id"] == later["id"])
        assert later["as_of"] > first["as_of"]
        assert later["connected"] > 0


async def test_the_event_stream_ends_when_the_app_stops(wmspanel_simulator: Simulator) -> None:
    """A browser still listening when the app shuts down gets the end of its stream."""
    app = create_app(wmspanel_simulator.client, INTERVAL)
    browser = Browser(app)  # it never leaves on its own
    with anyio.fail_after(10 * INTERVAL):
        # Leaving the block ends the lifespan first; then the task group waits for the
        # stream to end by itself.
        async with anyio.create_task_group() as task_group, running(app):
            await polled_once(app)
            task_group.start_soon(browser.listen)
            await browser.first_event.wait()
    assert not browser.leave.is_set()
    assert {event["name"] for event in browser.events} == set(SLICES)


#: trio's virtual clock: sleeps take no time, so ten seconds of traffic run in a moment.
VIRTUAL_CLOCK = ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(VIRTUAL_CLOCK, id="trio-virtual-clock"), "asyncio"],
)
async def test_two_thousand_requests_cost_only_the_pollers_calls(
    wmspanel_simulator: Simulator,
) -> None:
    """2,000 requests from 50 browsers over 10 s spend the poller's calls, and no more."""
    app = create_app(wmspanel_simulator.client, INTERVAL)
    slices = [data_slice.id for data_slice in wmspanel_simulator.account.slices]
    viewers: set[int | None] = set()
    answered = 0
    started = anyio.current_time()

    async def browse(http: httpx.AsyncClient, number: int) -> None:
        nonlocal answered
        # 40 requests each, one every 0.25 s: 50 browsers make 200 requests a second.
        for request in range(40):
            await anyio.sleep_until(started + request * 0.25 + number * 0.005)
            if request % 2:
                response = await http.get(f"/api/slices/{slices[number % 4]}")
                rows = [response.json()]
            else:
                response = await http.get("/api/slices")
                rows = response.json()
            assert response.status_code == 200
            answered += 1
            viewers.update(row["connected"] for row in rows if row["name"] == "All streams")

    async with running(app) as http:
        async with anyio.create_task_group() as task_group:
            for number in range(50):
                task_group.start_soon(browse, http, number)
        stats = app.state.board.fresh.stats
    duration = anyio.current_time() - started
    calls = realtime_calls(wmspanel_simulator)
    assert answered == 2000
    # Every call was one of the poller's, and its schedule holds whatever the traffic: each
    # of the 4 slices once per interval (the first round is spread over the first). A tick
    # that found its slice's poll still in flight (a loaded machine) is skipped, not sent.
    assert calls == stats.polls
    assert calls <= 4 * (duration / INTERVAL + 1)
    assert calls + stats.skipped_busy >= 4 * (duration / INTERVAL - 2)
    assert calls >= 2 * duration / INTERVAL  # it did keep polling
    assert len(viewers - {None}) >= 5  # the figures served moved with the simulated audience
