"""Redis, for processes that share one account: the call ledger, and the connection rules.

redis-py's asyncio client runs on asyncio only; under trio every use is refused with a
``ConfigurationError`` that says what to use instead. Every command waits at most
``REDIS_TIMEOUT`` seconds; a Redis that does not answer in time (or at all) is a
:class:`RedisUnavailableError` naming the URL without its password.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc
import attrs

from ._exceptions import ConfigurationError, RedisUnavailableError
from ._models import QuotaStatus
from ._quota import Ledger, exhausted, quota_status
from ._redact import Redactor
from ._transport import require_asyncio

if TYPE_CHECKING:
    from redis.asyncio import Redis

_T = TypeVar("_T")

logger = logging.getLogger("wmspanel_async")

#: Seconds a Redis command may take before the call it was for fails.
REDIS_TIMEOUT = 1.0
#: The first part of every key we write, before the account's name.
KEY_PREFIX = "wmspanel"
#: A day's count outlives its day by this much: for readers that come late, and so that a
#: missing count of today, with yesterday's there, tells a new day from a loss.
_KEEP_AFTER_DAY = 86400
#: Seconds between two write-backs of a ledger's entries, while it is entered.
SYNC_EVERY = 1.0

# The day's count is a grow-only counter: one entry per ledger (per process), its calls of
# the day, and the total is their sum. Only its own ledger raises an entry, so each process
# knows its own exactly, and keeps a copy of the others' as last read; merging takes the
# larger of each. A Redis that lost the count (restarted without persistence, flushed, failed
# over to a replica that missed writes, evicted the key) gets it back from the processes'
# write-backs, the entries of processes that have died since included.
#
# One step on Redis's own clock, so that no two processes can both take the last call, and
# hosts with skewed clocks still share one day. It writes back the entries given (those of
# ARGV[7]'s day), and when any was missing, or the whole count, the count was lost: nobody
# takes a call for the recovery window, long enough for every running process to have
# written its entries back.
# KEYS: the day's count and the recovery marker, each without the day number.
# ARGV: the daily limit, 1 to take a call (0 to write back and read), seconds added to
# Redis's clock (0, but tests), seconds the count outlives its day, the recovery window in
# ms, this ledger's entry, the day of the entries that follow, then entry/count pairs.
_COUNT = """
local t = redis.call('TIME')
local offset = tonumber(ARGV[3])
local now = tonumber(t[1]) + offset
local day = math.floor(now / 86400)
local key = KEYS[1] .. day
local recovering = KEYS[2] .. day
-- Today's count missing while yesterday's is kept is a new day; both missing is a loss (or
-- the first use ever, which is told from a loss by nothing that Redis keeps).
local lost = redis.call('EXISTS', key, KEYS[1] .. (day - 1)) == 0
if tonumber(ARGV[7]) == day then
    for i = 8, #ARGV, 2 do
        local count = tonumber(ARGV[i + 1])
        if tonumber(redis.call('HGET', key, ARGV[i]) or '0') < count then
            redis.call('HSET', key, ARGV[i], count)
            lost = true
        end
    end
end
if lost then
    redis.call('HSET', key, '', 0)
    redis.call('SET', recovering, 1, 'PX', ARGV[5])
end
redis.call('EXPIREAT', key, math.floor((day + 1) * 86400 - offset) + tonumber(ARGV[4]))
local entries = redis.call('HGETALL', key)
local used = 0
for i = 2, #entries, 2 do
    used = used + tonumber(entries[i])
end
local wait = math.max(redis.call('PTTL', recovering), 0)
local taken = 0
if ARGV[2] == '1' and wait == 0 and used < tonumber(ARGV[1]) then
    redis.call('HINCRBY', key, ARGV[6], 1)
    used = used + 1
    taken = 1
end
local mine = tonumber(redis.call('HGET', key, ARGV[6]) or '0')
return {taken, used, day, math.floor(now), tonumber(t[2]), wait, mine, entries}
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


