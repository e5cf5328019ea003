"""Helpers shared by the test modules: credentials, fake APIs and clocks, sample answers.

Fixtures live in ``conftest.py``; everything a test module imports lives here, so that no
test module imports another.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import itertools
import json
import math
import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import async_solipsism
import coverage
import httpx
import pytest
import respx

from wmspanel_async import QuotaStatus, Snapshot, SnapshotStream, Target, WMSPanelClient
from wmspanel_async._quota import exhausted, quota_status
from wmspanel_async.testing import Account

#: Whether the cli extra (rich) is installed; the bare install (`nox -s tests_bare`) lacks it.
CLI_EXTRA = importlib.util.find_spec("rich") is not None

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


def sample_payload(name: str) -> dict[str, Any]:
    """Return one of the vendor's sample answers (``data_slices`` or ``realtime_data``)."""
    payload: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    return payload


BASE_URL = "https://api.wmspanel.com"


class FakeUTCClock:
    """An aware UTC wall clock that only moves when told to."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def make_client(api: respx.Router, **options: Any) -> WMSPanelClient:
    """Build a client whose requests go to ``api``, with the test credentials."""
    options.setdefault("transport", httpx.MockTransport(api.async_handler))
    return WMSPanelClient(CLIENT_ID, API_KEY, **options)


#: This run's coverage, if any; the data file's path is made absolute now, from the rootdir.
_COVERAGE = coverage.Coverage.current()
_COVERAGE_DATA = os.path.abspath(_COVERAGE.config.data_file) if _COVERAGE else ""


def environment(**variables: str) -> dict[str, str]:
    """This process's environment without our ``WMSPANEL_*`` settings, plus ``variables``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("WMSPANEL_")}
    env.update(variables)
    return env


def account_environment(base_url: str, account: Account) -> dict[str, str]:
    """This process's environment, pointing a child's client at ``account`` at ``base_url``.

    ``SLICE_ID`` holds the account's first data slice.
    """
    return environment(
        WMSPANEL_BASE_URL=base_url,
        WMSPANEL_CLIENT_ID=account.client_id,
        WMSPANEL_API_KEY=account.api_key,
        SLICE_ID=account.slices[0].id,
    )


def python_script(directory: Path, source: str) -> list[str]:
    """The command line that runs ``source`` as a script (coverage cannot measure ``-c``)."""
    path = directory / "script.py"
    path.write_text(source, encoding="utf-8")
    return [*python_command(), str(path)]


def python_command(*, measured: bool = True) -> list[str]:
    """The command line that starts Python, measured by coverage if this run is.

    Args:
        measured: Whether coverage measures the process. Measuring costs about half a
            second a process; tests whose processes run no code of ours that the suite does
            not cover in process say ``False`` (the recipes, uvicorn's workers, scripts).
    """
    if not measured or _COVERAGE is None or "COVERAGE_PROCESS_START" in os.environ:
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


# -- the poller's fake API ---------------------------------------------------------------


A = Target("a" * 24)
B = Target("b" * 24)
C = Target("c" * 24)
NOON = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


class VirtualUTC:
    """A UTC clock that moves with anyio's clock, from ``start`` at its first reading."""

    def __init__(self, start: dt.datetime = NOON) -> None:
        self.start = start
        self.origin: float | None = None

    def __call__(self) -> dt.datetime:
        now = anyio.current_time()
        if self.origin is None:
            self.origin = now
        return self.start + dt.timedelta(seconds=now - self.origin)


class DailyQuota:
    """A day's call count for tests of the poller alone: ``status()`` and ``spend()``."""

    def __init__(self, limit: int, clock: Callable[[], dt.datetime]) -> None:
        self.limit = limit
        self.clock = clock
        self.day = clock().date()
        self.used = 0

    def status(self) -> QuotaStatus:
        now = self.clock()
        if now.date() != self.day:
            self.day, self.used = now.date(), 0
        return quota_status(self.used, self.limit, now)

    def spend(self) -> None:
        if self.status().remaining == 0:
            raise exhausted(self.limit, self.clock())
        self.used += 1


def realtime_response(connected: int = 1) -> httpx.Response:
    payload = {"status": "Ok", "realtime_data": {"connected": connected, "bandwidth": 10}}
    return httpx.Response(200, json=payload)


Answer = Callable[[int, float], httpx.Response]


class FakeAPI:
    """A MockTransport handler: scripted answers per slice, every request recorded."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.answers: dict[str, Answer] = {}
        self.hang: set[str] = set()
        self.requests: list[tuple[float, Target]] = []
        self.in_flight: Counter[Target] = Counter()
        self.max_in_flight = 0
        self.max_in_flight_per_target = 0
        self.cancelled = 0

    def times(self, target: Target) -> list[float]:
        return [when for when, seen in self.requests if seen == target]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        target = Target(
            params["data_slice"], stream=params.get("stream"), server=params.get("server")
        )
        now = anyio.current_time()
        nth = sum(1 for _, seen in self.requests if seen == target)
        self.requests.append((now, target))
        self.in_flight[target] += 1
        self.max_in_flight = max(self.max_in_flight, sum(self.in_flight.values()))
        self.max_in_flight_per_target = max(self.max_in_flight_per_target, self.in_flight[target])
        try:
            if target.data_slice in self.hang:
                await anyio.sleep_forever()
            if self.latency:
                await anyio.sleep(self.latency)
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            self.in_flight[target] -= 1
        answer = self.answers.get(target.data_slice)
        return answer(nth, now) if answer else realtime_response()


def make_polling_client(
    api: FakeAPI,
    *,
    utc: Callable[[], dt.datetime] | None = None,
    daily_limit: int = 10**9,
    **kwargs: object,
) -> WMSPanelClient:
    """Build a client whose requests go to ``api`` on a UTC clock that follows anyio's."""
    return WMSPanelClient(
        CLIENT_ID,
        API_KEY,
        transport=httpx.MockTransport(api),
        clock=utc or VirtualUTC(),
        daily_limit=daily_limit,
        **kwargs,  # type: ignore[arg-type]
    )


async def consume(stream: SnapshotStream, seconds: float) -> list[tuple[float, Snapshot]]:
    """Take every snapshot for ``seconds`` of (virtual) time; return them with their times."""
    taken: list[tuple[float, Snapshot]] = []
    with anyio.move_on_after(seconds):
        async for snapshot in stream:
            taken.append((anyio.current_time(), snapshot))
    return taken


#: async-solipsism's clock counts whole microseconds, so every moment read on the asyncio
#: virtual clock is rounded: a gap between two may be a microsecond or two off, which is
#: as much as pytest.approx's default tolerance for gaps of a second.
CLOCK_SLACK = 1e-5


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def evenly(interval: float, count: int) -> Any:
    """Match ``count`` gaps of ``interval`` seconds, to the virtual clock's resolution."""
    return pytest.approx([interval] * count, abs=CLOCK_SLACK)


def run_pytest_as_user(
    pytester: Any, *options: str, timeout: float = 120, measured: bool = True
) -> Any:
    """Run pytest in a new process over the files ``pytester`` holds, as a user would."""
    return pytester.run(
        *python_command(measured=measured),
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        *options,
        timeout=timeout,
    )
