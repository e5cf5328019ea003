"""The FastAPI recipe served for real: uvicorn on a loopback port, and its page in Chromium.

``docs/examples/test_fastapi_app.py`` calls the app in process; here it runs as deployed,
under uvicorn behind a real socket, and its page runs in a headless Chromium driven over
the DevTools protocol. The app still polls a simulator in process, which counts the calls.
uvicorn is asyncio only, so these tests are too.

Set ``UPDATE_SCREENSHOTS=1`` to write the page's screenshot for the docs,
``docs/_static/fastapi-live-page.png``, after waiting for fuller trend lines.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from support import environment, python_command
from websockets.asyncio.client import ClientConnection, connect

from wmspanel_async.testing import Account, Fault, Simulator, serve

ROOT = Path(__file__).parent.parent
SCREENSHOT = ROOT / "docs" / "_static" / "fastapi-live-page.png"
SLICES = ["All streams", "Sports", "Europe edge", "Edges overview"]

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


def load_example() -> ModuleType:
    """Import docs/examples/fastapi_app.py, as uvicorn would."""
    spec = importlib.util.spec_from_file_location(
        "fastapi_app", ROOT / "docs" / "examples" / "fastapi_app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fastapi_app = load_example()


@pytest.fixture
def wmspanel_account() -> Account:
    """The simulated account, with a million calls a day so that fast polls are not stretched."""
    return Account.generate(0, daily_limit=1_000_000)


def realtime_calls(simulator: Simulator) -> int:
    return sum(1 for r in simulator.requests if r.path == "/v1/realtime_data" and r.counted)


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yield its URL; stop it after."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # timeout_graceful_shutdown: uvicorn runs the lifespan's shutdown only once every
    # response has ended, and an event stream ends only then; so it cancels them after 1 s.
    config = uvicorn.Config(
        app, ws="none", log_config=None, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    stopped = anyio.Event()

    async def serve() -> None:
        try:
            await server.serve([listener])
        finally:
            stopped.set()

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(serve)
        try:
            with anyio.fail_after(10):
                while not server.started:
                    assert not stopped.is_set(), "uvicorn stopped before it served"
                    await anyio.sleep(0.01)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            with anyio.move_on_after(10) as stopping:
                await stopped.wait()
            task_group.cancel_scope.cancel()  # only if it did not stop in time
            listener.close()
    assert not stopping.cancelled_caught, "uvicorn did not stop within 10 s"


async def test_two_thousand_requests_over_a_socket_cost_only_the_pollers_calls(
    wmspanel_simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """2,000 requests of 50 clients over 10 s, under uvicorn, spend only the poller's calls."""
    interval = 1.0
    app = fastapi_app.create_app(wmspanel_simulator.client, interval)
    slices = [data_slice.id for data_slice in wmspanel_simulator.account.slices]
    answered: list[int] = []
    events: list[dict[str, Any]] = []
    stream_ended = anyio.Event()

    async def browse(url: str, number: int) -> None:
        async with httpx.AsyncClient(base_url=url) as http:
            for request in range(40):  # one every 0.25 s: 50 clients, 200 requests a second
                await anyio.sleep_until(started + request * 0.25 + number * 0.005)
                path = f"/api/slices/{slices[number % 4]}" if request % 2 else "/api/slices"
                response = await http.get(path)
                answered.append(response.status_code)

    async def listen(url: str) -> None:
        # A browser that keeps its page open while the server stops.
        async with httpx.AsyncClient(base_url=url) as http:
            try:
                async with http.stream("GET", "/events") as response:
                    async for line in response.aiter_lines():
                        if line.startswith("data: "):
                            events.append(json.loads(line.removeprefix("data: ")))
            except httpx.RemoteProtocolError:
                pass  # uvicorn cut the stream off when it stopped
            stream_ended.set()

    caplog.set_level(logging.INFO)
    started = anyio.current_time()
    async with anyio.create_task_group() as listening:
        async with served(app) as url:
            listening.start_soon(listen, url)
            with anyio.fail_after(30):
                async with anyio.create_task_group() as browsing:
                    for number in range(50):
                        browsing.start_soon(browse, url, number)
        duration = anyio.current_time() - started
        with anyio.fail_after(5):
            await stream_ended.wait()
    calls = realtime_calls(wmspanel_simulator)
    print(f"{len(answered)} requests in {duration:.1f} s, {calls} calls")
    assert answered == [200] * 2000
    assert 4 * (duration / interval - 2) <= calls <= 4 * (duration / interval + 1)
    assert len(events) >= calls - 8  # every poll's snapshot but those in the stream's edges
    assert wmspanel_simulator.account.api_key not in caplog.text
    # The only errors logged: uvicorn cancelled the stream still open, 1 s into its shutdown.
    for record in caplog.records:
        if record.levelno >= logging.ERROR:
            assert record.name == "uvicorn.error", record.getMessage()
            assert record.exc_info is None or record.exc_info[0] is asyncio.CancelledError


