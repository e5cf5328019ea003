"""Redis, for processes that share one account: the call ledger, and the connection rules.

redis-py's asyncio client runs on asyncio only; under trio every use is refused with a
``ConfigurationError`` that says what to use instead. Every command waits at most
``REDIS_TIMEOUT`` seconds; a Redis that does not answer in time (or at all) is a
:class:`RedisUnavailableError` naming the URL without its password.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ._exceptions import ConfigurationError, RedisUnavailableError
from ._models import QuotaStatus
from ._quota import Ledger, exhausted, quota_status
from ._transport import require_asyncio

if TYPE_CHECKING:
    from redis.asyncio import Redis

_T = TypeVar("_T")

#: Seconds a Redis command may take before the call it was for fails.
REDIS_TIMEOUT = 1.0
#: The first part of every key we write, before the client id.
KEY_PREFIX = "wmspanel"
#: A day's count outlives its day by this much, for readers that come late.
_KEEP_AFTER_DAY = 3600

# Checks and counts in one step, on Redis's own clock, so that no two processes can both take
# the last call, and hosts with skewed clocks still share one day. ARGV: the daily limit,
# 1 to take a call (0 to read the count), and seconds added to Redis's clock (0, but tests).
_RESERVE = """
local t = redis.call('TIME')
local offset = tonumber(ARGV[3])
local now = tonumber(t[1]) + offset
local day = math.floor(now / 86400)
local key = KEYS[1] .. day
local used = tonumber(redis.call('GET', key) or '0')
local taken = 0
if ARGV[2] == '1' and used < tonumber(ARGV[1]) then
    used = redis.call('INCR', key)
    redis.call('EXPIREAT', key, math.floor((day + 1) * 86400 - offset) + tonumber(ARGV[4]))
    taken = 1
end
return {taken, used, math.floor(now), tonumber(t[2])}
"""


def shown_url(url: str) -> str:
    """Return ``url`` without its password (in the user part or the query)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user = f"{parts.username}@" if parts.username else ""
        netloc = user + netloc.rpartition("@")[2]
    query = urllib.parse.urlencode(
        [
            (name, value)
            for name, value in urllib.parse.parse_qsl(parts.query)
            if name.lower() != "password"
        ]
    )
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def connect(url: str, what: str) -> Redis:
    """Return a redis-py asyncio client for ``url``, with our timeouts.

    Raises:
        ConfigurationError: redis-py is not installed, or ``url`` is not a Redis URL.
    """
    try:
        import redis.asyncio  # noqa: PLC0415 - the `redis` extra
    except ImportError:
        msg = f'{what} needs redis-py: pip install "wmspanel-async[redis]"'
        raise ConfigurationError(msg) from None
    try:
        return redis.asyncio.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
        )
    except ValueError as exc:
        msg = f"{what}: {shown_url(url)!r} is not a Redis URL ({exc}); give redis://HOST:PORT/DB"
        raise ConfigurationError(msg) from None


async def command(url: str, what: str, call: Callable[[], Awaitable[_T]]) -> _T:
    """Run one Redis ``call`` within ``REDIS_TIMEOUT``, mapping its failures to ours.

    Raises:
        RedisUnavailableError: Redis did not answer, refused us, or failed.
        ConfigurationError: Not on asyncio.
    """
    require_asyncio(f"Redis ({what})", "count calls in a FileLedger or a MemoryLedger")
    from redis.exceptions import RedisError  # noqa: PLC0415 - loaded with the client

    try:
        with anyio.fail_after(REDIS_TIMEOUT):
            return await call()
    except (RedisError, OSError, TimeoutError) as exc:
        shown = shown_url(url)
        reason = str(exc) or "no answer in time"
        msg = (
            f"Redis at {shown} ({what}) failed: {type(exc).__name__}: {reason}; nothing was "
            "sent. Check that Redis runs and answers; calls go on once it does"
        )
        raise RedisUnavailableError(msg, url=shown) from exc


class _Seen:
    """A count as Redis last told it, with when, to tell the day without asking again."""

    __slots__ = ("at", "redis_now", "used")

    def __init__(self, used: int, redis_now: float) -> None:
        self.used = used
        self.redis_now = redis_now
        self.at = time.monotonic()

    def now(self) -> dt.datetime:
        """Redis's clock now, as estimated from when it was read."""
        seconds = self.redis_now + (time.monotonic() - self.at)
        return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


