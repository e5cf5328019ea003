"""One keep_fresh() poller for many processes, through a real Redis (``RedisShare``).

redis-py's asyncio client runs on asyncio only, so these tests do (one pins what trio
gets). The takeover test runs three real OS processes against the simulator on a real port
and kills the one that polls.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import textwrap
from pathlib import Path

import anyio
import anyio.abc
import pytest
from redis_support import ON_ASYNCIO, RedisServer
from support import NOON, A, account_environment, gaps, python_script

from wmspanel_async import ConfigurationError, ServerError, Snapshot, Target
from wmspanel_async._wire import (
    WIRE_VERSION,
    WireFormatError,
    dump_snapshot,
    load_snapshot,
    target_key,
)
from wmspanel_async.redis import RedisShare
from wmspanel_async.testing import Account, Simulator, serve

LEASE = 1.0
INTERVAL = 0.2


# -- the wire format -----------------------------------------------------------------------


def test_snapshots_cross_as_versioned_json() -> None:
    """Figures and errors come back as they went, the error as the same class of ours."""
    error = ServerError("the API failed (503)", status_code=503, retry_after=2.0)
    sent = [
        Snapshot(
            target=Target(A.data_slice, stream="s"),
            stats=None,
            error=error,
            fetched_at=NOON,
            latency=0.25,
        ),
        Snapshot(target=A, stats=None, error=None, fetched_at=NOON, latency=0.0),
    ]
    for snapshot in sent:
        assert json.loads(dump_snapshot(snapshot))["v"] == WIRE_VERSION
    back = load_snapshot(dump_snapshot(sent[0]))
    assert isinstance(back.error, ServerError)
    assert (str(back.error), back.error.status_code, back.error.retry_after) == (
        "the API failed (503)",
        503,
        2.0,
    )
    assert (back.target, back.fetched_at, back.latency) == (sent[0].target, NOON, 0.25)
    assert load_snapshot(dump_snapshot(sent[1])) == sent[1]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"v": 1, "target": []}', "format 1 and this version of wmspanel-async reads format 2"),
        ('{"target": []}', "format None"),
        ("[]", "not a shared snapshot"),
        ('{"v": 2, "target": ["a"]}', "a malformed shared snapshot"),
    ],
)
def test_a_snapshot_of_another_version_is_refused_saying_so(text: str, says: str) -> None:
    """A reader of another version says so instead of misreading."""
    with pytest.raises(WireFormatError, match=says):
        load_snapshot(text)


# -- in one process ------------------------------------------------------------------------


@ON_ASYNCIO
@pytest.mark.anyio
async def test_two_readers_share_one_poller(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Two keep_fresh() of one account and targets: one polls, the other reads its figures."""
    caplog.set_level(logging.INFO, "wmspanel_async.poller")
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
            seen = await second.wait(target)
            for _ in range(5):
                seen = await second.wait(target, newer_than=seen)
            mine = await first.wait(target)
        leaders = [first.stats.leading, second.stats.leading]
        assert sorted(leaders) == [False, True]
        reader = second if leaders[0] else first
        leader = first if leaders[0] else second
        assert len(simulator.requests) == leader.stats.polls  # the reader sent none
        read, polled_last = reader.get(target), leader.get(target)
        assert read is not None
        assert polled_last is not None
        assert read.stats is not None
        # What the reader has is what the poller published: at most one poll behind.
        assert 0 <= (polled_last.fetched_at - read.fetched_at).total_seconds() <= INTERVAL * 2
        requests = len(simulator.requests)
        with anyio.fail_after(5):
            while len(simulator.requests) < requests + 10:  # noqa: ASYNC110 - bounded polling
                await anyio.sleep(0.01)
        steady = [r.at.timestamp() for r in list(simulator.requests)[requests : requests + 10]]
    # One poller's schedule, not two: ten polls took nine intervals (less a first one late).
    assert steady[-1] - steady[0] >= 8.5 * INTERVAL
    assert mine.stats is not None
    assert "polling for every process that shares these targets" in caplog.text


@ON_ASYNCIO
@pytest.mark.anyio
async def test_targets_are_fixed_with_a_share(redis_server: RedisServer) -> None:
    """watch(), unwatch() and drop_unread_after are refused with a share, saying why."""
    simulator = Simulator([Account.sample()])
    async with (
        RedisShare.from_url(redis_server.url) as share,
        simulator.client() as client,
    ):
        with pytest.raises(ConfigurationError, match="drop_unread_after cannot be used"):
            client.keep_fresh([A], share=share, drop_unread_after=3)
        with pytest.raises(ConfigurationError, match="share must be a RedisShare"):
            client.keep_fresh([A], share="redis://")  # type: ignore[arg-type]
        async with client.keep_fresh([A], share=share) as fresh:
            with pytest.raises(ConfigurationError, match=r"watch\(\) is not available"):
                fresh.watch(Target("b" * 24))
            with pytest.raises(ConfigurationError, match=r"unwatch\(\) is not available"):
                fresh.unwatch(A)
    with pytest.raises(ConfigurationError, match="lease must be 1 or more seconds"):
        RedisShare.from_url(redis_server.url, lease=0.5)
    assert (
        repr(RedisShare.from_url("redis://:pw@h:1/0", lease=3))
        == "<RedisShare redis://h:1/0 lease=3>"
    )


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_a_share_refuses_trio_clearly() -> None:
    """redis-py is asyncio-only: entering keep_fresh(share=...) on trio says so."""
    simulator = Simulator([Account.sample()])
    async with simulator.client() as client:
        fresh = client.keep_fresh([A], share=RedisShare.from_url("redis://127.0.0.1:1/0"))
        with pytest.raises(ConfigurationError, match="asyncio only, and this is trio"):
            await fresh.__aenter__()


