"""Ledgers: the day's calls counted in a file shared by processes, or in a real Redis.

The Redis tests run against a real ``redis-server`` on a loopback port (see
``redis_support``); redis-py's asyncio client runs on asyncio only, so they do too, and one
test pins what trio gets. The tests of several processes run real OS processes, each with
two clients, against the simulator on a real port, and count what reached it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import textwrap
from pathlib import Path

import anyio
import httpx
import pytest
from redis_support import FAST_SYNC, ON_ASYNCIO, RedisServer
from support import API_KEY, CLIENT_ID, NOON, A, FakeAPI, account_environment, python_script

from wmspanel_async import (
    ConfigurationError,
    FileLedger,
    MemoryLedger,
    QuotaExhaustedError,
    QuotaStatus,
    RedisUnavailableError,
    Target,
    WMSPanelClient,
)
from wmspanel_async.redis import RedisLedger
from wmspanel_async.testing import Account, Simulator, serve

# -- the file ledger -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_file_ledger_survives_restarts(tmp_path: Path) -> None:
    """A new ledger on the same file goes on counting the same day; no temp file is left."""
    path = tmp_path / "quota.json"
    ledger = FileLedger(path)
    for _ in range(3):
        await ledger.reserve(CLIENT_ID, 100, NOON)
    assert json.loads(path.read_text()) == {"days": {"2024-05-01": {CLIENT_ID: 3}}}
    again = FileLedger(path)
    assert again.status(CLIENT_ID, 100, NOON).used == 3  # read when made, before any call
    assert (await again.refresh(CLIENT_ID, 100, NOON)).used == 3
    assert again.status(CLIENT_ID, 100, NOON).used == 3
    assert sorted(os.listdir(tmp_path)) == ["quota.json", "quota.json.lock"]
    assert repr(again) == f"<FileLedger {str(path)!r}>"


@pytest.mark.anyio
async def test_file_ledger_of_another_day_starts_at_zero(tmp_path: Path) -> None:
    """A count saved yesterday does not count today; the file keeps only today's."""
    path = tmp_path / "quota.json"
    path.write_text(json.dumps({"days": {"2024-04-30": {CLIENT_ID: 14_000}}}))
    ledger = FileLedger(path)
    assert (await ledger.refresh(CLIENT_ID, 15_000, NOON)).used == 0
    assert (await ledger.reserve(CLIENT_ID, 15_000, NOON)).used == 1
    assert json.loads(path.read_text()) == {"days": {"2024-05-01": {CLIENT_ID: 1}}}


@pytest.mark.anyio
async def test_file_ledger_status_shows_the_new_day_at_midnight_utc(
    tmp_path: Path, local_time_zone: str
) -> None:
    """status() at 00:00 UTC reads the new day, used 0, with no call or refresh in between.

    Both for a count this ledger made and for one read from the file when the ledger was
    made; ``now`` is given in the local zone, and the file is left as it was (no I/O).
    """
    path = tmp_path / "quota.json"
    last_moment = dt.datetime(2024, 5, 1, 23, 59, 59, 999999, tzinfo=dt.timezone.utc)
    midnight = dt.datetime(2024, 5, 2, tzinfo=dt.timezone.utc)
    counting = FileLedger(path)
    for _ in range(3):
        await counting.reserve(CLIENT_ID, 10, last_moment)
    saved = path.read_text()
    for ledger in (counting, FileLedger(path)):
        assert ledger.status(CLIENT_ID, 10, last_moment.astimezone()) == QuotaStatus(
            used=3, remaining=7, limit=10, resets_at=midnight
        )
        assert ledger.status(CLIENT_ID, 10, midnight.astimezone()) == QuotaStatus(
            used=0, remaining=10, limit=10, resets_at=midnight + dt.timedelta(days=1)
        )
    assert path.read_text() == saved


