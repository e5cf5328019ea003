"""What a poller does about the daily quota: stretch its schedule, pause, and resume.

``_governor`` does the arithmetic (how far to stretch, when to look again, what to say);
this module holds what comes of it for one running poller: the rate its targets ask for,
whether it is paused until the next 00:00 UTC, when the quota is next checked, and the
shared ledger read before each check. The engine (``_poller.PollEngine``) asks it at each
turn of its scheduler.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Awaitable, Callable, Iterable

from ._exceptions import QuotaExhaustedError, WMSPanelError
from ._governor import (
    AFTER_RESET,
    OnQuota,
    QuotaGovernor,
    QuotaPlan,
    Verdict,
    wait_for_reset,
)
from ._models import QuotaStatus
from ._quota import UTCClock
from ._schedule import first_slot
from ._targets import TargetState

logger = logging.getLogger("wmspanel_async.poller")


class QuotaPacer:
    """Keeps one poller's schedule within the calls left today.

    Args:
        governor: The arithmetic of stretching and pausing.
        quota: Returns the client's daily call budget now, without I/O.
        refresh_quota: Reads the budget again from a shared ledger, or ``None``.
        utc_clock: Returns the current aware UTC datetime.
    """

    def __init__(
        self,
        governor: QuotaGovernor,
        quota: Callable[[], QuotaStatus],
        refresh_quota: Callable[[], Awaitable[object]] | None,
        utc_clock: UTCClock,
    ) -> None:
        self.governor = governor
        self.quota = quota
        self._refresh_quota = refresh_quota
        self._utc_clock = utc_clock
        self.next_check = -math.inf
        self.paused_until: float | None = None
        self._paused_since = 0.0
        self._said_no_burst = False

    @property
    def on_quota(self) -> OnQuota:
        """``"stretch"`` or ``"error"``, when the calls would not last the day."""
        return self.governor.on_quota

    @property
    def factor(self) -> float:
        """How many times the asked intervals are stretched now (1: not at all)."""
        return self.governor.factor

    @staticmethod
    def rate(states: Iterable[TargetState], interval: float) -> float:
        """Return the calls per second ``states`` ask for (before stretching)."""
        return sum(
            1 / (state.override or interval)
            for state in states
            if not (state.removed or state.refused)
        )

    def plan(self, rate: float) -> QuotaPlan:
        """Return what the calls left today allow at ``rate`` calls per second."""
        return self.governor.plan(self.quota(), rate=rate, now=self._utc_clock())

    def require_fits(self, rate: float, *, targets: int, interval: float) -> None:
        """Raise unless ``rate`` fits today's calls; the error names the schedule asked for."""
        self.governor.require_fits(self.plan(rate), targets=targets, interval=interval)

    def exhausted(self, rate: float, *, targets: int, interval: float) -> QuotaExhaustedError:
        """Return the error for a schedule whose share of the day's calls is spent."""
        return self.governor.exhausted(self.plan(rate), targets=targets, interval=interval)

    def revise(self, now: float, rate: float, *, targets: int, interval: float) -> bool:
        """Fit the stretch to the calls left today; return whether to spread targets anew.

        May pause instead (see :attr:`paused_until`), until the next 00:00 UTC.
        """
        verdict: Verdict = self.governor.revise(self.plan(rate), targets=targets, interval=interval)
        self.next_check = now + verdict.recheck_in
        if verdict.pause_for is not None:
            self.pause(now, verdict.pause_for, verdict.log)
            return False
        if verdict.log is not None:
            logger.log(*verdict.log)
        return verdict.respread

    def pause(self, now: float, seconds: float, log: tuple[int, str] | None = None) -> None:
        """Stop polling for ``seconds``, saying so (once, if already paused)."""
        if self.paused_until is not None:
            return
        self.paused_until = now + seconds
        self._paused_since = now
        if log is None:
            log = (logging.WARNING, self.governor.pause_notice(self.quota(), seconds))
        logger.log(*log)

    def pause_until_reset(self, now: float, resets_at: dt.datetime) -> None:
        """Stop polling until just after ``resets_at``, when the day's calls are renewed."""
        self.pause(now, wait_for_reset((resets_at - self._utc_clock()).total_seconds()))

    def resume(self, now: float, states: Iterable[TargetState], interval: float) -> int:
        """End a pause, and return how many ticks it skipped (to count as quota skips)."""
        reset = now - AFTER_RESET  # ticks from the reset on are the new day's
        skipped = 0
        for state in states:
            if state.removed:
                continue
            if state.planned:
                due, every = state.due, state.interval
            else:  # paused before its first tick
                due, every = self._paused_since, (state.override or interval) * self.factor
            skipped += first_slot(due, every, reset)
        self.paused_until = None
        self.next_check = -math.inf
        logger.info("the daily quota was renewed; polling again")
        return skipped

    def can_burst(self, interval: float) -> bool:
        """Whether the day's calls afford polling new targets at once (``first_poll_now``)."""
        if self.factor <= 1:
            return True
        if not self._said_no_burst:
            self._said_no_burst = True
            logger.warning(
                "the calls left today do not afford a first poll of every target at once "
                "(polling every %.3g s instead of %.3g s): spreading the first polls over "
                "the interval",
                interval * self.factor,
                interval,
            )
        return False

    async def refresh_shared_quota(self) -> None:
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
