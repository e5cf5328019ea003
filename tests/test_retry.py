"""Retries, backoff, Retry-After, the deadline and the retry budget, on a virtual clock."""

from __future__ import annotations

import datetime as dt
import email.utils
import itertools
import logging

import anyio
import httpx
import pytest
import respx
from support import NOON, FakeUTCClock, make_client, sample_payload

from wmspanel_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    RateLimitError,
    ServerError,
)
from wmspanel_async._retry import RetryBudget, backoff_delay, parse_retry_after

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

SLICES = "/v1/data_slices"
OK = httpx.Response(200, json=sample_payload("data_slices"))


def attempt_times(route: respx.Route, times: list[float]) -> None:
    """Record the virtual time of each attempt, then fall through to the route's answers."""
    answers = iter(route.side_effect)  # type: ignore[call-overload]

    def record(request: httpx.Request) -> httpx.Response:
        times.append(anyio.current_time())
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    route.side_effect = record


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(503),
        httpx.Response(500),
        httpx.Response(502),
        httpx.Response(504),
        httpx.Response(408),
        httpx.Response(429),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
    ],
    ids=["503", "500", "502", "504", "408", "429", "connect", "timeout"],
)
async def test_transient_failures_are_retried(
    api: respx.Router, failure: httpx.Response | Exception
) -> None:
    """Connection errors, timeouts, 408, 429 and 5xx are retried, then succeed."""
    route = api.get(SLICES).mock(side_effect=[failure, failure, OK])
    async with make_client(api, max_retries=2) as client:
        assert len(await client.data_slices()) == 2
    assert route.call_count == 3


async def test_retries_stop_after_max_retries(api: respx.Router) -> None:
    """After max_retries retries the last error is raised; each attempt counts in the quota."""
    route = api.get(SLICES).respond(503)
    async with make_client(api, max_retries=3) as client:
        with pytest.raises(ServerError):
            await client.data_slices()
        assert client.quota.used == 4
    assert route.call_count == 4


@pytest.mark.parametrize("retries", [5, 10])
async def test_backoff_is_full_jitter_within_capped_bounds(api: respx.Router, retries: int) -> None:
    """Waits stay within random() * min(0.5 * 2**n, 8) s, past where 0.5 * 2**n exceeds 8."""
    route = api.get(SLICES).mock(side_effect=[httpx.Response(500)] * (retries + 1))
    times: list[float] = []
    attempt_times(route, times)
    # Ten retries cost 50 of the retry budget's 100 tokens: none is refused.
    async with make_client(api, max_retries=retries, deadline=None) as client:
        with pytest.raises(ServerError):
            await client.data_slices()
    waits = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(waits) == retries
    # Uncapped, retries 5 to 9 would each wait over 8 s with odds 1/2 to 31/32.
    for n, wait in enumerate(waits):
        assert 0 <= wait <= min(0.5 * 2**n, 8) + 1e-6, waits


def test_backoff_delay_draws_below_the_cap() -> None:
    """The jittered delay is never above the exponential bound and its 8 s cap."""
    draws = [backoff_delay(10) for _ in range(2000)]
    assert max(draws) <= 8
    assert min(draws) >= 0
    assert max(draws) > 4  # jitter spreads over the range instead of a fixed wait


async def test_retry_after_seconds_is_honoured(api: respx.Router) -> None:
    """A Retry-After of 7 s makes the retry wait exactly 7 s."""
    route = api.get(SLICES).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "7"}), OK]
    )
    times: list[float] = []
    attempt_times(route, times)
    async with make_client(api) as client:
        await client.data_slices()
    assert times[1] - times[0] == pytest.approx(7, abs=0.01)


async def test_retry_after_http_date_is_honoured(
    api: respx.Router, utc_clock: FakeUTCClock
) -> None:
    """A Retry-After HTTP date is turned into a wait from the current time."""
    later = email.utils.format_datetime(utc_clock.now + dt.timedelta(seconds=12), usegmt=True)
    route = api.get(SLICES).mock(
        side_effect=[httpx.Response(503, headers={"Retry-After": later}), OK]
    )
    times: list[float] = []
    attempt_times(route, times)
    async with make_client(api, clock=utc_clock) as client:
        await client.data_slices()
    assert times[1] - times[0] == pytest.approx(12, abs=0.01)


async def test_long_retry_after_is_raised_not_slept(api: respx.Router) -> None:
    """A Retry-After over 60 s raises RateLimitError at once, carrying the wait."""
    route = api.get(SLICES).respond(429, headers={"Retry-After": "3600"})
    # At noon: within an hour of 00:00 UTC the wait would be cut to the reset.
    async with make_client(api, clock=lambda: NOON) as client:
        started = anyio.current_time()
        with pytest.raises(RateLimitError) as caught:
            await client.data_slices()
        assert anyio.current_time() - started < 0.01
    assert caught.value.retry_after == 3600
    assert "asks to wait 3600 s" in str(caught.value)
    assert route.call_count == 1


