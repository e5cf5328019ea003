"""What the commands share when they run: the exit codes, the client, and the output.

Each command opens its client with :func:`_connected`, from its options and the
``WMSPANEL_*`` variables, and prints and warns through the helpers here, which blank out
every key this run was given; ``_app`` turns what a command raised into an exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from wmspanel_async import DataSlice, FileLedger, Ledger, WMSPanelClient
from wmspanel_async._redact import Redactor, url_secrets

if TYPE_CHECKING:
    from ._view import WatchView

PROG = "wmspanel-async"

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NETWORK = 4
EXIT_API = 5

#: What each exit code means, as ``--help`` shows it.
EXIT_CODES = {
    EXIT_OK: "done, or stopped by Ctrl-C, SIGTERM, SIGHUP or --duration",
    EXIT_INTERNAL: "a bug of wmspanel-async (please report it)",
    EXIT_USAGE: "bad arguments, or missing or unusable settings",
    EXIT_AUTH: "the API refused the credentials (wrong client id or key, or IP not whitelisted)",
    EXIT_NETWORK: "no answer: network failure, timeout or Redis down (or a port that cannot be "
    "bound)",
    EXIT_API: "the API answered with an error, or the daily call limit is spent",
}


class UsageError(Exception):
    """Bad arguments or settings, found by the command line itself."""


# Credentials ---------------------------------------------------------------------------------


#: The keys this run was given, to blank out of any message as a last line of defence (by
#: the client's rules: a short placeholder key does not blank the words of a message).
_secrets: dict[str, Redactor] = {}


def _redact(text: str) -> str:
    for redactor in _secrets.values():
        text = redactor(text)
    return text


def _api_key(args: argparse.Namespace) -> str | None:
    if args.api_key_file is not None:
        path: Path = args.api_key_file
        try:
            key = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is not text"
            msg = f"cannot read the API key file {str(path)!r}: {reason}"
            raise UsageError(msg) from None
        if not key:
            msg = f"the API key file {str(path)!r} is empty"
            raise UsageError(msg)
        return key
    if args.api_key is not None:
        _warn(
            "--api-key puts the key where other users of this machine can read it (the process "
            "list, shell history); prefer WMSPANEL_API_KEY or --api-key-file"
        )
        return str(args.api_key)
    return os.environ.get("WMSPANEL_API_KEY") or None


def _client(args: argparse.Namespace) -> WMSPanelClient:
    key = _api_key(args)
    if key:
        # The key, and a proxy's password (or a key) in the base URL: never printed.
        base_url = args.base_url or os.environ.get("WMSPANEL_BASE_URL") or ""
        _secrets.setdefault(key, Redactor(key, *url_secrets(base_url)))
    client_id = args.client_id or os.environ.get("WMSPANEL_CLIENT_ID")
    if not client_id:
        msg = "no client id: set WMSPANEL_CLIENT_ID or pass --client-id"
        raise UsageError(msg)
    if not key:
        msg = "no API key: set WMSPANEL_API_KEY or pass --api-key-file PATH"
        raise UsageError(msg)
    return WMSPanelClient(
        client_id,
        key,
        base_url=args.base_url,
        timeout=args.timeout,
        daily_limit=args.daily_limit,
        transport=args.transport,
        ledger=_ledger(args),
    )


#: What a Redis URL starts with, as redis-py reads them.
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _ledger(args: argparse.Namespace) -> Ledger | None:
    where: str | None = args.ledger or os.environ.get("WMSPANEL_LEDGER_URL") or None
    if where is None:
        return None
    if where.startswith(_REDIS_SCHEMES):
        from wmspanel_async.redis import RedisLedger  # noqa: PLC0415 - the redis extra

        ledger: Ledger = RedisLedger.from_url(where)
    else:
        ledger = FileLedger(where)
    return ledger


@contextlib.asynccontextmanager
async def _connected(args: argparse.Namespace) -> AsyncIterator[WMSPanelClient]:
    """The client of the command's options, in use with its ledger.

    The ledger is entered (and closed after): a Redis ledger writes its count back while it
    is, which is what lets it recover a count that Redis lost.
    """
    client = _client(args)
    async with client.ledger, client:
        yield client


def _slice_by_id_or_name(selector: str, slices: Sequence[DataSlice]) -> DataSlice:
    found = [s for s in slices if selector in (s.id, s.name)]
    if not found:
        known = ", ".join(repr(s.name) for s in slices) or "none"
        msg = f"no data slice {selector!r} for this key (its slices: {known})"
        raise UsageError(msg)
    return found[0]


# Output --------------------------------------------------------------------------------------


def _print_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _warn(message: str) -> None:
    sys.stderr.write(f"{PROG}: warning: {_redact(message)}\n")
    sys.stderr.flush()


class _WarningHandler(logging.Handler):
    """Shows the library's warnings (retries, stretched schedules) without breaking the view.

    One-shot commands stay quiet: their final error line says what went wrong. ``watch``
    and ``demo`` show each warning on stderr, or in the live view's warning line.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.show = False
        self.view: WatchView | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = " ".join(_redact(record.getMessage()).split())
        if self.view is not None:
            self.view.warning = message
        elif self.show:
            _warn(message)


_warnings = _WarningHandler()
