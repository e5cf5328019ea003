"""Values that several parts of the package share, each defined once."""

from __future__ import annotations

import re

#: Calls WMSPanel allows an account per UTC day, unless more were bought.
DEFAULT_DAILY_LIMIT = 15_000

#: What WMSPanel's ids look like: MongoDB object ids, 24 lowercase hex digits.
OBJECT_ID = re.compile(r"[0-9a-f]{24}")
