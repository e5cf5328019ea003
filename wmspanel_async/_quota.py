"""The daily call ledger: WMSPanel allows a number of calls per account per UTC day."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from ._exceptions import ConfigurationError, QuotaExhaustedError
from ._models import QuotaStatus

UTCClock = Callable[[], dt.datetime]

logger = logging.getLogger("wmspanel_async")


def utc_now() -> dt.datetime:
    """Return the current time as an aware UTC datetime."""
    return dt.datetime.now(dt.timezone.utc)


def next_utc_midnight(now: dt.datetime) -> dt.datetime:
    """Return the first 00:00 UTC strictly after ``now``."""
    today = now.astimezone(dt.timezone.utc).date()
    return dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.timezone.utc)


class DailyQuota:
    """Counts calls against a limit that resets at 00:00 UTC.

    With a ``path``, the day's count survives restarts: it is read back when the quota is
    created and written after every call, atomically (a temporary file renamed over the
    old one), so a daemon restarted ten times a day cannot spend the budget ten times. One
    process at a time should use a given file.

    Args:
        limit: Calls allowed per UTC day.
        clock: Returns the current aware datetime; tests pass a fake one.
        path: A file to keep the day's count in, or ``None`` to count in memory only. A
            missing file starts the day at zero; so does an unreadable one, with a warning.

    Raises:
        ConfigurationError: ``path`` cannot be written.
    """

    def __init__(
        self, limit: int, clock: UTCClock = utc_now, path: str | os.PathLike[str] | None = None
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._day = clock().astimezone(dt.timezone.utc).date()
        self._used = 0
        self.path = None if path is None else Path(path)
        self._save_failed = False
        if self.path is not None:
            self._used = self._load(self.path)
            try:
                self._write(self.path)
            except OSError as exc:
                msg = f"cannot write the quota file {str(self.path)!r}: {exc.strerror or exc}"
                raise ConfigurationError(msg) from exc

    def _load(self, path: Path) -> int:
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            logger.warning("ignoring the unreadable quota file %r (%s)", str(path), exc)
            return 0
        if not (
            isinstance(saved, dict)
            and isinstance(saved.get("used"), int)
            and isinstance(saved.get("day"), str)
        ):
            logger.warning("ignoring the quota file %r: not a day's count", str(path))
            return 0
        return max(saved["used"], 0) if saved["day"] == self._day.isoformat() else 0

    def _write(self, path: Path) -> None:
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text(
                json.dumps({"day": self._day.isoformat(), "used": self._used}), encoding="utf-8"
            )
            os.replace(temporary, path)
        except OSError:
            temporary.unlink(missing_ok=True)
            raise

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            self._write(self.path)
        except OSError as exc:
            # Counting goes on in memory: a full disk must not stop the calls themselves.
            if not self._save_failed:
                logger.warning("cannot save the quota file %r (%s)", str(self.path), exc)
            self._save_failed = True
        else:
            self._save_failed = False

    def _roll_over(self) -> dt.datetime:
        now = self._clock()
        today = now.astimezone(dt.timezone.utc).date()
        if today != self._day:
            self._day, self._used = today, 0
            self._save()
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
        self._save()