class RedisLedger(Ledger):
    """Counts calls in Redis, for every process of an account, wherever they run.

    Each call is one server-side script that checks the day's count against the limit and
    counts the call in one step: a refused call spends nothing, and no two processes can
    both take the last call. The day is Redis's own (its ``TIME``), so processes on hosts
    with skewed clocks still share one day; a day's key expires an hour after that day
    ends. Keys are ``wmspanel:{CLIENT_ID}:calls:DAY`` (never the API key). No safety margin
    is kept: the ``daily_limit`` given to the clients is what the script enforces.

    redis-py's asyncio client runs on asyncio only: under trio, a call is refused with
    :class:`ConfigurationError`.

    Make one with :meth:`from_url`, and close it (``async with`` or :meth:`aclose`); give it
    to each client as ``ledger=``. All clients sharing it must agree on ``daily_limit``.

    Args:
        redis: A redis-py asyncio client; it belongs to the ledger from now on.
        url: The URL shown in errors (never with a password).
    """

    def __init__(self, redis: Redis, *, url: str = "redis://", _clock_offset: float = 0.0) -> None:
        self._redis = redis
        self._url = shown_url(url)
        self._reserve = redis.register_script(_RESERVE)
        self._clock_offset = _clock_offset  # seconds added to Redis's clock: tests only
        self._seen: dict[str, _Seen] = {}

    @classmethod
    def from_url(cls, url: str) -> RedisLedger:
        """Connect (lazily: at the first call) to the Redis at ``url``.

        Args:
            url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS, or
                ``unix:///path/to/socket``.

        Raises:
            ConfigurationError: redis-py is not installed (``pip install
                "wmspanel-async[redis]"``), or ``url`` is not a Redis URL.
        """
        return cls(connect(url, "the Redis ledger"), url=url)

    def __repr__(self) -> str:
        return f"<RedisLedger {self._url}>"

    async def reserve(self, client_id: str, limit: int, now: dt.datetime) -> QuotaStatus:
        taken, status = await self._run(client_id, limit, take=True)
        if not taken:
            raise exhausted(limit, self._seen[client_id].now(), " (counted in Redis)")
        return status

    def status(self, client_id: str, limit: int, now: dt.datetime) -> QuotaStatus:
        seen = self._seen.get(client_id)
        if seen is None:
            return quota_status(0, limit, now)
        redis_now = seen.now()
        # A count read before 00:00 UTC (by Redis's clock) was of a day that has ended.
        same_day = redis_now.timestamp() // 86400 == seen.redis_now // 86400
        return quota_status(seen.used if same_day else 0, limit, redis_now)

    async def refresh(self, client_id: str, limit: int, now: dt.datetime) -> QuotaStatus:
        return (await self._run(client_id, limit, take=False))[1]

    async def aclose(self) -> None:
        """Close the connections to Redis."""
        await self._redis.aclose()

    async def _run(self, client_id: str, limit: int, *, take: bool) -> tuple[bool, QuotaStatus]:
        keys = [f"{KEY_PREFIX}:{{{client_id}}}:calls:"]
        args: list[Any] = [limit, int(take), self._clock_offset, _KEEP_AFTER_DAY]
        what = "counting a call" if take else "reading the day's count"
        taken, used, seconds, micros = await command(
            self._url, what, lambda: self._reserve(keys=keys, args=args)
        )
        seen = self._seen[client_id] = _Seen(int(used), int(seconds) + int(micros) / 1e6)
        return bool(taken), quota_status(seen.used, limit, seen.now())


