"""``client.keep_fresh()``: one poller, many readers.

Every test runs on asyncio and trio, on a virtual clock, against the fake API of
``support`` (an ``httpx.MockTransport``: no socket), so "three intervals later" is exact.
"""

from __future__ import annotations

import logging

import anyio
import httpx
import pytest
from support import (
    NOON,
    A,
    B,
    C,
    FakeAPI,
    FakeUTCClock,
    evenly,
    gaps,
    make_polling_client,
    realtime_response,
)

from wmspanel_async import (
    APIError,
    AuthenticationError,
    ClientStateError,
    ConfigurationError,
    FreshSnapshots,
    FreshStats,
    QuotaExhaustedError,
    Snapshot,
    TargetLimitError,
    TargetNotWatchedError,
    WMSPanelError,
)

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

INTERVAL = 10.0


def counting_api(latency: float = 0.0) -> FakeAPI:
    """A fake API whose figures count its requests: 1, 2, 3, ... per slice."""
    api = FakeAPI(latency=latency)
    for target in (A, B, C):
        api.answers[target.data_slice] = lambda nth, now: realtime_response(nth + 1)
    return api


def connected(snapshot: Snapshot | None) -> int | None:
    return None if snapshot is None or snapshot.stats is None else snapshot.stats.connected


# -- get() and wait() ------------------------------------------------------------------------


async def test_get_reads_the_latest_snapshot_without_calling_the_api() -> None:
    """None before the first poll, then the latest; a thousand reads send nothing."""
    api = counting_api()
    async with (
        make_polling_client(api) as client,
        client.keep_fresh([A], interval=INTERVAL) as fresh,
    ):
        assert fresh.get(A) is None
        first = await fresh.wait(A)
        assert fresh.get(A) is first
        sent = len(api.requests)
        assert all(fresh.get(A) is first for _ in range(1000))
        assert len(api.requests) == sent == 1
        await anyio.sleep(INTERVAL + 0.5)
        assert connected(fresh.get(A)) == 2
        assert fresh.stats.reads == 1004


async def test_wait_newer_than_sleeps_until_the_next_poll() -> None:
    """wait(newer_than=s) returns the target's next snapshot, one interval after s."""
    api = counting_api()
    async with (
        make_polling_client(api) as client,
        client.keep_fresh([A], interval=INTERVAL) as fresh,
    ):
        first = await fresh.wait(A)
        assert await fresh.wait(A) is first  # no newer_than: what there is
        started = anyio.current_time()
        second = await fresh.wait(A, newer_than=first)
        waited = anyio.current_time() - started
        assert [connected(first), connected(second)] == [1, 2]
        assert waited == pytest.approx(INTERVAL, abs=1e-3)
        assert await fresh.wait(A, newer_than=first) is second  # older: at once


async def test_wait_newer_than_tells_apart_two_polls_of_one_clock_reading() -> None:
    """Two polls with the same fetched_at (a frozen UTC clock) are still two snapshots.

    wait(newer_than=first) sleeps until the second poll, one interval later, and returns
    it; neither returns the first again nor waits for a later fetched_at.
    """
    api = counting_api()
    async with (
        make_polling_client(api, utc=FakeUTCClock(NOON)) as client,
        client.keep_fresh([A], interval=INTERVAL) as fresh,
    ):
        first = await fresh.wait(A)
        started = anyio.current_time()
        with anyio.fail_after(3 * INTERVAL):
            second = await fresh.wait(A, newer_than=first)
        waited = anyio.current_time() - started
        assert second.fetched_at == first.fetched_at == NOON
        assert [connected(first), connected(second)] == [1, 2]
        assert waited == pytest.approx(INTERVAL, abs=1e-3)
        assert await fresh.wait(A, newer_than=first) is second
        assert len(api.requests) == 2


