"""Sharing one account between processes through Redis (``pip install "wmspanel-async[redis]"``).

- :class:`RedisLedger`: one count of the day's calls for every process, so that together
  they stay within the account's daily limit.
- :class:`RedisShare`: one ``keep_fresh()`` poller for every process that keeps the same
  targets fresh; the others read what it publishes.

Both run on asyncio only (redis-py's asyncio client).
"""

from ._redis import RedisLedger, RedisShare

__all__ = ["RedisLedger", "RedisShare"]