# Renews the lease only if this process still holds it, so that a process that paused
# longer than the lease (and lost it) cannot take it back from the new holder.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisShare:
    """Lets every process of an account share one ``keep_fresh()`` poller through Redis.

    Give it to :meth:`WMSPanelClient.keep_fresh` as ``share=``. Of the processes that keep
    the same targets fresh for the same account, one polls: it holds a lease in Redis
    (renewed every third of ``lease`` while it lives), writes each snapshot to Redis and
    publishes it. The others serve ``get()``, ``wait()`` and ``subscribe()`` from what it
    publishes. When the polling process dies, another takes the lease within ``lease``
    seconds (plus a third, at most), and polls from then on.

    redis-py's asyncio client runs on asyncio only: under trio, entering ``keep_fresh()``
    with a share raises :class:`ConfigurationError`.

    Args:
        redis: A redis-py asyncio client; it belongs to the share from now on.
        url: The URL shown in errors and logs (never with a password).
        lease: Seconds the polling process holds the lease without renewing it.

    Raises:
        ConfigurationError: ``lease`` is not a number of seconds of 1 or more.
    """

    def __init__(self, redis: Redis, *, url: str = "redis://", lease: float = 10.0) -> None:
        if not (isinstance(lease, int | float) and lease >= 1):
            msg = f"lease must be 1 or more seconds, got {lease!r}"
            raise ConfigurationError(msg)
        self.lease: float = float(lease)
        self._redis = redis
        self._url = shown_url(url)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @classmethod
    def from_url(cls, url: str, *, lease: float = 10.0) -> RedisShare:
        """Connect (lazily: at first use) to the Redis at ``url``; see :class:`RedisShare`.

        Raises:
            ConfigurationError: redis-py is not installed (``pip install
                "wmspanel-async[redis]"``), ``url`` is not a Redis URL, or ``lease`` is
                out of range.
        """
        return cls(connect(url, "the Redis share"), url=url, lease=lease)

    def __repr__(self) -> str:
        return f"<RedisShare {self._url} lease={self.lease:g}>"

    async def __aenter__(self) -> RedisShare:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections to Redis."""
        await self._redis.aclose()

    def session(self, client_id: str, targets: list[str]) -> ShareSession:
        """Return the keys and calls of one set of targets of one account."""
        digest = hashlib.sha256("\n".join(sorted(targets)).encode()).hexdigest()[:16]
        return ShareSession(self, f"{KEY_PREFIX}:{{{client_id}}}:share:{digest}")


class ShareSession:
    """One account's shared poller of one set of targets: its lease, snapshots and channel."""

    def __init__(self, share: RedisShare, prefix: str) -> None:
        self.share: RedisShare = share
        self.url: str = share._url
        self.lease_key: str = f"{prefix}:lease"
        self.snapshots_key: str = f"{prefix}:snapshots"
        self.channel: str = f"{prefix}:published"
        self.token: str = secrets.token_hex(8)  # tells this process's lease from others'

    async def _run(self, what: str, call: Callable[[], Awaitable[_T]]) -> _T:
        return await command(self.url, what, call)

    async def take_lease(self) -> bool:
        """Take the lease if nobody holds it; return whether this process holds it now."""
        redis, lease_ms = self.share._redis, int(self.share.lease * 1000)
        taken = await self._run(
            "taking the lease", lambda: redis.set(self.lease_key, self.token, nx=True, px=lease_ms)
        )
        return bool(taken)

    async def renew_lease(self) -> bool:
        """Renew the lease; return False if another process holds it now."""
        keys = [self.lease_key]
        args: list[str | int] = [self.token, int(self.share.lease * 1000)]
        renewed = await self._run(
            "renewing the lease", lambda: self.share._renew(keys=keys, args=args)
        )
        return bool(renewed)

    async def release_lease(self) -> None:
        """Give the lease up, if this process holds it, so that another takes over at once."""
        keys, args = [self.lease_key], [self.token]
        await self._run("giving the lease up", lambda: self.share._release(keys=keys, args=args))

    async def publish(self, key: str, snapshot: str) -> None:
        """Keep ``snapshot`` as its target's latest, and tell the other processes."""

        async def store_and_publish() -> None:
            async with self.share._redis.pipeline(transaction=True) as pipeline:
                pipeline.hset(self.snapshots_key, key, snapshot)
                pipeline.pexpire(self.snapshots_key, int(self.share.lease * 10_000))
                pipeline.publish(self.channel, snapshot)
                await pipeline.execute()

        await self._run("publishing a snapshot", store_and_publish)

    async def latest(self) -> list[bytes]:
        """Return the latest snapshot of every target, as the polling process kept them."""
        redis = self.share._redis
        kept = await self._run("reading snapshots", lambda: redis.hgetall(self.snapshots_key))
        return [value if isinstance(value, bytes) else value.encode() for value in kept.values()]

    async def follow(self, take: Callable[[bytes], None], period: float) -> None:
        """Follow the polling process until this one takes the lease; return holding it.

        ``take`` gets the latest snapshots, then each one published; the lease is tried
        every ``period`` seconds.

        Raises:
            RedisUnavailableError: Redis failed.
        """
        from redis.exceptions import RedisError  # noqa: PLC0415 - loaded with the client

        pubsub = self.share._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await self._run("subscribing", lambda: pubsub.subscribe(self.channel))
            for snapshot in await self.latest():
                take(snapshot)
            until = anyio.current_time() + period
            while True:
                while (left := until - anyio.current_time()) > 0:
                    try:
                        message = await pubsub.get_message(timeout=min(left, REDIS_TIMEOUT))
                    except (RedisError, OSError) as exc:
                        msg = f"Redis at {self.url} (following the shared poller) failed: {exc}"
                        raise RedisUnavailableError(msg, url=self.url) from exc
                    if message is not None and message.get("type") == "message":
                        take(message["data"])
                if await self.take_lease():
                    return
                until += period
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(REDIS_TIMEOUT):
                await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
