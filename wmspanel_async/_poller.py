"""``client.poll()``: the polling engine, its per-target state, and the snapshot stream.

One tick of one target travels: the scheduler pops the target from a heap of due times and
either skips the tick (counted: busy, consumer slow, backing off, quota) or hands the target
to one of ``concurrency`` workers -> the worker awaits the fetch function the client gave us
(one HTTP attempt, never retried here: the next tick is the retry) -> the snapshot waits in
the target's one-snapshot slot -> the consumer takes it in ``async for``.

The engine (:class:`PollEngine`) is a part its holders own, not a base class: the stream
here, and ``_fresh.FreshSnapshots``, each give it a :class:`Handover` saying what becomes
of a snapshot, of a target no longer polled, and when readers wake.

Whether the schedule fits the daily quota is the business of ``_governor`` (plain
arithmetic), and where ticks fall that of ``_schedule``; this module asks them and acts.
It never imports ``_client``: the client hands over what the poller needs (the fetch
function, the quota's status and the UTC clock), so imports run one way.
"""

from __future__ import annotations

import collections
import datetime as dt
import heapq
import itertools
import logging
import math
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, Literal, NoReturn

import anyio
import anyio.lowlevel
import attrs

from ._exceptions import (
    APIError,
    APITimeoutError,
    AuthenticationError,
    ClientStateError,
    ConfigurationError,
    InternalError,
    QuotaExhaustedError,
    WMSPanelError,
)
from ._governor import AFTER_RESET, OnQuota, QuotaGovernor, QuotaPlan, Verdict
from ._models import QuotaStatus, Snapshot, Target
from ._quota import UTCClock
from ._schedule import SLOT_EPSILON, first_slot, spread_anchor

logger = logging.getLogger("wmspanel_async.poller")

#: Fetch one target once (no retries), within a deadline in seconds, and return its
#: figures or the error as a snapshot.
Fetch = Callable[[Target, float], Awaitable[Snapshot]]

#: Backoff after consecutive failures never waits longer than this many intervals.
BACKOFF_CAP_INTERVALS = 10
#: A poll may take this many of its target's intervals (and at least MIN_POLL_DEADLINE
#: seconds, at most the client's deadline): a stalled answer is given up while it can
#: still matter, instead of holding a connection for the client's whole timeout. Each
#: timeout in a row doubles it (up to MAX_DEADLINE_DOUBLINGS times), and a success sets it
#: to twice the answer's latency if that is longer, so a slow but working API still answers.
POLL_DEADLINE_INTERVALS = 2.0
MIN_POLL_DEADLINE = 1.0
MAX_DEADLINE_DOUBLINGS = 5
#: Targets whose last poll failed may hold at most this share of the concurrency (and at
#: least one request), so that an upstream that stalls for some targets cannot take every
#: connection from the targets that answer.
DOWN_SHARE = 0.5
#: How many recent polls the lateness figures of ``stats`` are computed from.
LATENESS_WINDOW = 1024
#: Event loops fire timers up to one clock resolution early; a tick due within this is due.
_EARLY_WAKE = 1e-5


def _checked_interval(seconds: float, what: str = "interval") -> float:
    if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0):
        msg = f"{what} must be a positive number of seconds, got {seconds!r}"
        raise ConfigurationError(msg)
    return float(seconds)


def _checked_target(target: object) -> Target:
    if not isinstance(target, Target):
        msg = f"expected a Target, got {type(target).__name__} {target!r:.60}"
        raise ConfigurationError(msg)
    return target


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@attrs.frozen(kw_only=True)
class PollSettings:
    """How a poller polls, whatever it does with the snapshots; the client makes it.

    Attributes:
        quota: Returns the client's daily call budget now, without I/O.
        refresh_quota: Reads the budget again from a shared ledger; awaited at most once
            per ``QUOTA_RECHECK`` seconds.
        utc_clock: Returns the current aware UTC datetime.
        interval: Seconds between two polls of a target.
        concurrency: Requests in flight at most.
        on_quota: ``"stretch"`` or ``"error"``, when the calls would not last the day.
        reserve: Fraction of the daily limit left for other calls of the client.
        raise_on_auth_error: Stop polling on a 403, raising it to the readers.
        first_poll_now: Poll each target for the first time as soon as it is added, then on
            its spread schedule (at least half an interval later), instead of at its first
            spread slot.
        rng: Randomness for the jitter; tests pass a seeded one.
    """

    quota: Callable[[], QuotaStatus]
    utc_clock: UTCClock
    refresh_quota: Callable[[], Awaitable[object]] | None = None
    interval: float = attrs.field(default=30.0, converter=_checked_interval)
    concurrency: int = attrs.field(default=10)
    on_quota: OnQuota = "stretch"
    reserve: float = 0.05
    raise_on_auth_error: bool = True
    first_poll_now: bool = False
    rng: random.Random = attrs.field(factory=random.Random)

    @concurrency.validator
    def _check_concurrency(self, _: attrs.Attribute[int], concurrency: object) -> None:
        if not (isinstance(concurrency, int) and concurrency >= 1):
            msg = f"concurrency must be 1 or more, got {concurrency!r}"
            raise ConfigurationError(msg)


