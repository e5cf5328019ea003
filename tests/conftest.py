"""Shared fixtures: both anyio backends, optional virtual time, the vendor's sample payloads."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import async_solipsism
import coverage
import httpx
import pytest
import respx
import trio.testing

from wmspanel_async import WMSPanelClient

pytest_plugins = ["wmspanel_async.testing._plugin"]

PAYLOADS = Path(__file__).parent / "payloads"

#: Credentials used by every test; the key is what the redaction tests hunt for.
CLIENT_ID = "00000000-1111-2222-3333-444444444444"
API_KEY = "0123456789abcdef0123456789abcdef"
SLICE_ID = "53e03c9978a6fc8596000001"


class VirtualLoop(async_solipsism.EventLoop):  # type: ignore[misc]
    """async-solipsism's loop, with timers rounded up to its clock's whole ticks.

    Its clock counts whole microseconds. A timer due between two ticks fires at the
    earlier one, where anyio finds its deadline not yet reached and re-arms it, forever.
    """

    def call_at(self, when: float, *args: Any, **kwargs: Any) -> Any:
        if math.isfinite(when):
            resolution = self._clock_resolution
            ticks = math.ceil(when / resolution)
            while ticks * resolution < when:
                ticks += 1
            when = ticks * resolution
        return super().call_at(when, *args, **kwargs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "virtual_time: run on a virtual clock (trio's MockClock, async-solipsism on asyncio); "
        "sleeps take no wall time and anyio.current_time() measures them exactly",
    )


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Run each async test on asyncio and on trio, on a virtual clock if marked so."""
    if request.node.get_closest_marker("virtual_time") is None:
        return request.param, {}
    if request.param == "trio":
        return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}
    return "asyncio", {"loop_factory": VirtualLoop}


def sample_payload(name: str) -> dict[str, Any]:
    """Return one of the vendor's sample answers (``data_slices`` or ``realtime_data``)."""
    payload: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    return payload


BASE_URL = "https://api.wmspanel.com"


@pytest.fixture
def api() -> respx.Router:
    """A respx router standing in for the API; requests it sees carry the credentials."""
    return respx.Router(base_url=BASE_URL, assert_all_called=False)


class FakeUTCClock:
    """An aware UTC wall clock that only moves when told to."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def utc_clock() -> FakeUTCClock:
    """A fake wall clock at 2026-11-26 23:59:00 UTC, one minute before the quota resets."""
    return FakeUTCClock(dt.datetime(2026, 11, 26, 23, 59, tzinfo=dt.timezone.utc))


def make_client(api: respx.Router, **options: Any) -> WMSPanelClient:
    """Build a client whose requests go to ``api``, with the test credentials."""
    options.setdefault("transport", httpx.MockTransport(api.async_handler))
    return WMSPanelClient(CLIENT_ID, API_KEY, **options)


#: This run's coverage, if any; the data file's path is made absolute now, from the rootdir.
_COVERAGE = coverage.Coverage.current()
_COVERAGE_DATA = os.path.abspath(_COVERAGE.config.data_file) if _COVERAGE else ""


def python_command() -> list[str]:
    """The command line that starts Python, measured by coverage if this run is."""
    if _COVERAGE is None or "COVERAGE_PROCESS_START" in os.environ:
        return [sys.executable]
    return [
        sys.executable,
        "-m",
        "coverage",
        "run",
        "--parallel-mode",
        f"--data-file={_COVERAGE_DATA}",
        f"--rcfile={_COVERAGE.config.config_file}",
    ]