async def test_deadline_covers_all_retries(api: respx.Router) -> None:
    """A call never outlives its deadline, whatever the retries would need."""

    async def hang(request: httpx.Request) -> httpx.Response:
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async with make_client(api, transport=httpx.MockTransport(hang), deadline=4) as client:
        started = anyio.current_time()
        with pytest.raises(APITimeoutError, match="within its 4 s deadline"):
            await client.data_slices()
        assert anyio.current_time() - started == pytest.approx(4, abs=0.01)


async def test_no_retry_when_the_wait_would_pass_the_deadline(api: respx.Router) -> None:
    """A Retry-After that ends beyond the deadline fails now with the real cause."""
    route = api.get(SLICES).respond(503, headers={"Retry-After": "50"})
    # At noon: within 50 s of 00:00 UTC the wait would be cut to the reset.
    async with make_client(api, deadline=10, clock=lambda: NOON) as client:
        with pytest.raises(ServerError) as caught:
            await client.data_slices()
    assert caught.value.retry_after == 50
    assert route.call_count == 1


async def test_retry_budget_stops_a_retry_storm(api: respx.Router) -> None:
    """Once the shared budget is spent, calls fail after one attempt; successes refill it."""
    route = api.get(SLICES).respond(500)
    async with make_client(api, max_retries=2, deadline=None) as client:
        for _ in range(10):  # 100 tokens at 5 per retry: 20 retries in all
            with pytest.raises(ServerError):
                await client.data_slices()
        assert route.call_count == 10 + 20
        with pytest.raises(ServerError):
            await client.data_slices()
        assert route.call_count == 31
        route.side_effect = [OK] * 5 + [httpx.Response(500), OK]
        for _ in range(5):  # five first-try successes put back one token each
            await client.data_slices()
        await client.data_slices()  # 5 tokens: enough for exactly one retry
    assert route.call_count == 31 + 5 + 2


def test_retry_budget_accounting() -> None:
    """Timeouts cost more; a successful retry refunds its cost; the bucket never overflows."""
    budget = RetryBudget(capacity=20, retry_cost=5, timeout_retry_cost=10)
    assert budget.withdraw(after_timeout=True) == 10
    assert budget.withdraw(after_timeout=False) == 5
    assert budget.withdraw(after_timeout=True) is None
    budget.deposit(15)
    assert budget.tokens == 20
    budget.deposit(0)
    assert budget.tokens == 20


async def test_quota_spent_stops_retries(api: respx.Router) -> None:
    """A retry is not attempted when the daily budget has no call left."""
    route = api.get(SLICES).respond(503)
    async with make_client(api, daily_limit=2, max_retries=5) as client:
        with pytest.raises(ServerError):
            await client.data_slices()
        assert client.quota.remaining == 0
    assert route.call_count == 2


async def test_retries_are_cancellable_at_once(api: respx.Router) -> None:
    """Cancelling a call during its backoff ends it immediately, without another attempt."""
    route = api.get(SLICES).respond(503, headers={"Retry-After": "30"})
    async with make_client(api, max_retries=2, deadline=None) as client:
        with anyio.move_on_after(1) as scope:
            await client.data_slices()
    assert scope.cancelled_caught
    assert route.call_count == 1


async def test_retry_logging(api: respx.Router, caplog: pytest.LogCaptureFixture) -> None:
    """Each attempt logs at DEBUG; each retry logs one WARNING with the cause."""
    api.get(SLICES).mock(side_effect=[httpx.Response(502), OK])
    caplog.set_level(logging.DEBUG, logger="wmspanel_async")
    async with make_client(api) as client:
        await client.data_slices()
    ours = [r for r in caplog.records if r.name == "wmspanel_async"]
    assert [r.levelname for r in ours] == ["DEBUG", "WARNING", "DEBUG"]
    assert ours[0].getMessage().startswith("GET /v1/data_slices -> 502 after ")
    assert ours[0].getMessage().endswith("(attempt 1 of 3)")
    assert "ServerError" in ours[1].getMessage()
    assert "retry 1 of 2" in ours[1].getMessage()
    assert ours[2].getMessage().endswith("(attempt 2 of 3)")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("Thu, 26 Nov 2026 23:59:30 GMT", 30.0),
        ("Thu, 26 Nov 2026 23:00:00 GMT", 0.0),
        ("Thu, 26 Nov 2026 23:59:30 -0000", 30.0),
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    """Retry-After is read as seconds or an HTTP date; garbage is ignored."""
    now = dt.datetime(2026, 11, 26, 23, 59, tzinfo=dt.timezone.utc)
    assert parse_retry_after(value, now) == seconds


async def test_errors_are_typed_under_one_base(api: respx.Router) -> None:
    """Every failure is catchable as WMSPanelError's subclasses named in the docs."""
    api.get(SLICES).mock(side_effect=httpx.RemoteProtocolError("peer closed"))
    async with make_client(api, max_retries=0) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.data_slices()
    assert not isinstance(caught.value, APIStatusError)
    assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)
