"""The poller within the daily quota: stretching, the reserve, pausing, and the quota file."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import anyio
import httpx
import pytest
from support import (
    API_KEY,
    CLIENT_ID,
    CLOCK_SLACK,
    A,
    B,
    C,
    DailyQuota,
    FakeAPI,
    VirtualUTC,
    consume,
    evenly,
    gaps,
    make_polling_client,
)

from wmspanel_async import (
    MemoryLedger,
    QuotaExhaustedError,
    RealtimeStats,
    Snapshot,
    SnapshotStream,
    Target,
    WMSPanelClient,
)
from wmspanel_async._governor import AFTER_RESET
from wmspanel_async._poller import Fetch, PollSettings
from wmspanel_async._schedule import MAX_JITTER

pytestmark = pytest.mark.anyio

MAY_1 = dt.date(2024, 5, 1)
MIDNIGHT = dt.datetime(2024, 5, 2, tzinfo=dt.timezone.utc)


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2024, 5, 1, hour, minute, tzinfo=dt.timezone.utc)


def poller_messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "wmspanel_async.poller" and record.levelno == level
    ]


# -- stretching -----------------------------------------------------------------------------


@pytest.mark.virtual_time
@pytest.mark.usefixtures("local_time_zone")
async def test_stretches_to_last_until_the_reset_and_again_after_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At 23:00 with 950 calls to spend, 2 targets at 1 s poll every 7.6 s, then 182 s."""
    api = FakeAPI()
    seen: list[tuple[float, float]] = []
    async with make_polling_client(api, utc=VirtualUTC(at(23)), daily_limit=1000) as client:
        start = anyio.current_time()
        async with client.poll([A, B], interval=1.0) as snapshots:
            with anyio.move_on_after(5400.0):  # until 00:30
                async for _ in snapshots:
                    now = anyio.current_time() - start
                    seen.append((now, snapshots.stats.effective_interval))
                    if now < 3600:
                        quota_before_midnight = snapshots.stats.quota
    before = [when - start for when, _ in api.requests if when - start < 3600]
    after = [when - start for when, _ in api.requests if when - start >= 3600]
    # The day's 1000 calls less the 5 % reserve: used up, never exceeded.
    assert 900 <= len(before) <= 950
    assert quota_before_midnight.used == len(before)
    # (In the last minutes, rounding to whole calls stretches it a little more.)
    assert {round(interval, 2) for when, interval in seen if when < 3000} == {7.58}
    assert all(interval >= 7.57 for _, interval in seen)
    a_before = [when - start for when in api.times(A) if when - start < 3600]
    assert gaps(a_before)[:100] == evenly(7200 / 950, 100)
    # After the reset, the new day's budget is spread over 24 h.
    assert {round(interval, 1) for when, interval in seen if when > 3601} == {181.9}
    assert 15 <= len(after) <= 22
    warnings = poller_messages(caplog, logging.WARNING)
    assert "polling 2 targets every 1 s would need about 7200 calls" in warnings[0]
    assert "950 are left after keeping 50 in reserve; polling every 7.58 s instead" in warnings[0]
    assert "polling every 182 s instead" in warnings[-1]


@pytest.mark.virtual_time
async def test_reserve_is_left_for_on_demand_calls() -> None:
    """After a stretched day of polling, calls of the client's own still find the reserve."""
    api = FakeAPI()
    async with make_polling_client(api, utc=VirtualUTC(at(23)), daily_limit=1000) as client:
        async with client.poll([A, B, C], interval=1.0, reserve=0.1) as snapshots:
            await consume(snapshots, 3599.0)
        assert client.quota.used <= 900
        for _ in range(100):
            await client.realtime(A.data_slice)
        assert client.quota.remaining == 1000 - 100 - snapshots.stats.polls


@pytest.mark.virtual_time
@pytest.mark.usefixtures("local_time_zone")
async def test_spent_budget_pauses_until_the_reset(caplog: pytest.LogCaptureFixture) -> None:
    """With only the reserve left (as the ledger says), polling waits for 00:00 UTC."""
    utc = VirtualUTC(at(23, 50))
    ledger = MemoryLedger()
    for _ in range(990):
        await ledger.reserve(CLIENT_ID, 1000, utc())
    api = FakeAPI()
    async with make_polling_client(api, utc=utc, daily_limit=1000, ledger=ledger) as client:
        start = anyio.current_time()
        async with client.poll([A, B], interval=60.0) as snapshots:
            await anyio.sleep(300.0)
            assert snapshots.stats.paused
            taken = await consume(snapshots, 600.0)
    assert api.requests
    assert min(when - start for when, _ in api.requests) >= 600.0  # 00:00 UTC
    # The first tick of the new day comes within the spread's jitter of the reset.
    assert 600.0 <= taken[0][0] - start <= 600.0 + AFTER_RESET + MAX_JITTER + CLOCK_SLACK
    stats = snapshots.stats
    assert not stats.paused
    assert stats.skipped_quota == 20  # 10 minutes of ticks of 2 targets every minute
    assert "pausing until the daily reset at 00:00 UTC, in 600 s" in caplog.text
    assert client.quota.used == len(api.requests)  # the new day's


