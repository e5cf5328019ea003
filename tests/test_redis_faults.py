"""Sharing an account through Redis when Redis misbehaves: real redis-servers and processes.

What these pin: a Redis that loses the day's count (flushed, or killed and restarted without
persistence) never lets the processes take the account past its limit; its password is in
no text, chain or log record, whatever a server echoes; a server that is not Redis is a
typed error.
"""

from __future__ import annotations

import json
import logging
import textwrap
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest
import redis.asyncio
from redis_support import FAST_SYNC, ON_ASYNCIO, RedisServer
from support import CLIENT_ID, NOON, account_environment, python_script

from wmspanel_async import ConfigurationError, RedisUnavailableError, WMSPanelClient
from wmspanel_async.redis import RedisLedger
from wmspanel_async.testing import Account, Simulator, serve

pytestmark = [ON_ASYNCIO, pytest.mark.anyio]

# Each client calls until the day's calls are refused; a call Redis could not count (it
# was down) is not sent, and the client tries again.
WORKER = textwrap.dedent(
    """
    import json, os, sys
    import anyio
    from wmspanel_async import QuotaExhaustedError, RedisUnavailableError, WMSPanelClient
    from wmspanel_async.redis import RedisLedger

    async def main():
        outcomes = []

        async def call_until_refused(ledger):
            async with WMSPanelClient(ledger=ledger, daily_limit=int(sys.argv[2])) as client:
                while True:
                    try:
                        await client.realtime(os.environ["SLICE_ID"])
                        outcomes.append("sent")
                    except QuotaExhaustedError:
                        outcomes.append("refused")
                        return
                    except RedisUnavailableError:
                        outcomes.append("unavailable")
                        await anyio.sleep(0.02)  # Redis restarts: try again soon

        with anyio.fail_after(60):
            async with RedisLedger.from_url(sys.argv[1], sync_every=float(sys.argv[3])) as ledger:
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(call_until_refused, ledger)
                    task_group.start_soon(call_until_refused, ledger)
        print(json.dumps(outcomes))

    anyio.run(main)
    """
)

LIMIT = 500


async def spend_the_day_while(
    redis_server: RedisServer, directory: Path, fault: Callable[[], object]
) -> tuple[list[str], int]:
    """4 processes of 2 clients each spend the day's LIMIT; ``fault`` strikes mid-way.

    Returns every outcome and the calls the API received.
    """
    account = Account.sample()
    simulator = Simulator([account])
    outcomes: list[str] = []
    async with serve(simulator) as server:
        env = account_environment(server.url, account)
        command = [*python_script(directory, WORKER), redis_server.url, str(LIMIT), "0.05"]

        async def worker() -> None:
            done = await anyio.run_process(command, env=env, check=False)
            assert done.returncode == 0, done.stderr.decode()
            outcomes.extend(json.loads(done.stdout))

        with anyio.fail_after(90):
            async with anyio.create_task_group() as task_group:
                for _ in range(4):
                    task_group.start_soon(worker)
                # The simulator tells no event of a count: bounded polling (fail_after above).
                while simulator.calls_today() < LIMIT * 0.6:  # noqa: ASYNC110
                    await anyio.sleep(0.005)
                fault()
    return outcomes, simulator.calls_today()