def _passwords(url: str) -> list[str]:
    """Return the passwords in ``url`` (its user part, and any ``password`` in its query)."""
    parts = urllib.parse.urlsplit(url)
    found = [parts.password] if parts.password else []
    found += [
        value
        for name, value in urllib.parse.parse_qsl(parts.query)
        if name.lower() == "password" and value
    ]
    return found


@attrs.frozen
class RedisEndpoint:
    """Where a Redis is, as shown in texts (never with its password), and how to blank it.

    redis-py opens with ``HELLO 3 AUTH default <password>``, and a server that does not
    know HELLO (Redis before 6, some proxies) quotes it back in its error; a password may
    be anywhere in what a server answers. Redis's errors are therefore never chained to
    ours: their text is quoted with the password blanked.
    """

    url: str
    _redactors: tuple[Redactor, ...] = attrs.field(repr=False)

    @classmethod
    def of(cls, url: str) -> RedisEndpoint:
        """Return the endpoint of the Redis at ``url``."""
        return cls(shown_url(url), tuple(Redactor(password) for password in _passwords(url)))

    def blank(self, text: str) -> str:
        """Return ``text`` with the password blanked."""
        for redactor in self._redactors:
            text = redactor(text)
        return text

    def unavailable(
        self, what: str, error: BaseException, *, sharing: bool = False
    ) -> RedisUnavailableError:
        """Return our error for ``error``, met while ``what``; it keeps no chain of Redis's.

        Args:
            what: What this process was doing, for the message.
            error: What failed.
            sharing: Whether it was the shared poller's business (the lease, snapshots),
                not a call's count: then the call was not the one held back.
        """
        reason = self.blank(str(error)) or "no answer in time"
        if sharing:
            meanwhile, again = "the poller is not shared meanwhile", "sharing goes on"
        else:
            meanwhile, again = "nothing was sent", "calls go on"
        msg = (
            f"Redis at {self.url} ({what}) failed: {type(error).__name__}: {reason}; "
            f"{meanwhile}. Check that Redis runs and answers; {again} once it does"
        )
        return RedisUnavailableError(msg, url=self.url)

    def not_redis(self, what: str, reply: object) -> RedisUnavailableError:
        """Return our error for an answer that no Redis gives."""
        return self.unavailable(
            what, ValueError(f"answered {type(reply).__name__}, not what Redis answers")
        )


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
    options = [name for name, _ in urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query)]
    if unknown := [name for name in options if name != name.lower()]:
        # redis-py hands every option on to its connections: one it does not know fails at
        # the first call, and is shown in its objects' repr, a password included.
        msg = (
            f"{what}: {shown_url(url)!r} has options that are not lowercase "
            f"({', '.join(sorted(unknown))}); Redis URL options are lowercase: password=..."
        )
        raise ConfigurationError(msg)
    error: Exception
    try:
        return redis.asyncio.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
        )
    except (ValueError, TypeError) as exc:  # TypeError: an option redis-py does not know
        error = exc
    reason = RedisEndpoint.of(url).blank(str(error))
    msg = (
        f"{what}: {shown_url(url)!r} is not a Redis URL ({reason}); give "
        "redis://[[user]:password@]HOST[:PORT][/DB], with the options redis-py knows in "
        "lowercase"
    )
    raise ConfigurationError(msg)


async def command(
    endpoint: RedisEndpoint,
    what: str,
    call: Callable[[], Awaitable[_T]],
    *,
    sharing: bool = False,
) -> _T:
    """Run one Redis ``call`` within ``REDIS_TIMEOUT``, mapping its failures to ours.

    Anything but an answer (an error of Redis's or of redis-py's reading something that is
    not Redis) is a :class:`RedisUnavailableError`, raised outside the ``except`` block so
    that nothing of Redis's, which may quote the password, is chained to it.

    Raises:
        RedisUnavailableError: Redis did not answer, refused us, failed, or is not Redis.
        ConfigurationError: Not on asyncio.
    """
    require_asyncio(f"Redis ({what})", "count calls in a FileLedger or a MemoryLedger")
    try:
        with anyio.fail_after(REDIS_TIMEOUT):
            return await call()
    except RedisUnavailableError:
        raise
    except Exception as exc:  # redis-py fails in many ways on what is not Redis
        error = endpoint.unavailable(what, exc, sharing=sharing)
    raise error