async def test_many_readers_wait_for_one_poll() -> None:
    """Fifty readers waiting for the same target are all woken by one request."""
    api = counting_api()
    async with (
        make_polling_client(api) as client,
        client.keep_fresh([A], interval=INTERVAL) as fresh,
    ):
        first = await fresh.wait(A)
        seen: list[Snapshot] = []

        async def reader() -> None:
            seen.append(await fresh.wait(A, newer_than=first))

        async with anyio.create_task_group() as task_group:
            for _ in range(50):
                task_group.start_soon(reader)
            await anyio.sleep(1)
            assert fresh.stats.waiting == 50
    assert len(seen) == 50
    assert len({id(snapshot) for snapshot in seen}) == 1
    assert len(api.requests) == 2


async def test_a_failed_poll_is_the_latest_and_last_success_keeps_the_figures() -> None:
    """A 503 is the target's latest snapshot; last_success() still has the figures."""
    api = counting_api()
    api.answers[A.data_slice] = lambda nth, now: (
        realtime_response(5) if nth == 0 else httpx.Response(503)
    )
    async with (
        make_polling_client(api) as client,
        client.keep_fresh([A], interval=INTERVAL) as fresh,
    ):
        good = await fresh.wait(A)
        bad = await fresh.wait(A, newer_than=good)
        assert (connected(good), type(bad.error).__name__) == (5, "ServerError")
        assert fresh.get(A) is bad
        assert fresh.last_success(A) is good


async def test_reading_a_target_not_watched_is_a_lookup_error() -> None:
    """get(), wait() and subscribe() of an unknown target raise TargetNotWatchedError."""
    async with make_polling_client(FakeAPI()) as client, client.keep_fresh([A]) as fresh:
        with pytest.raises(TargetNotWatchedError, match="not watched; give it to keep_fresh"):
            fresh.get(B)
        with pytest.raises(LookupError) as caught:
            await fresh.wait(B)
        assert caught.value.target == B  # type: ignore[attr-defined]
        with pytest.raises(TargetNotWatchedError):
            fresh.subscribe([A, B])
        with pytest.raises(ConfigurationError, match="expected a Target, got str"):
            fresh.get("a" * 24)  # type: ignore[arg-type]


async def test_reads_outside_the_block_are_client_state_errors() -> None:
    """Before the block is entered and after it is left, reads say so."""
    async with make_polling_client(FakeAPI()) as client:
        fresh = client.keep_fresh([A], interval=INTERVAL)
        with pytest.raises(ClientStateError, match="enter it first"):
            fresh.get(A)
        async with fresh:
            await fresh.wait(A)
        with pytest.raises(ClientStateError, match="has been left"):
            fresh.get(A)
        with pytest.raises(ClientStateError, match="has been left"):
            fresh.watch(B)
        with pytest.raises(ClientStateError, match=r"entered once; call client\.keep_fresh"):
            await fresh.__aenter__()


async def test_readers_waiting_when_the_block_is_left_are_told() -> None:
    """A reader waiting in another task gets ClientStateError when polling stops."""
    api = FakeAPI()
    api.hang.add(A.data_slice)
    async with make_polling_client(api) as client:
        errors: list[BaseException] = []

        async def reader(fresh: FreshSnapshots) -> None:
            with pytest.raises(ClientStateError) as caught:
                await fresh.wait(A)
            errors.append(caught.value)

        async with anyio.create_task_group() as task_group:
            async with client.keep_fresh([A], interval=INTERVAL) as fresh:
                task_group.start_soon(reader, fresh)
                await anyio.sleep(1)
            left = anyio.current_time()
        assert anyio.current_time() - left < 0.1
    assert len(errors) == 1
    assert api.cancelled == 1  # the hung request was cancelled on leaving


# -- the poller behind it ------------------------------------------------------------------