@pytest.mark.anyio
@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"days": 3}'])
async def test_unreadable_file_is_ignored_with_a_warning(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A file that is not a day's count starts the day at zero, saying so."""
    path = tmp_path / "quota.json"
    path.write_text(content)
    assert (await FileLedger(path).refresh(CLIENT_ID, 100, NOON)).used == 0
    assert "quota file" in caplog.text


def test_a_day_that_is_no_date_is_ignored(tmp_path: Path) -> None:
    """A count filed under something that is not a date counts for no day."""
    path = tmp_path / "quota.json"
    path.write_text(json.dumps({"days": {"someday": {CLIENT_ID: 3}}}))
    assert FileLedger(path).status(CLIENT_ID, 100, NOON).used == 0


def test_unwritable_file_is_a_configuration_error(tmp_path: Path) -> None:
    """A quota file in a missing folder is refused when the ledger is made."""
    with pytest.raises(ConfigurationError, match="cannot write the quota file"):
        FileLedger(tmp_path / "missing" / "quota.json")


@pytest.mark.anyio
async def test_file_failing_later_keeps_counting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file that cannot be written any more is warned about once; counting goes on."""
    path = tmp_path / "quota.json"
    ledger = FileLedger(path)
    await ledger.reserve(CLIENT_ID, 100, NOON)
    path.unlink()
    path.mkdir()  # os.replace() onto a folder fails
    await ledger.reserve(CLIENT_ID, 100, NOON)
    await ledger.reserve(CLIENT_ID, 100, NOON)
    assert ledger.status(CLIENT_ID, 100, NOON).used == 3
    # Reading the file back cannot lower what this process counted.
    assert (await ledger.refresh(CLIENT_ID, 100, NOON)).used == 3
    assert caplog.text.count("cannot save the quota file") == 1
    path.rmdir()
    await ledger.reserve(CLIENT_ID, 100, NOON)
    assert json.loads(path.read_text())["days"]["2024-05-01"][CLIENT_ID] == 4


@pytest.mark.anyio
async def test_two_file_ledgers_never_both_take_the_last_call(tmp_path: Path) -> None:
    """Two ledgers on one file, 60 reservations at once for 30 calls: exactly 30 pass."""
    path = tmp_path / "quota.json"
    ledgers = [FileLedger(path), FileLedger(path)]
    outcomes: list[bool] = []

    async def reserve(ledger: FileLedger) -> None:
        try:
            await ledger.reserve(CLIENT_ID, 30, NOON)
        except QuotaExhaustedError:
            outcomes.append(False)
        else:
            outcomes.append(True)

    async with anyio.create_task_group() as task_group:
        for index in range(60):
            task_group.start_soon(reserve, ledgers[index % 2])
    assert (outcomes.count(True), outcomes.count(False)) == (30, 30)
    assert (await ledgers[0].refresh(CLIENT_ID, 30, NOON)).used == 30


@pytest.mark.anyio
async def test_a_memory_ledger_counts_each_account_apart() -> None:
    """Counts are kept per client id."""
    ledger = MemoryLedger()
    await ledger.reserve("one", 1, NOON)
    with pytest.raises(QuotaExhaustedError, match="budget of 1 calls is spent"):
        await ledger.reserve("one", 1, NOON)
    assert (await ledger.reserve("two", 1, NOON)).used == 1


@pytest.mark.anyio
async def test_per_user_keys_of_one_account_spend_one_limit() -> None:
    """Clients of two client ids given one ``account`` are counted together, and refused."""
    account = Account.sample()
    simulator = Simulator([account])
    ledger = MemoryLedger()
    slice_id = account.slices[0].id
    async with (
        simulator.client(ledger=ledger, daily_limit=3, account="acme") as first,
        simulator.client(ledger=ledger, daily_limit=3, account="acme") as second,
        simulator.client(ledger=ledger, daily_limit=3) as alone,
    ):
        first.client_id = "per-user-1"  # as two per-user keys would have
        second.client_id = "per-user-2"
        await first.realtime(slice_id)
        await second.realtime(slice_id)
        await first.realtime(slice_id)
        with pytest.raises(QuotaExhaustedError):
            await second.realtime(slice_id)
        assert (first.account, first.quota.used, second.quota.used) == ("acme", 3, 3)
        assert (alone.account, alone.quota.used) == (account.client_id, 0)
    assert len(simulator.requests) == 3
    with pytest.raises(ConfigurationError, match="account must be a non-empty name"):
        WMSPanelClient(CLIENT_ID, API_KEY, account="")


def test_the_client_takes_one_ledger() -> None:
    """ledger and quota_file together, or a ledger that is none, are refused."""
    with pytest.raises(ConfigurationError, match="either ledger or quota_file"):
        WMSPanelClient(CLIENT_ID, API_KEY, ledger=MemoryLedger(), quota_file="q.json")
    with pytest.raises(ConfigurationError, match="ledger must be a Ledger"):
        WMSPanelClient(CLIENT_ID, API_KEY, ledger="redis://localhost")  # type: ignore[arg-type]


# -- the Redis ledger ----------------------------------------------------------------------


async def redis_keys(url: str) -> dict[str, int]:
    """Every key in the Redis at ``url`` with its time to live."""
    import redis.asyncio

    async with redis.asyncio.Redis.from_url(url) as connection:
        keys = [key.decode() async for key in connection.scan_iter()]
        return {key: await connection.ttl(key) for key in keys}


@ON_ASYNCIO
@pytest.mark.anyio
async def test_redis_ledger_counts_and_refuses_without_counting(
    redis_server: RedisServer,
) -> None:
    """Up to the limit each call counts one; beyond it, refused and not counted."""
    async with RedisLedger.from_url(redis_server.url, sync_every=FAST_SYNC) as ledger:
        assert [(await ledger.reserve(CLIENT_ID, 3, NOON)).used for _ in range(3)] == [1, 2, 3]
        for _ in range(2):
            with pytest.raises(QuotaExhaustedError, match=r"spent \(counted in Redis\)"):
                await ledger.reserve(CLIENT_ID, 3, NOON)
        status = ledger.status(CLIENT_ID, 3, NOON)
        assert (status.used, status.remaining) == (3, 0)
        now = dt.datetime.now(dt.timezone.utc)
        assert status.resets_at == dt.datetime.combine(
            now.date() + dt.timedelta(days=1), dt.time(), dt.timezone.utc
        )
        assert repr(ledger) == f"<RedisLedger {redis_server.url}>"
    keys = await redis_keys(redis_server.url)
    day = int(now.timestamp() // 86400)
    assert list(keys) == [f"wmspanel:{{{CLIENT_ID}}}:calls:{day}"]
    until_midnight = (day + 1) * 86400 - now.timestamp()
    assert until_midnight < keys[f"wmspanel:{{{CLIENT_ID}}}:calls:{day}"] <= until_midnight + 86401


@ON_ASYNCIO
@pytest.mark.anyio
async def test_redis_ledger_rolls_over_at_midnight_by_redis_clock(
    redis_server: RedisServer,
) -> None:
    """The day turns at 00:00 UTC of Redis's clock (shifted here), whatever the client says."""
    async with RedisLedger.from_url(redis_server.url, sync_every=FAST_SYNC) as probe:
        await probe.refresh(CLIENT_ID, 10, NOON)
        redis_now = probe.status(CLIENT_ID, 10, NOON).resets_at.timestamp() - 86400
    now = dt.datetime.now(dt.timezone.utc).timestamp()
    to_23_59_58 = (now // 86400 + 1) * 86400 - 2 - now  # Redis's clock at 23:59:58 UTC
    connection = RedisLedger.from_url(redis_server.url, sync_every=FAST_SYNC)._redis
    before = RedisLedger(connection, url=redis_server.url, _clock_offset=to_23_59_58)
    after = RedisLedger(connection, url=redis_server.url, _clock_offset=to_23_59_58 + 4)
    for _ in range(2):
        await before.reserve(CLIENT_ID, 10, NOON)  # the client's clock says noon: ignored
    assert (await before.reserve(CLIENT_ID, 10, NOON)).used == 3
    assert (await after.reserve(CLIENT_ID, 10, NOON)).used == 1  # 00:00:02, the next day
    assert (await before.refresh(CLIENT_ID, 10, NOON)).used == 3  # yesterday's is kept
    await connection.aclose()
    assert redis_now == now // 86400 * 86400  # the probe read Redis's own day


@ON_ASYNCIO
@pytest.mark.anyio
async def test_redis_down_is_a_typed_error_and_nothing_is_sent(
    redis_server: RedisServer,
) -> None:
    """Redis stopped: calls fail at once with RedisUnavailableError, unsent; then recover."""
    simulator = Simulator([Account.sample()])
    async with (
        RedisLedger.from_url(redis_server.url, sync_every=FAST_SYNC) as ledger,
        simulator.client(ledger=ledger, max_retries=0) as client,
    ):
        slice_id = simulator.account.slices[0].id
        await client.realtime(slice_id)
        redis_server.stop()
        started = anyio.current_time()
        with pytest.raises(RedisUnavailableError) as caught:
            await client.realtime(slice_id)
        assert anyio.current_time() - started < 1.5
        assert caught.value.url == redis_server.url
        assert f"Redis at {redis_server.url} (counting a call) failed" in str(caught.value)
        assert "nothing was sent" in str(caught.value)
        assert len(simulator.requests) == 1
        redis_server.start()
        await client.realtime(slice_id)
        assert len(simulator.requests) == 2
        # A Redis that lost the count gets it back: this process wrote its entry back.
        assert (await client.refresh_quota()).used == 2


@ON_ASYNCIO
@pytest.mark.anyio
async def test_a_redis_password_is_never_shown(redis_server: RedisServer) -> None:
    """A URL with a password: errors name Redis by its URL without the password."""
    url = f"redis://reader:s3cr3t-pa55@127.0.0.1:{redis_server.port}/0"
    async with RedisLedger.from_url(url, sync_every=FAST_SYNC) as ledger:
        assert "s3cr3t" not in repr(ledger)
        with pytest.raises(RedisUnavailableError) as caught:
            await ledger.reserve(CLIENT_ID, 10, NOON)
    assert caught.value.url == f"redis://reader@127.0.0.1:{redis_server.port}/0"
    assert "s3cr3t" not in str(caught.value)
    assert "s3cr3t" not in str(RedisLedger.from_url("redis://h/0?password=s3cr3t-pa55"))


def test_a_bad_redis_url_is_a_configuration_error() -> None:
    """Something that is not a Redis URL is refused when the ledger is made."""
    with pytest.raises(ConfigurationError, match="is not a Redis URL"):
        RedisLedger.from_url("http://127.0.0.1:6379")


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_the_redis_ledger_refuses_trio_clearly() -> None:
    """redis-py is asyncio-only: on trio, a clear ConfigurationError, nothing sent."""
    api = FakeAPI()
    ledger = RedisLedger.from_url("redis://127.0.0.1:1/0")
    async with WMSPanelClient(
        CLIENT_ID, API_KEY, transport=httpx.MockTransport(api), ledger=ledger
    ) as client:
        with pytest.raises(ConfigurationError, match="runs on asyncio only, and this is trio"):
            await client.realtime(A.data_slice)
    assert api.requests == []


@ON_ASYNCIO
@pytest.mark.anyio
async def test_clients_read_what_other_processes_spent(redis_server: RedisServer) -> None:
    """client.quota shows the shared count after a call or a refresh; a poller pauses for it."""
    simulator = Simulator([Account.sample()])
    slice_id = simulator.account.slices[0].id
    async with (
        RedisLedger.from_url(redis_server.url, sync_every=FAST_SYNC) as first_ledger,
        RedisLedger.from_url(redis_server.url, sync_every=FAST_SYNC) as second_ledger,
        simulator.client(ledger=first_ledger, daily_limit=50) as first,
        simulator.client(ledger=second_ledger, daily_limit=50) as second,
    ):
        for _ in range(48):
            await first.realtime(slice_id)
        assert second.quota.used == 0  # nothing read yet
        assert (await second.refresh_quota()).used == 48
        assert second.quota.used == 48
        # 2 calls left, below the poller's 5 % reserve: it pauses at once, polling nothing.
        async with second.poll([A], interval=1.0) as snapshots:
            with anyio.fail_after(5):
                while not snapshots.stats.paused:  # noqa: ASYNC110 - no event tells a pause
                    await anyio.sleep(0.01)
        assert second.quota.used == 48


@ON_ASYNCIO
@pytest.mark.anyio
async def test_a_poller_carries_redis_errors_and_recovers(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis down: snapshots carry RedisUnavailableError; back up: figures again, unaided."""
    caplog.set_level(logging.ERROR)
    simulator = Simulator([Account.sample()])
    target_slice = simulator.account.slices[0]
    async with (
        RedisLedger.from_url(redis_server.url, sync_every=FAST_SYNC) as ledger,
        # Calls enough for 0.1 s all day: not stretched to 5.7 s, the test takes 3 s, not 12.
        simulator.client(ledger=ledger, daily_limit=10**7) as client,
        client.keep_fresh([Target(target_slice.id)], interval=0.1) as fresh,
    ):
        target = fresh.targets[0]
        good = await fresh.wait(target)
        redis_server.stop()
        with anyio.fail_after(10):
            failed = await fresh.wait(target, newer_than=good)
            while not isinstance(failed.error, RedisUnavailableError):
                failed = await fresh.wait(target, newer_than=failed)
        requests = len(simulator.requests)
        redis_server.start()
        with anyio.fail_after(10):
            back = await fresh.wait(target, newer_than=failed)
            while back.error is not None:
                back = await fresh.wait(target, newer_than=back)
        assert back.stats is not None
        assert len(simulator.requests) > requests
    assert "RedisUnavailableError" not in caplog.text  # an error of a target, not a crash


# -- several processes ---------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import anyio
    from wmspanel_async import FileLedger, QuotaExhaustedError, WMSPanelClient
    from wmspanel_async.redis import RedisLedger

    async def main():
        where = sys.argv[1]
        if where.startswith("redis"):
            ledger = RedisLedger.from_url(where, sync_every=0.05)
        else:
            ledger = FileLedger(where)
        outcomes = []

        async def hundred_calls():
            async with WMSPanelClient(ledger=ledger, daily_limit=400, max_retries=0) as client:
                for _ in range(100):
                    try:
                        await client.realtime(os.environ["SLICE_ID"])
                        outcomes.append("sent")
                    except QuotaExhaustedError:
                        outcomes.append("refused")

        async with ledger, anyio.create_task_group() as task_group:
            task_group.start_soon(hundred_calls)
            task_group.start_soon(hundred_calls)
        print(json.dumps(outcomes))

    anyio.run(main)
    """
)


async def four_processes_two_clients_each(
    where: str, directory: Path
) -> tuple[list[str], Simulator]:
    """Run the worker in 4 processes sharing the ledger at ``where``; return all outcomes."""
    account = Account.sample()
    simulator = Simulator([account])
    outcomes: list[str] = []
    async with serve(simulator) as server:
        env = account_environment(server.url, account)

        async def worker() -> None:
            command = [*python_script(directory, WORKER), where]
            done = await anyio.run_process(command, env=env, check=False)
            assert (done.returncode, done.stderr.decode()) == (0, "")
            outcomes.extend(json.loads(done.stdout))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as task_group:
                for _ in range(4):
                    task_group.start_soon(worker)
    return outcomes, simulator


@ON_ASYNCIO
@pytest.mark.anyio
async def test_four_processes_share_400_calls_in_redis(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """8 clients in 4 processes try 800 calls on a limit of 400: 400 reach the API."""
    outcomes, simulator = await four_processes_two_clients_each(redis_server.url, tmp_path)
    assert (outcomes.count("sent"), outcomes.count("refused")) == (400, 400)
    assert simulator.calls_today() == 400


@ON_ASYNCIO
@pytest.mark.anyio
async def test_four_processes_share_400_calls_in_a_file(tmp_path: Path) -> None:
    """The same with a FileLedger: the file lock lets exactly 400 through."""
    ledger = str(tmp_path / "quota.json")
    outcomes, simulator = await four_processes_two_clients_each(ledger, tmp_path)
    assert (outcomes.count("sent"), outcomes.count("refused")) == (400, 400)
    assert simulator.calls_today() == 400
