"""The quota governor and the schedule arithmetic: plain functions, checked table by table."""

from __future__ import annotations

import datetime as dt
import logging
import math

import pytest

from wmspanel_async import ConfigurationError, QuotaExhaustedError, QuotaStatus
from wmspanel_async._governor import (
    AFTER_RESET,
    PAST_RESET_WAIT,
    QUOTA_RECHECK,
    QuotaGovernor,
    QuotaPlan,
)
from wmspanel_async._pacing import QuotaPacer
from wmspanel_async._schedule import first_slot, spread_anchor

MIDNIGHT = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)


def status(remaining: int, limit: int = 15_000) -> QuotaStatus:
    return QuotaStatus(used=limit - remaining, remaining=remaining, limit=limit, resets_at=MIDNIGHT)


def before_midnight(seconds: float) -> dt.datetime:
    return MIDNIGHT - dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        # (remaining, reserve, rate, seconds_left) -> (available, needed, factor)
        # Plenty left: no stretch.
        ((15_000, 0.05, 0.1, 3_600), (14_250, 360, 1.0)),
        # Exactly enough after the reserve: still no stretch.
        ((1_750, 0.05, 1.0, 1_000), (1_000, 1_000, 1.0)),
        # Twice what is left: poll half as often.
        ((1_250, 0.05, 1.0, 1_000), (500, 1_000, 2.0)),
        # The reserve is eaten into: nothing left for the poller.
        ((700, 0.05, 1.0, 1_000), (-50, 1_000, math.inf)),
        # No reserve, and the day's last call.
        ((1, 0.0, 1.0, 1.0), (1, 1.0, 1.0)),
        # At the reset itself nothing is needed any more.
        ((0, 0.0, 5.0, 0.0), (0, 0.0, 1.0)),
    ],
)
def test_plan(given: tuple[int, float, float, float], expected: tuple[int, float, float]) -> None:
    """The plan compares calls needed until 00:00 UTC with calls left after the reserve."""
    remaining, reserve, rate, seconds_left = given
    governor = QuotaGovernor(reserve, "stretch")
    plan = governor.plan(status(remaining), rate=rate, now=before_midnight(seconds_left))
    assert plan.seconds_left == seconds_left
    assert (plan.available, plan.needed, plan.factor) == expected


def test_plan_after_the_reset_time_has_no_seconds_left() -> None:
    """A status whose reset already passed (clock ahead) plans zero seconds, not negative."""
    plan = QuotaGovernor(0.0, "stretch").plan(status(10), rate=1.0, now=MIDNIGHT + dt.timedelta(1))
    assert (plan.seconds_left, plan.needed, plan.factor) == (0.0, 0.0, 1.0)


def plan(available: int, needed: float, seconds_left: float = 3_600) -> QuotaPlan:
    return QuotaPlan(
        status=status(available),
        reserved=0,
        available=available,
        seconds_left=seconds_left,
        needed=needed,
    )


@pytest.mark.parametrize(
    ("factors", "expected"),
    [
        # (factor in force before, the plan's factor) -> (factor after, respread, log level)
        ((1.0, 1.0), (1.0, False, None)),
        ((1.0, 1.04), (1.0, False, None)),  # within the hysteresis
        ((1.0, 1.06), (1.06, True, logging.WARNING)),
        ((2.0, 2.09), (2.0, False, None)),
        ((2.0, 1.0), (1.0, True, logging.INFO)),  # renewed: back to the asked interval
        ((2.0, 1.92), (2.0, False, None)),
        ((2.0, 1.85), (1.85, True, logging.WARNING)),  # less stretch, still stretched
    ],
)
def test_revise_applies_hysteresis(
    factors: tuple[float, float], expected: tuple[float, bool, int | None]
) -> None:
    """A new factor within 5 % of the one in force leaves the schedule alone."""
    before, planned = factors
    governor = QuotaGovernor(0.0, "stretch")
    governor.factor = before
    verdict = governor.revise(plan(1_000, 1_000 * planned), targets=3, interval=10.0)
    level = verdict.log[0] if verdict.log else None
    assert (verdict.factor, verdict.respread, level) == pytest.approx(expected)
    assert governor.factor == verdict.factor
    assert verdict.pause_for is None


