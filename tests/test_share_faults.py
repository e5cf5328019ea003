"""One poller for many processes when Redis or the network misbehaves (``RedisShare``).

A real redis-server; the process that polls reaches it through a proxy of the test's own,
which can hang its connections (a partition), while the other reaches it directly.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
import redis.asyncio
from redis_support import ON_ASYNCIO, RedisServer

from wmspanel_async import RedisUnavailableError, Snapshot, Target, WMSPanelClient
from wmspanel_async._wire import dump_snapshot, target_key
from wmspanel_async.redis import RedisShare
from wmspanel_async.testing import Account, Simulator

pytestmark = [ON_ASYNCIO, pytest.mark.anyio]

LEASE = 1.5
INTERVAL = 0.5


class Partition:
    """A TCP proxy to Redis whose connections can be hung, both ways, and healed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.healed = anyio.Event()
        self.healed.set()

    def cut(self) -> None:
        self.healed = anyio.Event()

    def heal(self) -> None:
        self.healed.set()

    async def _pump(self, source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream) -> None:
        try:
            async for data in source:
                await self.healed.wait()  # a cut holds every byte back, as a dead link does
                await sink.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            await sink.aclose()

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        async with client, await anyio.connect_tcp("127.0.0.1", self.port) as server:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(self._pump, client, server)
                task_group.start_soon(self._pump, server, client)


@asynccontextmanager
async def partition_to(redis_server: RedisServer) -> AsyncIterator[tuple[Partition, str]]:
    """A partition-able proxy to ``redis_server``, and the Redis URL through it."""
    partition = Partition(redis_server.port)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, partition._handle)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        yield partition, f"redis://127.0.0.1:{port}/0"
        partition.heal()
        task_group.cancel_scope.cancel()


def busiest_second(times: list[float]) -> int:
    """The most requests in any window of one second."""
    return max(sum(1 for t in times if start <= t < start + 1) for start in times)


async def test_a_partitioned_leader_stops_before_its_lease_can_expire(
    redis_server: RedisServer,
) -> None:
    """The leader's link to Redis hangs: it stops polling, the other takes over, never both.

    3 targets at 0.5 s are 6 polls a second: through the partition no second has more than
    one poller's schedule (within 25 %), and the longest gap is under two leases.
    """
    simulator = Simulator([Account.sample()])
    targets = [Target(data_slice.id) for data_slice in simulator.account.slices[:3]]
    async with (
        partition_to(redis_server) as (partition, proxied_url),
        RedisShare.from_url(proxied_url, lease=LEASE) as leader_share,
        RedisShare.from_url(redis_server.url, lease=LEASE) as follower_share,
        simulator.client(daily_limit=10**7) as leader_client,
        simulator.client(daily_limit=10**7) as follower_client,
        leader_client.keep_fresh(targets, interval=INTERVAL, share=leader_share) as leader,
    ):
        with anyio.fail_after(5):
            await leader.wait(targets[0])
        assert leader.stats.leading
        async with follower_client.keep_fresh(
            targets, interval=INTERVAL, share=follower_share
        ) as follower:
            with anyio.fail_after(5):
                await follower.wait(targets[0])
            assert not follower.stats.leading
            partition.cut()
            cut_at = anyio.current_time()
            started = len(simulator.requests)
            with anyio.fail_after(4 * LEASE):
                await follower.wait(targets[0], newer_than=follower.get(targets[0]))
                while not follower.stats.leading:  # noqa: ASYNC110 - no event tells it
                    await anyio.sleep(0.01)
            took_over_after = anyio.current_time() - cut_at
            # Watch one more lease of polling (3 intervals), the partition still there.
            with anyio.fail_after(2 * LEASE):
                for _ in range(3):
                    await follower.wait(targets[0], newer_than=follower.get(targets[0]))
            assert not leader.stats.leading
            during = [r.at.timestamp() for r in list(simulator.requests)[started:]]
    assert took_over_after < 2 * LEASE
    assert busiest_second(during) <= 6 * 1.25
    assert max(b - a for a, b in itertools.pairwise(during)) < 2 * LEASE


