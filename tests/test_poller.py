"""The poller: fixed-rate scheduling, skips, backoff, auth failures and clean exits.

Every async test runs on asyncio and trio, and every one that waits on a virtual clock,
so "30 s later" costs nothing and ``anyio.current_time()`` tells exactly when a request went
out. The fake API is an ``httpx.MockTransport`` handler: no socket is opened.
"""

from __future__ import annotations

import json
import logging
import math

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
    realtime_response,
    sample_payload,
)

from wmspanel_async import (
    AuthenticationError,
    ClientStateError,
    ConfigurationError,
    PollerStats,
    RealtimeStats,
    ServerError,
    Snapshot,
    SnapshotStream,
    Target,
    WMSPanelClient,
)
from wmspanel_async._poller import PollSettings

pytestmark = pytest.mark.anyio


# -- the schedule -------------------------------------------------------------------------


@pytest.mark.virtual_time
async def test_targets_are_spread_over_the_interval() -> None:
    """Target i of N is first polled in the first half of its slot i * interval / N."""
    api = FakeAPI()
    targets = [Target(f"{i:024x}") for i in range(10)]
    async with make_polling_client(api) as client:
        start = anyio.current_time()
        async with client.poll(targets, interval=10.0) as snapshots:
            await consume(snapshots, 9.99)
    firsts = [api.times(target)[0] - start for target in targets]
    for index, first in enumerate(firsts):
        assert index - 1e-9 <= first < index + 0.5
    assert len(api.requests) == 10


@pytest.mark.heavy  # 10,000 polls: seconds of CPU, the same on every Python
@pytest.mark.virtual_time
async def test_schedule_does_not_drift_over_10000_intervals() -> None:
    """Poll k of a target is due at its first poll + k * interval, request latency or not."""
    utc = VirtualUTC()
    quota = DailyQuota(10**9, utc)
    calls: list[tuple[float, Target]] = []

    async def fetch(target: Target, deadline: float) -> Snapshot:
        calls.append((anyio.current_time(), target))
        await anyio.sleep(0.3)  # a fixed-delay loop would drift 0.3 s per interval
        stats = RealtimeStats(connected=1, bandwidth=1)
        return Snapshot(target=target, stats=stats, error=None, fetched_at=utc(), latency=0.3)

    stream = SnapshotStream(
        fetch, [A], PollSettings(quota=quota.status, utc_clock=utc, interval=1.0)
    )
    async with stream:
        await consume(stream, 10_000.9)
    times = [when for when, _ in calls]
    assert len(times) == 10_001
    for k, when in enumerate(times):
        assert when == pytest.approx(times[0] + k * 1.0, abs=1e-5)
    stats = stream.stats
    assert stats.polls == stats.snapshots == 10_001
    assert stats.skipped == 0
    assert stats.lateness_max == pytest.approx(0.0, abs=1e-5)


@pytest.mark.virtual_time
async def test_busy_target_skips_its_tick_and_never_overlaps() -> None:
    """A target whose request outlasts the interval skips ticks; one request in flight each."""
    # Slower than the interval, but within the poll's deadline of two intervals.
    api = FakeAPI(latency=1.5)
    async with make_polling_client(api) as client, client.poll([A, B], interval=1.0) as snapshots:
        await consume(snapshots, 29.9)  # 30 ticks each, whatever the jitter (< 0.25 s)
    assert api.max_in_flight_per_target == 1
    assert snapshots.stats.errors == {}
    for target in (A, B):
        # Due every second, but each poll holds the target for 1.5 s: ticks 0, 2, 4, ...
        assert gaps(api.times(target)) == evenly(2.0, len(api.times(target)) - 1)
    # Each target had 30 ticks: one in two polled, the others skipped as busy.
    assert len(api.requests) + snapshots.stats.skipped_busy == 60
    assert snapshots.stats.skipped_busy == 30


@pytest.mark.virtual_time
async def test_concurrency_bounds_requests_in_flight() -> None:
    """No more than ``concurrency`` requests are in flight, however many targets are due."""
    api = FakeAPI(latency=0.9)
    targets = [Target(f"{i:024x}") for i in range(30)]
    async with (
        make_polling_client(api, max_connections=5) as client,
        client.poll(targets, interval=1.0) as snapshots,
    ):
        await consume(snapshots, 20.0)
    assert api.max_in_flight == 5
    assert snapshots.stats.skipped_busy > 0