@attrs.define(kw_only=True)
class _PollCounts:
    """The poller's running counts; :class:`PollerStats` documents each."""

    polls: int = 0
    snapshots: int = 0
    unchanged: int = 0
    skipped_busy: int = 0
    skipped_slow_consumer: int = 0
    skipped_backoff: int = 0
    skipped_quota: int = 0


@attrs.frozen(kw_only=True)
class PollerStats(_PollCounts):
    """What a :class:`SnapshotStream` has done so far, at one moment.

    Every tick of every target is either a poll or one of the skips, so
    ``polls + skipped`` is the number of ticks that came due.

    Attributes:
        targets: Targets polled now.
        interval: The interval asked for, in seconds (targets may override it).
        effective_interval: The interval in force after stretching to fit the daily quota.
        polls: Requests sent.
        snapshots: Snapshots handed to the consumer.
        unchanged: Snapshots not handed over because ``only_changes`` found them equal to
            the target's previous one.
        skipped_busy: Ticks skipped because the target's previous request was still in
            flight or waiting for a free connection.
        skipped_slow_consumer: Ticks skipped because the target's previous snapshot had not
            been taken yet.
        skipped_backoff: Ticks skipped while a failing target backs off.
        skipped_quota: Ticks skipped because the poller's share of the daily calls was spent.
        errors: Failed polls by error class name, for example ``{"ServerError": 2}``.
        targets_down: Targets whose last poll failed.
        targets_refused: Targets the API refused for good (an :class:`APIError`, which no
            retry changes): polled no more, their last snapshot carries the error.
        quota: The client's daily call budget now.
        reserved_calls: Calls of the day the poller leaves to other calls of the client.
        paused: Whether polling waits for the next 00:00 UTC because the calls are spent.
        lateness_p50: Median seconds between when a recent poll was due and when its request
            started.
        lateness_p99: The 99th percentile of the same.
        lateness_max: The largest of the same.
    """

    targets: int
    interval: float
    effective_interval: float
    errors: Mapping[str, int]
    targets_down: int
    targets_refused: int = 0
    quota: QuotaStatus
    reserved_calls: int
    paused: bool
    lateness_p50: float
    lateness_p99: float
    lateness_max: float

    @property
    def skipped(self) -> int:
        """All ticks skipped, whatever the reason."""
        return (
            self.skipped_busy
            + self.skipped_slow_consumer
            + self.skipped_backoff
            + self.skipped_quota
        )


@attrs.define(eq=False)
class _TargetState:
    """Everything the poller tracks about one target; only the poller's tasks touch it."""

    target: Target
    override: float | None  # an interval of its own
    # The schedule: tick k is due at anchor + k * interval (fixed rate, no drift).
    # Planning it again bumps the generation, which voids its older heap entries.
    planned: bool = False
    generation: int = 0
    anchor: float = 0.0
    interval: float = 0.0
    k: int = 0
    due: float = 0.0
    last_due: float | None = None  # due time of the last tick that sent a request
    tick_due: float = 0.0  # due time of the request in flight
    busy: bool = False  # a request is in flight or waits for a worker
    busy_while_down: bool = False  # ... and it counts against the down targets' share
    pending: Snapshot | None = None  # the one snapshot the consumer has not taken
    removed: bool = False
    refused: bool = False  # the API refused it for good (APIError): polled no more
    failures: int = 0
    timeouts: int = 0  # polls in a row that ran out of time
    last_latency: float = 0.0  # of the last successful poll
    down_since: float = 0.0
    not_before: float = -math.inf  # backoff: no request before this moment
    last_key: tuple[object, type[BaseException] | None] | None = None  # for only_changes


