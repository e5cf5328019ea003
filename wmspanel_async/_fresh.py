"""``client.keep_fresh()``: one poller, many readers.

The poller's engine (``_poller.PollEngine``, held, not inherited) polls exactly as for ``poll()``;
here its snapshots are kept, the latest of each target, for readers that come and go: a
``get()`` reads memory, ``wait()`` sleeps until a target's next snapshot, and each
subscription gets every new snapshot through a bounded buffer of its own. No reader can
hold the poller back, so no tick is ever skipped for a slow consumer.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
from collections.abc import Iterable, Mapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import attrs

from ._constants import MAX_WATCHED_TARGETS, SUBSCRIPTION_BUFFER
from ._exceptions import (
    ClientStateError,
    ConfigurationError,
    RedisUnavailableError,
    TargetLimitError,
    TargetNotWatchedError,
)
from ._models import Snapshot, Target
from ._poller import (
    Fetch,
    Handover,
    PollEngine,
    PollerStats,
    PollSettings,
    _checked_target,
    _EngineHolder,
    _PollCounts,
    _TargetState,
)
from ._transport import require_asyncio
from ._wire import (
    FIGURES_KEY,
    WireFormatError,
    dump_figures,
    dump_snapshot,
    load_shared,
    target_key,
)

if TYPE_CHECKING:
    from ._redis import ShareSession

logger = logging.getLogger("wmspanel_async.poller")

#: Snapshots waiting to be published to Redis at most; beyond, the oldest are dropped.
OUTBOX_SIZE = 1024
#: The share of a lease that its holder polls on after the last renewal it sent: the rest
#: is the margin for Redis's clock running faster than ours, and for scheduling.
LEASE_FENCE = 0.8


def _positive_or_none(value: object, name: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    msg = f"{name} must be a whole number, 1 or more, or None; got {value!r}"
    raise ConfigurationError(msg)


def _is_newer(snapshot: Snapshot, than: Snapshot) -> bool:
    # Identity first: two polls in the same clock tick (a frozen test clock) are still two.
    return snapshot is not than and snapshot.fetched_at >= than.fetched_at


#: The poller's counters: every process of a share reports them as totals that never go back.
_COUNTERS = tuple(field.name for field in attrs.fields(_PollCounts))
#: Seconds between two publications of the polling process's figures, at most.
FIGURES_EVERY = 1.0


class _SharedFigures:
    """The shared poller's figures as this process reports them, whoever polls.

    Counters (polls, skips, errors by class) are kept as the largest total seen, so that
    they never go back when another process takes over the polling; the polling process
    reports the total it took over plus what it counted since.
    """

    def __init__(self) -> None:
        self.counters: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self.errors: collections.Counter[str] = collections.Counter()
        self.latest: PollerStats | None = None  # the polling process's, when another polls
        self._offsets: dict[str, int] = {}
        self._error_offsets: collections.Counter[str] = collections.Counter()

    def start_leading(self, own: dict[str, Any]) -> None:
        """Count on from the totals seen, with this process's own counts as they are now."""
        self._offsets = {name: self.counters[name] - own[name] for name in _COUNTERS}
        self._error_offsets = collections.Counter(self.errors)
        self._error_offsets.subtract(own["errors"])
        self.latest = None

    def take(self, figures: PollerStats) -> None:
        """Keep the figures the polling process published."""
        self.latest = figures
        self._merge({name: getattr(figures, name) for name in _COUNTERS}, figures.errors)

    def report(self, own: dict[str, Any], *, leading: bool) -> dict[str, Any]:
        """Return the fields of :class:`PollerStats` to report, from this process's ``own``."""
        if leading:
            errors = collections.Counter(own["errors"])
            errors.update(self._error_offsets)
            self._merge({name: own[name] + self._offsets[name] for name in _COUNTERS}, errors)
        figures = (
            own if leading or self.latest is None else attrs.asdict(self.latest, recurse=False)
        )
        return {
            **figures,
            **self.counters,
            "errors": MappingProxyType({k: v for k, v in self.errors.items() if v > 0}),
        }

    def _merge(self, counters: dict[str, int], errors: Mapping[str, int]) -> None:
        for name, value in counters.items():
            self.counters[name] = max(self.counters[name], value)
        for name, value in errors.items():
            self.errors[name] = max(self.errors[name], value)