async def test_it_polls_on_the_poller_schedule_and_never_skips_for_readers() -> None:
    """Spread, fixed rate, every tick polled: nobody reading holds nothing back."""
    api = counting_api(latency=0.3)
    async with make_polling_client(api) as client:
        start = anyio.current_time()
        async with client.keep_fresh([A, B], interval=INTERVAL) as fresh:
            await anyio.sleep(10 * INTERVAL - 0.01)
            stats = fresh.stats
    assert isinstance(stats, FreshStats)
    assert (stats.polls, stats.snapshots, stats.skipped) == (20, 20, 0)
    assert api.times(A)[0] - start < INTERVAL / 2 <= api.times(B)[0] - start < INTERVAL
    assert gaps(api.times(A)) == evenly(INTERVAL, 9)


async def test_first_poll_now_polls_every_target_at_once_then_on_schedule() -> None:
    """first_poll_now=True: every target at the start (and each watched later) at once.

    Then each goes on at the poller's fixed rate, its second poll at least half an interval
    after the first.
    """
    api = counting_api()
    async with make_polling_client(api) as client:
        start = anyio.current_time()
        async with client.keep_fresh([A, B], interval=INTERVAL, first_poll_now=True) as fresh:
            await anyio.sleep(5)
            fresh.watch(C)
            await anyio.sleep(5 * INTERVAL - 5 - 0.01)
    firsts = [api.times(target)[0] - start for target in (A, B, C)]
    assert firsts == pytest.approx([0, 0, 5], abs=1e-3)
    for target in (A, B, C):
        later = gaps(api.times(target))
        assert INTERVAL / 2 <= later[0] < 1.5 * INTERVAL
        assert later[1:] == evenly(INTERVAL, len(later) - 1)
    # After the burst, the schedule is spread again: A and B half an interval apart.
    assert abs(api.times(A)[1] - api.times(B)[1]) >= INTERVAL / 2 - 1


