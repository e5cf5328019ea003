"""Values that several parts of the package share, each defined once."""

from __future__ import annotations

import re

#: Calls WMSPanel allows an account per UTC day, unless more were bought.
DEFAULT_DAILY_LIMIT = 15_000

#: How many targets' URLs a client keeps, about 0.6 KiB each, when the installed httpx does
#: not let it assemble each call's URL (see ``_urls``): parsing them is the largest cost of a
#: call that is ours to save. Beyond this many targets, the oldest URL is built again.
URLS_KEPT = 4096

#: How many targets' latest figures a client keeps for ``realtime(max_age=...)``, about
#: 1 KiB each with 20 countries.
ANSWERS_KEPT = 256

#: Targets a ``keep_fresh()`` watches at most, unless told otherwise: a bound on what
#: readers may start polling with ``watch()``.
MAX_WATCHED_TARGETS = 1000

#: Snapshots a ``keep_fresh()`` subscription keeps for a slow reader before dropping its
#: oldest, unless told otherwise.
SUBSCRIPTION_BUFFER = 64

#: What WMSPanel's ids look like: MongoDB object ids, 24 lowercase hex digits.
OBJECT_ID = re.compile(r"[0-9a-f]{24}")