@pytest.mark.virtual_time
@pytest.mark.usefixtures("local_time_zone")
async def test_quota_refused_by_the_client_pauses_instead_of_yielding() -> None:
    """A fetch refused by the client's own ledger is no target failure: pause until reset."""
    utc = VirtualUTC(at(23, 59))
    quota = DailyQuota(10**6, utc)
    calls: list[float] = []

    async def fetch(target: Target, deadline: float) -> Snapshot:
        calls.append(anyio.current_time())
        if len(calls) == 1:
            error = QuotaExhaustedError("spent", resets_at=MIDNIGHT)
            return Snapshot(target=target, stats=None, error=error, fetched_at=utc(), latency=0)
        stats = RealtimeStats(connected=1, bandwidth=1)
        return Snapshot(target=target, stats=stats, error=None, fetched_at=utc(), latency=0)

    stream = SnapshotStream(
        fetch, [A], PollSettings(quota=quota.status, utc_clock=utc, interval=1.0)
    )
    async with stream:
        start = anyio.current_time()
        taken = await consume(stream, 120.0)
    assert taken[0][0] - start == pytest.approx(60.0, abs=1.0)
    assert all(snapshot.error is None for _, snapshot in taken)
    assert calls[1] - calls[0] == pytest.approx(60.0, abs=1.0)
    assert stream.stats.skipped_quota >= 60
    assert stream.stats.errors == {}


# -- on_quota="error" -----------------------------------------------------------------------


@pytest.mark.virtual_time
async def test_error_mode_raises_before_polling() -> None:
    """on_quota="error" refuses a schedule that cannot last until 00:00 UTC, sending nothing."""
    api = FakeAPI()
    async with make_polling_client(api, utc=VirtualUTC(at(12)), daily_limit=1000) as client:
        with pytest.raises(QuotaExhaustedError, match="needs about 86400 calls") as raised:
            async with client.poll([A, B], interval=1.0, on_quota="error"):
                pass
    assert raised.value.resets_at == MIDNIGHT
    assert 'on_quota="stretch"' in str(raised.value)
    assert api.requests == []


@pytest.mark.virtual_time
async def test_error_mode_refuses_changes_that_do_not_fit() -> None:
    """add() and set_interval() raise, and change nothing, when the result would not fit."""
    api = FakeAPI()
    async with (
        make_polling_client(api, utc=VirtualUTC(at(12)), daily_limit=100_000) as client,
        client.poll([A], interval=1.0, on_quota="error") as snapshots,
    ):
        does_not_fit = r"needs about \d+ calls before the daily reset at 00:00 UTC"
        # The message names the schedule asked for, not the one in force.
        with pytest.raises(QuotaExhaustedError, match=r"these 1 targets every 0\.4 s needs about"):
            snapshots.set_interval(0.4)
        assert snapshots.stats.interval == 1.0
        snapshots.add(B)
        with pytest.raises(QuotaExhaustedError, match="these 3 targets every 1 s needs about"):
            snapshots.add(C)
        with pytest.raises(QuotaExhaustedError, match=does_not_fit):
            snapshots.add(B, interval=0.1)
        assert snapshots.targets == (A, B)
        await consume(snapshots, 10.0)
    assert len(api.times(B)) == 10


@pytest.mark.virtual_time
@pytest.mark.usefixtures("local_time_zone")
async def test_error_mode_raises_at_midnight_when_a_day_does_not_fit() -> None:
    """A schedule that fits the last hour but not a whole day fails at the reset."""
    api = FakeAPI()
    async with make_polling_client(api, utc=VirtualUTC(at(23)), daily_limit=10_000) as client:
        start = anyio.current_time()
        with pytest.raises(QuotaExhaustedError, match="needs about 17280 calls"):
            async with client.poll([A], interval=5.0, on_quota="error") as snapshots:
                await consume(snapshots, 7200.0)
        assert anyio.current_time() - start == pytest.approx(3600.0, abs=0.01)
    assert len(api.requests) == 720


# -- the quota file -------------------------------------------------------------------------


def fixed(when: dt.datetime) -> VirtualUTC:
    clock = VirtualUTC(when)
    clock.origin = 0.0
    return clock


async def test_client_counts_its_calls_in_the_quota_file(tmp_path: Path) -> None:
    """WMSPanelClient(quota_file=...) keeps its count across client instances."""
    path = tmp_path / "quota.json"
    api = FakeAPI()
    utc = VirtualUTC(at(15))
    for expected in (2, 4):
        async with WMSPanelClient(
            CLIENT_ID, API_KEY, transport=httpx.MockTransport(api), clock=utc, quota_file=path
        ) as client:
            await client.realtime(A.data_slice)
            await client.realtime(B.data_slice)
            assert client.quota.used == expected
    assert API_KEY not in path.read_text()