async def test_first_poll_now_spreads_when_the_calls_left_cannot_afford_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stretched schedule (the day's calls would not last): no burst, and it says so."""
    api = counting_api()
    # 3 targets every 10 s is 25,920 calls a day: a limit of 2,000 stretches the interval.
    async with make_polling_client(api, daily_limit=2000) as client:
        start = anyio.current_time()
        async with client.keep_fresh([A, B, C], interval=INTERVAL, first_poll_now=True) as fresh:
            await anyio.sleep(1)
            polled_at_once = sum(len(api.times(target)) for target in (A, B, C))
            effective = fresh.stats.effective_interval
    assert effective > 2 * INTERVAL
    assert polled_at_once <= 1  # spread over the stretched interval, not all at once
    assert "do not afford a first poll of every target at once" in caplog.text
    assert anyio.current_time() - start >= 1


async def test_a_target_the_api_refuses_is_polled_no_more(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An APIError (the API said no to this request): one poll, one WARNING, no retries.

    Its snapshot carries the error, the stats count it as refused (not down), and watching
    it again polls it again.
    """
    api = counting_api()
    refusal = {"status": "Error", "message": "lite slice: it has no per-stream realtime data"}
    api.answers[B.data_slice] = lambda nth, now: httpx.Response(200, json=refusal)
    async with (
        make_polling_client(api) as client,
        client.keep_fresh([A, B], interval=INTERVAL) as fresh,
    ):
        await anyio.sleep(10 * INTERVAL)
        refused = fresh.get(B)
        stats = fresh.stats
        fresh.unwatch(B)
        fresh.watch(B)
        await anyio.sleep(INTERVAL)
    assert refused is not None
    assert isinstance(refused.error, APIError)
    assert refused.error.api_message == refusal["message"]
    assert len(api.times(B)) == 2  # once at first, once after it was watched again
    assert len(api.times(A)) >= 10
    assert (stats.targets_refused, stats.targets_down) == (1, 0)
    assert caplog.text.count("is refused by the API") == 2
    assert "polled no more" in caplog.text


async def test_an_auth_error_is_each_targets_error_by_default() -> None:
    """A 403 keeps the block up: readers see it, and the last figures stay readable."""
    api = counting_api()
    api.answers[A.data_slice] = lambda nth, now: (
        realtime_response(3) if nth == 0 else httpx.Response(403)
    )
    async with (
        make_polling_client(api) as client,
        client.keep_fresh([A], interval=INTERVAL) as fresh,
    ):
        good = await fresh.wait(A)
        refused = await fresh.wait(A, newer_than=good)
        assert isinstance(refused.error, AuthenticationError)
        assert fresh.last_success(A) is good


async def test_with_raise_on_auth_error_readers_and_the_block_raise_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """raise_on_auth_error=True: polling stops; reads and leaving raise the 403 itself."""
    api = FakeAPI()
    api.answers[A.data_slice] = lambda nth, now: httpx.Response(403)
    async with make_polling_client(api) as client:
        fresh = client.keep_fresh([A], interval=INTERVAL, raise_on_auth_error=True)
        await fresh.__aenter__()
        with pytest.raises(AuthenticationError) as first:
            await fresh.wait(A)
        with pytest.raises(AuthenticationError) as second:
            fresh.get(A)
        with pytest.raises(AuthenticationError) as leaving:
            await fresh.__aexit__(None, None, None)
    assert first.value is second.value is leaving.value
    assert "keep_fresh() stopped polling: AuthenticationError" in caplog.text
    assert len(api.requests) == 1


async def test_a_subscriber_gets_the_error_that_stopped_polling() -> None:
    """Subscribers, too, get the error that stopped polling, as itself."""
    api = FakeAPI()
    api.answers[A.data_slice] = lambda nth, now: httpx.Response(403)
    async with make_polling_client(api) as client:
        fresh = client.keep_fresh([A], raise_on_auth_error=True)
        await fresh.__aenter__()
        async with fresh.subscribe() as snapshots:
            assert repr(snapshots) == "<Subscription targets=all buffered=0 dropped=0>"
            with pytest.raises(AuthenticationError):
                await snapshots.__anext__()
        with pytest.raises(AuthenticationError):
            await fresh.__aexit__(None, None, None)


async def test_closing_the_client_stops_polling_with_client_state_error() -> None:
    """The client closed under a running keep_fresh(): readers and leaving say so."""
    api = counting_api()
    async with make_polling_client(api) as client:
        fresh = client.keep_fresh([A], interval=1.0)
        await fresh.__aenter__()
        await fresh.wait(A)
        await client.aclose()
        with pytest.raises(ClientStateError, match="closed"):
            await fresh.wait(A, newer_than=fresh.get(A))
        with pytest.raises(ClientStateError, match="closed"):
            await fresh.__aexit__(None, None, None)


async def test_on_quota_error_refuses_a_schedule_that_does_not_fit() -> None:
    """With on_quota="error", a schedule beyond the day's calls is refused on entering."""
    async with make_polling_client(FakeAPI(), daily_limit=100) as client:
        fresh = client.keep_fresh([A, B], interval=1.0, on_quota="error")
        with pytest.raises(QuotaExhaustedError):
            await fresh.__aenter__()


# -- subscriptions ---------------------------------------------------------------------------


async def test_a_subscription_gets_every_new_snapshot_in_order() -> None:
    """All targets, in arrival order, starting with the latest of each (latest=True)."""
    api = counting_api()
    async with (
        make_polling_client(api) as client,
        client.keep_fresh([A, B], interval=INTERVAL) as fresh,
    ):
        await fresh.wait(A)
        await fresh.wait(B)
        got: list[tuple[str, int | None]] = []
        async with fresh.subscribe() as snapshots:
            assert fresh.stats.subscribers == 1
            async for snapshot in snapshots:
                got.append((snapshot.target.data_slice[0], connected(snapshot)))
                if len(got) == 6:
                    break
        assert got == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3), ("b", 3)]
        assert fresh.stats.subscribers == 0