class _Day:
    """One account's count of one UTC day (by Redis's clock), as this ledger knows it."""

    __slots__ = ("at", "day", "others", "own", "redis_now", "spent_away", "used")

    def __init__(self) -> None:
        self.spent_away = 0  # calls counted here only, since Redis went away
        self.day = -1  # Redis's day number
        self.own = 0  # this ledger's calls of the day: exact, only it raises its entry
        self.others: dict[str, int] = {}  # the other ledgers' entries, as last read
        self.used = 0
        self.redis_now = 0.0
        self.at = 0.0

    def update(self, name: str, reply: Any) -> tuple[bool, int]:
        """Take the script's ``reply``; return whether a call was taken, and the wait in ms.

        Raises:
            TypeError, ValueError: ``reply`` is not the script's.
        """
        taken, used, day, seconds, micros, wait, mine, entries = reply
        if not isinstance(entries, list):
            raise TypeError(entries)
        fresh_day = int(day) != self.day
        if fresh_day:
            self.day, self.own, self.others = int(day), 0, {}
        # Replies of calls in flight at once may come in any order: every figure is merged
        # by taking the larger, never added to.
        self.own = max(self.own, int(mine))
        for entry, count in zip(entries[::2], entries[1::2], strict=True):
            key = entry.decode() if isinstance(entry, bytes) else str(entry)
            if key and key != name:
                self.others[key] = max(self.others.get(key, 0), int(count))
        self.used = int(used) if fresh_day else max(self.used, int(used))
        self.redis_now = int(seconds) + int(micros) / 1e6
        self.at = time.monotonic()
        self.spent_away = 0  # Redis answers: what was spent away is in ``own``, written back
        return bool(taken), int(wait)

    def away_budget(self, limit: int, allowance: int) -> int:
        """Return the calls this process may count alone while Redis is away, today."""
        if self.day != self.now().timestamp() // 86400:
            return 0  # a day this process has not seen counted
        left_when_last_read = limit - (self.used - self.spent_away)
        return min(allowance, left_when_last_read // (1 + len(self.others)))

    def spend_away(self, limit: int, allowance: int) -> bool:
        """Count a call here only, while Redis is away, within this process's share.

        The share is what was left today when Redis last answered, split evenly between
        the processes whose entries this one knows, and never more than ``allowance``; the
        call rides in ``own``, written back when Redis answers again.
        """
        if self.spent_away >= self.away_budget(limit, allowance):
            return False
        self.spent_away += 1
        self.own += 1
        self.used += 1
        return True

    def now(self) -> dt.datetime:
        """Redis's clock now, as estimated from when it was last read."""
        seconds = self.redis_now + (time.monotonic() - self.at)
        return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)

    def entries(self, name: str, *, everyone: bool) -> list[str | int]:
        """Return the entries to write back: this ledger's, and the others' if ``everyone``."""
        pairs: list[str | int] = [name, self.own]
        if everyone:
            for entry, count in self.others.items():
                pairs += [entry, count]
        return pairs