async def test_a_lease_taken_by_another_cannot_be_renewed_by_its_old_holder(
    redis_server: RedisServer,
) -> None:
    """Renewal checks that the lease is still ours, not that some lease exists."""
    async with (
        RedisShare.from_url(redis_server.url, lease=LEASE) as share,
        redis.asyncio.Redis.from_url(redis_server.url) as connection,
    ):
        old, new = share.session("account", ["t"]), share.session("account", ["t"])
        assert await old.take_lease()
        assert not await new.take_lease()
        await connection.delete(old.lease_key)  # expired, as after a long pause
        assert await new.take_lease()
        assert not await old.renew_lease()
        assert await new.renew_lease()
        assert new.generation > old.generation
        # Nor may the old holder publish, or give the new holder's lease up.
        assert not await old.publish("t", "{}")
        await old.release_lease()
        assert await connection.exists(new.lease_key) == 1


async def test_a_follower_that_starts_later_gets_every_target_at_once(
    redis_server: RedisServer,
) -> None:
    """The latest snapshot of each of the leader's targets is there at a follower's start."""
    simulator = Simulator([Account.sample()])
    targets = [Target(data_slice.id) for data_slice in simulator.account.slices[:3]]
    async with (
        RedisShare.from_url(redis_server.url, lease=LEASE) as first_share,
        RedisShare.from_url(redis_server.url, lease=LEASE) as second_share,
        simulator.client(daily_limit=10**7) as first_client,
        simulator.client(daily_limit=10**7) as second_client,
        first_client.keep_fresh(
            targets, interval=60.0, share=first_share, first_poll_now=True
        ) as leader,
    ):
        with anyio.fail_after(5):
            for target in targets:
                await leader.wait(target)
        async with second_client.keep_fresh(targets, interval=60.0, share=second_share) as late:
            with anyio.fail_after(1):
                got = [await late.wait(target) for target in targets]
            assert got == [leader.get(target) for target in targets]
            assert late.stats.polls == 0


async def test_a_leader_that_leaves_hands_over_at_once(redis_server: RedisServer) -> None:
    """Leaving keep_fresh() gives the lease up: the follower leads well within one lease."""
    simulator = Simulator([Account.sample()])
    target = Target(simulator.account.slices[0].id)
    lease = 9.0  # the follower tries to take it every 3 s; it would expire after 9
    leads, leave = anyio.Event(), anyio.Event()

    async def lead_then_leave(client: WMSPanelClient, share: RedisShare) -> None:
        async with client.keep_fresh([target], interval=INTERVAL, share=share) as fresh:
            with anyio.fail_after(5):
                await fresh.wait(target)
            assert fresh.stats.leading
            leads.set()
            await leave.wait()

    async with (
        RedisShare.from_url(redis_server.url, lease=lease) as first_share,
        RedisShare.from_url(redis_server.url, lease=lease) as second_share,
        simulator.client(daily_limit=10**7) as first_client,
        simulator.client(daily_limit=10**7) as second_client,
        anyio.create_task_group() as task_group,
    ):
        task_group.start_soon(lead_then_leave, first_client, first_share)
        await leads.wait()
        async with second_client.keep_fresh(
            [target], interval=INTERVAL, share=second_share
        ) as second:
            with anyio.fail_after(5):
                await second.wait(target)
            assert not second.stats.leading
            leave.set()
            left_at = anyio.current_time()
            with anyio.fail_after(lease):
                while not second.stats.leading:  # noqa: ASYNC110 - no event tells it
                    await anyio.sleep(0.01)
            took_over_after = anyio.current_time() - left_at
    assert took_over_after <= lease / 3 + 0.5  # at its next try, not at the lease's expiry


async def test_followers_refuse_what_a_deposed_leader_published(
    redis_server: RedisServer,
) -> None:
    """A snapshot of an older lease's generation is not taken, whenever it arrives."""
    simulator = Simulator([Account.sample()])
    target = Target(simulator.account.slices[0].id)
    async with (
        RedisShare.from_url(redis_server.url, lease=LEASE) as first_share,
        RedisShare.from_url(redis_server.url, lease=LEASE) as second_share,
        simulator.client(daily_limit=10**7) as first_client,
        simulator.client(daily_limit=10**7) as second_client,
        first_client.keep_fresh([target], interval=INTERVAL, share=first_share) as first,
        second_client.keep_fresh([target], interval=INTERVAL, share=second_share) as second,
        redis.asyncio.Redis.from_url(redis_server.url) as connection,
    ):
        with anyio.fail_after(5):
            await first.wait(target)
            await second.wait(target)
        follower = second if first.stats.leading else first
        session = first_share.session(simulator.account.client_id, [target_key(target)])
        # Polled after the new leader's figures, but by a poller deposed since.
        later = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)
        stale = Snapshot(target=target, stats=None, error=None, fetched_at=later, latency=0)
        await connection.publish(session.channel, dump_snapshot(stale, generation=1))
        with anyio.fail_after(5):
            latest = await follower.wait(target, newer_than=follower.get(target))
        assert latest.fetched_at < later