@attrs.frozen(kw_only=True)
class FreshStats(PollerStats):
    """What a :class:`FreshSnapshots` and its readers have done so far, at one moment.

    The poller's figures are those of :class:`PollerStats`; ``snapshots`` counts the
    snapshots kept, and ``skipped_slow_consumer`` stays 0: no reader holds the poller back.

    Attributes:
        reads: ``get()``, ``last_success()`` and ``wait()`` calls answered so far.
        waiting: ``wait()`` calls waiting for a snapshot now.
        subscribers: Subscriptions open now.
        dropped: Snapshots dropped, oldest first, from the full buffers of subscribers
            that read too slowly; the sum over all subscriptions so far.
        dropped_unread: Targets no longer watched because nobody read them for
            ``drop_unread_after`` intervals.
        leading: Whether this process polls; with a ``share``, false while another
            process polls for it. With a ``share`` every process reports the shared
            poller's figures (the interval in force, polls, skips, errors, the day's calls),
            as the polling process published them, and counters that never go back when
            another process takes over.
    """

    reads: int
    waiting: int
    subscribers: int
    dropped: int
    dropped_unread: int
    leading: bool


@attrs.define(eq=False)
class _Reading:
    """What the readers see of one watched target."""

    pinned: bool  # given to keep_fresh(): never dropped for being unread
    latest: Snapshot | None = None
    last_success: Snapshot | None = None
    changed: anyio.Event | None = None  # made by a waiter; set by the next snapshot
    waiting: int = 0
    read: bool = False  # since the target's last tick
    unread_ticks: int = 0


class Subscription:
    """Every new snapshot of some watched targets, as an async iterator.

    Made by :meth:`FreshSnapshots.subscribe`; enter it, then iterate::

        async with fresh.subscribe() as snapshots:
            async for snapshot in snapshots:
                ...

    Its buffer holds at most ``buffer`` snapshots; when a new one comes to a full buffer,
    the oldest is dropped and counted in :attr:`dropped`, so a slow reader loses old
    snapshots instead of slowing the poller or the other readers. Iteration ends when the
    ``keep_fresh()`` block is left.
    """

    def __init__(
        self,
        fresh: FreshSnapshots,
        targets: frozenset[Target] | None,
        buffer: int,
        latest: bool,
    ) -> None:
        self._fresh = fresh
        self._targets = targets
        self._latest = latest
        self._buffer: collections.deque[Snapshot] = collections.deque(maxlen=buffer)
        self._event: anyio.Event | None = None  # a filtered subscription's own
        self._open = False
        self._closed = False
        self.dropped: int = 0
        """Snapshots dropped so far because the buffer was full."""

    def __repr__(self) -> str:
        targets = "all" if self._targets is None else len(self._targets)
        return (
            f"<Subscription targets={targets} buffered={len(self._buffer)} dropped={self.dropped}>"
        )

    async def __aenter__(self) -> Subscription:
        fresh = self._fresh
        fresh._require_running()
        if self._open:
            msg = "a Subscription can be entered once; call fresh.subscribe() again for another"
            raise ClientStateError(msg)
        self._open = True
        fresh._subscriptions.append(self)
        if self._latest:
            for target, reading in fresh._readings.items():
                if reading.latest is not None and self._wants(target):
                    self._push(reading.latest)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Snapshot:
        """Wait for the next snapshot and take it."""
        if not self._open:
            msg = "iterate inside the block: async with fresh.subscribe() as snapshots: ..."
            raise ClientStateError(msg)
        if self._buffer:
            await anyio.lowlevel.checkpoint_if_cancelled()
            return self._buffer.popleft()
        fresh = self._fresh
        while True:
            if fresh._engine.fatal is not None:
                fresh._engine.raise_fatal()
            if fresh._engine.phase == "stopped" or self._closed:
                raise StopAsyncIteration
            # A thousand subscribers of every target wait on one event, set once per
            # snapshot: one Event per subscriber and snapshot tripled the cost of a delivery.
            if self._targets is None:
                await fresh._next_delivery().wait()
            else:
                self._event = event = anyio.Event()
                try:
                    await event.wait()
                finally:
                    self._event = None
            if self._buffer:  # the wait suspended: no further checkpoint needed
                return self._buffer.popleft()

    def _wants(self, target: Target) -> bool:
        return self._targets is None or target in self._targets

    def _push(self, snapshot: Snapshot) -> None:
        buffer = self._buffer
        if len(buffer) == buffer.maxlen:
            self.dropped += 1
            self._fresh._dropped += 1
        buffer.append(snapshot)
        self._wake()

    def _wake(self) -> None:
        if self._event is not None:
            self._event.set()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._fresh._subscriptions.remove(self)
        self._buffer.clear()