class RedisLedger(Ledger):
    """Counts calls in Redis, for every process of an account, wherever they run.

    Each call is one server-side script that checks the day's count against the limit and
    counts the call in one step: a refused call spends nothing, and no two processes can
    both take the last call. The day is Redis's own (its ``TIME``), so processes on hosts
    with skewed clocks still share one day; a day's count expires a day after that day
    ends. The count is a hash, ``wmspanel:{ACCOUNT}:calls:DAY`` (the braces make the account
    a hash tag, for Redis Cluster; ``DAY`` is the number of days since 1970-01-01 UTC), with
    one entry per ledger: the calls it counted today. It never holds the API key.

    **When Redis loses the count** (a restart without persistence, a flush, a failover to a
    replica that missed writes, an eviction), the running processes give it back: each
    ledger writes back its own entry with every call and, while it is entered (``async
    with``), every ``sync_every`` seconds with the copy it keeps of the others' entries, so
    that the calls of processes that have died since are restored too. A call that finds
    the count lost waits for the recovery window, ``2 * sync_every + 1`` seconds, before
    anyone takes a call: by then every running process has written its entries back, and
    the account never goes past its limit. The first call on a Redis that has no count of
    today nor of yesterday waits for it too: nothing tells it from a loss.
    What a loss can still forget: the calls of a process that died before any other read
    its entry. Redis with AOF persistence (``appendonly yes``) and ``noeviction`` forgets
    nothing.

    **While Redis is away**, a call is refused with :class:`RedisUnavailableError` and not
    sent (nothing uncounted), unless ``outage_allowance`` is given: then this process may
    make that many calls at most, and never more than its share of what was left today when
    Redis last answered (split evenly between the processes it knows), counted in its
    memory and written back to Redis when it answers again.

    No safety margin is kept: the ``daily_limit`` given to the clients is what the script
    enforces. redis-py's asyncio client runs on asyncio only: under trio, a call is refused
    with :class:`ConfigurationError`.

    Make one with :meth:`from_url`, enter it (``async with``), and give it to each client as
    ``ledger=``. All clients sharing it must agree on ``daily_limit``.

    Args:
        redis: A redis-py asyncio client; it belongs to the ledger from now on.
        url: The Redis URL, for texts (its password is never shown) and to know the
            password to blank.
        sync_every: Seconds between two write-backs of this ledger's entries.
        outage_allowance: Calls this process may make, counted in its memory, while Redis
            is away; 0 (the default) refuses them.

    Raises:
        ConfigurationError: ``sync_every`` is not a number of seconds above 0, or
            ``outage_allowance`` not a whole number, 0 or more.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        url: str = "redis://",
        sync_every: float = SYNC_EVERY,
        outage_allowance: int = 0,
        _clock_offset: float = 0.0,
    ) -> None:
        if not (isinstance(sync_every, int | float) and sync_every > 0):
            msg = f"sync_every must be a number of seconds above 0, got {sync_every!r}"
            raise ConfigurationError(msg)
        allowance: object = outage_allowance  # the annotation promises what users may get wrong
        if isinstance(allowance, bool) or not (isinstance(allowance, int) and allowance >= 0):
            msg = f"outage_allowance must be a whole number of calls, 0 or more, got {allowance!r}"
            raise ConfigurationError(msg)
        self._outage_allowance = outage_allowance
        self._redis = redis
        self._endpoint = RedisEndpoint.of(url)
        self._count = redis.register_script(_COUNT)
        self._clock_offset = _clock_offset  # seconds added to Redis's clock: tests only
        self._sync_every = float(sync_every)
        #: Milliseconds nobody takes a call after the count was found lost.
        self._recovery_ms = int((2 * self._sync_every + REDIS_TIMEOUT) * 1000)
        self._name = secrets.token_hex(8)  # this ledger's entry in every day's count
        self._days: dict[str, _Day] = {}
        self._task_group: anyio.abc.TaskGroup | None = None

    @classmethod
    def from_url(
        cls, url: str, *, sync_every: float = SYNC_EVERY, outage_allowance: int = 0
    ) -> RedisLedger:
        """Connect (lazily: at the first call) to the Redis at ``url``.

        Args:
            url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS, or
                ``unix:///path/to/socket``.
            sync_every: Seconds between two write-backs of this ledger's entries.
            outage_allowance: Calls this process may make, counted in its memory, while
                Redis is away (see :class:`RedisLedger`); 0, the default, refuses them.

        Raises:
            ConfigurationError: redis-py is not installed (``pip install
                "wmspanel-async[redis]"``), ``url`` is not a Redis URL, or an argument is
                out of range.
        """
        return cls(
            connect(url, "the Redis ledger"),
            url=url,
            sync_every=sync_every,
            outage_allowance=outage_allowance,
        )

    def __repr__(self) -> str:
        return f"<RedisLedger {self._endpoint.url}>"

    async def __aenter__(self) -> RedisLedger:
        require_asyncio("the Redis ledger", "count calls in a FileLedger or a MemoryLedger")
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._sync_forever)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        task_group, self._task_group = self._task_group, None
        if task_group is not None:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
        await self.aclose()

    async def reserve(self, account: str, limit: int, now: dt.datetime) -> QuotaStatus:
        told = False
        while True:
            known = self._days.get(account)
            knew_counts = known is not None and bool(known.own or known.others)
            try:
                taken, wait, status = await self._run(account, limit, take=True)
            except RedisUnavailableError as exc:
                if known is None or not known.spend_away(limit, self._outage_allowance):
                    raise
                if known.spent_away == 1:
                    logger.warning(
                        "%s; counting up to %d calls in this process until it answers (its "
                        "share of what is left today, within outage_allowance)",
                        exc,
                        known.away_budget(limit, self._outage_allowance),
                    )
                return quota_status(known.used, limit, known.now())
            if taken:
                return status
            if not wait:
                raise exhausted(limit, self._days[account].now(), " (counted in Redis)")
            if not told:
                told = True
                # A loss of what this process saw is worth a warning; an empty Redis met
                # first is most likely a first use.
                logger.log(
                    logging.WARNING if knew_counts else logging.INFO,
                    "Redis at %s has no count of today's calls for %s, or less than this "
                    "process counted (restarted without persistence, flushed, failed over, "
                    "evicted, or used for the first time): waiting %.1f s for every process "
                    "to write its count back",
                    self._endpoint.url,
                    account,
                    wait / 1000,
                )
            await anyio.sleep(wait / 1000)

    def status(self, account: str, limit: int, now: dt.datetime) -> QuotaStatus:
        day = self._days.get(account)
        if day is None:
            return quota_status(0, limit, now)
        redis_now = day.now()
        # A count read before 00:00 UTC (by Redis's clock) was of a day that has ended.
        same_day = redis_now.timestamp() // 86400 == day.day
        return quota_status(day.used if same_day else 0, limit, redis_now)

    async def refresh(self, account: str, limit: int, now: dt.datetime) -> QuotaStatus:
        return (await self._run(account, limit, take=False))[2]

    async def aclose(self) -> None:
        """Close the connections to Redis."""
        await self._redis.aclose()

    async def _sync_forever(self) -> None:
        """Write this ledger's entries back every ``sync_every`` seconds, while entered."""
        while True:
            await anyio.sleep(self._sync_every)
            for account in list(self._days):
                # A Redis away now is met again by the next call, which says so.
                with contextlib.suppress(RedisUnavailableError):
                    await self._run(account, 0, take=False)

    async def _run(self, account: str, limit: int, *, take: bool) -> tuple[bool, int, QuotaStatus]:
        day = self._days.get(account) or self._days.setdefault(account, _Day())
        keys = [f"{KEY_PREFIX}:{{{account}}}:calls:", f"{KEY_PREFIX}:{{{account}}}:lost:"]
        args: list[Any] = [
            limit,
            int(take),
            self._clock_offset,
            _KEEP_AFTER_DAY,
            self._recovery_ms,
            self._name,
            day.day,
            *day.entries(self._name, everyone=not take),
        ]
        what = "counting a call" if take else "writing back and reading the day's count"

        async def count() -> tuple[bool, int]:
            reply = await self._count(keys=keys, args=args)
            try:
                return day.update(self._name, reply)
            except (TypeError, ValueError):
                error = self._endpoint.not_redis(what, reply)
            raise error

        taken, wait = await command(self._endpoint, what, count)
        return taken, wait, quota_status(day.used, limit, day.now())