@pytest.mark.virtual_time
async def test_slow_consumer_skips_ticks_without_extra_calls() -> None:
    """Untaken snapshots make their targets skip ticks: no request, one buffered snapshot."""
    api = FakeAPI()
    taken = 0
    async with make_polling_client(api) as client, client.poll([A, B], interval=1.0) as snapshots:
        with anyio.move_on_after(60.0):
            async for _ in snapshots:
                taken += 1
                await anyio.sleep(3.5)  # the consumer is 7 times too slow for two targets
    stats = snapshots.stats
    # Every request made is a snapshot taken, or at most one waiting per target.
    assert taken <= len(api.requests) <= taken + 2
    assert stats.polls == len(api.requests)
    assert stats.skipped_slow_consumer >= 2 * 60 - len(api.requests) - 2
    assert stats.skipped_busy == 0


# -- failures -------------------------------------------------------------------------------


@pytest.mark.virtual_time
async def test_failing_target_backs_off_then_recovers(caplog: pytest.LogCaptureFixture) -> None:
    """One attempt per tick, then capped full-jitter backoff; logged once down, once up."""
    api = FakeAPI()
    api.answers[A.data_slice] = lambda nth, now: (
        httpx.Response(503) if now < 300 else realtime_response()
    )
    caplog.set_level(logging.INFO, logger="wmspanel_async")
    async with make_polling_client(api) as client:
        start = anyio.current_time()
        api.answers[A.data_slice] = lambda nth, now: (
            httpx.Response(503) if now - start < 300 else realtime_response()
        )
        async with client.poll([A, B], interval=1.0) as snapshots:
            taken = await consume(snapshots, 400.0)

    # The healthy target is untouched by its neighbour's trouble.
    assert gaps(api.times(B)) == evenly(1.0, len(api.times(B)) - 1)
    a_times = api.times(A)
    failed = [when for when in a_times if when - start < 300]
    failed_gaps = gaps(failed)
    # The next tick is the first retry.
    assert failed_gaps[0] == pytest.approx(1.0, abs=CLOCK_SLACK)
    for failures, gap in enumerate(failed_gaps[1:], start=2):
        bound = min(2 ** (failures - 1), 10) * 1.0
        assert 1.0 - 1e-9 <= gap <= bound + 1.0 + 1e-9
    assert len(failed) < 100  # backing off: far fewer than the 300 ticks
    assert max(failed_gaps) > 2.0
    # Recovered: every tick again.
    recovered = [when for when in a_times if when - start >= 300]
    assert gaps(recovered) == evenly(1.0, len(recovered) - 1)
    assert recovered[0] - failed[-1] <= 11.0 + 1e-9

    # Error snapshots are yielded too, typed; one HTTP attempt per poll (no client retries).
    errors = [snapshot for _, snapshot in taken if snapshot.error is not None]
    assert len(errors) == len(failed)
    assert all(isinstance(snapshot.error, ServerError) for snapshot in errors)
    stats = snapshots.stats
    assert stats.polls == len(api.requests)
    assert stats.errors == {"ServerError": len(failed)}
    assert stats.skipped_backoff > 0
    assert stats.targets_down == 0

    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name.endswith("poller")]
    assert [level for level, message in records if str(A) in message] == ["WARNING", "INFO"]
    assert "is down: ServerError" in records[0][1]
    assert f"recovered after {len(failed)} failed polls" in records[1][1]


@pytest.mark.virtual_time
async def test_backoff_is_capped_at_ten_intervals() -> None:
    """A target that never recovers is still tried at least every 10 intervals (plus one)."""
    api = FakeAPI()
    api.answers[A.data_slice] = lambda nth, now: httpx.Response(500)
    async with make_polling_client(api) as client, client.poll([A], interval=2.0) as snapshots:
        await consume(snapshots, 2000.0)
    times = api.times(A)
    assert max(gaps(times)) <= 11 * 2.0 + 1e-9
    assert len(times) < 2000 / 2.0 / 3
    assert snapshots.stats.targets_down == 1