def test_revise_says_what_it_stretched() -> None:
    """The stretch warning names the targets, the interval asked for and the one in force."""
    verdict = QuotaGovernor(0.0, "stretch").revise(plan(500, 1_000), targets=3, interval=10.0)
    assert verdict.log == (
        logging.WARNING,
        "polling 3 targets every 10 s would need about 1000 calls before the daily reset at "
        "00:00 UTC, but 500 are left after keeping 0 in reserve; polling every 20 s instead",
    )


def test_revise_pauses_until_just_after_the_reset_when_nothing_is_left() -> None:
    """No calls left for the poller: pause until the reset, keep the factor in force."""
    governor = QuotaGovernor(0.0, "stretch")
    governor.factor = 1.5
    verdict = governor.revise(plan(0, 100, seconds_left=30.0), targets=1, interval=1.0)
    assert verdict.pause_for == pytest.approx(30.0 + AFTER_RESET)
    assert verdict.factor == 1.5
    assert verdict.recheck_in == pytest.approx(30.0 + AFTER_RESET)
    assert verdict.log is not None
    assert "pausing until the daily reset at 00:00 UTC, in 30 s" in verdict.log[1]


def test_revise_rechecks_every_minute_or_at_the_reset() -> None:
    """The next revision is a minute away, or at the reset if that comes first."""
    governor = QuotaGovernor(0.0, "stretch")
    assert governor.revise(plan(10, 1), targets=1, interval=1.0).recheck_in == QUOTA_RECHECK
    soon = governor.revise(plan(10, 1, seconds_left=5.0), targets=1, interval=1.0)
    assert soon.recheck_in == pytest.approx(5.0 + AFTER_RESET)


def test_a_reset_already_passed_is_looked_at_again_in_a_second() -> None:
    """A quota that still reports a passed reset (its day not rolled over) is no busy loop."""
    governor = QuotaGovernor(0.0, "stretch")
    verdict = governor.revise(plan(10, 1, seconds_left=0.0), targets=1, interval=1.0)
    assert verdict.recheck_in == PAST_RESET_WAIT
    spent = QuotaStatus(used=10, remaining=0, limit=10, resets_at=MIDNIGHT)
    pacer = QuotaPacer(governor, lambda: spent, None, lambda: MIDNIGHT + dt.timedelta(seconds=5))
    pacer.pause_until_reset(100.0, spent.resets_at)
    assert pacer.paused_until == 100.0 + PAST_RESET_WAIT
    pacer.paused_until = None
    pacer.pause_until_reset(100.0, MIDNIGHT + dt.timedelta(seconds=35))
    assert pacer.paused_until == pytest.approx(130.0 + AFTER_RESET)


def test_error_mode_raises_instead_of_stretching() -> None:
    """With on_quota="error", a schedule that does not fit raises QuotaExhaustedError."""
    governor = QuotaGovernor(0.0, "error")
    assert governor.revise(plan(1_000, 1_000), targets=1, interval=1.0).factor == 1.0
    with pytest.raises(QuotaExhaustedError, match="needs about 1001 calls") as caught:
        governor.revise(plan(1_000, 1_000.5), targets=1, interval=1.0)
    assert caught.value.resets_at == MIDNIGHT
    with pytest.raises(QuotaExhaustedError, match="only 0 are left"):
        governor.require_fits(plan(-5, 1), targets=1, interval=1.0)


@pytest.mark.parametrize(
    ("remaining", "in_flight", "spent"),
    [(751, 0, False), (750, 0, True), (760, 9, False), (760, 10, True)],
)
def test_budget_counts_the_reserve_and_requests_in_flight(
    remaining: int, in_flight: int, spent: bool
) -> None:
    """The poller's share is what is left after the reserve and the requests already sent."""
    governor = QuotaGovernor(0.05, "stretch")
    assert governor.budget_spent(status(remaining), in_flight) is spent


