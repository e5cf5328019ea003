"""The daily call ledger: where the day's calls are counted, in memory, in a file, or in Redis.

WMSPanel allows an account a number of calls per UTC day. A client asks its ledger before
each HTTP attempt (``reserve``): the ledger counts the call, or refuses it when the day's
calls are spent, so that a refused call is never sent. ``status`` answers from what the
ledger last saw, without I/O, for the poller's planning; ``refresh`` reads the shared count
again, which the poller does at a bounded rate.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from ._exceptions import ConfigurationError, QuotaExhaustedError
from ._models import QuotaStatus

if TYPE_CHECKING:
    from typing_extensions import Self

UTCClock = Callable[[], dt.datetime]

logger = logging.getLogger("wmspanel_async")


def utc_now() -> dt.datetime:
    """Return the current time as an aware UTC datetime."""
    return dt.datetime.now(dt.timezone.utc)


def next_utc_midnight(now: dt.datetime) -> dt.datetime:
    """Return the first 00:00 UTC strictly after ``now``."""
    today = now.astimezone(dt.timezone.utc).date()
    return dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.timezone.utc)


def quota_status(used: int, limit: int, now: dt.datetime) -> QuotaStatus:
    """Return the status of a day with ``used`` calls counted, at ``now``."""
    return QuotaStatus(
        used=used, remaining=max(limit - used, 0), limit=limit, resets_at=next_utc_midnight(now)
    )


def exhausted(limit: int, now: dt.datetime, where: str = "") -> QuotaExhaustedError:
    """Return the error for a call refused because the day's ``limit`` is spent."""
    resets_at = next_utc_midnight(now)
    msg = (
        f"the daily budget of {limit} calls is spent{where}; no request was sent. "
        f"It resets at {resets_at:%Y-%m-%d %H:%M} UTC: poll less often, or raise "
        "daily_limit if your account has bought more calls"
    )
    return QuotaExhaustedError(msg, resets_at=resets_at)


class Ledger(abc.ABC):
    """Counts an account's calls of the UTC day, for every client that shares it.

    Give one to :class:`WMSPanelClient` as ``ledger=``; the client calls these methods.
    :class:`MemoryLedger` (the default) counts for one client, :class:`FileLedger` for the
    processes of one machine, and ``wmspanel_async.redis.RedisLedger`` for processes
    anywhere. Counts are kept per ``account``.
    """

    @abc.abstractmethod
    async def reserve(self, account: str, limit: int, now: dt.datetime) -> QuotaStatus:
        """Count one call of ``account``, or refuse it when the day's ``limit`` is spent.

        Args:
            account: The account whose calls these are: the client's ``account``.
            limit: Calls allowed per UTC day.
            now: The client's clock; a shared ledger may use a clock of its own.

        Returns:
            The day's status after counting it.

        Raises:
            QuotaExhaustedError: No call is left today; nothing was counted.
        """

    @abc.abstractmethod
    def status(self, account: str, limit: int, now: dt.datetime) -> QuotaStatus:
        """Return the day's status as this ledger last saw it, without I/O."""

    async def refresh(self, account: str, limit: int, now: dt.datetime) -> QuotaStatus:
        """Read the day's count again, as other processes left it, and return the status.

        A ledger that only this process writes has nothing to read: the default returns
        :meth:`status`.
        """
        return self.status(account, limit, now)

    async def aclose(self) -> None:  # noqa: B027 - most ledgers hold nothing to close
        """Release what the ledger holds (connections)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _DayCount:
    """One account's count of one UTC day."""

    __slots__ = ("day", "used")

    def __init__(self, day: dt.date, used: int = 0) -> None:
        self.day = day
        self.used = used

    def roll_over(self, now: dt.datetime) -> None:
        today = now.astimezone(dt.timezone.utc).date()
        if today != self.day:
            self.day, self.used = today, 0


class MemoryLedger(Ledger):
    """Counts in this process's memory: the default, for a client that is alone on its account."""

    def __init__(self) -> None:
        self._counts: dict[str, _DayCount] = {}

    def _count(self, account: str, now: dt.datetime) -> _DayCount:
        count = self._counts.get(account)
        if count is None:
            count = self._counts[account] = _DayCount(now.astimezone(dt.timezone.utc).date())
        count.roll_over(now)
        return count

    async def reserve(self, account: str, limit: int, now: dt.datetime) -> QuotaStatus:
        count = self._count(account, now)
        if count.used >= limit:
            raise exhausted(limit, now)
        count.used += 1
        return quota_status(count.used, limit, now)

    def status(self, account: str, limit: int, now: dt.datetime) -> QuotaStatus:
        return quota_status(self._count(account, now).used, limit, now)


