"""Identical calls in flight share one request; ``max_age`` answers from recent figures.

Every test runs on asyncio and trio, on a virtual clock: a request "in flight for 1 s" costs
nothing, and the fake API counts what reached it.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel
import httpx
import pytest
from support import CLOCK_SLACK, A, B, FakeAPI, make_polling_client, realtime_response

from wmspanel_async import (
    ClientStateError,
    ConfigurationError,
    RealtimeStats,
    ServerError,
    Target,
    WMSPanelClient,
)
from wmspanel_async._constants import ANSWERS_KEPT

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


async def call_many(
    client: WMSPanelClient, count: int, target: Target = A
) -> list[RealtimeStats | BaseException]:
    """Make ``count`` identical realtime() calls at once; return each outcome."""
    outcomes: list[RealtimeStats | BaseException] = [ValueError("not run")] * count

    async def call(index: int) -> None:
        try:
            outcomes[index] = await client.realtime(target.data_slice, stream=target.stream)
        except Exception as exc:  # collected, each asserted on
            outcomes[index] = exc

    async with anyio.create_task_group() as task_group:
        for index in range(count):
            task_group.start_soon(call, index)
    return outcomes


async def test_a_hundred_identical_calls_cost_one_request() -> None:
    """100 calls for one target while its request is in flight share it and its answer."""
    api = FakeAPI(latency=1.0)
    async with make_polling_client(api) as client:
        outcomes = await call_many(client, 100)
        assert client.quota.used == 1
    assert len(api.requests) == 1
    assert outcomes == [RealtimeStats(connected=1, bandwidth=10)] * 100
    assert len({id(outcome) for outcome in outcomes}) == 1  # one answer, parsed once


async def test_calls_for_other_targets_or_later_are_not_shared() -> None:
    """Only calls in flight at once for the same target share; the next call asks again."""
    api = FakeAPI(latency=1.0)
    async with make_polling_client(api) as client:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(call_many, client, 3, A)
            task_group.start_soon(call_many, client, 3, B)
            task_group.start_soon(call_many, client, 3, Target(A.data_slice, stream="s"))
        await client.realtime(A.data_slice)
    assert sorted(str(target) for _, target in api.requests) == sorted(
        [str(A), str(A), str(B), str(Target(A.data_slice, stream="s"))]
    )


async def test_a_cancelled_caller_never_makes_the_others_see_its_cancellation() -> None:
    """Cancelling the caller that sent the request (and some others) cancels nobody else.

    Its request goes with it; the next waiting caller sends it again, and every caller that
    was not cancelled gets the answer.
    """
    api = FakeAPI(latency=1.0)
    results: list[RealtimeStats] = []
    cancelled_scopes = [anyio.CancelScope() for _ in range(3)]
    async with make_polling_client(api) as client:

        async def doomed(scope: anyio.CancelScope) -> None:
            with scope:
                await client.realtime(A.data_slice)
            assert scope.cancelled_caught

        async def patient() -> None:
            results.append(await client.realtime(A.data_slice))

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(doomed, cancelled_scopes[0])  # the first: it sent the request
            await anyio.sleep(0.1)
            for scope in cancelled_scopes[1:]:
                task_group.start_soon(doomed, scope)
            for _ in range(5):
                task_group.start_soon(patient)
            await anyio.sleep(0.4)
            for scope in cancelled_scopes:
                scope.cancel()
            started = anyio.current_time()
        finished = anyio.current_time()
    assert results == [RealtimeStats(connected=1, bandwidth=10)] * 5
    assert (len(api.requests), api.cancelled) == (2, 1)
    assert finished - started == pytest.approx(1.0, abs=1e-3)  # a whole second request


async def test_when_every_caller_leaves_the_request_is_cancelled() -> None:
    """Nobody waits any more: the shared request stops, the connection is freed."""
    api = FakeAPI(latency=10.0)
    async with make_polling_client(api) as client:
        with anyio.move_on_after(1.0):
            await call_many(client, 5)
        await anyio.wait_all_tasks_blocked()  # the request's task has seen its cancellation
    assert (len(api.requests), api.cancelled) == (1, 1)


async def test_errors_reach_every_caller_as_themselves() -> None:
    """A failed shared request raises the same error class and message in every caller."""
    api = FakeAPI(latency=0.5)
    api.answers[A.data_slice] = lambda nth, now: httpx.Response(503)
    async with make_polling_client(api, max_retries=0) as client:
        outcomes = await call_many(client, 10)
    assert len(api.requests) == 1
    assert all(type(outcome) is ServerError for outcome in outcomes)
    assert {str(outcome) for outcome in outcomes} == {str(outcomes[0])}
    # Each caller's traceback is its own, not nine others piled up.
    first = outcomes[0]
    assert isinstance(first, ServerError)
    depth = 0
    traceback = first.__traceback__
    while traceback is not None:
        depth, traceback = depth + 1, traceback.tb_next
    assert depth < 20


async def test_closing_the_client_ends_shared_calls_with_client_state_error() -> None:
    """Calls in flight when the client closes get ClientStateError, not a cancellation."""
    api = FakeAPI(latency=10.0)
    async with make_polling_client(api) as client:
        outcomes: list[BaseException] = []

        async def call() -> None:
            with pytest.raises(ClientStateError) as caught:
                await client.realtime(A.data_slice)
            outcomes.append(caught.value)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(call)
            task_group.start_soon(call)
            await anyio.sleep(1)
            await client.aclose()
    assert len(outcomes) == 2
    assert "closed while this call was in flight" in str(outcomes[0])
    assert api.cancelled == 1


async def test_identical_data_slices_calls_share_too() -> None:
    """data_slices() is shared like realtime()."""
    slices = {"status": "Ok", "data_slices": [{"id": A.data_slice, "name": "A"}]}

    async def answer(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.5)
        return httpx.Response(200, json=slices)

    async with WMSPanelClient("id", "key" * 8, transport=httpx.MockTransport(answer)) as client:
        async with anyio.create_task_group() as task_group:
            for _ in range(10):
                task_group.start_soon(client.data_slices)
        assert client.quota.used == 1


# -- max_age ---------------------------------------------------------------------------------


async def test_max_age_answers_from_figures_fetched_within_it() -> None:
    """Within max_age, no request; past it, a new one; without it, always a new one."""
    api = FakeAPI()
    answers = iter(range(1, 100))
    api.answers[A.data_slice] = lambda nth, now: realtime_response(next(answers))
    async with make_polling_client(api) as client:
        first = await client.realtime(A.data_slice)
        await anyio.sleep(4.0)
        assert await client.realtime(A.data_slice, max_age=5.0) is first
        await anyio.sleep(1.5)
        second = await client.realtime(A.data_slice, max_age=5.0)
        third = await client.realtime(A.data_slice)
    assert [first.connected, second.connected, third.connected] == [1, 2, 3]
    assert len(api.requests) == 3


async def test_max_age_includes_figures_exactly_that_old() -> None:
    """Figures fetched exactly max_age seconds ago are answered from memory, unsent.

    The docs say "at most max_age seconds ago": max_age=0 at the instant of the fetch
    answers from memory too, and a clock tick past max_age sends a request.
    """
    api = FakeAPI()
    answers = iter(range(1, 100))
    api.answers[A.data_slice] = lambda nth, now: realtime_response(next(answers))
    async with make_polling_client(api) as client:
        first = await client.realtime(A.data_slice)
        fetched = anyio.current_time()
        assert await client.realtime(A.data_slice, max_age=0) is first
        await anyio.sleep(5.0)
        assert anyio.current_time() - fetched == 5.0  # exactly, on the virtual clock
        assert await client.realtime(A.data_slice, max_age=5.0) is first
        assert len(api.requests) == 1
        second = await client.realtime(A.data_slice, max_age=0)  # 5 s old: asks again
        assert await client.realtime(A.data_slice, max_age=0) is second
        await anyio.sleep(5.001)
        third = await client.realtime(A.data_slice, max_age=5.0)
    assert [first.connected, second.connected, third.connected] == [1, 2, 3]
    times = [when - fetched for when, _ in api.requests]
    assert times == pytest.approx([0.0, 5.0, 10.001], abs=CLOCK_SLACK)


async def test_max_age_is_fed_by_the_poller_and_realtime_many() -> None:
    """A handler with max_age reads what keep_fresh fetched; realtime_many shares the same."""
    api = FakeAPI()
    async with make_polling_client(api) as client:
        async with client.keep_fresh([A], interval=10.0) as fresh:
            snapshot = await fresh.wait(A)
            requests = len(api.requests)
            assert await client.realtime(A.data_slice, max_age=10.0) is snapshot.stats
            many = await client.realtime_many([A, A, B], max_age=10.0)
        assert [s.stats is snapshot.stats for s in many] == [True, True, False]
        assert len(api.requests) == requests + 1  # only B
        fetched = await client.snapshot(B, max_age=1.0)
        assert fetched.stats is many[2].stats


async def test_errors_are_never_answered_from_memory() -> None:
    """A failed call leaves nothing to reuse: the next call with max_age asks again."""
    api = FakeAPI()
    api.answers[A.data_slice] = lambda nth, now: (
        httpx.Response(503) if nth == 0 else realtime_response(7)
    )
    async with make_polling_client(api, max_retries=0) as client:
        with pytest.raises(ServerError):
            await client.realtime(A.data_slice, max_age=60)
        assert (await client.realtime(A.data_slice, max_age=60)).connected == 7
    assert len(api.requests) == 2


async def test_recent_answers_are_bounded() -> None:
    """Only the latest answers of the last ANSWERS_KEPT targets are kept."""
    api = FakeAPI()
    targets = [Target(f"{index:024x}") for index in range(ANSWERS_KEPT + 1)]
    async with make_polling_client(api) as client:
        for target in targets:
            await client.realtime(target.data_slice)
        assert len(client._recent) == ANSWERS_KEPT
        await client.realtime(targets[-1].data_slice, max_age=60)  # kept
        await client.realtime(targets[0].data_slice, max_age=60)  # the oldest: dropped
    assert len(api.requests) == ANSWERS_KEPT + 2


@pytest.mark.parametrize("max_age", [-1, float("nan"), "5", True])
async def test_max_age_must_be_a_number_of_seconds(max_age: object) -> None:
    """A max_age that is not 0 or more seconds is refused before anything is sent."""
    api = FakeAPI()
    async with make_polling_client(api) as client:
        with pytest.raises(ConfigurationError, match="max_age must be 0 or more seconds"):
            await client.realtime(A.data_slice, max_age=max_age)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="max_age"):
            await client.realtime_many([A], max_age=max_age)  # type: ignore[arg-type]
    assert api.requests == []
