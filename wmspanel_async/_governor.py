"""The daily quota's say over the poller's schedule: plain arithmetic, no anyio, no I/O.

Given the quota at one UTC moment, the calls per second the requested schedule makes and the
share of the daily limit kept in reserve, :meth:`QuotaGovernor.plan` says whether the calls
left last until 00:00 UTC, and :meth:`QuotaGovernor.revise` turns that plan into a
:class:`Verdict`: the stretch factor to poll at (with hysteresis, so the schedule is not
rebuilt for every call spent), whether to pause until the reset, and what to log. The poller
asks and acts; nothing here sleeps, reads a clock or logs.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from decimal import Decimal
from typing import Literal

import attrs

from ._exceptions import ConfigurationError, QuotaExhaustedError
from ._models import QuotaStatus

#: What to do when the requested schedule would spend more calls than are left today.
OnQuota = Literal["stretch", "error"]

#: Seconds between checks that the schedule still fits the day's remaining calls.
QUOTA_RECHECK = 60.0
#: A new stretch factor within this ratio of the current one does not change the schedule.
STRETCH_HYSTERESIS = 1.05
#: Wake this long after 00:00 UTC, so that the quota has surely rolled over.
AFTER_RESET = 0.001
#: Look again this long after a reset that the quota still reports although it has passed
#: (a ledger whose day has not rolled over yet): soon, but not every millisecond.
PAST_RESET_WAIT = 1.0


def wait_for_reset(seconds_left: float) -> float:
    """Return how long to wait for the day's calls to be renewed, ``seconds_left`` before it."""
    return seconds_left + AFTER_RESET if seconds_left > 0 else PAST_RESET_WAIT


@attrs.frozen(kw_only=True)
class QuotaPlan:
    """How the requested schedule compares with the calls left until 00:00 UTC.

    Attributes:
        status: The quota when planned.
        reserved: Calls kept in reserve.
        available: Calls the poller may spend until the reset (negative once the reserve
            is eaten into).
        seconds_left: Seconds until the reset.
        needed: Calls the requested schedule makes until the reset.
    """

    status: QuotaStatus
    reserved: int
    available: int
    seconds_left: float
    needed: float

    @property
    def factor(self) -> float:
        """How much to stretch every interval so the calls last until the reset."""
        if self.needed <= self.available:
            return 1.0
        if self.available <= 0:
            return math.inf
        return self.needed / self.available


@attrs.frozen(kw_only=True)
class Verdict:
    """What the poller should do after a revision of its plan.

    Attributes:
        factor: The stretch factor to poll at from now on.
        respread: The factor changed: plan every target again.
        pause_for: Pause this many seconds (until just after the reset), or ``None``.
        log: A record to log as ``(level, message)``, or ``None``.
        recheck_in: Seconds until the plan should be revised again.
    """

    factor: float
    respread: bool = False
    pause_for: float | None = None
    log: tuple[int, str] | None = None
    recheck_in: float = QUOTA_RECHECK


