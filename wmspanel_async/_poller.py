"""``client.poll()``: the polling engine, and the snapshot stream that holds one.

One tick of one target travels: the scheduler pops the target from a heap of due times and
either skips the tick (counted: busy, consumer slow, backing off, quota) or hands the target
to one of ``concurrency`` workers -> the worker awaits the fetch function the client gave us
(one HTTP attempt, never retried here: the next tick is the retry) -> the snapshot waits in
the target's one-snapshot slot -> the consumer takes it in ``async for``.

The engine (:class:`PollEngine`) is a part its holders own, not a base class: the stream
here, and ``_fresh.FreshSnapshots``, each give it a :class:`Handover` saying what becomes
of a snapshot, of a target no longer polled, and when readers wake.

Whether the schedule fits the daily quota is the business of ``_governor`` (plain
arithmetic) and of ``_pacing`` (stretching, pausing and resuming a running poller); where
ticks fall, that of ``_schedule``; what each poll's outcome does to its target, that of
``_targets`` (the per-target state machine). This module asks them and acts.
It never imports ``_client``: the client hands over what the poller needs (the fetch
function, the quota's status and the UTC clock), so imports run one way.
"""

from __future__ import annotations

import collections
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
    AuthenticationError,
    ClientStateError,
    ConfigurationError,
    InternalError,
    QuotaExhaustedError,
)
from ._governor import OnQuota, QuotaGovernor
from ._models import QuotaStatus, Snapshot, Target
from ._pacing import QuotaPacer
from ._quota import UTCClock
from ._schedule import SLOT_EPSILON, first_slot, spread_anchor
from ._targets import TargetState

logger = logging.getLogger("wmspanel_async.poller")