@ON_ASYNCIO
@pytest.mark.anyio
async def test_a_reader_of_another_version_says_so(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A snapshot published in another format is ignored, with one warning saying why."""
    import redis.asyncio

    simulator = Simulator([Account.sample()])
    async with (
        RedisShare.from_url(redis_server.url, lease=LEASE) as share,
        simulator.client(daily_limit=10**7) as client,
    ):
        session = share.session(client.client_id, [target_key(A)])
        # Another process holds the lease, so this one only reads.
        async with redis.asyncio.Redis.from_url(redis_server.url) as other:
            await other.set(session.lease_key, "another process", px=60_000)
            async with client.keep_fresh([A], share=share) as fresh:
                with anyio.fail_after(5):
                    # Redis tells no event of a subscription: bounded polling.
                    while (await other.pubsub_numsub(session.channel))[0][1] == 0:  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                    for _ in range(2):
                        await other.publish(session.channel, '{"v": 99}')
                    await other.publish(
                        session.channel,
                        dump_snapshot(
                            Snapshot(target=A, stats=None, error=None, fetched_at=NOON, latency=0)
                        ),
                    )
                    snapshot = await fresh.wait(A)
    assert snapshot.fetched_at == NOON
    assert caplog.text.count("reads format 2") == 1


# -- several processes ---------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import anyio
    from wmspanel_async import Target, WMSPanelClient
    from wmspanel_async.redis import RedisShare

    async def main():
        target = Target(os.environ["SLICE_ID"])
        share = RedisShare.from_url(sys.argv[1], lease=float(sys.argv[2]))
        async with share, WMSPanelClient(daily_limit=10**7) as client:
            interval = float(sys.argv[3])
            async with client.keep_fresh([target], interval=interval, share=share) as fresh:
                leading = None
                while True:
                    if fresh.stats.leading != leading:
                        leading = fresh.stats.leading
                        print(json.dumps({"pid": os.getpid(), "leading": leading}), flush=True)
                    await anyio.sleep(0.02)

    anyio.run(main)
    """
)


async def read_json_lines(process: anyio.abc.Process, lines: list[dict[str, object]]) -> None:
    """Append each JSON line the process prints."""
    assert process.stdout is not None
    buffer = b""
    async for chunk in process.stdout:
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            lines.append(json.loads(line))


@ON_ASYNCIO
@pytest.mark.anyio
async def test_three_processes_one_poller_and_a_takeover(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """3 processes: one polls; killed, another takes over within two leases, alone."""
    account = Account.sample()
    simulator = Simulator([account])
    lines: list[dict[str, object]] = []
    async with serve(simulator) as server:
        env = account_environment(server.url, account)
        command = [*python_script(tmp_path, WORKER), redis_server.url, str(LEASE), str(INTERVAL)]
        processes = [await anyio.open_process(command, env=env) for _ in range(3)]
        try:
            async with anyio.create_task_group() as task_group:
                for process in processes:
                    task_group.start_soon(read_json_lines, process, lines)

                def leaders() -> list[object]:
                    latest: dict[object, object] = {}
                    for line in lines:
                        latest[line["pid"]] = line["leading"]
                    return [pid for pid, leading in latest.items() if leading]

                with anyio.fail_after(15):
                    while len(leaders()) != 1:  # noqa: ASYNC110 - bounded polling of output
                        await anyio.sleep(0.02)
                first = leaders()[0]
                mark = len(simulator.requests)
                with anyio.fail_after(5):
                    while len(simulator.requests) < mark + 8:  # noqa: ASYNC110
                        await anyio.sleep(0.02)
                window = [r.at for r in list(simulator.requests)[mark : mark + 8]]
                killed_at = simulator.now()
                os.kill(int(str(first)), signal.SIGKILL)
                with anyio.fail_after(2 * LEASE + 1):
                    while not [pid for pid in leaders() if pid != first]:  # noqa: ASYNC110
                        await anyio.sleep(0.02)
                with anyio.fail_after(5):
                    while len([r for r in simulator.requests if r.at > killed_at]) < 10:  # noqa: ASYNC110
                        await anyio.sleep(0.02)
                after = [r.at for r in simulator.requests if r.at > killed_at]
                task_group.cancel_scope.cancel()
        finally:
            for process in processes:
                if process.returncode is None:
                    process.kill()
                with anyio.move_on_after(5):
                    await process.wait()
    steady = [when.timestamp() for when in window]
    assert len(steady) == 8
    assert all(gap > INTERVAL / 2 for gap in gaps(steady))  # one poller: one request a tick
    first_after = (after[0] - killed_at).total_seconds()
    assert first_after < 2 * LEASE + INTERVAL  # no gap longer than two leases
    later = [when.timestamp() for when in after[1:]]
    assert all(gap > INTERVAL / 2 for gap in gaps(later))  # no double polling after it
