"""When to retry and how long to wait: backoff, ``Retry-After`` and the retry budget.

Plain functions and one small token bucket: the client asks :func:`retry_delay` after each
failed attempt and sleeps or gives up as it says.
"""

from __future__ import annotations

import datetime as dt
import random

from ._exceptions import APIConnectionError, APIStatusError, WMSPanelError
from ._quota import next_utc_midnight

#: Statuses that say "try again": the request may well succeed a moment later.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

#: The longest ``Retry-After`` we sleep through inside one call; a longer one is raised.
MAX_RETRY_AFTER = 60.0

BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0


def backoff_delay(attempt: int, cap: float = BACKOFF_CAP) -> float:
    """Return the full-jitter delay before retry number ``attempt`` (0 for the first retry).

    Full jitter (a uniform draw below the exponential bound) spreads the retries of many
    clients that failed together instead of having them return in lockstep.
    """
    return random.random() * min(BACKOFF_BASE * 2.0**attempt, cap)  # noqa: S311 - not crypto


def retry_delay(
    error: WMSPanelError,
    *,
    attempt: int,
    max_retries: int,
    calls_left: int,
    now: float,
    deadline: float,
) -> float | None:
    """Return how long to wait before retrying after ``error``, or ``None`` to give up.

    Args:
        error: Why attempt number ``attempt`` failed.
        attempt: The failed attempt, 0 for the first.
        max_retries: Retries allowed for the call.
        calls_left: Calls left in today's budget; a retry needs one.
        now: The current time on the event loop's clock.
        deadline: When the call must be over, on the same clock.
    """
    if attempt >= max_retries or calls_left == 0:
        return None
    if isinstance(error, APIStatusError):
        if error.status_code not in RETRYABLE_STATUSES:
            return None
        if error.retry_after is None:
            delay = backoff_delay(attempt)
        elif error.retry_after <= MAX_RETRY_AFTER:
            delay = error.retry_after
        else:
            return None
    elif isinstance(error, APIConnectionError):
        delay = backoff_delay(attempt)
    else:
        return None
    # A wait that would end past the deadline cannot help; fail now with the real cause.
    return delay if now + delay < deadline else None


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Return the seconds a ``Retry-After`` header asks for, or ``None`` if it is unusable.

    Args:
        value: The header, either delay-seconds or an HTTP date.
        now: The current aware time, to turn a date into a delay.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    import email.utils  # noqa: PLC0415 - 6 ms of import time, for a form seldom sent

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive parse means the zone was "-0000"
        when = when.replace(tzinfo=dt.timezone.utc)
    return max((when - now).total_seconds(), 0.0)


def seconds_until_reset(now: dt.datetime) -> float:
    """Return the seconds from ``now`` to the next 00:00 UTC, when the daily budget renews.

    Nothing a ``Retry-After`` can mean lies past that moment, so waits are capped there: a
    server asking for a day (or for 400 digits of seconds) must not silence a target forever.
    """
    return (next_utc_midnight(now) - now).total_seconds()


class RetryBudget:
    """A token bucket shared by all calls of a client that pays for retries.

    Modelled on botocore's standard retry mode: a retry costs tokens (a timeout more, since a
    timed-out server is the likeliest to be overloaded), a call that succeeds at once puts one
    back, and a retry that succeeds refunds its cost. During an outage the bucket runs dry and
    calls fail after their first attempt instead of multiplying traffic and quota use.

    Args:
        capacity: Tokens when full.
        retry_cost: Tokens one retry takes.
        timeout_retry_cost: Tokens one retry after a timeout takes.
    """

    def __init__(
        self, capacity: int = 100, retry_cost: int = 5, timeout_retry_cost: int = 10
    ) -> None:
        self.capacity = capacity
        self.retry_cost = retry_cost
        self.timeout_retry_cost = timeout_retry_cost
        self.tokens = capacity

    def withdraw(self, *, after_timeout: bool) -> int | None:
        """Take the cost of one retry; return it, or ``None`` if the bucket cannot pay."""
        cost = self.timeout_retry_cost if after_timeout else self.retry_cost
        if cost > self.tokens:
            return None
        self.tokens -= cost
        return cost

    def deposit(self, retry_costs: int) -> None:
        """Record a successful call that spent ``retry_costs`` tokens on its retries."""
        self.tokens = min(self.capacity, self.tokens + (retry_costs or 1))
