"""The daily call ledger: WMSPanel allows a number of calls per account per UTC day."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from ._exceptions import QuotaExhaustedError
from ._models import QuotaStatus

UTCClock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """Return the current time as an aware UTC datetime."""
    return dt.datetime.now(dt.timezone.utc)


def next_utc_midnight(now: dt.datetime) -> dt.datetime:
    """Return the first 00:00 UTC strictly after ``now``."""
    today = now.astimezone(dt.timezone.utc).date()
    return dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.timezone.utc)


class DailyQuota:
    """Counts calls against a limit that resets at 00:00 UTC.

    Args:
        limit: Calls allowed per UTC day.
        clock: Returns the current aware datetime; tests pass a fake one.
    """

    def __init__(self, limit: int, clock: UTCClock = utc_now) -> None:
        self.limit = limit
        self._clock = clock
        self._day = clock().astimezone(dt.timezone.utc).date()
        self._used = 0

    def _roll_over(self) -> dt.datetime:
        now = self._clock()
        today = now.astimezone(dt.timezone.utc).date()
        if today != self._day:
            self._day, self._used = today, 0
        return now

    def status(self) -> QuotaStatus:
        """Return the budget of the current UTC day."""
        now = self._roll_over()
        return QuotaStatus(
            used=self._used,
            remaining=max(self.limit - self._used, 0),
            limit=self.limit,
            resets_at=next_utc_midnight(now),
        )

    def spend(self) -> None:
        """Count one call, or refuse it when the day's budget is spent.

        Raises:
            QuotaExhaustedError: No call is left today; nothing was counted.
        """
        now = self._roll_over()
        if self._used >= self.limit:
            resets_at = next_utc_midnight(now)
            msg = (
                f"the daily budget of {self.limit} calls is spent; no request was sent. "
                f"It resets at {resets_at:%Y-%m-%d %H:%M} UTC: poll less often, or raise "
                "daily_limit if your account has bought more calls"
            )
            raise QuotaExhaustedError(msg, resets_at=resets_at)
        self._used += 1
