"""Shared fixtures: both anyio backends, optional virtual time, the vendor's sample payloads."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
import respx
import trio.testing
from support import BASE_URL, CLI_EXTRA, FakeUTCClock, VirtualLoop

pytest_plugins = ["wmspanel_async.testing._plugin", "redis_support"]

# The bare install (`nox -s tests_bare`) has no cli extra, and the command line is what the
# extra adds: its tests are left out there, and tests/test_bare_install.py runs instead.
collect_ignore = [] if CLI_EXTRA else ["test_cli.py"]


#: Test modules that start real servers or subprocesses, or search with hypothesis: the
#: whole suite runs them on one Python, the other Pythons skip them (see noxfile.py).
HEAVY_MODULES = frozenset(
    {
        "test_aiohttp_transport",
        "test_bare_install",
        "test_cli",
        "test_client_over_loopback",
        "test_docs_examples",
        "test_exporter",
        "test_exporter_command",
        "test_exporter_prometheus",
        "test_fastapi_live",
        "test_fault_matrix",
        "test_ledger",
        "test_plugin",
        "test_properties",
        "test_redis_faults",
        "test_share",
        "test_share_faults",
    }
)


def _trio_on_aiohttp(item: pytest.Item) -> bool:
    # aiohttp is asyncio-only: on trio the client refuses it (tests/test_aiohttp_transport.py
    # pins that), so those combinations are not collected at all.
    params = getattr(getattr(item, "callspec", None), "params", {})
    return params.get("anyio_backend") == "trio" and params.get("connect") == "loopback-aiohttp"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deselected = [item for item in items if _trio_on_aiohttp(item)]
    if deselected:
        items[:] = [item for item in items if not _trio_on_aiohttp(item)]
        config.hook.pytest_deselected(items=deselected)
    heavy = pytest.mark.heavy
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__ in HEAVY_MODULES:
            item.add_marker(heavy)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "heavy: starts real servers or subprocesses, searches with hypothesis, or simulates "
        "thousands of intervals; noxfile.py runs these on one Python only",
    )
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


@pytest.fixture
def api() -> respx.Router:
    """A respx router standing in for the API; requests it sees carry the credentials."""
    return respx.Router(base_url=BASE_URL, assert_all_called=False)


@pytest.fixture
def utc_clock() -> FakeUTCClock:
    """A fake wall clock at 2026-11-26 23:59:00 UTC, one minute before the quota resets."""
    return FakeUTCClock(dt.datetime(2026, 11, 26, 23, 59, tzinfo=dt.timezone.utc))


#: Local time zones to run day-boundary tests in, as POSIX TZ strings (no tz database needed):
#: UTC itself, UTC-8/-7 with US daylight saving (Los Angeles) and UTC+14 (Kiritimati), where
#: the local date differs from the UTC date for much of the day.
LOCAL_TIME_ZONES = {
    "UTC": ("UTC0", 0),
    "America/Los_Angeles": ("PST8PDT,M3.2.0,M11.1.0", -8 * 3600),
    "Pacific/Kiritimati": ("<+14>-14", 14 * 3600),
}


@pytest.fixture(params=list(LOCAL_TIME_ZONES))
def local_time_zone(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Run the test with the process's local time zone set to each of LOCAL_TIME_ZONES.

    A day that rolled over at local midnight instead of 00:00 UTC would pass on a machine
    whose zone is UTC, as CI's usually is.
    """
    posix_zone, january_offset = LOCAL_TIME_ZONES[request.param]
    if not hasattr(time, "tzset"):  # pragma: no cover - Windows
        if january_offset:
            pytest.skip("time.tzset() is POSIX only")
        yield request.param
        return
    monkeypatch.setenv("TZ", posix_zone)
    time.tzset()
    try:
        january = dt.datetime(2026, 1, 15, 12, tzinfo=dt.timezone.utc).astimezone()
        offset = january.utcoffset()
        assert offset == dt.timedelta(seconds=january_offset), f"TZ={posix_zone} was ignored"
        yield request.param
    finally:
        monkeypatch.undo()
        time.tzset()