class FileLedger(Ledger):
    """Counts in a file that the processes of one machine share, under an OS file lock.

    Each call reads, counts and writes the file under an exclusive lock (``flock`` on a
    ``.lock`` file beside it), in a worker thread, so that the event loop never waits for
    the disk and no two processes can both take the last call. The count is written (to a
    temporary file renamed over the old one) before the request is sent: a process that
    crashes loses nothing; a machine that loses power may lose the calls of the last
    seconds that the OS had not written to the disk yet.

    Args:
        path: The file. A missing file starts the day at zero; so does an unreadable one,
            with a warning.

    Raises:
        ConfigurationError: The file or its lock cannot be written.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path: Path = Path(path)
        self._lock_path = self.path.with_name(f"{self.path.name}.lock")
        self._seen: dict[str, _DayCount] = {}
        self._save_failed = False
        try:
            self._lock_path.touch(exist_ok=True)
        except OSError as exc:
            msg = f"cannot write the quota file {str(self.path)!r}: {exc.strerror or exc}"
            raise ConfigurationError(msg) from exc
        # What the file says now, so that a client's quota is right before its first call
        # (read once, here, as a program starts: not on the event loop's busy path).
        for day, counts in self._load().items():
            with contextlib.suppress(ValueError):  # not a day: ignored, as by _load()
                date = dt.date.fromisoformat(day)
                self._seen.update((key, _DayCount(date, used)) for key, used in counts.items())

    def __repr__(self) -> str:
        return f"<FileLedger {str(self.path)!r}>"

    async def reserve(self, account: str, limit: int, now: dt.datetime) -> QuotaStatus:
        used = await anyio.to_thread.run_sync(self._locked, self._take, account, limit, now)
        return quota_status(used, limit, now)

    def status(self, account: str, limit: int, now: dt.datetime) -> QuotaStatus:
        count = self._seen.get(account)
        if count is None:
            return quota_status(0, limit, now)
        count.roll_over(now)
        return quota_status(count.used, limit, now)

    async def refresh(self, account: str, limit: int, now: dt.datetime) -> QuotaStatus:
        used = await anyio.to_thread.run_sync(self._locked, self._read, account, limit, now)
        return quota_status(used, limit, now)

    # -- in the worker thread, under the lock ------------------------------------------------

    def _locked(
        self,
        action: Callable[[str, int, dt.datetime], int],
        account: str,
        limit: int,
        now: dt.datetime,
    ) -> int:
        try:
            lock = self._lock_path.open("a")
        except OSError as exc:
            # Its directory was removed, or its disk unmounted: counting goes on in this
            # process's memory (``_counted`` never counts below it), as when a save fails.
            self._warn_unsaved(exc)
            return action(account, limit, now)
        with lock:
            _lock(lock.fileno())
            try:
                return action(account, limit, now)
            finally:
                _unlock(lock.fileno())

    def _read(self, account: str, limit: int, now: dt.datetime) -> int:
        return self._counted(account, now.astimezone(dt.timezone.utc).date(), self._load())

    def _take(self, account: str, limit: int, now: dt.datetime) -> int:
        today = now.astimezone(dt.timezone.utc).date()
        days = self._load()
        used = self._counted(account, today, days)
        if used >= limit:
            raise exhausted(limit, now)
        counts = days.get(today.isoformat(), {})
        counts[account] = used = used + 1
        self._save({today.isoformat(): counts})  # older days are dropped
        self._seen[account] = _DayCount(today, used)
        return used

    def _counted(self, account: str, today: dt.date, days: dict[str, dict[str, int]]) -> int:
        """Return today's count in ``days``, never below what this process counted today."""
        used = days.get(today.isoformat(), {}).get(account, 0)
        seen = self._seen.get(account)
        if seen is not None and seen.day == today:
            # The file may have failed to save, or become unreadable.
            used = max(used, seen.used)
        self._seen[account] = _DayCount(today, used)
        return used

    def _load(self) -> dict[str, dict[str, int]]:
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
            reason = exc if not isinstance(exc, RecursionError) else "nested too deep"
            logger.warning("ignoring the unreadable quota file %r (%s)", str(self.path), reason)
            return {}
        days = saved.get("days") if isinstance(saved, dict) else None
        if not isinstance(days, dict):
            logger.warning("ignoring the quota file %r: not a day's count", str(self.path))
            return {}
        return {
            day: {key: used for key, used in counts.items() if isinstance(used, int) and used > 0}
            for day, counts in days.items()
            if isinstance(day, str) and isinstance(counts, dict)
        }

    def _save(self, days: dict[str, dict[str, int]]) -> None:
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text(json.dumps({"days": days}), encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            self._warn_unsaved(exc)
        else:
            self._save_failed = False

    def _warn_unsaved(self, exc: OSError) -> None:
        # Counting goes on in this process: a full disk must not stop the calls.
        if not self._save_failed:
            logger.warning(
                "cannot save the quota file %r (%s); counting in this process's memory until "
                "it can",
                str(self.path),
                exc,
            )
        self._save_failed = True


if sys.platform == "win32":  # pragma: no cover - the suite runs on Linux
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