async def test_every_process_reports_the_shared_pollers_figures(
    redis_server: RedisServer,
) -> None:
    """A follower's stats are the polling process's, and its counters never go back.

    The follower asked for another interval: it shows the one in force. When the leader
    leaves and the follower polls itself, its polls go on from the shared total.
    """
    simulator = Simulator([Account.sample()])
    target = Target(simulator.account.slices[0].id)
    leads, leave = anyio.Event(), anyio.Event()

    async def lead_then_leave(client: WMSPanelClient, share: RedisShare) -> None:
        async with client.keep_fresh([target], interval=0.1, share=share) as fresh:
            with anyio.fail_after(5):
                await fresh.wait(target)
            leads.set()
            await leave.wait()

    polls_seen: list[int] = []
    async with (
        RedisShare.from_url(redis_server.url, lease=LEASE) as first_share,
        RedisShare.from_url(redis_server.url, lease=LEASE) as second_share,
        simulator.client(daily_limit=10**7) as first_client,
        simulator.client(daily_limit=10**7) as second_client,
        anyio.create_task_group() as task_group,
    ):
        task_group.start_soon(lead_then_leave, first_client, first_share)
        await leads.wait()
        async with second_client.keep_fresh([target], interval=0.5, share=second_share) as second:
            with anyio.fail_after(5):
                # The figures come once a second: bounded polling for the first with polls.
                while second.stats.polls < 5:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            stats = second.stats
            assert not stats.leading
            assert (stats.interval, stats.effective_interval) == (0.1, 0.1)
            assert stats.quota.used >= stats.polls >= 5
            leave.set()
            with anyio.fail_after(4 * LEASE):
                while not (stats := second.stats).leading or stats.polls < polls_seen[0] + 3:
                    polls_seen.append(stats.polls)
                    await anyio.sleep(0.01)
            polls_seen.append(second.stats.polls)
            assert second.stats.interval == 0.5  # its own, now that it polls
    assert polls_seen == sorted(polls_seen)  # never back, through the takeover
    assert polls_seen[-1] >= polls_seen[0] + 3


async def test_a_lease_or_publication_met_by_an_outage_says_sharing_waits(
    redis_server: RedisServer,
) -> None:
    """The lease's and the snapshots' errors say the poller is not shared, not "nothing sent"."""
    async with RedisShare.from_url(redis_server.url, lease=LEASE) as share:
        session = share.session("account", ["t"])
        assert await session.take_lease()
        redis_server.stop()
        for attempt in (session.renew_lease, lambda: session.publish("t", "{}")):
            with pytest.raises(RedisUnavailableError) as caught:
                await attempt()
            message = str(caught.value)
            assert "the poller is not shared meanwhile" in message
            assert "sharing goes on once it does" in message
            assert "nothing was sent" not in message


async def test_followers_show_a_redis_outage_as_the_leader_does(
    redis_server: RedisServer,
) -> None:
    """Redis stops: every process's readers get the RedisUnavailableError, figures kept."""
    simulator = Simulator([Account.sample()])
    target = Target(simulator.account.slices[0].id)
    async with (
        RedisShare.from_url(redis_server.url, lease=LEASE) as first_share,
        RedisShare.from_url(redis_server.url, lease=LEASE) as second_share,
        simulator.client(daily_limit=10**7) as first_client,
        simulator.client(daily_limit=10**7) as second_client,
        first_client.keep_fresh([target], interval=INTERVAL, share=first_share) as first,
        second_client.keep_fresh([target], interval=INTERVAL, share=second_share) as second,
    ):
        with anyio.fail_after(5):
            await first.wait(target)
            last_figures = await second.wait(target)
        follower = second if first.stats.leading else first
        redis_server.stop()
        with anyio.fail_after(4 * LEASE):
            outage = await follower.wait(target, newer_than=follower.get(target))
            while not isinstance(outage.error, RedisUnavailableError):
                outage = await follower.wait(target, newer_than=outage)
        assert outage.stats is None
        # What this process was doing: not counting a call, so no "nothing was sent".
        assert "the poller is not shared meanwhile" in str(outage.error)
        assert "nothing was sent" not in str(outage.error)
        kept = follower.last_success(target)
        assert kept is not None
        assert kept.fetched_at >= last_figures.fetched_at
        redis_server.start()