@attrs.define
class QuotaGovernor:
    """Fits a poller's schedule to the calls left until 00:00 UTC.

    Args:
        reserve: Fraction of the daily limit left for other calls of the client.
        on_quota: ``"stretch"`` polls less often when the calls would not last;
            ``"error"`` raises :class:`QuotaExhaustedError` instead.

    Raises:
        ConfigurationError: ``reserve`` or ``on_quota`` is out of range.
    """

    reserve: float = attrs.field()
    on_quota: OnQuota = attrs.field()
    #: The stretch factor in force.
    factor: float = attrs.field(default=1.0, init=False)

    @reserve.validator
    def _check_reserve(self, _: object, value: object) -> None:
        if not (isinstance(value, int | float) and 0 <= value < 1):
            msg = f"reserve must be a fraction of the daily limit in [0, 1), got {value!r}"
            raise ConfigurationError(msg)

    @on_quota.validator
    def _check_on_quota(self, _: object, value: object) -> None:
        if value not in ("stretch", "error"):
            msg = f'on_quota must be "stretch" or "error", got {value!r}'
            raise ConfigurationError(msg)

    def reserved_calls(self, status: QuotaStatus) -> int:
        """Return the calls of the day kept for other calls than the poller's.

        The fraction of the limit, rounded up; worked out in decimal, as the fraction is
        written, since float products are a hair off (0.07 * 100 is 7.000000000000001).
        """
        return math.ceil(Decimal(repr(self.reserve)) * status.limit)

    def plan(self, status: QuotaStatus, *, rate: float, now: dt.datetime) -> QuotaPlan:
        """Compare a schedule of ``rate`` calls per second with the calls left today.

        Args:
            status: The quota now.
            rate: Calls per second the schedule makes before stretching.
            now: The current aware UTC datetime.
        """
        reserved = self.reserved_calls(status)
        seconds_left = max((status.resets_at - now).total_seconds(), 0.0)
        return QuotaPlan(
            status=status,
            reserved=reserved,
            available=status.remaining - reserved,
            seconds_left=seconds_left,
            needed=rate * seconds_left,
        )

    def budget_spent(self, status: QuotaStatus, in_flight: int) -> bool:
        """Tell whether the poller's share of today's calls is spent, counting requests sent."""
        return status.remaining - self.reserved_calls(status) - in_flight <= 0

    def require_fits(self, plan: QuotaPlan, *, targets: int, interval: float) -> None:
        """Raise unless the plan's calls last until the reset unstretched.

        Raises:
            QuotaExhaustedError: They do not.
        """
        if plan.factor > 1:
            raise self.exhausted(plan, targets=targets, interval=interval)

    def revise(self, plan: QuotaPlan, *, targets: int, interval: float) -> Verdict:
        """Decide the stretch factor for ``plan``, or a pause until the reset.

        Args:
            plan: The plan now.
            targets: How many targets are polled, for the messages.
            interval: The interval asked for, for the messages.

        Raises:
            QuotaExhaustedError: With ``on_quota="error"``, the calls do not last.
        """
        recheck_in = min(QUOTA_RECHECK, wait_for_reset(plan.seconds_left))
        factor = plan.factor
        if factor > 1 and self.on_quota == "error":
            raise self.exhausted(plan, targets=targets, interval=interval)
        if math.isinf(factor):
            return Verdict(
                factor=self.factor,
                pause_for=wait_for_reset(plan.seconds_left),
                log=(logging.WARNING, self.pause_notice(plan.status, plan.seconds_left)),
                recheck_in=recheck_in,
            )
        if self.factor / STRETCH_HYSTERESIS <= factor <= self.factor * STRETCH_HYSTERESIS:
            return Verdict(factor=self.factor, recheck_in=recheck_in)
        self.factor = factor
        if factor > 1:
            message = (
                f"polling {targets} targets every {interval:g} s would need about "
                f"{math.ceil(plan.needed)} calls before the daily reset at "
                f"{plan.status.resets_at:%H:%M} UTC, but {plan.available} are left after "
                f"keeping {plan.reserved} in reserve; polling every {interval * factor:.3g} s "
                "instead"
            )
            log = (logging.WARNING, message)
        else:
            log = (logging.INFO, f"the daily quota allows polling every {interval:g} s again")
        return Verdict(factor=factor, respread=True, log=log, recheck_in=recheck_in)

    def pause_notice(self, status: QuotaStatus, seconds_left: float) -> str:
        """Return the message that says polling pauses until the reset."""
        return (
            f"the poller's share of today's calls is spent ({status.remaining} left, "
            f"{self.reserved_calls(status)} kept in reserve); pausing until the daily reset "
            f"at {status.resets_at:%H:%M} UTC, in {seconds_left:.0f} s"
        )

    def exhausted(self, plan: QuotaPlan, *, targets: int, interval: float) -> QuotaExhaustedError:
        """Return the error that says the schedule does not fit the calls left."""
        msg = (
            f"polling these {targets} targets every {interval:g} s needs about "
            f"{math.ceil(plan.needed)} calls before the daily reset at "
            f"{plan.status.resets_at:%H:%M} UTC, but only {max(plan.available, 0)} are left "
            f"after keeping {plan.reserved} in reserve: poll less often or fewer targets, "
            'raise the account\'s daily limit, or pass on_quota="stretch"'
        )
        return QuotaExhaustedError(msg, resets_at=plan.status.resets_at)