async def test_a_flushed_count_is_written_back_and_the_limit_holds(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """FLUSHALL mid-day: the processes write their counts back; exactly LIMIT calls are sent."""
    import redis as sync_redis

    def flush() -> None:
        sync_redis.Redis.from_url(redis_server.url).flushall()

    outcomes, received = await spend_the_day_while(redis_server, tmp_path, flush)
    assert received == outcomes.count("sent") == LIMIT
    assert outcomes.count("refused") == 8


async def test_a_redis_restarted_empty_gets_the_count_back(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """kill -9 and a restart without persistence: never past the limit, not by one call."""

    def kill_and_restart() -> None:
        assert redis_server.process is not None
        redis_server.process.kill()
        redis_server.process.wait()
        redis_server.start()

    outcomes, received = await spend_the_day_while(redis_server, tmp_path, kill_and_restart)
    assert received == outcomes.count("sent")
    assert LIMIT - 8 <= received <= LIMIT  # calls counted as the server died are not sent
    assert outcomes.count("refused") == 8


async def test_a_lost_count_waits_for_the_recovery_window(redis_server: RedisServer) -> None:
    """A call that finds its own entry lost waits 2 x sync_every + 1 s, then counts on."""
    async with (
        RedisLedger.from_url(redis_server.url, sync_every=FAST_SYNC) as ledger,
        redis.asyncio.Redis.from_url(redis_server.url) as connection,
    ):
        started = anyio.current_time()
        await ledger.reserve(CLIENT_ID, 10, NOON)  # an empty Redis: a first use, it waits
        first_wait = anyio.current_time() - started
        await ledger.reserve(CLIENT_ID, 10, NOON)
        await connection.flushall()
        started = anyio.current_time()
        status = await ledger.reserve(CLIENT_ID, 10, NOON)
        second_wait = anyio.current_time() - started
    window = 2 * FAST_SYNC + 1
    assert window <= first_wait < window + 0.5
    assert window - 0.01 <= second_wait < window + 0.5
    assert status.used == 3  # the two counted before the loss were written back


async def test_a_dead_process_calls_are_restored_by_the_survivors(
    redis_server: RedisServer,
) -> None:
    """The entries of a ledger that is gone come back from the copies the others keep."""
    async with (
        redis.asyncio.Redis.from_url(redis_server.url) as connection,
        RedisLedger.from_url(redis_server.url, sync_every=FAST_SYNC) as survivor,
    ):
        async with RedisLedger.from_url(redis_server.url, sync_every=FAST_SYNC) as gone:
            for _ in range(4):
                await gone.reserve(CLIENT_ID, 10, NOON)
        await survivor.reserve(CLIENT_ID, 10, NOON)  # reads the gone ledger's entry
        await connection.flushall()
        assert (await survivor.reserve(CLIENT_ID, 10, NOON)).used == 6
        for _ in range(4):
            await survivor.reserve(CLIENT_ID, 10, NOON)
        with pytest.raises(Exception, match="daily budget of 10 calls is spent"):
            await survivor.reserve(CLIENT_ID, 10, NOON)


# -- servers that are not the Redis we expect --------------------------------------------


@asynccontextmanager
async def fake_redis(answer: Callable[[list[bytes]], bytes]) -> AsyncIterator[int]:
    """A loopback server that reads RESP commands and gives ``answer(command)``; its port."""

    async def serve_one(stream: anyio.abc.SocketStream) -> None:
        buffer = b""
        async with stream:
            while True:
                try:
                    buffer += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                while (command := _parse(buffer)) is not None:
                    words, buffer = command
                    await stream.send(answer(words))

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, serve_one)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        task_group.cancel_scope.cancel()


def _parse(buffer: bytes) -> tuple[list[bytes], bytes] | None:
    """Return one RESP array of bulk strings from ``buffer`` and the rest, or None if short."""
    if not buffer.startswith(b"*") or b"\r\n" not in buffer:
        return None
    head, rest = buffer.split(b"\r\n", 1)
    words = []
    for _ in range(int(head[1:])):
        if b"\r\n" not in rest:
            return None
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line[1:])
        if len(rest) < size + 2:
            return None
        words.append(rest[:size])
        rest = rest[size + 2 :]
    return words, rest


def echoing(words: list[bytes]) -> bytes:
    """Refuse every command as a Redis before 6 refuses HELLO, quoting its arguments."""
    quoted = " ".join(f"'{word.decode()}'" for word in words[1:])
    command = words[0].decode()
    return f"-ERR unknown command '{command}', with args beginning with: {quoted}\r\n".encode()


PASSWORD = "hunter2-is-the-password"


def texts_of(error: BaseException) -> str:
    """Everything a traceback or an error reporter shows of ``error``."""
    shown = "".join(traceback.format_exception(error))
    current: BaseException | None = error
    while current is not None:
        shown += repr(current.args) + repr(vars(current))
        current = current.__cause__ or current.__context__
    return shown


