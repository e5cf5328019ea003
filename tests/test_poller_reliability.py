"""The poller under a hostile upstream: stalls, slow answers, bugs, and day-long Retry-After.

All on a virtual clock, through an ``httpx.MockTransport``: a stalled answer is a handler that
never returns, and the poller's own deadline is what ends it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter

import anyio
import anyio.lowlevel
import httpx
import pytest
from support import API_KEY, CLIENT_ID

from wmspanel_async import (
    APITimeoutError,
    InternalError,
    QuotaStatus,
    RateLimitError,
    Snapshot,
    SnapshotStream,
    Target,
    WMSPanelClient,
)
from wmspanel_async._poller import PollSettings

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

NOON = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
OK = {"status": "Ok", "realtime_data": {"connected": 1, "bandwidth": 10}}


def targets(count: int, start: int = 0) -> list[Target]:
    return [Target(f"{i:024x}") for i in range(start, start + count)]


class Upstream:
    """Answers at once, except for stalled slices (never) and slow ones (after a delay)."""

    def __init__(self) -> None:
        self.stalled: set[str] = set()
        self.latency: dict[str, float] = {}
        self.sent: list[tuple[float, str]] = []
        self.answered: Counter[str] = Counter()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        data_slice = request.url.params["data_slice"]
        self.sent.append((anyio.current_time(), data_slice))
        if data_slice in self.stalled:
            await anyio.sleep_forever()
        await anyio.sleep(self.latency.get(data_slice, 0.0))
        self.answered[data_slice] += 1
        return httpx.Response(200, json=OK)


def make_client(handler: Upstream, **options: object) -> WMSPanelClient:
    return WMSPanelClient(
        CLIENT_ID,
        API_KEY,
        transport=httpx.MockTransport(handler),
        daily_limit=10**9,
        clock=lambda: NOON,
        **options,  # type: ignore[arg-type]
    )


async def drain(stream: SnapshotStream, seconds: float) -> list[Snapshot]:
    taken: list[Snapshot] = []
    with anyio.move_on_after(seconds):
        async for snapshot in stream:
            taken.append(snapshot)
    return taken


async def test_stalled_targets_do_not_starve_the_healthy_ones() -> None:
    """12 of 40 targets never answer: the other 28 keep >= 90 % of their polls after 4 s."""
    upstream = Upstream()
    watched = targets(40)
    stalled, healthy = watched[:12], watched[12:]
    upstream.stalled = {target.data_slice for target in stalled}
    async with make_client(upstream) as client:
        start = anyio.current_time()
        async with client.poll(watched, interval=0.5) as snapshots:
            await drain(snapshots, 24.0)
            stats = snapshots.stats
    window = (start + 4.0, start + 24.0)
    healthy_ids = {target.data_slice for target in healthy}
    polled = sum(
        1 for when, seen in upstream.sent if seen in healthy_ids and window[0] <= when < window[1]
    )
    scheduled = len(healthy) * (window[1] - window[0]) / 0.5
    assert polled >= 0.9 * scheduled, (polled, scheduled, stats)
    assert stats.errors.keys() == {"APITimeoutError"}
    assert stats.targets_down == 12


async def test_poll_deadline_follows_the_interval_and_grows_after_timeouts() -> None:
    """A stalled poll ends after two intervals (1 s at least), then 2x, 4x, ... in a row."""
    upstream = Upstream()
    stuck = targets(1)[0]
    upstream.stalled = {stuck.data_slice}
    async with make_client(upstream) as client, client.poll([stuck], interval=2.0) as snapshots:
        errors: list[float] = []
        async for snapshot in snapshots:
            assert isinstance(snapshot.error, APITimeoutError)
            errors.append(snapshot.latency)
            if len(errors) == 4:
                break
    assert errors == pytest.approx([4.0, 8.0, 16.0, 30.0])  # the client's deadline caps it


async def test_slow_but_working_upstream_still_answers() -> None:
    """An answer slower than the poll deadline times out once, then the deadline makes room."""
    upstream = Upstream()
    slow = targets(1)[0]
    upstream.latency[slow.data_slice] = 2.5
    async with make_client(upstream) as client, client.poll([slow], interval=1.0) as snapshots:
        taken = await drain(snapshots, 60.0)
    assert isinstance(taken[0].error, APITimeoutError)
    assert all(snapshot.error is None for snapshot in taken[1:])
    assert len(taken) > 10


async def test_a_bug_in_one_fetch_does_not_stop_the_poller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unexpected exception becomes that target's InternalError; the others go on."""
    broken, fine = targets(2)

    async def fetch(target: Target, deadline: float) -> Snapshot:
        await anyio.lowlevel.checkpoint()
        if target == broken:
            msg = "a bug"
            raise KeyError(msg)
        return Snapshot(target=target, stats=None, error=None, fetched_at=NOON, latency=0.0)

    def quota() -> QuotaStatus:
        return QuotaStatus(used=0, remaining=10**9, limit=10**9, resets_at=NOON)

    stream = SnapshotStream(
        fetch, [broken, fine], PollSettings(quota=quota, utc_clock=lambda: NOON)
    )
    with caplog.at_level(logging.ERROR, "wmspanel_async.poller"):
        async with stream:
            taken = await drain(stream, 95.0)
    by_target = Counter(snapshot.target for snapshot in taken)
    assert by_target[fine] == 3  # every 30 s from its slot: at about 15, 45 and 75 s
    errors = [snapshot.error for snapshot in taken if snapshot.target == broken]
    assert errors, "the broken target produced no snapshot"
    assert all(isinstance(error, InternalError) for error in errors)
    assert isinstance(errors[0].__cause__, KeyError)
    assert "bug in wmspanel-async" in str(errors[0])
    assert stream.stats.errors["InternalError"] == len(errors)
    logged = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert logged
    assert logged[0].exc_info is not None
    assert logged[0].exc_info[0] is KeyError


async def test_a_day_long_retry_after_is_capped_at_the_daily_reset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Retry-After past 00:00 UTC waits until the reset only, and is logged once."""
    just_before_midnight = dt.datetime(2024, 5, 1, 23, 58, tzinfo=dt.timezone.utc)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "9" * 400})

    client = WMSPanelClient(
        CLIENT_ID,
        API_KEY,
        transport=httpx.MockTransport(answer),
        clock=lambda: just_before_midnight,
    )
    async with client:
        for _ in range(2):
            with pytest.raises(RateLimitError) as caught:
                await client.realtime("a" * 24)
            assert caught.value.retry_after == pytest.approx(120.0)
    capped = [record for record in caplog.records if "past the daily reset" in record.message]
    assert len(capped) == 1