# The lease's value is the holder's token and its generation: Redis's clock, in microseconds,
# when it was taken. Generations only grow, even across a Redis that lost its data, so a
# reader can refuse what an older holder published.
_TAKE = """
local t = redis.call('TIME')
local generation = t[1] .. string.format('%06d', tonumber(t[2]))
if redis.call('SET', KEYS[1], ARGV[1] .. ':' .. generation, 'NX', 'PX', ARGV[2]) then
    return generation
end
return 0
"""
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
# Fencing: only the lease's holder may store and publish a snapshot. KEYS: the lease, the
# snapshots, the channel. ARGV: the lease's value, the target, the snapshot, their ttl (ms).
_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return 0
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', KEYS[3], ARGV[3])
return 1
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
        self._endpoint = RedisEndpoint.of(url)
        self._take = redis.register_script(_TAKE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._publish = redis.register_script(_PUBLISH)

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
        return f"<RedisShare {self._endpoint.url} lease={self.lease:g}>"

    async def __aenter__(self) -> RedisShare:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections to Redis."""
        await self._redis.aclose()

    def session(self, account: str, targets: list[str]) -> ShareSession:
        """Return the keys and calls of one set of targets of one account."""
        digest = hashlib.sha256("\n".join(sorted(targets)).encode()).hexdigest()[:16]
        return ShareSession(self, f"{KEY_PREFIX}:{{{account}}}:share:{digest}")


class ShareSession:
    """One account's shared poller of one set of targets: its lease, snapshots and channel."""

    def __init__(self, share: RedisShare, prefix: str) -> None:
        self.share: RedisShare = share
        self.url: str = share._endpoint.url
        self.lease_key: str = f"{prefix}:lease"
        self.snapshots_key: str = f"{prefix}:snapshots"
        self.channel: str = f"{prefix}:published"
        self.token: str = secrets.token_hex(8)  # tells this process's lease from others'
        self.generation: int = 0  # of the lease this process holds or held last
        self._lease_value = ""

    async def _run(self, what: str, call: Callable[[], Awaitable[_T]]) -> _T:
        return await command(self.share._endpoint, what, call, sharing=True)

    async def take_lease(self) -> bool:
        """Take the lease if nobody holds it; return whether this process holds it now."""
        keys = [self.lease_key]
        args: list[str | int] = [self.token, int(self.share.lease * 1000)]

        async def take() -> int:
            reply = await self.share._take(keys=keys, args=args)
            return int(reply)  # a ValueError, from what is not Redis, is ours to map

        generation = await self._run("taking the lease", take)
        if generation:
            self.generation, self._lease_value = generation, f"{self.token}:{generation}"
        return bool(generation)

    async def renew_lease(self) -> bool:
        """Renew the lease; return False if another process holds it now."""
        keys = [self.lease_key]
        args: list[str | int] = [self._lease_value, int(self.share.lease * 1000)]
        renewed = await self._run(
            "renewing the lease", lambda: self.share._renew(keys=keys, args=args)
        )
        return bool(renewed)

    async def release_lease(self) -> None:
        """Give the lease up, if this process holds it, so that another takes over at once."""
        keys, args = [self.lease_key], [self._lease_value]
        await self._run("giving the lease up", lambda: self.share._release(keys=keys, args=args))

    async def publish(self, key: str, snapshot: str) -> bool:
        """Keep ``snapshot`` as its target's latest, and tell the other processes.

        Returns:
            False, with nothing stored or published, if this process no longer holds the
            lease.
        """
        keys = [self.lease_key, self.snapshots_key, self.channel]
        args: list[str | int] = [self._lease_value, key, snapshot, int(self.share.lease * 10_000)]
        published = await self._run(
            "publishing a snapshot", lambda: self.share._publish(keys=keys, args=args)
        )
        return bool(published)

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
        pubsub = self.share._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await self._run("subscribing", lambda: pubsub.subscribe(self.channel))
            for snapshot in await self.latest():
                take(snapshot)
            until = anyio.current_time() + period
            while True:
                while (left := until - anyio.current_time()) > 0:
                    error: RedisUnavailableError | None = None
                    try:
                        message = await pubsub.get_message(timeout=min(left, REDIS_TIMEOUT))
                    except Exception as exc:  # as in command()
                        error = self.share._endpoint.unavailable(
                            "following the poller", exc, sharing=True
                        )
                    if error is not None:
                        raise error
                    if message is not None and message.get("type") == "message":
                        take(message["data"])
                if await self.take_lease():
                    return
                until += period
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(REDIS_TIMEOUT):
                await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