@attrs.frozen(kw_only=True)
class Handover:
    """What a :class:`PollEngine` hands over to the object that holds it, and when.

    Attributes:
        name: The holder's class name, for messages and ``repr``.
        made_by: What makes a holder, for the message of a second ``async with``.
        deliver: Takes the snapshot of a poll of a target still polled.
        forget: Drops what is kept for a target no longer polled.
        wake_readers: Wakes whoever waits for snapshots: polling stopped or failed.
        before_tick: Says whether a target's tick goes on (false: the holder removed it).
        on_fatal: Hears of the error that stopped polling, once, before readers wake.
        main: What runs while the block lasts, instead of :meth:`PollEngine.run`.
    """

    name: str
    made_by: str
    deliver: Callable[[_TargetState, Snapshot], None]
    forget: Callable[[_TargetState], None]
    wake_readers: Callable[[], None]
    before_tick: Callable[[_TargetState], bool] | None = None
    on_fatal: Callable[[BaseException], None] | None = None
    main: Callable[[], Coroutine[Any, Any, None]] | None = None


class PollEngine:
    """The scheduler and its workers: polls targets at a fixed rate within the daily quota.

    What becomes of each snapshot is the business of the object that holds the engine:
    :class:`SnapshotStream` hands each to one consumer, ``FreshSnapshots`` keeps the latest
    of each target for many readers. Each tells the engine, in a :class:`Handover`, what
    to do with a snapshot, with a target no longer polled, and when readers must wake.
    """

    def __init__(
        self,
        fetch: Fetch,
        targets: Iterable[Target],
        settings: PollSettings,
        handover: Handover,
    ) -> None:
        self._handover = handover
        self._governor = QuotaGovernor(settings.reserve, settings.on_quota)
        self._fetch = fetch
        self._quota = settings.quota
        self._refresh_quota = settings.refresh_quota
        self.utc_clock = settings.utc_clock
        self._interval = settings.interval
        self._concurrency = concurrency = settings.concurrency
        self._raise_on_auth_error = settings.raise_on_auth_error
        self._first_poll_now = settings.first_poll_now
        self._said_no_burst = False
        self._rng = settings.rng

        self.states: dict[Target, _TargetState] = {}
        for checked in map(_checked_target, targets):
            self.states.setdefault(checked, _TargetState(checked, None))

        self._heap: list[tuple[float, int, int, _TargetState]] = []
        self._sequence = itertools.count()
        self._dirty = True  # something changed: revise the quota plan, plan new targets
        self._respread = True  # the intervals changed: plan every target again
        self._next_quota_check = -math.inf
        self._paused_until: float | None = None
        self._paused_since = 0.0
        self._busy = 0
        self._busy_down = 0
        self._down_limit = max(1, int(concurrency * DOWN_SHARE))

        self._wake_scope: anyio.CancelScope | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._tasks_scope: anyio.CancelScope | None = None
        self.phase: Literal["new", "running", "stopped"] = "new"
        self.fatal: BaseException | None = None
        self._fatal_traceback: TracebackType | None = None
        self.fatal_raised = False

        self.counts = _PollCounts()
        self._errors: collections.Counter[str] = collections.Counter()
        self._lateness: collections.deque[float] = collections.deque(maxlen=LATENESS_WINDOW)

    def __repr__(self) -> str:
        return (
            f"<{self._handover.name} {self.phase} targets={len(self.targets)} "
            f"interval={self._interval:g} "
            f"effective_interval={self._interval * self._governor.factor:g}>"
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self.phase != "new":
            msg = (
                f"a {self._handover.name} can be entered once; call {self._handover.made_by} again "
                "for another"
            )
            raise ClientStateError(msg)
        if self._governor.on_quota == "error":
            self._require_fits(self._rate())
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self.phase = "running"
        dispatch_send, dispatch_receive = anyio.create_memory_object_stream[_TargetState](math.inf)
        self._dispatch_send = dispatch_send
        self._dispatch_receive = dispatch_receive
        task_group.start_soon(self._handover.main or self.run, name="wmspanel_async poller")

    async def stop(self, exc: BaseException | None) -> None:
        """Stop polling, as the block is left (with ``exc``, if it raised)."""
        self.phase = "stopped"
        self._handover.wake_readers()
        task_group = self._task_group
        if task_group is None:  # pragma: no cover - __aenter__ failed before the task group
            return
        task_group.cancel_scope.cancel()
        # The body's own exception is not passed into the task group: it would come out
        # wrapped in an ExceptionGroup, and users catch our errors as themselves.
        try:
            await task_group.__aexit__(None, None, None)
        finally:
            self._dispatch_send.close()
            self._dispatch_receive.close()
        if exc is None and self.fatal is not None and not self.fatal_raised:
            self.fatal_raised = True
            self.raise_fatal()

    # -- live changes ------------------------------------------------------------------

    @property
    def targets(self) -> tuple[Target, ...]:
        """The targets polled now, in the order they were added."""
        return tuple(state.target for state in self.states.values() if not state.removed)

    def add(self, target: Target, interval: float | None) -> None:
        target = _checked_target(target)
        override = None if interval is None else _checked_interval(interval)
        state = self.states.get(target)
        if self._governor.on_quota == "error":
            rate, targets = self._rate(), len(self.targets)
            if state is not None and not state.removed:
                rate, targets = rate - 1 / (state.override or self._interval), targets - 1
            self._require_fits(rate + 1 / (override or self._interval), targets=targets + 1)
        if state is None:
            self.states[target] = _TargetState(target, override)
        elif state.removed or state.refused or state.override != override:
            state.override = override
            state.removed = state.refused = False  # added again: polled again
            state.planned = False
        self._changed()

    def remove(self, target: Target) -> None:
        state = self.states.get(target)
        if state is None or state.removed:
            return
        state.removed = True
        self._handover.forget(state)
        if not state.busy:
            del self.states[target]
        self._changed()

    def set_interval(self, seconds: float) -> None:
        """Change the interval of the targets without one of their own: see its holders'."""
        seconds = _checked_interval(seconds)
        if self._governor.on_quota == "error":
            self._require_fits(self._rate(default=seconds), interval=seconds)
        self._interval = seconds
        self._respread = True
        self._changed()

    def stats_fields(self) -> dict[str, Any]:
        """Return the fields of :class:`PollerStats` now."""
        status = self._quota()
        lateness = sorted(self._lateness)
        live = [state for state in self.states.values() if not state.removed]
        return dict(
            targets=len(live),
            interval=self._interval,
            effective_interval=self._interval * self._governor.factor,
            **attrs.asdict(self.counts),
            errors=MappingProxyType(dict(self._errors)),
            targets_down=sum(1 for state in live if state.failures and not state.refused),
            targets_refused=sum(1 for state in live if state.refused),
            quota=status,
            reserved_calls=self._governor.reserved_calls(status),
            paused=self._paused_until is not None,
            lateness_p50=_percentile(lateness, 0.5),
            lateness_p99=_percentile(lateness, 0.99),
            lateness_max=lateness[-1] if lateness else 0.0,
        )

    def _changed(self) -> None:
        self._dirty = True
        self._wake_scheduler()

    def _wake_scheduler(self) -> None:
        if self._wake_scope is not None:
            self._wake_scope.cancel()

    # -- the quota -----------------------------------------------------------------------

    def _rate(self, default: float | None = None) -> float:
        """Return the calls per second the requested schedule makes (before stretching)."""
        default = default or self._interval
        return sum(
            1 / (state.override or default)
            for state in self.states.values()
            if not (state.removed or state.refused)
        )

    def _plan(self, rate: float) -> QuotaPlan:
        return self._governor.plan(self._quota(), rate=rate, now=self.utc_clock())

    def _require_fits(
        self, rate: float, *, targets: int | None = None, interval: float | None = None
    ) -> None:
        """Raise unless ``rate`` fits today's calls; the error names the schedule asked for."""
        self._governor.require_fits(
            self._plan(rate),
            targets=len(self.targets) if targets is None else targets,
            interval=interval or self._interval,
        )

    def _revise(self, now: float) -> None:
        """Fit the schedule to the calls left today, then rebuild it if needed."""
        verdict: Verdict = self._governor.revise(
            self._plan(self._rate()), targets=len(self.targets), interval=self._interval
        )
        self._next_quota_check = now + verdict.recheck_in
        if verdict.pause_for is not None:
            self._pause(now, verdict.pause_for, verdict.log)
            return
        if verdict.log is not None:
            logger.log(*verdict.log)
        self._respread = self._respread or verdict.respread
        if self._dirty or self._respread:
            self._replan(now)

    def _pause(self, now: float, seconds: float, log: tuple[int, str] | None = None) -> None:
        if self._paused_until is not None:
            return
        self._paused_until = now + seconds
        self._paused_since = now
        if log is None:
            log = (logging.WARNING, self._governor.pause_notice(self._quota(), seconds))
        logger.log(*log)

    def _pause_until_reset(self, now: float, resets_at: dt.datetime) -> None:
        seconds_left = (resets_at - self.utc_clock()).total_seconds()
        self._pause(now, seconds_left + AFTER_RESET)

    def _resume(self, now: float) -> None:
        """End a pause: count the ticks it skipped, and plan anew for the new day."""
        reset = now - AFTER_RESET  # ticks from the reset on are the new day's
        for state in self.states.values():
            if state.removed:
                continue
            if state.planned:
                due, interval = state.due, state.interval
            else:  # paused before its first tick
                due = self._paused_since
                interval = (state.override or self._interval) * self._governor.factor
            self.counts.skipped_quota += first_slot(due, interval, reset)
        self._paused_until = None
        self._respread = True
        self._next_quota_check = -math.inf
        logger.info("the daily quota was renewed; polling again")

    # -- the scheduler -------------------------------------------------------------------

    def _replan(self, now: float) -> None:
        """Spread the targets that need it over their intervals, starting from ``now``.

        After an interval change every target is planned again; otherwise only targets
        added (or given another interval) since the last plan, and the others keep theirs.
        """
        for target in [target for target, state in self.states.items() if state.removed]:
            if not self.states[target].busy:
                del self.states[target]
        live = [state for state in self.states.values() if not state.removed]
        batch = live if self._respread else [state for state in live if not state.planned]
        heap = [] if self._respread else self._heap
        spread = [state for state in batch if self._respread or state.last_due is None]
        position = {id(state): index for index, state in enumerate(spread)}
        for state in batch:
            interval = (state.override or self._interval) * self._governor.factor
            index = position.get(id(state))
            if index is None and state.last_due is not None:
                anchor = state.last_due  # an interval of its own: keep its rhythm
            else:
                anchor = spread_anchor(now, index or 0, len(spread), interval, self._rng.random())
            first_now = self._first_poll_now and state.last_due is None and self._can_burst()
            if state.last_due is not None:
                earliest = max(now, state.last_due + interval)
            else:  # polled now, its next poll is at least half an interval later
                earliest = now + interval / 2 if first_now else now
            state.interval = interval
            state.anchor = anchor
            state.k = first_slot(anchor, interval, earliest)
            state.due = anchor + state.k * interval
            if first_now:
                state.k -= 1  # this tick stands for the slot before the first
                state.due = now
            state.planned = True
            state.generation += 1
            heapq.heappush(heap, (state.due, next(self._sequence), state.generation, state))
        self._heap = heap
        self._dirty = self._respread = False

    def _can_burst(self) -> bool:
        """Whether the day's calls afford polling new targets at once (``first_poll_now``)."""
        if self._governor.factor <= 1:
            return True
        if not self._said_no_burst:
            self._said_no_burst = True
            logger.warning(
                "the calls left today do not afford a first poll of every target at once "
                "(polling every %.3g s instead of %.3g s): spreading the first polls over "
                "the interval",
                self._interval * self._governor.factor,
                self._interval,
            )
        return False

    async def _sleep_until(self, deadline: float) -> None:
        with anyio.CancelScope() as scope:
            self._wake_scope = scope
            await anyio.sleep_until(deadline)
        self._wake_scope = None

    async def _schedule(self) -> None:
        heap = self._heap
        while True:
            now = anyio.current_time()
            soon = now + _EARLY_WAKE
            if self._paused_until is not None:
                if soon < self._paused_until:
                    await self._sleep_until(self._paused_until)
                    continue
                self._resume(now)
            if soon >= self._next_quota_check:
                await self._refresh_shared_quota()
                now = anyio.current_time()
            if self._dirty or self._respread or soon >= self._next_quota_check:
                self._revise(now)
                heap = self._heap
                if self._paused_until is not None:
                    continue
            while heap and heap[0][0] <= soon:
                _, _, generation, state = heapq.heappop(heap)
                if generation != state.generation or state.removed or state.refused:
                    continue  # planned again since, removed, or refused for good
                self._tick(state, now)
                heapq.heappush(heap, (state.due, next(self._sequence), generation, state))
                if self._paused_until is not None:
                    break
            if self._paused_until is not None:
                continue
            wake_at = self._next_quota_check
            if heap and heap[0][0] < wake_at:
                wake_at = heap[0][0]
            await self._sleep_until(wake_at)

    async def _refresh_shared_quota(self) -> None:
        """Read what other processes spent of the day, before planning with it."""
        refresh = self._refresh_quota
        if refresh is None:
            return
        try:
            await refresh()
        except WMSPanelError as exc:
            # Planning goes on with the count as last seen; each call's reservation
            # reports its own failure in the snapshots.
            logger.warning("could not read the day's calls from the ledger: %s", exc)

    def _tick(self, state: _TargetState, now: float) -> None:
        """Poll ``state``'s target for the tick due now, or count why not; plan its next."""
        before_tick = self._handover.before_tick
        if before_tick is not None and not before_tick(state):
            return
        due = state.due
        state.k += 1
        state.due = state.anchor + state.k * state.interval
        counts = self.counts
        if state.busy:
            counts.skipped_busy += 1
        elif state.pending is not None:  # the consumer has not taken its last snapshot
            counts.skipped_slow_consumer += 1
        elif due < state.not_before - SLOT_EPSILON or (
            state.failures and self._busy_down >= self._down_limit
        ):
            counts.skipped_backoff += 1
        elif self._governor.budget_spent(status := self._quota(), self._busy):
            counts.skipped_quota += 1
            if self._governor.on_quota == "error":
                raise self._governor.exhausted(
                    self._plan(self._rate()), targets=len(self.targets), interval=self._interval
                )
            self._pause_until_reset(now, status.resets_at)
        else:
            state.busy = True
            state.busy_while_down = bool(state.failures)
            state.tick_due = state.last_due = due
            self._busy += 1
            self._busy_down += state.busy_while_down
            self._dispatch_send.send_nowait(state)

    # -- the workers ---------------------------------------------------------------------

    async def _work(self) -> None:
        async for state in self._dispatch_receive:
            started = anyio.current_time()
            self._lateness.append(started - state.tick_due)
            try:
                snapshot = await self._fetch(state.target, self._poll_deadline(state))
            except Exception as exc:  # a bug: it must not stop the other targets' polling
                snapshot = self._unexpected(state.target, exc, started)
            finally:
                state.busy = False
                self._busy -= 1
                self._busy_down -= state.busy_while_down
            self._settle(state, snapshot, anyio.current_time())

    @staticmethod
    def _poll_deadline(state: _TargetState) -> float:
        """Return the seconds the next poll of ``state``'s target may take."""
        usual = max(POLL_DEADLINE_INTERVALS * state.interval, MIN_POLL_DEADLINE)
        doublings = min(state.timeouts, MAX_DEADLINE_DOUBLINGS)
        return max(usual * 2.0**doublings, 2.0 * state.last_latency)

    def _unexpected(self, target: Target, exc: Exception, started: float) -> Snapshot:
        """Log a fetch's unexpected exception, and make it the target's error snapshot."""
        msg = (
            f"polling {target} failed with an unexpected {type(exc).__name__}: this is a bug "
            "in wmspanel-async, please report it with the traceback"
        )
        logger.error("%s", msg, exc_info=exc)
        error = InternalError(msg)
        error.__cause__ = exc
        return Snapshot(
            target=target,
            stats=None,
            error=error,
            fetched_at=self.utc_clock(),
            latency=anyio.current_time() - started,
        )

    def _settle(self, state: _TargetState, snapshot: Snapshot, now: float) -> None:
        """Account for one answer and hand it to the consumer."""
        if self.fatal is not None:
            return
        error = snapshot.error
        if isinstance(error, QuotaExhaustedError):  # refused before sending: not a failure
            self.counts.skipped_quota += 1
            if self._governor.on_quota == "error":
                raise error
            self._pause_until_reset(now, error.resets_at)
            self._wake_scheduler()
            return
        self.counts.polls += 1
        if error is not None:
            self._errors[type(error).__name__] += 1
            if isinstance(error, ClientStateError) or (
                isinstance(error, AuthenticationError) and self._raise_on_auth_error
            ):
                raise error
        if state.removed:
            if self.states.get(state.target) is state:
                del self.states[state.target]
            return
        if error is not None:
            self._failed(state, error, now)
        else:
            self._succeeded(state, snapshot.latency, now)
        self._handover.deliver(state, snapshot)

    def _succeeded(self, state: _TargetState, latency: float, now: float) -> None:
        state.timeouts = 0
        state.last_latency = latency
        if state.failures:
            logger.info(
                "%s recovered after %d failed polls in %.0f s",
                state.target,
                state.failures,
                now - state.down_since,
            )
            state.failures = 0
            state.not_before = -math.inf

    def _failed(self, state: _TargetState, error: WMSPanelError, now: float) -> None:
        state.failures += 1
        if isinstance(error, APIError):
            # The API answered, and said no to this request: asking again changes nothing.
            state.refused = True
            self._changed()  # the calls it would have spent go to the others
            logger.warning(
                "%s is refused by the API (%s) and is polled no more: change or remove the "
                "target (a lite slice has no per-stream figures; `wmspanel-async slices` "
                "lists the ids the key may see)",
                state.target,
                error,
            )
            return
        if isinstance(error, APITimeoutError):
            state.timeouts += 1
        if state.failures == 1:
            state.down_since = now
            logger.warning(
                "%s is down: %s: %s; its snapshots carry the error until it recovers",
                state.target,
                type(error).__name__,
                error,
            )
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            state.not_before = now + retry_after
        elif state.failures >= 2:
            # Full jitter: failing targets do not come back in lockstep.
            bound = state.interval * min(2.0 ** (state.failures - 1), BACKOFF_CAP_INTERVALS)
            state.not_before = now + self._rng.random() * bound

    # -- errors --------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the requests of an earlier run, cancelled, before polling again."""
        while True:
            try:
                state = self._dispatch_receive.receive_nowait()
            except anyio.WouldBlock:
                break
            state.busy = state.busy_while_down = False
        self._busy = self._busy_down = 0
        self._respread = True

    async def run(self) -> None:
        # Our tasks live in a task group of their own, so that a failure can stop them
        # without cancelling the consumer, whose block is the outer task group's body.
        async with anyio.create_task_group() as task_group:
            self._tasks_scope = task_group.cancel_scope
            task_group.start_soon(self._guarded, self._schedule, name="wmspanel_async scheduler")
            for number in range(self._concurrency):
                task_group.start_soon(
                    self._guarded, self._work, name=f"wmspanel_async worker {number}"
                )

    async def _guarded(self, task: Callable[[], Awaitable[None]]) -> None:
        """Run one of our tasks; an error stops the poller and reaches the consumer."""
        try:
            await task()
        except Exception as exc:  # handed to the consumer, raised there as itself
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self.fatal is None:
            if self._handover.on_fatal is not None:
                self._handover.on_fatal(exc)
            self.fatal, self._fatal_traceback = exc, exc.__traceback__
        if self._tasks_scope is not None:
            self._tasks_scope.cancel()
        self._handover.wake_readers()

    def raise_fatal(self) -> NoReturn:
        # The same error may be raised to many readers, each time with the traceback of
        # where it happened, as asyncio's futures do (re-raising would pile up tracebacks).
        fatal = self.fatal
        if fatal is None:  # pragma: no cover - only called once polling failed
            msg = "the poller has not failed"
            raise InternalError(msg)
        raise fatal.with_traceback(self._fatal_traceback)


class _EngineHolder:
    """What :class:`SnapshotStream` and ``FreshSnapshots`` say alike of the engine they hold."""

    _engine: PollEngine

    def set_interval(self, seconds: float) -> None:
        """Poll every target without an interval of its own every ``seconds`` from now on.

        All targets are spread over the interval again; none is polled sooner than one
        interval after its previous poll.

        Raises:
            ConfigurationError: ``seconds`` is not a positive number.
            QuotaExhaustedError: With ``on_quota="error"``, the calls left today do not
                cover the new schedule; nothing changed.
        """
        self._engine.set_interval(seconds)

    @property
    def targets(self) -> tuple[Target, ...]:
        """The targets polled now, in the order they were added."""
        return self._engine.targets


class SnapshotStream(_EngineHolder):
    """Fresh snapshots of many targets at a fixed rate, within the daily quota.

    Create it with :meth:`WMSPanelClient.poll` and use it as an async context manager; the
    ``async with`` block owns the polling tasks, and leaving it (normally, by an exception
    or by cancellation) stops every request at once. Inside, ``async for`` yields one
    :class:`Snapshot` per successful or failed poll, in the order they arrive::

        async with client.poll(targets, interval=30.0) as snapshots:
            async for snapshot in snapshots:
                ...

    Each target holds at most one snapshot the consumer has not taken; while it does, the
    target's ticks are skipped instead of polled, so a slow consumer costs neither calls nor
    memory. The methods that change what is polled may be called at any time from the task
    that iterates (or any other task of the same event loop).

    Raises:
        AuthenticationError: From iteration (or when leaving the block), when the API
            refused the credentials and ``raise_on_auth_error`` is true.
        QuotaExhaustedError: With ``on_quota="error"``, when the schedule does not fit the
            calls left until 00:00 UTC: from entering the block, from :meth:`add` and
            :meth:`set_interval`, or from iteration when found later.
        ClientStateError: From iteration, when the client was closed while polling.
    """

    def __init__(
        self,
        fetch: Fetch,
        targets: Iterable[Target],
        settings: PollSettings,
        *,
        only_changes: bool = False,
    ) -> None:
        self._engine = PollEngine(
            fetch,
            targets,
            settings,
            Handover(
                name="SnapshotStream",
                made_by="client.poll()",
                deliver=self._deliver,
                forget=self._forget,
                wake_readers=self._wake_readers,
            ),
        )
        self._counts = self._engine.counts
        self._only_changes = only_changes
        self._ready: collections.deque[_TargetState] = collections.deque()
        self._ready_event: anyio.Event | None = None

    def __repr__(self) -> str:
        return repr(self._engine)

    async def __aenter__(self) -> SnapshotStream:
        await self._engine.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._engine.stop(exc)

    def __aiter__(self) -> SnapshotStream:
        return self

    async def __anext__(self) -> Snapshot:
        """Wait for the next snapshot and take it."""
        engine = self._engine
        if engine.phase == "new":
            msg = "iterate inside the block: async with client.poll(...) as snapshots: ..."
            raise ClientStateError(msg)
        while True:
            if engine.fatal is not None:
                engine.fatal_raised = True
                engine.raise_fatal()
            if engine.phase == "stopped":
                raise StopAsyncIteration
            if self._ready:
                state = self._ready.popleft()
                snapshot, state.pending = state.pending, None
                if snapshot is None or state.removed:
                    continue
                self._counts.snapshots += 1
                await anyio.lowlevel.checkpoint_if_cancelled()
                return snapshot
            self._ready_event = event = anyio.Event()
            try:
                await event.wait()
            finally:
                self._ready_event = None

    def add(self, target: Target, *, interval: float | None = None) -> None:
        """Start polling ``target``, or change its interval if it is polled already.

        The other targets keep their schedules; targets added together are spread over
        their interval, and a target whose interval changes is next polled one new
        interval after its previous poll (or at once, if that is past).

        Args:
            target: What to poll.
            interval: Seconds between its polls, overriding the stream's interval; ``None``
                for the stream's interval.

        Raises:
            ConfigurationError: ``target`` or ``interval`` is invalid.
            QuotaExhaustedError: With ``on_quota="error"``, the calls left today do not
                cover the schedule with this target; nothing changed.
        """
        self._engine.add(target, interval)

    def remove(self, target: Target) -> None:
        """Stop polling ``target``; do nothing if it is not polled.

        Its snapshot not yet taken, and the answer of a request in flight, are dropped.
        """
        self._engine.remove(target)

    @property
    def stats(self) -> PollerStats:
        """What the poller has done so far; see :class:`PollerStats`."""
        return PollerStats(**self._engine.stats_fields())

    # -- what the engine hands over ------------------------------------------------------

    def _deliver(self, state: _TargetState, snapshot: Snapshot) -> None:
        if self._only_changes:
            error = snapshot.error
            key = (snapshot.stats, type(error) if error is not None else None)
            if key == state.last_key:
                self._counts.unchanged += 1
                return
            state.last_key = key
        state.pending = snapshot
        self._ready.append(state)
        if self._ready_event is not None:
            self._ready_event.set()

    def _forget(self, state: _TargetState) -> None:
        state.pending = None

    def _wake_readers(self) -> None:
        if self._ready_event is not None:
            self._ready_event.set()
