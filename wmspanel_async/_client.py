"""``WMSPanelClient``: the public face: its settings, its lifecycle, one method per endpoint.

One call travels: method -> ``_fetching`` for a target's figures (an answer of the last
``max_age`` seconds, if asked for and kept; a snapshot of the outcome) -> the request
pipeline (``_pipeline``: deadline, sharing, quota, retries, one attempt and its checks) ->
the transport this client owns (httpx's, ours over aiohttp, or a user's), or a user's
``httpx.AsyncClient`` (``_transport``) -> the network; then the body goes through
``_converter`` into a model. ``poll()`` and ``keep_fresh()`` hand the poller (``_poller``,
``_fresh``, loaded on first use) a fetch function and the quota's status, so that the
poller never imports this module.
"""

from __future__ import annotations

import functools
import logging
import os
import weakref
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import httpx

from ._body import ACCEPT_ENCODING
from ._coalesce import RecentAnswers
from ._constants import (
    ANSWERS_KEPT,
    DEFAULT_DAILY_LIMIT,
    MAX_WATCHED_TARGETS,
    SUBSCRIPTION_BUFFER,
)
from ._converter import parse_data_slices, parse_realtime
from ._exceptions import ClientStateError, ConfigurationError
from ._fetching import Fetcher
from ._models import DataSlice, QuotaStatus, RealtimeStats, Snapshot, Target
from ._pipeline import Pipeline, sender
from ._quota import FileLedger, Ledger, MemoryLedger, UTCClock, utc_now
from ._redact import LOG_FILTER, Redactor, shown_url, url_secrets
from ._transport import EventLoopBinding, chosen_transport
from ._version import __version__

if TYPE_CHECKING:
    # The poller (and its quota governor) loads on the first poll(), not on import: a
    # plain `import wmspanel_async` is 10 ms faster for everyone who never polls.
    from ._fresh import FreshSnapshots
    from ._governor import OnQuota
    from ._poller import PollSettings, SnapshotStream
    from ._redis import RedisShare

logger = logging.getLogger("wmspanel_async")

DEFAULT_BASE_URL = "https://api.wmspanel.com"


def _is_loopback(host: str) -> bool:
    import ipaddress  # noqa: PLC0415 - 3 ms of import time, for a check made once

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _checked_base_url(base_url: str) -> httpx.URL:
    # A query or fragment has no business in a base URL, and may hold a key; a proxy's URL
    # may hold a password: neither is ever quoted.
    shown = repr(shown_url(base_url))
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        reason = str(exc)
        if secrets := url_secrets(base_url):
            reason = Redactor(*secrets)(reason)
        msg = f"base_url {shown} is not a valid URL: {reason}"
        raise ConfigurationError(msg) from None
    if not url.host:
        msg = f"base_url {shown} has no host; give a full URL like {DEFAULT_BASE_URL!r}"
        raise ConfigurationError(msg)
    if url.port is not None and not 0 < url.port < 65536:
        msg = f"base_url {shown} has port {url.port}, out of range: a port is 1 to 65535"
        raise ConfigurationError(msg)
    if url.scheme == "https" or (url.scheme == "http" and _is_loopback(url.host)):
        return url
    msg = (
        f"base_url {shown} is not HTTPS; the API key travels in the query string, so only "
        "https:// URLs (or http:// on a loopback address) are allowed"
    )
    raise ConfigurationError(msg)


def _checked_timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    if isinstance(timeout, httpx.Timeout):
        return timeout
    if timeout <= 0:
        msg = f"timeout must be a positive number of seconds, got {timeout!r}"
        raise ConfigurationError(msg)
    return httpx.Timeout(timeout, connect=min(timeout, 5.0))


def _setting(value: str | None, variable: str, what: str) -> str:
    value = value or os.environ.get(variable)
    if not value:
        msg = (
            f"no {what}: pass it to WMSPanelClient or set the {variable} environment variable "
            "(WMSPanel shows it under API settings)"
        )
        raise ConfigurationError(msg)
    return value