async def test_a_subscription_of_some_targets_gets_only_theirs() -> None:
    """subscribe([B], latest=False): only B's snapshots, only new ones."""
    api = counting_api()
    async with (
        make_polling_client(api) as client,
        client.keep_fresh([A, B], interval=INTERVAL) as fresh,
    ):
        await fresh.wait(B)
        async with fresh.subscribe([B], latest=False) as snapshots:
            got = [await snapshots.__anext__() for _ in range(2)]
    assert [(s.target, connected(s)) for s in got] == [(B, 2), (B, 3)]


async def test_a_slow_subscriber_drops_its_oldest_and_slows_nobody() -> None:
    """A reader that never reads loses its oldest; the poller and a fast reader go on."""
    api = counting_api()
    async with make_polling_client(api) as client, client.keep_fresh([A], interval=1.0) as fresh:
        fast: list[int | None] = []

        async def read_fast() -> None:
            async with fresh.subscribe(latest=False) as snapshots:
                async for snapshot in snapshots:
                    fast.append(connected(snapshot))

        async with fresh.subscribe(buffer=3, latest=False) as slow:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(read_fast)
                await anyio.sleep(9.5)
                task_group.cancel_scope.cancel()
            assert slow.dropped == 7
            assert [connected(await slow.__anext__()) for _ in range(3)] == [8, 9, 10]
            stats = fresh.stats
    assert fast == list(range(1, 11))
    assert (stats.polls, stats.skipped, stats.dropped) == (10, 0, 7)


async def test_subscriptions_end_when_the_block_is_left() -> None:
    """async for over a subscription ends (no error) once keep_fresh's block is left."""
    api = counting_api()
    ended = anyio.Event()
    async with make_polling_client(api) as client:

        async def read(fresh: FreshSnapshots) -> None:
            async with fresh.subscribe() as snapshots:
                async for _ in snapshots:
                    pass
            ended.set()

        async with anyio.create_task_group() as task_group:
            async with client.keep_fresh([A], interval=INTERVAL) as fresh:
                task_group.start_soon(read, fresh)
                await anyio.sleep(2 * INTERVAL)
            with anyio.fail_after(0.1):
                await ended.wait()


async def test_iterating_a_subscription_outside_its_block_is_an_error() -> None:
    """A subscription is entered once, and iterated inside its block."""
    async with make_polling_client(FakeAPI()) as client, client.keep_fresh([A]) as fresh:
        subscription = fresh.subscribe()
        with pytest.raises(ClientStateError, match="iterate inside the block"):
            await subscription.__anext__()
        async with subscription:
            with pytest.raises(ClientStateError, match="entered once"):
                await subscription.__aenter__()
        with pytest.raises(ConfigurationError, match="buffer must be"):
            fresh.subscribe(buffer=0)


# -- watch() and unwatch() -------------------------------------------------------------------


async def test_watch_starts_polling_and_unwatch_stops_it() -> None:
    """A target watched at run time is polled from then on; unwatched, no more."""
    api = counting_api()
    async with (
        make_polling_client(api) as client,
        client.keep_fresh([A], interval=INTERVAL) as fresh,
    ):
        fresh.watch(B)
        fresh.watch(B)  # idempotent
        assert fresh.targets == (A, B)
        assert connected(await fresh.wait(B)) == 1
        waiter_error: list[BaseException] = []

        async def waiter() -> None:
            with pytest.raises(TargetNotWatchedError) as caught:
                await fresh.wait(B, newer_than=fresh.get(B))
            waiter_error.append(caught.value)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(waiter)
            await anyio.sleep(1)
            fresh.unwatch(B)
        fresh.unwatch(B)  # idempotent
        polled = len(api.times(B))
        await anyio.sleep(3 * INTERVAL)
    assert len(api.times(B)) == polled == 1
    assert len(waiter_error) == 1


async def test_watch_with_an_interval_changes_it() -> None:
    """watch(target, interval=...) of a watched target gives it an interval of its own."""
    api = counting_api()
    async with make_polling_client(api) as client, client.keep_fresh([A], interval=10.0) as fresh:
        await fresh.wait(A)
        fresh.watch(A, interval=2.0)
        await anyio.sleep(30)
    assert gaps(api.times(A))[-5:] == evenly(2.0, 5)


