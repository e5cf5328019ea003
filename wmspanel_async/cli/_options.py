"""The options several commands take, and the parser that reports a bad one in one line.

Each command's module declares its subcommand with these sets of options as parents
(``--backend``, the connection options of every command that calls the API, ``--json``,
``--duration``), so that the same option reads and is checked the same in every command.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import NoReturn

from wmspanel_async._constants import DEFAULT_DAILY_LIMIT
from wmspanel_async._transport import TRANSPORT_NAMES

from ._common import EXIT_USAGE, PROG

#: The event loops the command runs on.
BACKENDS = ("asyncio", "trio")
BACKEND_HELP = "the event loop to run on (default: asyncio; trio must be installed)"

#: Where the ids that ``--stream`` and ``--server`` take come from.
STREAM_HELP = (
    "a stream id, from WMSPanel's UI or its deep-stats streams list; the API does not list a "
    "slice's streams (lite slices have no per-stream figures)"
)
SERVER_HELP = "a server id: the long id in the address of the server's page in WMSPanel"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """Print one line instead of argparse's usage block, and exit with 2."""
        sys.stderr.write(f"{PROG}: error: {message} (see {self.prog} --help)\n")
        sys.exit(EXIT_USAGE)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        msg = f"expected a positive number of seconds, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        msg = f"expected a number from 0 to 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _add_stream_and_server(parser: argparse._ActionsContainer, help_text: str) -> None:
    """Declare the repeatable ``--stream ID`` and ``--server ID`` options.

    Args:
        parser: The parser or argument group to declare them on.
        help_text: Their help, with ``{what}`` and ``{where}`` to fill in.
    """
    for flag, what, where in (
        ("--stream", "this stream", STREAM_HELP),
        ("--server", "this server's share", SERVER_HELP),
    ):
        parser.add_argument(
            flag,
            action="append",
            default=[],
            dest=f"{flag.removeprefix('--')}s",
            metavar="ID",
            help=help_text.format(what=what, where=where),
        )


def _backend_option() -> _Parser:
    """Return ``--backend`` as every command takes it after its name, as a parent parser.

    It only overrides the value given before the name if it is given.
    """
    backend = _Parser(add_help=False)
    backend.add_argument(
        "--backend", choices=BACKENDS, default=argparse.SUPPRESS, help=BACKEND_HELP
    )
    return backend


def _json_option() -> _Parser:
    """Return ``--json``, as a parent parser."""
    json_flag = _Parser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print JSON, one object a line")
    return json_flag


def _duration_option() -> _Parser:
    """Return ``--duration`` of the commands that run until stopped, as a parent parser."""
    duration = _Parser(add_help=False)
    duration.add_argument(
        "--duration", type=_positive, metavar="S", help="stop by itself after S seconds"
    )
    return duration


def _api_options() -> _Parser:
    """Return the options of every command that calls the API, as a parent parser."""
    api = _Parser(add_help=False)
    group = api.add_argument_group("connection")
    group.add_argument(
        "--client-id",
        metavar="ID",
        help="the account's client id (default: the WMSPANEL_CLIENT_ID variable)",
    )
    group.add_argument(
        "--api-key-file",
        type=Path,
        metavar="PATH",
        help="read the API key from the first line of this file (without it, the key is the "
        "value of the WMSPANEL_API_KEY variable)",
    )
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help="the API key itself; avoid it: other users of the machine can see it",
    )
    group.add_argument(
        "--base-url",
        metavar="URL",
        help="the API or a proxy (default: the WMSPANEL_BASE_URL variable, else "
        "https://api.wmspanel.com)",
    )
    group.add_argument(
        "--timeout",
        type=_positive,
        default=10.0,
        metavar="S",
        help="seconds per request (default: 10)",
    )
    group.add_argument(
        "--daily-limit",
        type=int,
        default=DEFAULT_DAILY_LIMIT,
        metavar="N",
        help="calls the account may make per UTC day (default: %(default)s; more can be bought)",
    )
    group.add_argument(
        "--ledger",
        metavar="WHERE",
        help="count the day's calls with other processes of the account: in Redis "
        "(redis://HOST:PORT/DB; pip install 'wmspanel-async[redis]') or in a file shared by "
        "this machine's processes (a path) (default: the WMSPANEL_LEDGER_URL variable, else "
        "in memory)",
    )
    group.add_argument(
        "--transport",
        choices=TRANSPORT_NAMES,
        default="httpx",
        help="what sends the requests: httpx (default), or aiohttp, far lighter on CPU "
        "(asyncio only; needs pip install 'wmspanel-async[aiohttp]')",
    )
    return api