def fetch_spending(quota: DailyQuota, utc: VirtualUTC, calls: list[float]) -> Fetch:
    """A fetch function that counts one call on ``quota``, as the client does."""

    async def fetch(target: Target, deadline: float) -> Snapshot:
        calls.append(anyio.current_time())
        quota.spend()
        stats = RealtimeStats(connected=1, bandwidth=1)
        return Snapshot(target=target, stats=stats, error=None, fetched_at=utc(), latency=0)

    return fetch


@pytest.mark.virtual_time
@pytest.mark.usefixtures("local_time_zone")
async def test_calls_spent_elsewhere_pause_polling_until_the_reset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When other calls eat the poller's share between two checks, it pauses until 00:00."""
    caplog.set_level(logging.INFO, logger="wmspanel_async.poller")
    utc = VirtualUTC(at(23, 50))
    quota = DailyQuota(10_000, utc)
    calls: list[float] = []
    fetch = fetch_spending(quota, utc, calls)
    stream = SnapshotStream(
        fetch, [A, B], PollSettings(quota=quota.status, utc_clock=utc, interval=1.0)
    )
    async with stream:
        start = anyio.current_time()
        with anyio.move_on_after(700.0):
            async for _ in stream:
                if anyio.current_time() - start >= 10 and quota.status().used < 100:
                    while quota.status().remaining > 500 + 20:  # leave the poller 20 calls
                        quota.spend()
    spent_at = max(when - start for when in calls if when - start < 600)
    assert 18 <= spent_at <= 21  # 20 more calls at 2 a second
    assert min(when - start for when in calls if when - start > spent_at) >= 600.0
    assert stream.stats.skipped_quota == pytest.approx(2 * (600 - spent_at), abs=3)
    assert "pausing until the daily reset at 00:00 UTC" in caplog.text
    assert "polling again" in caplog.text


@pytest.mark.virtual_time
async def test_calls_spent_elsewhere_raise_in_error_mode() -> None:
    """With on_quota="error", running out between two checks raises QuotaExhaustedError."""
    utc = VirtualUTC(at(23, 50))
    quota = DailyQuota(10_000, utc)
    calls: list[float] = []
    fetch = fetch_spending(quota, utc, calls)
    stream = SnapshotStream(
        fetch,
        [A, B],
        PollSettings(quota=quota.status, utc_clock=utc, interval=1.0, on_quota="error"),
    )

    async def spend_all_but_20_then_poll() -> None:
        async with stream:
            async for _ in stream:
                if quota.status().used < 100:
                    while quota.status().remaining > 500 + 20:
                        quota.spend()

    with pytest.raises(QuotaExhaustedError, match="only 0 are left"):
        await spend_all_but_20_then_poll()
    assert 2 + 19 <= len(calls) <= 2 + 20  # one may have been on its way to the ledger


@pytest.mark.virtual_time
async def test_refused_fetch_raises_in_error_mode() -> None:
    """A fetch the client's ledger refused ends iteration in on_quota="error" mode."""
    utc = VirtualUTC(at(22))
    quota = DailyQuota(10**6, utc)

    async def fetch(target: Target, deadline: float) -> Snapshot:
        error = QuotaExhaustedError("spent", resets_at=MIDNIGHT)
        return Snapshot(target=target, stats=None, error=error, fetched_at=utc(), latency=0)

    stream = SnapshotStream(
        fetch, [A], PollSettings(quota=quota.status, utc_clock=utc, interval=1.0, on_quota="error")
    )
    with pytest.raises(QuotaExhaustedError, match="spent"):
        async with stream:
            await consume(stream, 10.0)


@pytest.mark.virtual_time
async def test_stretch_relaxes_when_the_schedule_shrinks(caplog: pytest.LogCaptureFixture) -> None:
    """A longer interval that fits the quota again ends the stretching, saying so."""
    api = FakeAPI()
    caplog.set_level(logging.INFO, logger="wmspanel_async.poller")
    async with (
        make_polling_client(api, utc=VirtualUTC(at(23)), daily_limit=1000) as client,
        client.poll([A, B], interval=1.0) as snapshots,
    ):
        assert await snapshots.__anext__()
        assert snapshots.stats.effective_interval == pytest.approx(7200 / 950, rel=1e-3)
        snapshots.set_interval(10.0)
        await consume(snapshots, 100.0)
        assert snapshots.stats.effective_interval == 10.0
    assert "the daily quota allows polling every 10 s again" in caplog.text
    assert gaps(api.times(A))[-5:] == evenly(10.0, 5)