@pytest.mark.virtual_time
async def test_retry_after_overrides_backoff() -> None:
    """A 429 with Retry-After: 95 moves the next attempt to the first tick 95 s later."""
    api = FakeAPI()
    api.answers[A.data_slice] = lambda nth, now: (
        httpx.Response(429, headers={"Retry-After": "95"}) if nth == 0 else realtime_response()
    )
    async with make_polling_client(api) as client, client.poll([A], interval=10.0) as snapshots:
        await consume(snapshots, 150.0)
    times = api.times(A)
    assert gaps(times)[:3] == pytest.approx([100.0, 10.0, 10.0], abs=CLOCK_SLACK)
    assert snapshots.stats.errors == {"RateLimitError": 1}


@pytest.mark.virtual_time
async def test_auth_error_ends_iteration_as_itself() -> None:
    """A 403 stops polling and leaves the block as AuthenticationError, not a group."""
    api = FakeAPI()
    api.answers[B.data_slice] = lambda nth, now: httpx.Response(403)
    async with make_polling_client(api) as client:
        with pytest.raises(AuthenticationError) as raised:
            async with client.poll([A, B], interval=10.0) as snapshots:
                await consume(snapshots, 100.0)
        stopped_at = anyio.current_time()
        assert type(raised.value) is AuthenticationError
        assert API_KEY not in str(raised.value)
        await anyio.sleep(100.0)
    assert len(api.requests) == 2
    assert all(when <= stopped_at for when, _ in api.requests)
    assert snapshots.stats.errors == {"AuthenticationError": 1}


@pytest.mark.virtual_time
async def test_auth_error_is_raised_on_exit_when_not_iterating() -> None:
    """An error found while the body does something else is raised when the block ends."""
    api = FakeAPI()
    api.answers[A.data_slice] = lambda nth, now: httpx.Response(403)
    async with make_polling_client(api) as client:
        with pytest.raises(AuthenticationError):
            async with client.poll([A], interval=10.0):
                await anyio.sleep(5.0)


@pytest.mark.virtual_time
async def test_auth_error_can_be_yielded_per_target() -> None:
    """With raise_on_auth_error=False a 403 is one more error snapshot; polling goes on."""
    api = FakeAPI()
    api.answers[B.data_slice] = lambda nth, now: httpx.Response(403)
    async with (
        make_polling_client(api) as client,
        client.poll([A, B], interval=1.0, raise_on_auth_error=False) as snapshots,
    ):
        taken = await consume(snapshots, 49.9)  # 50 ticks each, whatever the jitter (< 0.25 s)
    refused = [snapshot for _, snapshot in taken if snapshot.target == B]
    assert refused
    assert all(isinstance(snapshot.error, AuthenticationError) for snapshot in refused)
    assert len(api.times(A)) == 50


# -- live changes ---------------------------------------------------------------------------


@pytest.mark.virtual_time
async def test_add_remove_and_set_interval_take_effect_live() -> None:
    """Targets come and go and the interval changes without restarting the stream."""
    api = FakeAPI()
    taken: list[tuple[float, Snapshot]] = []
    async with make_polling_client(api) as client:
        start = anyio.current_time()
        async with client.poll([A], interval=1.0) as snapshots:
            with anyio.move_on_after(30.0):
                async for snapshot in snapshots:
                    now = anyio.current_time() - start
                    taken.append((now, snapshot))
                    if now >= 5 and B not in snapshots.targets and now < 10:
                        snapshots.add(B)
                        added_at = now
                    if now >= 10 and A in snapshots.targets:
                        snapshots.remove(A)
                        removed_at = now
                    if now >= 15 and snapshots.stats.interval == 1.0:
                        snapshots.set_interval(3.0)
                        changed_at = now
                    if now >= 20 and C not in snapshots.targets:
                        snapshots.add(C, interval=5.0)
    a_times = [when - start for when in api.times(A)]
    b_times = [when - start for when in api.times(B)]
    # Adding B (first poll at once) and removing A leave the other's schedule alone.
    assert added_at - 1e-9 <= b_times[0] < added_at + 1.0
    assert gaps(a_times) == evenly(1.0, len(a_times) - 1)
    assert a_times[-1] <= removed_at
    assert all(s.target != A for when, s in taken if when > removed_at)
    assert snapshots.targets == (B, C)
    before = [when for when in b_times if when <= changed_at]
    after = [when for when in b_times if when > changed_at]
    assert gaps(before) == evenly(1.0, len(before) - 1)
    assert 3.0 - 1e-9 <= after[0] - before[-1] < 6.0  # never sooner than the new interval
    assert gaps(after) == evenly(3.0, len(after) - 1)
    c_times = api.times(C)
    assert gaps(c_times) == evenly(5.0, len(c_times) - 1)