class FreshSnapshots(_EngineHolder):
    """The latest snapshot of each watched target, kept fresh by one poller for many readers.

    Create it with :meth:`WMSPanelClient.keep_fresh` and use it as an async context
    manager; the block owns the polling tasks, and leaving it stops them. Inside, any task
    of the same event loop may read, as often as it likes, without calling the API::

        async with client.keep_fresh(targets, interval=10.0) as fresh:
            snapshot = fresh.get(target)            # no network: the latest, or None yet
            snapshot = await fresh.wait(target)     # the first snapshot, once there is one
            async with fresh.subscribe() as snapshots:
                async for snapshot in snapshots:    # every new snapshot of every target
                    ...

    It polls as :meth:`WMSPanelClient.poll` does (the same schedule, spread, backoff and
    daily-quota rules), but never skips a tick for a slow reader: readers take the latest,
    or lose their oldest buffered snapshots. Targets can be given at the start, or watched
    and unwatched while it runs; ``max_targets`` bounds them, and with ``drop_unread_after``
    watched targets that nobody reads stop being polled.

    A failed poll is a snapshot too: :meth:`get` returns it (``error`` set, ``stats``
    ``None``), and :meth:`last_success` the last one with figures.

    Raises:
        ClientStateError: From reads, when the block was not entered yet or has been
            left, or when the client was closed while polling (that one also when leaving
            the block).
        QuotaExhaustedError: With ``on_quota="error"``, as for :meth:`WMSPanelClient.poll`.
        AuthenticationError: From reads and when leaving the block, when the API refused
            the credentials and ``raise_on_auth_error`` is true.
    """

    def __init__(
        self,
        fetch: Fetch,
        targets: Iterable[Target],
        settings: PollSettings,
        *,
        max_targets: int | None = MAX_WATCHED_TARGETS,
        drop_unread_after: int | None = None,
        subscription_buffer: int = SUBSCRIPTION_BUFFER,
        share: ShareSession | None = None,
    ) -> None:
        self._max_targets = _positive_or_none(max_targets, "max_targets")
        self._drop_unread_after = _positive_or_none(drop_unread_after, "drop_unread_after")
        if _positive_or_none(subscription_buffer, "subscription_buffer") is None:
            msg = "subscription_buffer must be 1 or more, got None"
            raise ConfigurationError(msg)
        self._engine = PollEngine(
            fetch,
            targets,
            settings,
            Handover(
                name="FreshSnapshots",
                made_by="client.keep_fresh()",
                deliver=self._deliver,
                forget=self._forget,
                wake_readers=self._wake_readers,
                before_tick=None if self._drop_unread_after is None else self._keeps_ticking,
                on_fatal=self._say_stopped,
                main=self._main,
            ),
        )
        if self._max_targets is not None and len(self._engine.states) > self._max_targets:
            msg = (
                f"keep_fresh() was given {len(self._engine.states)} targets, more than "
                f"max_targets={self._max_targets}; raise max_targets"
            )
            raise ConfigurationError(msg)
        self._subscription_buffer = subscription_buffer
        self._readings = {target: _Reading(pinned=True) for target in self._engine.states}
        self._subscriptions: list[Subscription] = []
        self._delivered: anyio.Event | None = None
        self._reads = 0
        self._dropped = 0
        self._dropped_unread = 0
        if share is not None and self._drop_unread_after is not None:
            msg = "with share=, the targets are fixed: drop_unread_after cannot be used"
            raise ConfigurationError(msg)
        self._share = share
        self._leading = False
        self._outbox: collections.deque[Snapshot] = collections.deque(maxlen=OUTBOX_SIZE)
        self._outbox_ready: anyio.Event | None = None
        self._warned: set[str] = set()
        self._generation = 0  # of the newest lease whose snapshots were taken
        self._shared = _SharedFigures()
        self._outage_shown = False

    def __repr__(self) -> str:
        return repr(self._engine)

    async def __aenter__(self) -> FreshSnapshots:
        if self._share is not None:
            require_asyncio("keep_fresh(share=RedisShare)", "poll in each process without a share")
        await self._engine.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._engine.stop(exc)

    # -- reading -------------------------------------------------------------------------

    def get(self, target: Target) -> Snapshot | None:
        """Return the latest snapshot, failed or not: to show figures, call :meth:`last_success`.

        Returns ``None`` before the first poll of ``target``. A failed poll's snapshot has
        ``stats=None`` and its ``error``: a page that shows ``get(target).stats`` goes blank
        for as long as an outage lasts, so read the figures from :meth:`last_success` and the
        current error from ``get(target).error``. No I/O.

        Raises:
            TargetNotWatchedError: ``target`` is not watched.
            ClientStateError: The block was not entered yet, or has been left.
        """
        return self._read(target).latest

    def last_success(self, target: Target) -> Snapshot | None:
        """Return the latest snapshot of ``target`` that has figures, or ``None``; no I/O.

        Raises:
            TargetNotWatchedError: ``target`` is not watched.
            ClientStateError: The block was not entered yet, or has been left.
        """
        return self._read(target).last_success

    async def wait(self, target: Target, newer_than: Snapshot | None = None) -> Snapshot:
        """Wait for a snapshot of ``target``: its first, or one newer than ``newer_than``.

        Returns at once if there is one already. A long-poll endpoint passes the snapshot
        its client has, to sleep until the next poll of the target. Failed polls count
        (their snapshot carries the error); bound the wait with ``anyio.fail_after()`` if
        the target may back off or the daily quota may pause polling.

        Raises:
            TargetNotWatchedError: ``target`` is not watched, or was unwatched meanwhile.
            ClientStateError: The block was not entered yet, or was left meanwhile.
        """
        reading = self._read(target)
        reading.waiting += 1
        try:
            while True:
                latest = reading.latest
                if latest is not None and (newer_than is None or _is_newer(latest, newer_than)):
                    await anyio.lowlevel.checkpoint()
                    return latest
                if reading.changed is None:
                    reading.changed = anyio.Event()
                await reading.changed.wait()
                if self._reading(target) is not reading:  # unwatched, then watched again
                    raise self._not_watched(target)
        finally:
            reading.waiting -= 1

    def subscribe(
        self,
        targets: Iterable[Target] | None = None,
        *,
        buffer: int | None = None,
        latest: bool = True,
    ) -> Subscription:
        """Subscribe to every new snapshot of all watched targets, or of ``targets``.

        Use the result as an async context manager, and iterate inside it. Each
        subscription has a buffer of its own; a reader that falls behind loses its oldest
        snapshots (counted in ``dropped``), never slowing the poller or other readers.

        Args:
            targets: Only these targets, which must be watched; ``None`` for all, including
                those watched later.
            buffer: Snapshots kept for this reader at most; defaults to the
                ``subscription_buffer`` given to ``keep_fresh()``.
            latest: Start with the latest snapshot of each target that has one, so that a
                new page shows figures at once.

        Raises:
            TargetNotWatchedError: One of ``targets`` is not watched.
            ConfigurationError: ``buffer`` is not a whole number, 1 or more.
        """
        wanted = None
        if targets is not None:
            wanted = frozenset(targets)
            for target in wanted:
                self._reading(target)
        size = _positive_or_none(buffer, "buffer") or self._subscription_buffer
        return Subscription(self, wanted, size, latest)

    # -- what is watched -----------------------------------------------------------------

    def watch(self, target: Target, *, interval: float | None = None) -> None:
        """Start polling ``target`` for readers, if it is not watched already.

        Unless it was given to ``keep_fresh()``, a watched target stops being polled
        after ``drop_unread_after`` intervals without a reader (when that is set).

        Args:
            target: What to poll.
            interval: Seconds between its polls, instead of the ``interval`` of
                ``keep_fresh()``; ``None`` keeps what it has.

        Raises:
            TargetLimitError: ``max_targets`` targets are watched already.
            ConfigurationError: ``target`` or ``interval`` is invalid.
            QuotaExhaustedError: With ``on_quota="error"``, the calls left today do not
                cover the schedule with this target; nothing changed.
            ClientStateError: The block has been left.
        """
        if self._engine.phase == "stopped":
            self._require_running()
        self._refuse_with_share("watch")
        target = _checked_target(target)
        reading = self._readings.get(target)
        if reading is not None:
            if interval is not None:
                self._engine.add(target, interval)
            return
        if self._max_targets is not None and len(self._readings) >= self._max_targets:
            msg = (
                f"cannot watch {target}: {self._max_targets} targets are watched already "
                "(max_targets); unwatch some, or raise max_targets"
            )
            raise TargetLimitError(msg, limit=self._max_targets)
        self._engine.add(target, interval)
        self._readings[target] = _Reading(pinned=False)

    def unwatch(self, target: Target) -> None:
        """Stop polling ``target``; do nothing if it is not watched.

        Its readers waiting in :meth:`wait` get :class:`TargetNotWatchedError`.

        Raises:
            ConfigurationError: With a ``share``, whose targets are fixed.
        """
        self._refuse_with_share("unwatch")
        self._engine.remove(target)

    @property
    def stats(self) -> FreshStats:
        """What the poller and its readers have done so far; see :class:`FreshStats`."""
        fields = self._engine.stats_fields()
        if self._share is not None:
            fields = self._shared.report(fields, leading=self._leading)
        return FreshStats(
            **fields,
            reads=self._reads,
            waiting=sum(reading.waiting for reading in self._readings.values()),
            subscribers=len(self._subscriptions),
            dropped=self._dropped,
            dropped_unread=self._dropped_unread,
            leading=self._share is None or self._leading,
        )

    # -- what the engine hands over -------------------------------------------------------

    def _keeps_ticking(self, state: _TargetState) -> bool:
        """Count a tick of a target nobody reads; stop polling it after too many."""
        reading = self._readings[state.target]
        if reading.pinned or self._drop_unread_after is None:
            return True
        if reading.read or reading.waiting:
            reading.read = False
            reading.unread_ticks = 0
        elif reading.unread_ticks >= self._drop_unread_after:
            logger.info(
                "%s is no longer polled: nobody read it for %d intervals",
                state.target,
                reading.unread_ticks,
            )
            self._dropped_unread += 1
            self._engine.remove(state.target)
            return False
        else:
            reading.unread_ticks += 1
        return True

    def _deliver(self, state: _TargetState, snapshot: Snapshot) -> None:
        if self._leading:
            self._outbox.append(snapshot)
            if self._outbox_ready is not None:
                self._outbox_ready.set()
        reading = self._readings[state.target]
        self._engine.counts.snapshots += 1
        reading.latest = snapshot
        if snapshot.error is None:
            reading.last_success = snapshot
        if reading.changed is not None:
            reading.changed.set()
            reading.changed = None
        target = state.target
        for subscription in self._subscriptions:
            if subscription._wants(target):
                subscription._push(snapshot)
                reading.read = True
        self._wake_subscribers()

    def _forget(self, state: _TargetState) -> None:
        reading = self._readings.pop(state.target)
        if reading.changed is not None:
            reading.changed.set()

    def _wake_readers(self) -> None:
        for reading in self._readings.values():
            if reading.changed is not None:
                reading.changed.set()
                reading.changed = None
        for subscription in self._subscriptions:
            subscription._wake()
        self._wake_subscribers()

    def _next_delivery(self) -> anyio.Event:
        """Return the event the next snapshot sets, for subscriptions of every target."""
        if self._delivered is None:
            self._delivered = anyio.Event()
        return self._delivered

    def _wake_subscribers(self) -> None:
        if self._delivered is not None:
            self._delivered.set()
            self._delivered = None

    @staticmethod
    def _say_stopped(exc: BaseException) -> None:
        # Readers may be few and far between: say it now, not at the next read.
        logger.error(
            "keep_fresh() stopped polling: %s: %s; its readers get this error",
            type(exc).__name__,
            exc,
        )

    # -- sharing one poller between processes ----------------------------------------------

    async def _main(self) -> None:
        share = self._share
        if share is None:
            await self._engine.run()
            return
        # Either this process polls for all (it holds the lease), or it follows the one
        # that does, trying to take the lease every third of it.
        period = share.share.lease / 3
        while True:
            try:
                if not await share.take_lease():
                    self._outage_shown = False
                    # One subscription while following: the latest snapshots are read once.
                    await share.follow(self._take_shared, period)
            except RedisUnavailableError as exc:
                self._warn_once("share", "cannot reach Redis to share the poller: %s", exc)
                self._show_outage(exc)
                await anyio.sleep(period)
                continue
            self._outage_shown = False
            await self._lead(share, period)
            if self._engine.fatal is not None:
                return

    async def _lead(self, share: ShareSession, period: float) -> None:
        """Poll for every process, publishing each snapshot, until the lease is lost.

        Fencing by time: the lease expires for the others ``lease`` seconds after its last
        renewal reached Redis, so this process stops polling ``LEASE_FENCE`` of a lease
        after it sent its last renewal that succeeded, whether or not Redis answers by then:
        through a partition, the two sides never poll at once.
        """
        logger.info("polling for every process that shares these targets (%s)", share.url)
        self._leading = True
        self._generation = share.generation
        self._shared.start_leading(self._engine.stats_fields())
        self._engine.reset()
        fenced_for = share.share.lease * LEASE_FENCE
        try:
            async with anyio.create_task_group() as task_group:
                polling = task_group.cancel_scope
                polling.deadline = anyio.current_time() + fenced_for
                task_group.start_soon(self._engine.run)
                task_group.start_soon(self._publish, share, polling)
                while True:
                    await anyio.sleep(period)
                    if self._engine.fatal is not None:
                        break
                    sent = anyio.current_time()
                    try:
                        if not await share.renew_lease():
                            logger.warning("another process polls now; following it")
                            break
                    except RedisUnavailableError as exc:
                        self._warn_once("share", "cannot renew the lease: %s", exc)
                    else:
                        polling.deadline = sent + fenced_for
                        self._warned.discard("share")
                polling.cancel()
            if polling.cancelled_caught and polling.deadline <= anyio.current_time():
                logger.warning(
                    "could not renew the lease for %.1f s: stopped polling, so that another "
                    "process can take over; polling again once this one holds the lease",
                    fenced_for,
                )
        finally:
            self._leading = False
            # Given up at once, so that another process takes over now; if Redis is away,
            # the lease expires by itself.
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(1),
                contextlib.suppress(RedisUnavailableError),
            ):
                await share.release_lease()

    async def _publish(self, share: ShareSession, polling: anyio.CancelScope) -> None:
        figures_due = -math.inf
        while True:
            while self._outbox:
                snapshot = self._outbox.popleft()
                shared = dump_snapshot(snapshot, generation=share.generation)
                try:
                    published = await share.publish(target_key(snapshot.target), shared)
                except RedisUnavailableError as exc:
                    self._warn_once("publish", "cannot publish snapshots: %s", exc)
                    continue
                if not published:
                    logger.warning("another process holds the lease now; following it")
                    polling.cancel()
                    return
            if (now := anyio.current_time()) >= figures_due:
                figures_due = now + FIGURES_EVERY
                figures = dump_figures(self.stats, generation=share.generation)
                with contextlib.suppress(RedisUnavailableError):  # said by the next snapshot
                    await share.publish(FIGURES_KEY, figures)
                continue  # snapshots may have come meanwhile
            self._outbox_ready = anyio.Event()
            with anyio.move_on_after(figures_due - now):
                await self._outbox_ready.wait()
            self._outbox_ready = None

    def _take_shared(self, data: bytes) -> None:
        """Keep a snapshot (or the figures) the polling process published, if newer."""
        try:
            snapshot, generation = load_shared(data)
        except WireFormatError as exc:
            self._warn_once("wire", "ignoring a shared snapshot: %s", exc)
            return
        if generation < self._generation:
            return  # from a poller deposed since: fenced off
        self._generation = generation
        if not isinstance(snapshot, Snapshot):
            self._shared.take(snapshot)
            return
        state = self._engine.states.get(snapshot.target)
        reading = self._readings.get(snapshot.target)
        if state is None or state.removed or reading is None:
            return
        latest = reading.latest
        if latest is not None and latest.fetched_at >= snapshot.fetched_at:
            return  # read back from Redis after it was published: seen already
        self._deliver(state, snapshot)

    def _show_outage(self, error: RedisUnavailableError) -> None:
        """Give each target a snapshot of ``error``, once an outage.

        The polling process's polls fail with it too (its ledger or its share is away), so
        every process's readers see the same; :meth:`last_success` keeps the figures.
        """
        if self._outage_shown:
            return
        self._outage_shown = True
        now = self._engine.utc_clock()
        for state in list(self._engine.states.values()):
            if not state.removed and state.target in self._readings:
                outage = Snapshot(
                    target=state.target, stats=None, error=error, fetched_at=now, latency=0.0
                )
                self._deliver(state, outage)

    def _warn_once(self, kind: str, message: str, exc: BaseException) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning(message, exc)

    def _refuse_with_share(self, what: str) -> None:
        if self._share is not None:
            msg = (
                f"{what}() is not available with share=: the processes share one poller of "
                "one set of targets, given to keep_fresh()"
            )
            raise ConfigurationError(msg)

    # -- helpers -------------------------------------------------------------------------

    def _read(self, target: Target) -> _Reading:
        """Return what readers see of ``target``, counted as a read."""
        reading = self._reading(target)
        reading.read = True
        self._reads += 1
        return reading

    def _reading(self, target: Target) -> _Reading:
        """Return what readers see of ``target``, or raise why they cannot read it."""
        reading = self._readings.get(target)
        if reading is None or self._engine.phase != "running" or self._engine.fatal is not None:
            self._require_running()
            raise self._not_watched(_checked_target(target))
        return reading

    @staticmethod
    def _not_watched(target: Target) -> TargetNotWatchedError:
        msg = f"{target} is not watched; give it to keep_fresh() or call fresh.watch(target) first"
        return TargetNotWatchedError(msg, target=target)

    def _require_running(self) -> None:
        if self._engine.fatal is not None:
            self._engine.raise_fatal()
        if self._engine.phase == "new":
            msg = "enter it first: async with client.keep_fresh(...) as fresh: ..."
            raise ClientStateError(msg)
        if self._engine.phase == "stopped":
            msg = "this keep_fresh() block has been left; its snapshots are no longer kept fresh"
            raise ClientStateError(msg)