async def test_a_waiter_of_a_target_unwatched_and_watched_again_is_told() -> None:
    """The target a reader waited for went away meanwhile, even if it is back now."""
    api = counting_api()
    async with make_polling_client(api) as client, client.keep_fresh([A], interval=10.0) as fresh:
        first = await fresh.wait(A)
        async with anyio.create_task_group() as task_group:

            async def waiter() -> None:
                with pytest.raises(TargetNotWatchedError):
                    await fresh.wait(A, newer_than=first)

            task_group.start_soon(waiter)
            await anyio.sleep(1)
            fresh.unwatch(A)
            fresh.watch(A)


async def test_max_targets_refuses_more_with_a_clear_error() -> None:
    """Watching past max_targets raises TargetLimitError and changes nothing."""
    async with make_polling_client(FakeAPI()) as client:
        with pytest.raises(ConfigurationError, match="3 targets, more than max_targets=2"):
            client.keep_fresh([A, B, C], max_targets=2)
        async with client.keep_fresh([A], max_targets=2) as fresh:
            fresh.watch(B)
            with pytest.raises(TargetLimitError, match="2 targets are watched already") as caught:
                fresh.watch(C)
            assert caught.value.limit == 2
            assert fresh.targets == (A, B)
            fresh.unwatch(B)
            fresh.watch(C)
            assert fresh.targets == (A, C)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_targets", 0),
        ("max_targets", 1.5),
        ("drop_unread_after", 0),
        ("drop_unread_after", True),
        ("subscription_buffer", None),
        ("interval", -1),
    ],
)
async def test_bad_options_are_configuration_errors(option: str, value: object) -> None:
    """Each option out of range is refused when keep_fresh() is called."""
    async with make_polling_client(FakeAPI()) as client:
        with pytest.raises(ConfigurationError, match=option):
            client.keep_fresh([A], **{option: value})  # type: ignore[arg-type]


async def test_targets_nobody_reads_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    """With drop_unread_after=3, a watched target unread for 3 intervals stops being polled.

    Targets given to keep_fresh() stay, and so does a watched target that is read.
    """
    caplog.set_level(logging.INFO, "wmspanel_async.poller")
    api = counting_api()
    async with (
        make_polling_client(api) as client,
        client.keep_fresh([A], interval=1.0, drop_unread_after=3) as fresh,
    ):
        fresh.watch(B)
        fresh.watch(C)
        await fresh.wait(B)
        for _ in range(20):
            fresh.get(C)
            await anyio.sleep(1)
        assert fresh.targets == (A, C)
        assert fresh.stats.dropped_unread == 1
    assert len(api.times(B)) == 4  # read once at the first poll, then 3 unread intervals
    assert len(api.times(A)) >= 20
    assert f"{B} is no longer polled: nobody read it for 3 intervals" in caplog.text


async def test_a_subscriber_counts_as_a_reader() -> None:
    """A target whose snapshots go to a subscriber is read, and never dropped as unread."""
    api = counting_api()
    async with (
        make_polling_client(api) as client,
        client.keep_fresh([], interval=1.0, drop_unread_after=2) as fresh,
    ):
        fresh.watch(A)
        async with fresh.subscribe([A]) as snapshots:
            for _ in range(10):
                await snapshots.__anext__()
        assert fresh.targets == (A,)


def test_target_errors_are_wmspanel_errors() -> None:
    """Both new errors are ours; the lookup one is also a LookupError."""
    assert issubclass(TargetNotWatchedError, LookupError)
    error = TargetLimitError("full", limit=3)
    assert (str(error), error.limit) == ("full", 3)
    assert issubclass(TargetNotWatchedError, WMSPanelError)
    assert isinstance(error, WMSPanelError)