@pytest.mark.virtual_time
async def test_removed_target_snapshot_waiting_is_dropped() -> None:
    """A snapshot not yet taken when its target is removed is never handed over."""
    api = FakeAPI()
    async with make_polling_client(api) as client, client.poll([A, B], interval=1.0) as snapshots:
        first = await snapshots.__anext__()
        await anyio.sleep(0.9)  # both answered; one snapshot waits
        other = B if first.target == A else A
        # The other target was polled once and its snapshot waits, answered but not taken.
        assert len(api.times(other)) == 1
        assert (snapshots.stats.polls, snapshots.stats.snapshots) == (2, 1)
        snapshots.remove(other)
        taken = await consume(snapshots, 5.0)
    assert taken
    assert {snapshot.target for _, snapshot in taken} == {first.target}
    assert snapshots.stats.snapshots == 1 + len(taken)


@pytest.mark.virtual_time
async def test_only_changes_yields_differences() -> None:
    """With only_changes, equal figures are counted but not handed over; errors once a kind."""
    api = FakeAPI()
    answers = [1, 1, 2, 2, 503, 503, 2, 2, 3]

    def answer(nth: int, now: float) -> httpx.Response:
        value = answers[min(nth, len(answers) - 1)]
        return httpx.Response(503) if value == 503 else realtime_response(value)

    api.answers[A.data_slice] = answer
    async with (
        make_polling_client(api) as client,
        client.poll([A], interval=1.0, only_changes=True) as snapshots,
    ):
        taken = await consume(snapshots, 60.0)
    seen = [
        type(s.error).__name__ if s.error else s.stats.connected if s.stats else None
        for _, s in taken
    ]
    assert seen == [1, 2, "ServerError", 2, 3]
    assert snapshots.stats.unchanged == snapshots.stats.polls - 5


# -- leaving ---------------------------------------------------------------------------------


@pytest.mark.virtual_time
async def test_leaving_the_block_cancels_requests_in_flight() -> None:
    """Breaking out stops at once: requests in flight are cancelled, nothing runs after."""
    api = FakeAPI()
    api.hang.add(B.data_slice)
    async with make_polling_client(api) as client:
        tasks_before = len(anyio.get_running_tasks())
        async with client.poll([A, B], interval=10.0) as snapshots:
            async for snapshot in snapshots:
                assert snapshot.target == A
                if api.in_flight[B]:  # B was polled at 5 s and hangs
                    break
        left_at = anyio.current_time()
        assert len(anyio.get_running_tasks()) == tasks_before
        assert api.cancelled == 1
        assert api.in_flight[B] == 0
        await anyio.sleep(100.0)
    assert len(api.requests) == 3  # A at 0 s, B at 5 s, A at 10 s; none after leaving
    assert anyio.current_time() - left_at == pytest.approx(100.0)
    with pytest.raises(StopAsyncIteration):
        await snapshots.__anext__()


@pytest.mark.virtual_time
async def test_leaving_takes_no_time_with_a_request_hung() -> None:
    """Leaving with a request hung in flight waits for nothing: no clock time passes."""
    api = FakeAPI()
    api.hang.add(B.data_slice)
    async with make_polling_client(api) as client:
        with anyio.fail_after(60.0):  # waiting for the hung request fails here, not hangs
            async with client.poll([A, B], interval=10.0) as snapshots:
                async for _ in snapshots:
                    if api.in_flight[B]:
                        broke_at = anyio.current_time()
                        break
            assert anyio.current_time() == broke_at
    assert api.cancelled == 1


