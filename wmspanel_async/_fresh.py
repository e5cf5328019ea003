"""``client.keep_fresh()``: one poller, many readers.

The poller's engine (``_poller.PollEngine``, held, not inherited) polls exactly as for ``poll()``;
here its snapshots are kept, the latest of each target, for readers that come and go: a
``get()`` reads memory, ``wait()`` sleeps until a target's next snapshot, and each
subscription gets every new snapshot through a bounded buffer of its own. No reader can
hold the poller back, so no tick is ever skipped for a slow consumer.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import attrs

from ._constants import MAX_WATCHED_TARGETS, SUBSCRIPTION_BUFFER
from ._exceptions import (
    ClientStateError,
    ConfigurationError,
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
)
from ._targets import TargetState
from ._transport import require_asyncio

if TYPE_CHECKING:
    from ._redis import RedisShare
    from ._sharing import SharedPolling

logger = logging.getLogger("wmspanel_async.poller")


def _positive_or_none(value: object, name: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    msg = f"{name} must be a whole number, 1 or more, or None; got {value!r}"
    raise ConfigurationError(msg)


def _is_newer(snapshot: Snapshot, than: Snapshot) -> bool:
    # Identity first: two polls in the same clock tick (a frozen test clock) are still two.
    return snapshot is not than and snapshot.fetched_at >= than.fetched_at


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
        share: RedisShare | None = None,
        account: str = "",
    ) -> None:
        targets = list(targets)
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
                main=None if share is None else self._run_shared,
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
        self._share: SharedPolling | None = None
        if share is not None:
            from ._sharing import SharedPolling, share_session  # noqa: PLC0415 - `redis` extra

            self._share = SharedPolling(
                share_session(share, account, targets),
                self._engine,
                self._deliver,
                self._readings,
                lambda: self.stats,
            )

    async def __aenter__(self) -> FreshSnapshots:
        if self._share is not None:
            require_asyncio("keep_fresh(share=RedisShare)", "poll in each process without a share")
        await self._engine.start()
        return self

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
            fields = self._share.figures.report(fields, leading=self._share.leading)
        return FreshStats(
            **fields,
            reads=self._reads,
            waiting=sum(reading.waiting for reading in self._readings.values()),
            subscribers=len(self._subscriptions),
            dropped=self._dropped,
            dropped_unread=self._dropped_unread,
            leading=self._share is None or self._share.leading,
        )

    # -- what the engine hands over -------------------------------------------------------

    def _keeps_ticking(self, state: TargetState) -> bool:
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

    def _deliver(self, state: TargetState, snapshot: Snapshot) -> None:
        if self._share is not None and self._share.leading:
            self._share.publish_later(snapshot)
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

    def _forget(self, state: TargetState) -> None:
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

    async def _run_shared(self) -> None:
        assert self._share is not None  # noqa: S101 - only the engine's main with a share
        await self._share.run()

    @staticmethod
    def _say_stopped(exc: BaseException) -> None:
        # Readers may be few and far between: say it now, not at the next read.
        logger.error(
            "keep_fresh() stopped polling: %s: %s; its readers get this error",
            type(exc).__name__,
            exc,
        )

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
