"""``keep_fresh(share=RedisShare)``: one poller for the processes that share its targets.

Of the processes that keep the same targets fresh, the one holding the lease in Redis
polls (its engine runs) and publishes each snapshot, and its poller's figures about once a
second; the others follow, taking what it publishes into their own readers' memory, and
try to take the lease every third of it. Fencing is by time and by generation: a leader
that cannot renew stops polling before its lease can expire for the others, and followers
refuse what a deposed leader publishes. ``FreshSnapshots`` holds one of these when given
a share; its readers' side is the same either way.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import attrs

from ._exceptions import ConfigurationError, RedisUnavailableError
from ._models import Snapshot, Target
from ._poller import PollEngine, PollerStats, _PollCounts
from ._targets import TargetState
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
#: Seconds between two publications of the polling process's figures, at most.
FIGURES_EVERY = 1.0
#: The poller's counters: every process of a share reports them as totals that never go back.
_COUNTERS = tuple(field.name for field in attrs.fields(_PollCounts))


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


def share_session(share: object, account: str, targets: Iterable[Target]) -> ShareSession:
    """Return the session of ``share`` for ``account``'s ``targets``.

    Raises:
        ConfigurationError: ``share`` is not a ``RedisShare``.
    """
    from ._redis import RedisShare  # noqa: PLC0415 - the `redis` extra

    if not isinstance(share, RedisShare):
        msg = f"share must be a RedisShare, got {share!r:.60}"
        raise ConfigurationError(msg)
    return share.session(account, [target_key(target) for target in targets])


class _HasLatest(Protocol):
    @property
    def latest(self) -> Snapshot | None: ...


class SharedPolling:
    """Leads or follows the poller that processes share, for one ``FreshSnapshots``.

    Args:
        share: This process's session of the share.
        engine: The engine that polls while this process leads.
        deliver: Hands a snapshot to the readers, as the engine does.
        readings: What readers see of each watched target (its latest snapshot).
        stats: Returns the figures to publish while this process leads.
    """

    def __init__(
        self,
        share: ShareSession,
        engine: PollEngine,
        deliver: Callable[[TargetState, Snapshot], None],
        readings: Mapping[Target, _HasLatest],
        stats: Callable[[], PollerStats],
    ) -> None:
        self._share = share
        self._engine = engine
        self._deliver = deliver
        self._readings = readings
        self._stats = stats
        self.leading = False
        self.figures = _SharedFigures()
        self._outbox: collections.deque[Snapshot] = collections.deque(maxlen=OUTBOX_SIZE)
        self._outbox_ready: anyio.Event | None = None
        self._warned: set[str] = set()
        self._generation = 0  # of the newest lease whose snapshots were taken
        self._outage_shown = False

    def publish_later(self, snapshot: Snapshot) -> None:
        """Queue a snapshot of this process's poll, for the others (while leading)."""
        self._outbox.append(snapshot)
        if self._outbox_ready is not None:
            self._outbox_ready.set()

    async def run(self) -> None:
        """Poll for every process, or follow the one that does, until the block is left."""
        share = self._share
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
        self.leading = True
        self._generation = share.generation
        self.figures.start_leading(self._engine.stats_fields())
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
            self.leading = False
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
                figures = dump_figures(self._stats(), generation=share.generation)
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
            self.figures.take(snapshot)
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