@pytest.mark.virtual_time
async def test_cancellation_from_outside_stops_everything() -> None:
    """Cancelling an enclosing scope from another task ends the stream and its requests."""
    api = FakeAPI(latency=1.9)  # each target polls at 0, 2, 4, 6 s (+ its offset)
    async with make_polling_client(api) as client:
        start = anyio.current_time()
        async with anyio.create_task_group() as task_group:

            async def run() -> None:
                async with client.poll([A, B, C], interval=1.0) as snapshots:
                    async for _ in snapshots:
                        pass

            task_group.start_soon(run)
            await anyio.sleep(7.5)
            task_group.cancel_scope.cancel()
        assert anyio.current_time() - start == pytest.approx(7.5)
        assert api.cancelled == 3
        count = len(api.requests)
        await anyio.sleep(60.0)
    assert len(api.requests) == count


@pytest.mark.virtual_time
async def test_consumer_exception_leaves_as_itself() -> None:
    """An exception in the loop body stops the poller and propagates unwrapped."""
    api = FakeAPI()
    api.hang.add(B.data_slice)

    async def fail_in_the_loop(client: WMSPanelClient) -> None:
        async with client.poll([A, B], interval=1.0) as snapshots:
            async for _ in snapshots:
                if api.in_flight[B]:
                    _ = 1 / 0

    async with make_polling_client(api) as client:
        with pytest.raises(ZeroDivisionError):
            await fail_in_the_loop(client)
    assert api.cancelled == 1


# -- the API around it ------------------------------------------------------------------------


@pytest.mark.virtual_time
async def test_stats_tell_what_happened() -> None:
    """stats counts polls, skips and errors by type, and reports the quota and lateness."""
    api = FakeAPI()
    api.answers[B.data_slice] = lambda nth, now: httpx.Response(502)
    async with (
        make_polling_client(api, daily_limit=100_000) as client,
        client.poll([A, B], interval=10.0, reserve=0.1) as snapshots,
    ):
        await consume(snapshots, 99.5)  # ten ticks each, whatever the jitter (< 1 s)
    stats = snapshots.stats
    assert isinstance(stats, PollerStats)
    assert stats.targets == 2
    assert stats.interval == stats.effective_interval == 10.0
    assert stats.polls == len(api.requests) == stats.quota.used
    assert stats.quota.limit == 100_000
    assert stats.reserved_calls == 10_000
    assert set(stats.errors) == {"ServerError"}
    assert stats.targets_down == 1
    assert stats.polls + stats.skipped == 20
    assert stats.lateness_p50 == pytest.approx(0.0, abs=1e-5)
    assert stats.lateness_max == pytest.approx(0.0, abs=1e-5)
    assert not stats.paused


@pytest.mark.virtual_time
async def test_api_key_never_logged_or_shown(caplog: pytest.LogCaptureFixture) -> None:
    """Down/recovered logs, errors, stats and reprs never contain the API key."""
    api = FakeAPI()
    api.answers[A.data_slice] = lambda nth, now: (
        httpx.Response(500, text=f"echo {API_KEY}") if nth < 3 else realtime_response()
    )
    caplog.set_level(logging.DEBUG)
    async with make_polling_client(api) as client, client.poll([A], interval=1.0) as snapshots:
        taken = await consume(snapshots, 30.0)
    shown = [caplog.text, repr(snapshots), repr(snapshots.stats)]
    shown += [repr(s) + str(s.error) for _, s in taken]
    assert all(API_KEY not in text for text in shown)
    assert "recovered" in caplog.text


