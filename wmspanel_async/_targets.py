"""One polled target's state, and the changes each poll's outcome makes to it.

A target is *up* until a poll fails; then *down*, backing off (full jitter, or as long as
``Retry-After`` asks) with a deadline that doubles after each timeout, until a poll
succeeds and it is up again. An :class:`APIError` (the API answered, and refused this
target) makes it *refused*: polled no more, until it is added again. Between these, each
tick makes it *busy* while its request is in flight.

Only the poller's tasks touch a target's state; the engine (``_poller.PollEngine``) calls
:meth:`TargetState.succeeded` and :meth:`TargetState.failed` with each poll's outcome, and
reads back what it needs to schedule the next.
"""

from __future__ import annotations

import logging
import math
import random

import attrs

from ._exceptions import APIError, APITimeoutError, WMSPanelError
from ._models import Snapshot, Target

logger = logging.getLogger("wmspanel_async.poller")

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


@attrs.define(eq=False)
class TargetState:
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

    @property
    def down(self) -> bool:
        """Whether its last poll failed, for a reason that the next poll may not have."""
        return bool(self.failures) and not self.refused

    def poll_deadline(self) -> float:
        """Return the seconds its next poll may take."""
        usual = max(POLL_DEADLINE_INTERVALS * self.interval, MIN_POLL_DEADLINE)
        doublings = min(self.timeouts, MAX_DEADLINE_DOUBLINGS)
        return max(usual * 2.0**doublings, 2.0 * self.last_latency)

    def succeeded(self, latency: float, now: float) -> None:
        """Up again (said, if it was down), with the answer's latency for its deadline."""
        self.timeouts = 0
        self.last_latency = latency
        if self.failures:
            logger.info(
                "%s recovered after %d failed polls in %.0f s",
                self.target,
                self.failures,
                now - self.down_since,
            )
            self.failures = 0
            self.not_before = -math.inf

    def failed(self, error: WMSPanelError, now: float, rng: random.Random) -> None:
        """Down (said, the first time), backing off; or refused for good by the API."""
        self.failures += 1
        if isinstance(error, APIError):
            # The API answered, and said no to this request: asking again changes nothing.
            self.refused = True
            logger.warning(
                "%s is refused by the API (%s) and is polled no more: change or remove the "
                "target (a lite slice has no per-stream figures; `wmspanel-async slices` "
                "lists the ids the key may see)",
                self.target,
                error,
            )
            return
        if isinstance(error, APITimeoutError):
            self.timeouts += 1
        if self.failures == 1:
            self.down_since = now
            logger.warning(
                "%s is down: %s: %s; its snapshots carry the error until it recovers",
                self.target,
                type(error).__name__,
                error,
            )
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            self.not_before = now + retry_after
        elif self.failures >= 2:
            # Full jitter: failing targets do not come back in lockstep.
            bound = self.interval * min(2.0 ** (self.failures - 1), BACKOFF_CAP_INTERVALS)
            self.not_before = now + rng.random() * bound