@pytest.mark.parametrize(
    ("reserve", "limit", "reserved"),
    [
        (0.05, 10, 1),  # 0.5: half a call kept is a whole one
        (0.05, 15_001, 751),  # 750.05
        (0.05, 15_009, 751),  # 750.45: just below a half, still up
        (0.05, 15_011, 751),  # 750.55: just above a half
        (0.05, 15_019, 751),  # 750.95
        (0.05, 15_000, 750),  # whole: kept as it is
        (0.27, 15_000, 4_050),  # whole, though 0.27 * 15_000 is 4050.0000000000005 in floats
        (0.07, 100, 7),  # the same: 7.000000000000001 in floats
        (0.0, 15_000, 0),
    ],
)
def test_the_reserve_is_rounded_up_to_whole_calls(
    reserve: float, limit: int, reserved: int
) -> None:
    """The reserve is the fraction of the daily limit rounded up: never less is left.

    "reserve=0.1 leaves 10 %" (docs/poller.md): a fraction of a call is kept as a whole
    one, whichever side of a half it is, and a product that is whole stays as it is. The
    plan, the pause notice and the poller's budget all count the same reserve.
    """
    governor = QuotaGovernor(reserve, "stretch")
    left = status(reserved + 1, limit)
    assert governor.reserved_calls(left) == reserved
    plan = governor.plan(left, rate=0.0, now=before_midnight(60))
    assert (plan.reserved, plan.available) == (reserved, 1)
    assert f"{reserved} kept in reserve" in governor.pause_notice(left, 60)
    assert not governor.budget_spent(left, in_flight=0)
    assert governor.budget_spent(status(reserved, limit), in_flight=0)


@pytest.mark.parametrize(
    ("reserve", "on_quota", "message"),
    [
        (1.0, "stretch", r"reserve must be a fraction of the daily limit in \[0, 1\), got 1.0"),
        (-0.1, "stretch", "reserve must be a fraction"),
        ("0.1", "stretch", "reserve must be a fraction"),
        (0.0, "wait", 'on_quota must be "stretch" or "error", got \'wait\''),
    ],
)
def test_bad_settings_are_configuration_errors(
    reserve: object, on_quota: object, message: str
) -> None:
    """A reserve outside [0, 1) or an unknown on_quota is refused with what is allowed."""
    with pytest.raises(ConfigurationError, match=message):
        QuotaGovernor(reserve, on_quota)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("anchor", "interval", "earliest", "slot"),
    [
        (0.0, 10.0, -5.0, 0),  # before the first tick: the first tick
        (0.0, 10.0, 0.0, 0),
        (0.0, 10.0, 0.1, 1),
        (0.0, 10.0, 10.0, 1),
        (0.0, 0.1, 0.3, 3),  # 0.1 * 3 is 0.30000000000000004: still slot 3
        (5.0, 2.0, 12.0, 4),
    ],
)
def test_first_slot_at_or_after_a_moment(
    anchor: float, interval: float, earliest: float, slot: int
) -> None:
    """The first tick at or after a moment, with float noise ignored."""
    assert first_slot(anchor, interval, earliest) == slot


@pytest.mark.parametrize(
    ("index", "count", "interval", "draw", "anchor"),
    [
        (0, 4, 8.0, 0.0, 100.0),
        (3, 4, 8.0, 0.0, 106.0),
        (1, 4, 8.0, 0.999, 102.999),  # jitter: half a 2 s slot, capped at 1 s
        (1, 2, 1.0, 0.5, 100.625),  # jitter: half a 0.5 s slot
    ],
)
def test_spread_anchor(index: int, count: int, interval: float, draw: float, anchor: float) -> None:
    """Targets start in the first half of their slot, at most 1 s into it."""
    assert spread_anchor(100.0, index, count, interval, draw) == pytest.approx(anchor)