@pytest.mark.parametrize(
    "url_form",
    [
        "redis://:{password}@127.0.0.1:{port}/0",
        "redis://default:{password}@127.0.0.1:{port}/0",
        "redis://127.0.0.1:{port}/0?password={password}",
    ],
)
async def test_a_password_echoed_by_the_server_is_blanked(
    url_form: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that quotes AUTH or HELLO back: the password is in no text, chain or log."""
    caplog.set_level(logging.DEBUG)
    async with fake_redis(echoing) as port:
        url = url_form.format(password=PASSWORD, port=port)
        async with RedisLedger.from_url(url, sync_every=FAST_SYNC) as ledger:
            with pytest.raises(RedisUnavailableError) as caught:
                await ledger.reserve(CLIENT_ID, 10, NOON)
            assert "unknown command" in str(caught.value)
            assert PASSWORD not in texts_of(caught.value)
            assert caught.value.__cause__ is None
            assert caught.value.__context__ is None
            simulator = Simulator([Account.sample()])
            async with simulator.client(ledger=ledger) as client:
                assert PASSWORD not in repr(ledger) + repr(client)
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize("reply", [b"+OK\r\n", b":1\r\n"])
async def test_a_server_that_is_not_redis_is_a_typed_error(reply: bytes) -> None:
    """Answers no Redis gives make RedisUnavailableError, from a call and from a refresh."""
    async with fake_redis(lambda words: reply) as port:
        url = f"redis://127.0.0.1:{port}/0"
        async with (
            RedisLedger.from_url(url, sync_every=FAST_SYNC) as ledger,
            WMSPanelClient(CLIENT_ID, "k" * 32, ledger=ledger) as client,
        ):
            with pytest.raises(
                RedisUnavailableError, match=r"Redis at redis://127.0.0.1:\d+/0 \(.*\) failed"
            ):
                await client.refresh_quota()
            with pytest.raises(
                RedisUnavailableError, match=r"Redis at redis://127.0.0.1:\d+/0 \(.*\) failed"
            ):
                await ledger.reserve(CLIENT_ID, 10, NOON)


async def test_an_option_redis_py_does_not_know_is_a_configuration_error() -> None:
    """``?PASSWORD=x``: a ConfigurationError at once that shows no password, not a TypeError."""
    with pytest.raises(ConfigurationError, match="not lowercase") as caught:
        RedisLedger.from_url(f"redis://127.0.0.1:6379/0?PASSWORD={PASSWORD}")
    assert PASSWORD not in texts_of(caught.value)


async def test_an_outage_allowance_spends_a_share_of_what_is_left(
    redis_server: RedisServer,
) -> None:
    """With outage_allowance, each process spends at most its share while Redis is away.

    Two ledgers have spent 4 of 10: each may spend (10 - 4) // 2 = 3 alone, not the
    allowance of 5; the calls are written back when Redis answers again (here, restarted
    empty), and the day is spent: 10.
    """
    async with (
        RedisLedger.from_url(redis_server.url, sync_every=FAST_SYNC, outage_allowance=5) as one,
        RedisLedger.from_url(redis_server.url, sync_every=FAST_SYNC, outage_allowance=5) as two,
    ):
        for ledger in (one, one, two, two):
            await ledger.reserve(CLIENT_ID, 10, NOON)
        assert (await one.refresh(CLIENT_ID, 10, NOON)).used == 4  # each knows the other now
        redis_server.stop()
        for ledger in (one, two):
            spent = [(await ledger.reserve(CLIENT_ID, 10, NOON)).used for _ in range(3)]
            assert spent == [5, 6, 7]  # as each counts: 3 calls, not the allowance of 5
            with pytest.raises(RedisUnavailableError, match="nothing was sent"):
                await ledger.reserve(CLIENT_ID, 10, NOON)
        redis_server.start()
        with anyio.fail_after(10):  # the write-backs restore 10, after the recovery window
            with pytest.raises(Exception, match="daily budget of 10 calls is spent"):
                await one.reserve(CLIENT_ID, 10, NOON)
        assert (await two.refresh(CLIENT_ID, 10, NOON)).used == 10


async def test_without_an_allowance_nothing_is_spent_while_redis_is_away(
    redis_server: RedisServer,
) -> None:
    """The default: a call Redis cannot count is refused, and not sent."""
    async with RedisLedger.from_url(redis_server.url, sync_every=FAST_SYNC) as ledger:
        await ledger.reserve(CLIENT_ID, 10, NOON)
        redis_server.stop()
        with pytest.raises(RedisUnavailableError, match="nothing was sent"):
            await ledger.reserve(CLIENT_ID, 10, NOON)
    with pytest.raises(ConfigurationError, match="outage_allowance must be a whole number"):
        RedisLedger.from_url(redis_server.url, outage_allowance=-1)