def _checked_max_age(max_age: float | None) -> float | None:
    if max_age is None or (
        isinstance(max_age, int | float) and not isinstance(max_age, bool) and max_age >= 0
    ):
        return max_age
    msg = f"max_age must be 0 or more seconds, or None, got {max_age!r}"
    raise ConfigurationError(msg)


def _checked_account(account: str | None, client_id: str) -> str:
    if account is None:
        return client_id
    if not (isinstance(account, str) and account):
        msg = f"account must be a non-empty name, got {account!r:.60}"
        raise ConfigurationError(msg)
    return account


def _chosen_ledger(ledger: Ledger | None, quota_file: str | os.PathLike[str] | None) -> Ledger:
    if ledger is not None and quota_file is not None:
        msg = "pass either ledger or quota_file (a FileLedger's shorthand), not both"
        raise ConfigurationError(msg)
    if ledger is None:
        return MemoryLedger() if quota_file is None else FileLedger(quota_file)
    given: object = ledger  # the annotation promises what users may get wrong
    if not isinstance(given, Ledger):
        msg = f"ledger must be a Ledger (MemoryLedger, FileLedger, RedisLedger), got {given!r:.60}"
        raise ConfigurationError(msg)
    return given


def _check_limits(daily_limit: int, max_connections: int, deadline: float | None) -> None:
    if daily_limit < 1 or max_connections < 1:
        msg = "daily_limit and max_connections must be 1 or more"
        raise ConfigurationError(msg)
    if deadline is not None and deadline <= 0:
        msg = f"deadline must be a positive number of seconds or None, got {deadline!r}"
        raise ConfigurationError(msg)


def _checked_concurrency(concurrency: int | None, pool: int | None) -> int:
    """Return a poller's concurrency: the pool's size by default, and never more."""
    if concurrency is None:
        return pool or 10
    if pool is not None and concurrency > pool:
        msg = (
            f"concurrency={concurrency} exceeds the client's pool of {pool} connections; "
            f"create the client with max_connections={concurrency}"
        )
        raise ConfigurationError(msg)
    return concurrency


def _nonnegative(value: int, name: str) -> int:
    if value < 0:
        msg = f"{name} must be 0 or more, got {value!r}"
        raise ConfigurationError(msg)
    return value