# -- Chromium --------------------------------------------------------------------------------


def chromium() -> str:
    """Return Chromium's command; skip without it, but fail in CI, where it must be."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if command := shutil.which(name):
            return command
    message = "Chromium is not installed (Debian: apt-get install chromium; .ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class DevTools:
    """A small client of Chromium's DevTools protocol, for one page."""

    def __init__(self, websocket: ClientConnection) -> None:
        self._websocket = websocket
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Call ``method`` and return its result; events in between are ignored."""
        message_id = next(self._ids)
        await self._websocket.send(
            json.dumps({"id": message_id, "method": method, "params": params})
        )
        while True:
            answer = json.loads(await self._websocket.recv())
            if answer.get("id") == message_id:
                assert "error" not in answer, answer["error"]
                result: dict[str, Any] = answer["result"]
                return result

    async def evaluate(self, expression: str) -> Any:
        """Return the value of a JavaScript expression in the page."""
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")


async def stop_process_group(process: anyio.abc.Process) -> None:
    """Stop a process started in a session of its own, and its children; bounded waits."""
    group = process.pid
    with anyio.CancelScope(shield=True):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        with anyio.move_on_after(5):
            await process.wait()
        with anyio.move_on_after(5):
            while True:  # then whatever is left of the group, until it is gone
                try:
                    os.killpg(group, signal.SIGKILL)
                except ProcessLookupError:
                    break
                await anyio.sleep(0.05)
        if process.returncode is None:  # pragma: no cover - only if SIGKILL failed
            await process.wait()


@asynccontextmanager
async def chromium_page(chromium: str, tmp_path: Path) -> AsyncIterator[DevTools]:
    """Start a headless Chromium; yield its page's DevTools client; stop Chromium after."""
    profile = tmp_path / "chromium-profile"
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1200,700",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "about:blank",
    ]
    with (tmp_path / "chromium.log").open("wb") as log:
        process = await anyio.open_process(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
        try:
            # Chromium writes its port there once it listens.
            port_file = profile / "DevToolsActivePort"
            with anyio.fail_after(30):
                while len(lines := _read_lines(port_file)) < 2:
                    assert process.returncode is None, "Chromium exited; see chromium.log"
                    await anyio.sleep(0.1)
            async with httpx.AsyncClient() as http:
                listing = (await http.get(f"http://127.0.0.1:{lines[0]}/json/list")).json()
            page = next(target for target in listing if target["type"] == "page")
            async with connect(page["webSocketDebuggerUrl"], max_size=None) as websocket:
                yield DevTools(websocket)
        finally:
            await stop_process_group(process)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


#: The figures of each row of the page, as a test reads them; null before the page loaded.
READ_PAGE = """(() => {
  const status = document.getElementById("status");
  return status && JSON.stringify({
    status: status.dataset.state,
    rows: [...document.querySelectorAll("#targets tr")].map((row) => ({
      target: row.dataset.target,
      name: row.querySelector(".name").textContent,
      connected: row.dataset.connected,
      shown: row.querySelector(".connected").textContent,
      bandwidth: row.dataset.bandwidth,
      error: row.dataset.error,
      points: row.querySelector(".trend polyline").getAttribute("points").split(" ").length,
    })),
  });
})()"""

Page = dict[str, Any]


async def wait_for(devtools: DevTools, wanted: Callable[[Page], bool], seconds: float) -> Page:
    """Read the page every 100 ms until ``wanted`` holds; fail after ``seconds``."""
    page: Page = {}
    with anyio.move_on_after(seconds):
        while True:
            shown = await devtools.evaluate(READ_PAGE)
            if shown is not None:
                page = json.loads(shown)
                if wanted(page):
                    return page
            await anyio.sleep(0.1)
    pytest.fail(f"the page did not get there in {seconds} s; it shows {page}")


def png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    return width, height


async def test_the_page_shows_live_figures_in_chromium(
    wmspanel_simulator: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The page shows every slice's figures, then newer ones, then a failing slice's error."""
    browser = chromium()  # before anything starts: a skip or a failure says only this
    update_screenshot = bool(os.environ.get("UPDATE_SCREENSHOTS"))
    app = fastapi_app.create_app(wmspanel_simulator.client, 0.5)
    async with served(app) as url:
        async with chromium_page(browser, tmp_path) as devtools:
            await devtools.call(
                "Emulation.setDeviceMetricsOverride",
                width=1200,
                height=700,
                deviceScaleFactor=1,
                mobile=False,
            )
            await devtools.call("Page.navigate", url=f"{url}/")
            first = await wait_for(
                devtools,
                lambda page: page["rows"] and all(r["connected"] for r in page["rows"]),
                10,
            )
            assert [row["name"] for row in first["rows"]] == SLICES
            assert [row["target"] for row in first["rows"]] == [
                data_slice.id for data_slice in wmspanel_simulator.account.slices
            ]
            for row in first["rows"]:
                assert int(row["connected"]) > 0
                assert int(row["bandwidth"]) > 0
                assert row["shown"] == f"{int(row['connected']):,}"

            def moved(page: Page) -> bool:
                return page["status"] == "live" and any(
                    row["connected"] != before["connected"] and row["points"] >= 2
                    for row, before in zip(page["rows"], first["rows"], strict=True)
                )

            await wait_for(devtools, moved, 10)
            assert app.state.board.fresh.stats.subscribers == 1  # the page's event stream

            if update_screenshot:  # fuller trend lines for the docs
                await wait_for(devtools, lambda page: page["rows"][0]["points"] >= 50, 60)

            edges = wmspanel_simulator.account.slices[3]
            wmspanel_simulator.inject(Fault.http_status(503), times=10**6, data_slice=edges)
            failing = await wait_for(devtools, lambda page: page["rows"][3]["error"], 10)
            assert failing["rows"][3]["error"] == "ServerError"
            assert int(failing["rows"][3]["connected"]) > 0  # its last figures stay on show
            assert all(not row["error"] for row in failing["rows"][:3])

            html = await devtools.evaluate("document.documentElement.outerHTML")
            bottom = await devtools.evaluate("document.querySelector('main').scrollHeight")
            clip = {"x": 0, "y": 0, "width": 1200, "height": bottom + 64, "scale": 1}
            shot = await devtools.call("Page.captureScreenshot", format="png", clip=clip)

        # Chromium has gone: its event stream ended, and its subscription with it.
        with anyio.fail_after(5):
            while app.state.board.fresh.stats.subscribers:  # noqa: ASYNC110 - a count, no event
                await anyio.sleep(0.05)
    assert wmspanel_simulator.account.api_key not in html
    assert wmspanel_simulator.account.api_key not in caplog.text
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    png = base64.b64decode(shot["data"])
    assert png_size(png) == (1200, bottom + 64)
    (tmp_path / "page.png").write_bytes(png)
    if update_screenshot:
        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.write_bytes(png)


async def test_workers_pointed_at_one_served_simulator_are_counted_together(
    wmspanel_account: Account,
) -> None:
    """docs/fastapi.md's multi-worker section: uvicorn --workers 2 against one simulator.

    Each worker lists the slices once and polls the four at once (``first_poll_now``);
    ``/_simulator/stats`` counts them together.
    """
    simulator = Simulator([wmspanel_account])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    async with serve(simulator) as server, httpx.AsyncClient(base_url=server.url) as http:
        env = environment(
            WMSPANEL_BASE_URL=server.url,
            WMSPANEL_CLIENT_ID=wmspanel_account.client_id,
            WMSPANEL_API_KEY=wmspanel_account.api_key,
        )
        command = [
            *python_command(measured=False),
            "-m",
            "uvicorn",
            "fastapi_app:app",
            "--app-dir",
            str(ROOT / "docs" / "examples"),
            "--workers",
            "2",
            "--port",
            str(port),
            "--timeout-graceful-shutdown",
            "1",
        ]
        process = await anyio.open_process(command, env=env, start_new_session=True)
        try:
            with anyio.fail_after(60):
                while True:
                    stats = (await http.get("/_simulator/stats")).json()
                    paths = stats["paths"]
                    if paths.get("/v1/realtime_data", {}).get("counted", 0) >= 8:
                        break
                    await anyio.sleep(0.1)
        finally:
            process.terminate()
            with anyio.move_on_after(15) as stopping:
                await process.wait()
            if stopping.cancelled_caught:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
            await process.aclose()
    [account] = stats["accounts"]
    assert paths["/v1/data_slices"]["counted"] == 2  # one listing per worker
    assert paths["/v1/realtime_data"]["counted"] == 8  # 4 slices, polled once by each
    assert account["calls_today"] == 10 == simulator.calls_today()
    assert {"key": wmspanel_account.api_key[:4] + "\u2026", "calls_today": 10} in account["keys"]
    assert wmspanel_account.api_key not in json.dumps(stats)