@pytest.mark.virtual_time
async def test_discover_targets_lists_every_slice() -> None:
    """discover_targets() turns the account's slices into targets, with streams and servers."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/data_slices"
        return httpx.Response(200, content=json.dumps(sample_payload("data_slices")))

    async with WMSPanelClient(
        CLIENT_ID, API_KEY, transport=httpx.MockTransport(handler), clock=VirtualUTC()
    ) as client:
        assert await client.discover_targets() == [
            Target("53e03c9978a6fc8596000001"),
            Target("53e03ca678a6fc8599000001"),
        ]
        targets = await client.discover_targets(streams=["s1"], servers=["v1"])
    assert targets[:3] == [
        Target("53e03c9978a6fc8596000001"),
        Target("53e03c9978a6fc8596000001", stream="s1"),
        Target("53e03c9978a6fc8596000001", server="v1"),
    ]
    assert len(targets) == 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": 0}, "interval must be a positive number"),
        ({"interval": math.inf}, "interval must be a positive number"),
        ({"concurrency": 0}, "concurrency must be 1 or more"),
        ({"concurrency": 11}, "exceeds the client's pool of 10 connections"),
        ({"reserve": 1.0}, "reserve must be a fraction"),
        ({"on_quota": "ignore"}, 'on_quota must be "stretch" or "error"'),
    ],
)
async def test_poll_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    """Out-of-range poll() arguments raise ConfigurationError saying what is wrong."""
    async with make_polling_client(FakeAPI()) as client:
        with pytest.raises(ConfigurationError, match=message):
            client.poll([A], **kwargs)  # type: ignore[arg-type]


async def test_poll_rejects_bad_targets() -> None:
    """A slice id instead of a Target, or an empty slice, is refused before polling."""
    async with make_polling_client(FakeAPI()) as client:
        with pytest.raises(ConfigurationError, match="expected a Target"):
            client.poll(["a" * 24])  # type: ignore[list-item]
        with pytest.raises(ConfigurationError, match="data_slice is empty"):
            client.poll([Target("")])
        stream = client.poll([A])
        with pytest.raises(ConfigurationError, match="interval must be"):
            stream.add(B, interval=-1.0)
        with pytest.raises(ConfigurationError, match="interval must be"):
            stream.set_interval(0.0)


async def test_stream_must_be_entered_once() -> None:
    """Iterating outside the block, or entering twice, raises ClientStateError."""
    async with make_polling_client(FakeAPI()) as client:
        stream = client.poll([A], interval=1000.0)
        with pytest.raises(ClientStateError, match="inside the block"):
            await stream.__anext__()
        async with stream:
            pass
        with pytest.raises(ClientStateError, match="entered once"):
            await stream.__aenter__()
    with pytest.raises(ClientStateError, match="closed"):
        client.poll([A])


@pytest.mark.virtual_time
async def test_client_closed_while_polling_ends_iteration() -> None:
    """Closing the client under a running poller raises ClientStateError from iteration."""
    api = FakeAPI()

    async def close_while_polling(client: WMSPanelClient) -> None:
        async with client.poll([A], interval=1.0) as snapshots:
            async for _ in snapshots:
                await client.aclose()

    async with make_polling_client(api) as client:
        with pytest.raises(ClientStateError, match="closed"):
            await close_while_polling(client)


@pytest.mark.virtual_time
async def test_target_removed_and_added_again_while_in_flight() -> None:
    """Removing drops the answer in flight; adding back never overlaps that request."""
    api = FakeAPI(latency=7.0)
    async with make_polling_client(api) as client, client.poll([A, B], interval=10.0) as snapshots:
        taken: list[Snapshot] = []
        with anyio.move_on_after(120.0):
            async for snapshot in snapshots:
                taken.append(snapshot)
                if len(taken) == 1:  # A's answer at 7-8 s; B's request flies from 5-6 s
                    assert snapshot.target == A
                    snapshots.remove(B)
                    snapshots.add(B)  # back at once: no second request while one flies
                    snapshots.add(A, interval=20.0)  # its own interval from now on
    assert api.max_in_flight_per_target == 1
    b_times = api.times(B)
    assert b_times[1] - b_times[0] >= 10.0 - 1e-9  # virtual times are floats
    a_times = api.times(A)
    assert gaps(a_times) == evenly(20.0, len(a_times) - 1)
    assert snapshots.targets == (A, B)


@pytest.mark.virtual_time
async def test_removed_target_answer_in_flight_is_dropped() -> None:
    """A target removed while its request flies yields nothing more, ever."""
    api = FakeAPI(latency=7.0)
    async with make_polling_client(api) as client, client.poll([A, B], interval=10.0) as snapshots:
        first = await snapshots.__anext__()  # A's, at 7-8 s; B's request flies from 5-6 s
        assert first.target == A
        snapshots.remove(B)
        taken = await consume(snapshots, 30.0)
    assert {snapshot.target for _, snapshot in taken} == {A}
    assert len(api.times(B)) == 1