#: Fetch one target once (no retries), within a deadline in seconds, and return its
#: figures or the error as a snapshot.
Fetch = Callable[[Target, float], Awaitable[Snapshot]]

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
    deliver: Callable[[TargetState, Snapshot], None]
    forget: Callable[[TargetState], None]
    wake_readers: Callable[[], None]
    before_tick: Callable[[TargetState], bool] | None = None
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
        self._pacer = QuotaPacer(
            QuotaGovernor(settings.reserve, settings.on_quota),
            settings.quota,
            settings.refresh_quota,
            settings.utc_clock,
        )
        self._fetch = fetch
        self.utc_clock = settings.utc_clock
        self._interval = settings.interval
        self._concurrency = concurrency = settings.concurrency
        self._raise_on_auth_error = settings.raise_on_auth_error
        self._first_poll_now = settings.first_poll_now
        self._rng = settings.rng

        self.states: dict[Target, TargetState] = {}
        for checked in map(_checked_target, targets):
            self.states.setdefault(checked, TargetState(checked, None))

        self._heap: list[tuple[float, int, int, TargetState]] = []
        self._sequence = itertools.count()
        self._dirty = True  # something changed: revise the quota plan, plan new targets
        self._respread = True  # the intervals changed: plan every target again
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
            f"effective_interval={self._interval * self._pacer.factor:g}>"
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self.phase != "new":
            msg = (
                f"a {self._handover.name} can be entered once; call {self._handover.made_by} again "
                "for another"
            )
            raise ClientStateError(msg)
        if self._pacer.on_quota == "error":
            self._require_fits(self._rate())
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self.phase = "running"
        dispatch_send, dispatch_receive = anyio.create_memory_object_stream[TargetState](math.inf)
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
        if self._pacer.on_quota == "error":
            rate, targets = self._rate(), len(self.targets)
            if state is not None and not state.removed:
                rate, targets = rate - 1 / (state.override or self._interval), targets - 1
            self._require_fits(rate + 1 / (override or self._interval), targets=targets + 1)
        if state is None:
            self.states[target] = TargetState(target, override)
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
        if self._pacer.on_quota == "error":
            self._require_fits(self._rate(seconds), interval=seconds)
        self._interval = seconds
        self._respread = True
        self._changed()

    def stats_fields(self) -> dict[str, Any]:
        """Return the fields of :class:`PollerStats` now."""
        status = self._pacer.quota()
        lateness = sorted(self._lateness)
        live = [state for state in self.states.values() if not state.removed]
        return dict(
            targets=len(live),
            interval=self._interval,
            effective_interval=self._interval * self._pacer.factor,
            **attrs.asdict(self.counts),
            errors=MappingProxyType(dict(self._errors)),
            targets_down=sum(1 for state in live if state.down),
            targets_refused=sum(1 for state in live if state.refused),
            quota=status,
            reserved_calls=self._pacer.governor.reserved_calls(status),
            paused=self._pacer.paused_until is not None,
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

    # -- the quota (its actions are the pacer's) ----------------------------------------

    def _rate(self, interval: float | None = None) -> float:
        """Return the calls per second the requested schedule makes (before stretching)."""
        return self._pacer.rate(self.states.values(), interval or self._interval)

    def _require_fits(
        self, rate: float, *, targets: int | None = None, interval: float | None = None
    ) -> None:
        """Raise unless ``rate`` fits today's calls; the error names the schedule asked for."""
        self._pacer.require_fits(
            rate,
            targets=len(self.targets) if targets is None else targets,
            interval=interval or self._interval,
        )

    def _revise(self, now: float) -> None:
        """Fit the schedule to the calls left today, then rebuild it if needed."""
        respread = self._pacer.revise(
            now, self._rate(), targets=len(self.targets), interval=self._interval
        )
        if self._pacer.paused_until is not None:
            return
        self._respread = self._respread or respread
        if self._dirty or self._respread:
            self._replan(now)

    def _resume(self, now: float) -> None:
        """End a pause: count the ticks it skipped, and plan anew for the new day."""
        self.counts.skipped_quota += self._pacer.resume(now, self.states.values(), self._interval)
        self._respread = True

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
            interval = (state.override or self._interval) * self._pacer.factor
            index = position.get(id(state))
            if index is None and state.last_due is not None:
                anchor = state.last_due  # an interval of its own: keep its rhythm
            else:
                anchor = spread_anchor(now, index or 0, len(spread), interval, self._rng.random())
            first_now = (
                self._first_poll_now
                and state.last_due is None
                and self._pacer.can_burst(self._interval)
            )
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

    async def _sleep_until(self, deadline: float) -> None:
        with anyio.CancelScope() as scope:
            self._wake_scope = scope
            await anyio.sleep_until(deadline)
        self._wake_scope = None

    async def _schedule(self) -> None:
        heap, pacer = self._heap, self._pacer
        while True:
            now = anyio.current_time()
            soon = now + _EARLY_WAKE
            if pacer.paused_until is not None:
                if soon < pacer.paused_until:
                    await self._sleep_until(pacer.paused_until)
                    continue
                self._resume(now)
            if soon >= pacer.next_check:
                await pacer.refresh_shared_quota()
                now = anyio.current_time()
            if self._dirty or self._respread or soon >= pacer.next_check:
                self._revise(now)
                heap = self._heap
                if pacer.paused_until is not None:
                    continue
            while heap and heap[0][0] <= soon:
                _, _, generation, state = heapq.heappop(heap)
                if generation != state.generation or state.removed or state.refused:
                    continue  # planned again since, removed, or refused for good
                self._tick(state, now)
                heapq.heappush(heap, (state.due, next(self._sequence), generation, state))
                if pacer.paused_until is not None:
                    break
            if pacer.paused_until is not None:
                continue
            wake_at = pacer.next_check
            if heap and heap[0][0] < wake_at:
                wake_at = heap[0][0]
            await self._sleep_until(wake_at)

    def _tick(self, state: TargetState, now: float) -> None:
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
        elif self._pacer.governor.budget_spent(status := self._pacer.quota(), self._busy):
            counts.skipped_quota += 1
            if self._pacer.on_quota == "error":
                raise self._pacer.exhausted(
                    self._rate(), targets=len(self.targets), interval=self._interval
                )
            self._pacer.pause_until_reset(now, status.resets_at)
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
                snapshot = await self._fetch(state.target, state.poll_deadline())
            except Exception as exc:  # a bug: it must not stop the other targets' polling
                snapshot = self._unexpected(state.target, exc, started)
            finally:
                state.busy = False
                self._busy -= 1
                self._busy_down -= state.busy_while_down
            self._settle(state, snapshot, anyio.current_time())

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

    def _settle(self, state: TargetState, snapshot: Snapshot, now: float) -> None:
        """Account for one answer and hand it to the consumer."""
        if self.fatal is not None:
            return
        error = snapshot.error
        if isinstance(error, QuotaExhaustedError):  # refused before sending: not a failure
            self.counts.skipped_quota += 1
            if self._pacer.on_quota == "error":
                raise error
            self._pacer.pause_until_reset(now, error.resets_at)
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
        if error is None:
            state.succeeded(snapshot.latency, now)
        else:
            state.failed(error, now, self._rng)
            if state.refused:
                self._changed()  # the calls it would have spent go to the others
        self._handover.deliver(state, snapshot)

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

    def __repr__(self) -> str:
        return repr(self._engine)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop polling: every request in flight is cancelled."""
        await self._engine.stop(exc)

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

    Target ``i`` of ``N`` is polled at ``start + i * interval / N + jitter +
    k * interval`` (the jitter is under half a slot and under 1 s), so the requests are
    spread over the interval and the schedule never drifts, however long it runs.
    Each tick sends one request (no retries: the next tick is the retry); a target still
    busy with its previous request skips its tick. Targets that keep failing back off (full
    jitter, up to 10 intervals, or as long as ``Retry-After`` asks); their snapshots carry
    the error.

    A stalled upstream cannot starve the targets that answer: a poll may take two
    intervals (at least 1 s, at most the client's ``deadline``; doubled after each
    timeout in a row), and targets whose last poll failed may hold at most half of the
    ``concurrency``. An unexpected exception in one target's poll is logged and carried
    in its snapshot as :class:`InternalError`; the others go on.

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
        self._ready: collections.deque[TargetState] = collections.deque()
        self._ready_event: anyio.Event | None = None

    async def __aenter__(self) -> SnapshotStream:
        await self._engine.start()
        return self

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

    def _deliver(self, state: TargetState, snapshot: Snapshot) -> None:
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

    def _forget(self, state: TargetState) -> None:
        state.pending = None

    def _wake_readers(self) -> None:
        if self._ready_event is not None:
            self._ready_event.set()