class WMSPanelClient:
    """An async client for the WMSPanel realtime stats API.

    Use it as an async context manager (or call :meth:`aclose`), inside one event loop;
    asyncio and trio both work. All calls go through one connection pool and share one
    daily call budget and one retry budget.

    Args:
        client_id: The account's client id; defaults to ``$WMSPANEL_CLIENT_ID``.
        api_key: The API key; defaults to ``$WMSPANEL_API_KEY``. It is never shown in a
            message, ``repr`` or log record.
        base_url: The API, or a proxy of yours in front of it; defaults to
            ``$WMSPANEL_BASE_URL``, then ``https://api.wmspanel.com``. Must be HTTPS unless
            its host is a loopback address.
        timeout: Seconds one HTTP attempt may take (connecting: at most 5), or an
            ``httpx.Timeout``.
        max_retries: Retries after a connection error, timeout, 408, 429 or 5xx.
        transport: What sends the requests: ``"httpx"`` (the default, httpx's own
            transport), ``"aiohttp"`` (far less CPU per call; asyncio only, and needs
            ``pip install "wmspanel-async[aiohttp]"``), or an httpx transport of yours, for
            tests and custom networking. Either way it is handed each request with the
            credentials already in it.
        http_client: An ``httpx.AsyncClient`` of yours to send requests through; it is
            never closed by us. Its own hooks see the credentials in request URLs, so prefer
            ``transport`` where you can.
        daily_limit: Calls allowed per UTC day; WMSPanel's default is 15,000.
        deadline: Seconds one call may take in all, retries and waits included, or
            ``None`` for no limit.
        max_connections: Size of the connection pool.
        clock: Returns the current aware UTC datetime; tests pass a fake one.
        ledger: Where the day's calls are counted: a :class:`MemoryLedger` of this client
            (the default), a :class:`FileLedger` for the processes of one machine, or a
            ``wmspanel_async.redis.RedisLedger`` for processes anywhere. Yours to close.
        quota_file: Shorthand for ``ledger=FileLedger(quota_file)``: the day's count
            survives restarts and is shared by the processes using the file.
        account: The name of the account whose daily calls this client spends, under
            which the ledger counts them; defaults to ``client_id``. Clients with per-user
            keys of one account (each its own ``client_id``) spend one limit: give them
            the same ``account`` and ledger.

    Raises:
        ConfigurationError: Credentials are missing, the base URL is not HTTPS, an
            argument is out of range, ``transport`` is neither a transport nor a name we
            know (or is ``"aiohttp"`` without aiohttp, or on trio: raised at the first use
            if the client is made outside the event loop), ``quota_file`` cannot be
            written, or both ``ledger`` and ``quota_file`` are given.
    """

    def __init__(
        self,
        client_id: str | None = None,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = 10.0,
        max_retries: int = 2,
        transport: httpx.AsyncBaseTransport | Literal["httpx", "aiohttp"] | None = None,
        http_client: httpx.AsyncClient | None = None,
        daily_limit: int = DEFAULT_DAILY_LIMIT,
        deadline: float | None = 30.0,
        max_connections: int = 10,
        clock: UTCClock = utc_now,
        ledger: Ledger | None = None,
        quota_file: str | os.PathLike[str] | None = None,
        account: str | None = None,
    ) -> None:
        self.client_id: str = _setting(client_id, "WMSPANEL_CLIENT_ID", "client id")
        #: The account whose daily calls this client spends; ledgers count by it.
        self.account: str = _checked_account(account, self.client_id)
        api_key = _setting(api_key, "WMSPANEL_API_KEY", "API key")
        self.base_url: httpx.URL = _checked_base_url(
            base_url or os.environ.get("WMSPANEL_BASE_URL") or DEFAULT_BASE_URL
        )
        self.max_retries: int = _nonnegative(max_retries, "max_retries")
        _check_limits(daily_limit, max_connections, deadline)
        # aiohttp runs on asyncio only: checked now if in an event loop, else at first use.
        self._event_loop = EventLoopBinding(asyncio_only=transport == "aiohttp")

        # The key, and a password (or a key) in base_url: secrets alike, in every text.
        secrets = (api_key, *url_secrets(str(self.base_url)))
        self._redact = Redactor(*secrets)
        # What a server says is blanked once JSON has decoded it, before errors quote it.
        self._parse_data_slices = functools.partial(parse_data_slices, redact=self._redact)
        self._timeout = _checked_timeout(timeout)
        self._clock = clock
        self.ledger: Ledger = _chosen_ledger(ledger, quota_file)
        self.daily_limit: int = daily_limit
        self._recent: RecentAnswers[RealtimeStats] = RecentAnswers(ANSWERS_KEPT)
        self._closed = False
        self._max_connections = max_connections if http_client is None else None
        through, self._transport = chosen_transport(  # self._transport: ours to close
            transport, http_client, max_connections=max_connections
        )
        # Only the encodings read_body() decodes in bounded steps; a user's http_client
        # would ask for br and zstd too, where their packages are installed.
        headers = {
            "Accept-Encoding": ACCEPT_ENCODING,
            "User-Agent": f"wmspanel-async/{__version__}",
        }
        self._pipeline = Pipeline(
            sender(through, base_url=self.base_url, headers=headers, timeout=self._timeout),
            base_url=self.base_url,
            credentials={"client_id": self.client_id, "api_key": api_key},
            redact=self._redact,
            deadline=deadline,
            clock=clock,
        )
        self._fetcher = Fetcher(
            self,
            self._pipeline,
            parse=functools.partial(parse_realtime, redact=self._redact),
            recent=self._recent,
            clock=clock,
            check_usable=self._check_usable,
        )
        # Last: a client refused its arguments registers nothing. Until closed (or collected),
        # its secrets are blanked in httpx's, httpcore's, aiohttp's and our log records.
        self._forget_key = weakref.finalize(self, LOG_FILTER.register(*secrets))

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        base_url = shown_url(str(self.base_url))
        return f"<WMSPanelClient client_id={self.client_id!r} base_url={base_url!r}{state}>"

    async def __aenter__(self) -> WMSPanelClient:
        self._check_usable()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (unless it is a user's ``http_client``); idempotent.

        Calls in flight end with :class:`ClientStateError`.
        """
        if self._closed:
            return
        self._closed = True
        self._pipeline.close()
        try:
            if self._transport is not None:
                await self._transport.aclose()
        finally:
            self._forget_key()

    @property
    def quota(self) -> QuotaStatus:
        """The day's call budget as the ledger last saw it; every HTTP attempt counts one.

        No I/O: a shared ledger's count is as of this client's last call, or the last
        refresh of a poller's (about once a minute).
        """
        return self.ledger.status(self.account, self.daily_limit, self._clock())

    async def refresh_quota(self) -> QuotaStatus:
        """Read the day's count from the ledger again, as other processes left it.

        Raises:
            RedisUnavailableError: A Redis ledger did not answer.
        """
        self._check_usable()
        return await self.ledger.refresh(self.account, self.daily_limit, self._clock())

    async def data_slices(self, *, show_servers: bool = False) -> list[DataSlice]:
        """Fetch the data slices this key may see (``GET /v1/data_slices``).

        Args:
            show_servers: Also ask for each slice's server ids (``show_servers=true``, a
                parameter seen in third-party clients rather than documented), into
                :attr:`DataSlice.server_ids`.

        Returns:
            The slices, in the API's order.

        Raises:
            WMSPanelError: One of its subclasses, for whatever went wrong.
        """
        params = {"show_servers": "true"} if show_servers else {}
        self._check_usable()
        return await self._pipeline.call(self, "/v1/data_slices", params, self._parse_data_slices)

    async def realtime(
        self,
        data_slice: DataSlice | str,
        *,
        stream: str | None = None,
        server: str | None = None,
        max_age: float | None = None,
    ) -> RealtimeStats:
        """Fetch realtime figures (``GET /v1/realtime_data``).

        Identical calls made while one is in flight share its request (and its answer or
        error), so a hundred handlers asking at once cost one call of the day's budget.

        Args:
            data_slice: The slice, or its id.
            stream: Only this stream (regular slices only; lite slices have none).
            server: Only this server's share.
            max_age: Accept figures this client fetched (by any call, or a poller) at most
                this many seconds ago, instead of calling the API; ``None`` always calls.
                The latest answers of the last 256 targets are kept.

        Returns:
            The figures now, or at most ``max_age`` seconds old.

        Raises:
            WMSPanelError: One of its subclasses, for whatever went wrong.
        """
        return await self._fetcher.stats(
            Target(data_slice, stream=stream, server=server), max_age=_checked_max_age(max_age)
        )

    async def snapshot(
        self,
        target: Target,
        *,
        max_retries: int | None = None,
        deadline: float | None = None,
        max_age: float | None = None,
    ) -> Snapshot:
        """Fetch one target and return its figures, or the error, as a :class:`Snapshot`.

        Only errors of ours are caught into the snapshot; cancellation passes through.

        Args:
            target: What to fetch.
            max_retries: Retries for this call, instead of the client's ``max_retries``;
                the poller passes 0, since its next tick is the retry.
            deadline: Seconds this call may take in all, if shorter than the client's
                ``deadline``; the poller ties it to the interval.
            max_age: As for :meth:`realtime`.
        """
        max_age = _checked_max_age(max_age)
        return await self._fetcher.snapshot(target, max_retries, deadline, max_age=max_age)

    async def realtime_many(
        self, targets: Iterable[Target], *, concurrency: int = 10, max_age: float | None = None
    ) -> list[Snapshot]:
        """Fetch many targets at once, at most ``concurrency`` at a time.

        A failing target does not stop the others: its snapshot carries the error.

        Args:
            targets: What to fetch.
            concurrency: Requests in flight at most.
            max_age: As for :meth:`realtime`: targets fetched at most this many seconds
                ago are answered from memory.

        Returns:
            One snapshot per target, in the order of ``targets``.

        Raises:
            ClientStateError: The client is closed or belongs to another event loop.
            ConfigurationError: ``concurrency`` is below 1.
        """
        self._check_usable()
        return await self._fetcher.many(targets, concurrency, _checked_max_age(max_age))

    def _check_usable(self) -> None:
        if self._closed:
            msg = "this WMSPanelClient is closed; create a new one for further calls"
            raise ClientStateError(msg)
        self._event_loop.check()

    def poll(
        self,
        targets: Iterable[Target] = (),
        *,
        interval: float = 30.0,
        concurrency: int | None = None,
        on_quota: OnQuota = "stretch",
        reserve: float = 0.05,
        only_changes: bool = False,
        raise_on_auth_error: bool = True,
    ) -> SnapshotStream:
        """Poll many targets at a fixed rate, within the daily quota, as a stream of snapshots.

        Use the result as an async context manager, and iterate inside it::

            async with client.poll(targets, interval=30.0) as snapshots:
                async for snapshot in snapshots:
                    ...

        Each tick sends one request (no retries: the next tick is the retry), spread over
        the interval on a schedule that never drifts; :class:`SnapshotStream` says how
        targets are scheduled, skipped, backed off and kept from starving each other.

        Args:
            targets: What to poll; :meth:`SnapshotStream.add` adds more later.
            interval: Seconds between two polls of a target.
            concurrency: Requests in flight at most; defaults to the client's
                ``max_connections``, and may not exceed it.
            on_quota: When the schedule needs more calls than are left until 00:00 UTC:
                ``"stretch"`` polls less often so the calls last (with a warning),
                ``"error"`` raises :class:`QuotaExhaustedError`.
            reserve: Fraction of the daily limit left for other calls of this client.
            only_changes: Hand over a target's snapshot only when its figures (or its
                error type) differ from the last one handed over.
            raise_on_auth_error: End the iteration by raising :class:`AuthenticationError`
                when the API refuses the credentials; if false, the error is yielded in the
                snapshots of each target like any other.

        Returns:
            The stream, not yet started: polling starts when the ``async with`` block is
            entered and stops when it is left.

        Raises:
            ClientStateError: The client is closed or belongs to another event loop.
            ConfigurationError: An argument is out of range.
        """
        from ._poller import SnapshotStream  # noqa: PLC0415 - loaded on the first poll()

        settings = self._poll_settings(
            concurrency,
            interval=interval,
            on_quota=on_quota,
            reserve=reserve,
            raise_on_auth_error=raise_on_auth_error,
        )
        return SnapshotStream(self._fetcher.poll_once, targets, settings, only_changes=only_changes)

    def keep_fresh(
        self,
        targets: Iterable[Target] = (),
        *,
        interval: float = 30.0,
        concurrency: int | None = None,
        on_quota: OnQuota = "stretch",
        reserve: float = 0.05,
        raise_on_auth_error: bool = False,
        max_targets: int | None = MAX_WATCHED_TARGETS,
        drop_unread_after: int | None = None,
        subscription_buffer: int = SUBSCRIPTION_BUFFER,
        share: RedisShare | None = None,
        first_poll_now: bool = False,
    ) -> FreshSnapshots:
        """Keep the latest snapshot of each target fresh, for any number of readers.

        For web backends and dashboards: one poller spends the calls, however many
        requests read its figures. Use the result as an async context manager; inside it,
        any task may read without calling the API::

            async with client.keep_fresh(targets, interval=10.0) as fresh:
                snapshot = fresh.get(Target(slice_id))      # the latest, or None yet

        It polls by the rules of :meth:`poll` (the same schedule, backoff and daily-quota
        stretching), but never skips a tick for a slow reader. See
        :class:`FreshSnapshots` for the readers' side: :meth:`~FreshSnapshots.get`,
        :meth:`~FreshSnapshots.wait`, :meth:`~FreshSnapshots.subscribe`,
        :meth:`~FreshSnapshots.watch` and :meth:`~FreshSnapshots.unwatch`.

        Args:
            targets: What to poll from the start; these are never dropped for being unread.
            interval: Seconds between two polls of a target.
            concurrency: As for :meth:`poll`.
            on_quota: As for :meth:`poll`.
            reserve: As for :meth:`poll`.
            raise_on_auth_error: Stop polling, and raise :class:`AuthenticationError` to
                readers, when the API refuses the credentials; by default the refusal is
                each target's error, and the readers keep the last figures (a web page
                stays up while the key is fixed).
            max_targets: Targets watched at most, counting ``targets``; ``fresh.watch()``
                beyond it raises :class:`TargetLimitError`. ``None`` for no bound, which a
                backend that watches targets named in URLs should never choose.
            drop_unread_after: Stop polling a target watched by ``fresh.watch()`` when
                nobody read it (``get()``, ``wait()`` or a subscription) for this many of
                its intervals; ``None`` keeps it until ``fresh.unwatch()``.
            subscription_buffer: Snapshots a subscription keeps for a slow reader before it
                drops its oldest.
            first_poll_now: Poll each target once as soon as it is watched (a burst of one
                call per target, ``concurrency`` at a time), so that readers have figures
                within a round trip after a start or a ``watch()``; then on the spread
                schedule, the next poll at least half an interval later. By default the
                first polls are spread over the first interval too.
            share: A ``wmspanel_async.redis.RedisShare``: of the processes that keep the
                same targets of this account fresh, one polls and the others read what it
                publishes (asyncio only). The targets are then fixed: no ``watch()``,
                ``unwatch()`` or ``drop_unread_after``.

        Returns:
            The readers' side, not yet started: polling starts when the ``async with``
            block is entered and stops when it is left.

        Raises:
            ClientStateError: The client is closed or belongs to another event loop.
            ConfigurationError: An argument is out of range.
        """
        from ._fresh import FreshSnapshots  # noqa: PLC0415 - loaded on first use

        return FreshSnapshots(
            self._fetcher.poll_once,
            targets,
            self._poll_settings(
                concurrency,
                interval=interval,
                on_quota=on_quota,
                reserve=reserve,
                raise_on_auth_error=raise_on_auth_error,
                first_poll_now=first_poll_now,
            ),
            max_targets=max_targets,
            drop_unread_after=drop_unread_after,
            subscription_buffer=subscription_buffer,
            share=share,
            account=self.account,
        )

    def _poll_settings(self, concurrency: int | None, **options: Any) -> PollSettings:
        """Check the poller's arguments against this client, and return its settings."""
        from ._poller import PollSettings  # noqa: PLC0415 - loaded on the first poll

        self._check_usable()
        return PollSettings(
            quota=lambda: self.quota,
            refresh_quota=self.refresh_quota,
            utc_clock=self._clock,
            concurrency=_checked_concurrency(concurrency, self._max_connections),
            **options,
        )

    async def discover_targets(
        self,
        *,
        streams: Iterable[str] = (),
        servers: Iterable[str] = (),
        each_server: bool = False,
    ) -> list[Target]:
        """List a target for every data slice this key may see, ready for :meth:`poll`.

        One call (``GET /v1/data_slices``). The API does not list a slice's streams, so
        streams to poll one by one are given here by id; servers are either given by id or,
        with ``each_server``, taken from the slices themselves.

        Args:
            streams: Stream ids; every slice gets one target per stream.
            servers: Server ids; every slice gets one target per server.
            each_server: Also give every slice one target per server it names
                (asked for with ``show_servers=true``).

        Returns:
            For each slice, in the API's order: the whole slice, then its stream targets,
            then its server targets, without repeats.

        Raises:
            WMSPanelError: One of its subclasses, for whatever went wrong.
        """
        streams, servers = tuple(streams), tuple(servers)
        targets: dict[Target, None] = {}  # ordered, without repeats
        for data_slice in await self.data_slices(show_servers=each_server):
            targets[Target(data_slice)] = None
            targets.update((Target(data_slice, stream=stream), None) for stream in streams)
            slice_servers = servers + (data_slice.server_ids if each_server else ())
            targets.update((Target(data_slice, server=server), None) for server in slice_servers)
        return list(targets)
