"""The daily call budget: counting, refusal before sending, reset at 00:00 UTC.

Every test runs in several local time zones (the ``local_time_zone`` fixture): the day
turns at 00:00 UTC wherever the machine is.
"""

from __future__ import annotations

import datetime as dt

import pytest
import respx
from support import SLICE_ID, FakeUTCClock, make_client, sample_payload

from wmspanel_async import (
    AuthenticationError,
    MemoryLedger,
    QuotaExhaustedError,
    QuotaStatus,
    Target,
)
from wmspanel_async._quota import next_utc_midnight

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("local_time_zone")]

MIDNIGHT = dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc)


async def test_quota_counts_every_call_and_refuses_before_sending(
    api: respx.Router, utc_clock: FakeUTCClock
) -> None:
    """Each call counts one; past the limit QuotaExhaustedError is raised and nothing sent."""
    route = api.get("/v1/realtime_data").respond(json=sample_payload("realtime_data"))
    async with make_client(api, daily_limit=3, clock=utc_clock) as client:
        assert client.quota == QuotaStatus(used=0, remaining=3, limit=3, resets_at=MIDNIGHT)
        for _ in range(3):
            await client.realtime(SLICE_ID)
        assert client.quota.remaining == 0
        with pytest.raises(QuotaExhaustedError) as caught:
            await client.realtime(SLICE_ID)
        assert route.call_count == 3
        assert caught.value.resets_at == MIDNIGHT
        assert "daily budget of 3 calls is spent" in str(caught.value)
        assert "2026-11-27 00:00 UTC" in str(caught.value)

        utc_clock.advance(60)  # 00:00 UTC: a new day, a new budget
        assert client.quota == QuotaStatus(
            used=0, remaining=3, limit=3, resets_at=MIDNIGHT + dt.timedelta(days=1)
        )
        await client.realtime(SLICE_ID)
        assert client.quota.used == 1


async def test_failed_attempts_count_too(api: respx.Router, utc_clock: FakeUTCClock) -> None:
    """An attempt that fails still spent a call of the account."""
    api.get("/v1/data_slices").respond(403)
    async with make_client(api, clock=utc_clock) as client:
        with pytest.raises(AuthenticationError, match=r"client_id .* \(403\)"):
            await client.data_slices()
        assert client.quota.used == 1


async def test_realtime_many_reports_quota_per_target(
    api: respx.Router, utc_clock: FakeUTCClock
) -> None:
    """With too few calls left, the targets beyond the budget carry QuotaExhaustedError."""
    api.get("/v1/realtime_data").respond(json=sample_payload("realtime_data"))
    async with make_client(api, daily_limit=2, clock=utc_clock) as client:
        snapshots = await client.realtime_many(
            [Target(str(n)) for n in range(3)],
            concurrency=1,
        )
    assert [type(s.error).__name__ for s in snapshots] == [
        "NoneType",
        "NoneType",
        "QuotaExhaustedError",
    ]


@pytest.mark.parametrize(
    ("now", "midnight"),
    [
        (
            dt.datetime(2026, 11, 26, 0, 0, tzinfo=dt.timezone.utc),
            dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc),
        ),
        (
            dt.datetime(2026, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc),
            dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc),
        ),
        # 01:30 in UTC+02:00 is still the previous UTC day
        (
            dt.datetime(2026, 11, 27, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc),
        ),
    ],
)
def test_next_utc_midnight(now: dt.datetime, midnight: dt.datetime) -> None:
    """The reset is the next 00:00 UTC, whatever zone the clock reports in."""
    assert next_utc_midnight(now) == midnight


async def test_ledger_rolls_over_at_midnight_only(utc_clock: FakeUTCClock) -> None:
    """Calls of the same UTC day accumulate; the first call of the next day starts at one."""
    ledger = MemoryLedger()
    await ledger.reserve("id", 10, utc_clock())
    utc_clock.advance(59)  # 23:59:59, same day
    await ledger.reserve("id", 10, utc_clock())
    assert ledger.status("id", 10, utc_clock()).used == 2
    utc_clock.advance(1)
    assert (await ledger.reserve("id", 10, utc_clock())).used == 1
    assert ledger.status("another id", 10, utc_clock()).used == 0
