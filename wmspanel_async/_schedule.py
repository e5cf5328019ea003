"""The poller's schedule arithmetic: spreading targets over an interval, finding slots.

Tick ``k`` of a target is due at ``anchor + k * interval``: a fixed rate that never drifts,
however late a tick runs. Targets planned together get anchors spread over one interval.
"""

from __future__ import annotations

import math

#: Targets are spread over the interval, each at a random point of the first part of its
#: slot: this fraction of the slot, and never more than MAX_JITTER seconds.
SPREAD_JITTER = 0.5
MAX_JITTER = 1.0
#: Float tolerance when finding the first schedule slot at or after a moment.
SLOT_EPSILON = 1e-9


def spread_anchor(start: float, index: int, count: int, interval: float, draw: float) -> float:
    """Return the anchor of target ``index`` of ``count`` spread over ``interval`` from ``start``.

    Args:
        start: When the first slot begins.
        index: The target's place among those spread.
        count: How many targets are spread.
        interval: Their interval.
        draw: A random number in [0, 1), for the jitter within the slot.
    """
    slot = interval / count
    return start + index * slot + draw * min(SPREAD_JITTER * slot, MAX_JITTER)


def first_slot(anchor: float, interval: float, earliest: float) -> int:
    """Return the first ``k >= 0`` whose tick ``anchor + k * interval`` is at or after ``earliest``.

    It is also the number of ticks due before ``earliest``, counted from ``anchor``.
    """
    return max(0, math.ceil((earliest - anchor) / interval - SLOT_EPSILON))
