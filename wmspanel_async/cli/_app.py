"""The ``wmspanel-async`` command: arguments, credentials, the commands and their exit codes.

Every failure ends in one line on stderr and an exit code that says what kind of failure it
was (see :data:`EXIT_CODES`); no traceback is ever printed, and the API key never is.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import NoReturn

import anyio
from rich.console import Console
from rich.live import Live

from wmspanel_async import (
    APIConnectionError,
    AuthenticationError,
    ConfigurationError,
    DataSlice,
    FileLedger,
    InternalError,
    Ledger,
    RedisUnavailableError,
    SnapshotStream,
    Target,
    WMSPanelClient,
    WMSPanelError,
    __version__,
)
from wmspanel_async._constants import DEFAULT_DAILY_LIMIT, OBJECT_ID
from wmspanel_async._quota import utc_now
from wmspanel_async._redact import Redactor, url_secrets
from wmspanel_async._transport import TRANSPORT_NAMES
from wmspanel_async.testing import Account, Simulator, serve

from ._exporter import add_arguments as add_exporter_arguments
from ._exporter import run as run_exporter
from ._view import (
    WatchView,
    plain_line,
    realtime_text,
    slice_line,
    slices_text,
    snapshot_line,
    target_label,
)

if sys.version_info < (3, 11):  # pragma: no cover - the backport anyio installs there
    from exceptiongroup import BaseExceptionGroup

PROG = "wmspanel-async"

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NETWORK = 4
EXIT_API = 5

#: The event loops the command runs on.
BACKENDS = ("asyncio", "trio")

#: Where the ids that ``--stream`` and ``--server`` take come from.
STREAM_HELP = (
    "a stream id, from WMSPanel's UI or its deep-stats streams list; the API does not list a "
    "slice's streams (lite slices have no per-stream figures)"
)
SERVER_HELP = "a server id: the long id in the address of the server's page in WMSPanel"

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


logger = logging.getLogger("wmspanel_async")


class UsageError(Exception):
    """Bad arguments or settings, found by the command line itself."""


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


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``wmspanel-async`` command and its subcommands."""
    codes = "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())
    parser = _Parser(
        prog=PROG,
        description="Realtime figures of WMSPanel, and a simulator of its API to try them on.",
        epilog=(
            "Credentials come from WMSPANEL_CLIENT_ID and WMSPANEL_API_KEY (or --client-id and "
            "--api-key-file); WMSPANEL_BASE_URL or --base-url points at a proxy or simulator.\n\n"
            f"exit codes:\n{codes}"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    backend_help = "the event loop to run on (default: asyncio; trio must be installed)"
    parser.add_argument("--backend", choices=BACKENDS, default="asyncio", help=backend_help)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    # Every command takes --backend too, after its name; it only overrides the value given
    # before the name if it is given.
    backend = _Parser(add_help=False)
    backend.add_argument(
        "--backend", choices=BACKENDS, default=argparse.SUPPRESS, help=backend_help
    )

    api = _api_options()

    json_flag = _Parser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print JSON, one object a line")

    live = _Parser(add_help=False)
    live.add_argument(
        "--duration", type=_positive, metavar="S", help="stop by itself after S seconds"
    )

    slices = commands.add_parser(
        "slices",
        parents=[backend, api, json_flag],
        help="list the data slices the key may see",
        description="List the data slices the API key may see: their ids and names.",
    )
    slices.set_defaults(run=_slices)

    realtime = commands.add_parser(
        "realtime",
        parents=[backend, api, json_flag],
        help="show the realtime figures of a slice, stream or server once",
        description=(
            "Show the realtime figures of a data slice once: connected viewers, bandwidth and "
            "countries; of one stream of it with --stream, of one server's share with "
            "--server, or of that stream on that server with both."
        ),
    )
    realtime.add_argument("slice", metavar="SLICE", help="the data slice's id or name")
    realtime.add_argument("--stream", metavar="ID", help=STREAM_HELP)
    realtime.add_argument("--server", metavar="ID", help=SERVER_HELP)
    realtime.set_defaults(run=_realtime)

    watch = commands.add_parser(
        "watch",
        parents=[backend, api, json_flag, live],
        help="poll slices, streams or servers and show their figures live",
        description=(
            "Poll data slices (all of them by default) and show their figures live; with "
            "--stream and --server, also each slice's figures for those streams and servers."
        ),
    )
    watch.add_argument("slices", nargs="*", metavar="SLICE", help="data slice ids or names")
    _add_stream_and_server(watch, "also a row per slice for {what} (repeatable); {where}")
    watch.add_argument(
        "--interval",
        type=_positive,
        default=30.0,
        metavar="S",
        help="seconds between two polls of a row's target (default: 30; stretched if the daily "
        "calls would not last)",
    )
    watch.set_defaults(run=_watch)

    simulator = commands.add_parser(
        "simulator",
        parents=[backend, live],
        help="serve the WMSPanel API simulator on a loopback port",
        description="Serve the simulator of the WMSPanel API, for other tools and for tests.",
    )
    simulator.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="a loopback address to listen on (default: %(default)s)",
    )
    simulator.add_argument(
        "--port",
        type=int,
        default=8080,
        metavar="PORT",
        help="the port to listen on; 0 picks a free one (default: %(default)s)",
    )
    simulator.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="picks the account, its key and its figures (default: %(default)s)",
    )
    simulator.add_argument(
        "--daily-limit",
        type=int,
        default=DEFAULT_DAILY_LIMIT,
        metavar="N",
        help="calls the account may make per UTC day (default: %(default)s)",
    )
    simulator.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds every answer waits (default: %(default)g)",
    )
    simulator.add_argument(
        "--error-rate",
        type=_fraction,
        default=0.0,
        metavar="FRACTION",
        help="share of requests answered 500, from 0 to 1 (default: %(default)g)",
    )
    simulator.add_argument(
        "--log-requests",
        action="store_true",
        help="log one line per request on stderr: time, method, path, status, client_id "
        "(never the api_key); GET /_simulator/stats gives today's calls per key and path",
    )
    simulator.add_argument(
        "--json", action="store_true", help="announce the address and account as one JSON line"
    )
    simulator.set_defaults(run=_simulator)

    demo = commands.add_parser(
        "demo",
        parents=[backend, json_flag, live],
        help="watch a simulated account: try it all with nothing to configure",
        description="The watch command against a simulated account served in process.",
    )
    demo.add_argument(
        "--interval",
        type=_positive,
        default=1.0,
        metavar="S",
        help="seconds between two polls of a target (default: 1)",
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="picks the simulated account and its figures (default: %(default)s)",
    )
    demo.set_defaults(run=_demo)

    exporter = commands.add_parser(
        "exporter",
        parents=[backend, api, live],
        help="serve the figures to Prometheus, polled within the daily calls",
        description=(
            "Serve realtime figures on /metrics for Prometheus: one poller fetches them in the "
            "background, within the account's daily calls, and a scrape never calls the API."
        ),
    )
    add_exporter_arguments(exporter, seconds=_positive, ids=_add_stream_and_server)
    exporter.set_defaults(run=_exporter)
    return parser


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


# Output --------------------------------------------------------------------------------------


def _console() -> Console:
    return Console(highlight=False, soft_wrap=False)


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


# Commands ------------------------------------------------------------------------------------


def _slice_by_id_or_name(selector: str, slices: Sequence[DataSlice]) -> DataSlice:
    found = [s for s in slices if selector in (s.id, s.name)]
    if not found:
        known = ", ".join(repr(s.name) for s in slices) or "none"
        msg = f"no data slice {selector!r} for this key (its slices: {known})"
        raise UsageError(msg)
    return found[0]


async def _slices(args: argparse.Namespace) -> None:
    async with _connected(args) as client:
        slices = await client.data_slices()
    if args.json:
        for data_slice in slices:
            _print_line(slice_line(data_slice))
    else:
        _print_line(slices_text(slices))


async def _realtime(args: argparse.Namespace) -> None:
    async with _connected(args) as client:
        names: dict[str, str] = {}
        slice_id = args.slice
        if not OBJECT_ID.fullmatch(slice_id):
            data_slice = _slice_by_id_or_name(slice_id, await client.data_slices())
            slice_id, names = data_slice.id, {data_slice.id: data_slice.name}
        snapshot = await client.snapshot(Target(slice_id, stream=args.stream, server=args.server))
    if snapshot.error is not None:
        raise snapshot.error
    assert snapshot.stats is not None  # noqa: S101 - a snapshot has stats or an error
    if args.json:
        _print_line(snapshot_line(snapshot, names))
    else:
        label = target_label(snapshot.target, names)
        _print_line(realtime_text(label, snapshot.stats))


async def _watch(args: argparse.Namespace) -> None:
    async with _connected(args) as client:
        slices = await client.data_slices()
        chosen = [_slice_by_id_or_name(selector, slices) for selector in args.slices] or slices
        if not chosen:
            msg = "this key sees no data slice to watch"
            raise UsageError(msg)
        names = {data_slice.id: data_slice.name for data_slice in chosen}
        targets = _targets(chosen, streams=args.streams, servers=args.servers)
        title = f"WMSPanel · {client.base_url.host}"
        await _live(client, targets, names, args, title)


def _targets(
    slices: Sequence[DataSlice], *, streams: Sequence[str], servers: Sequence[str]
) -> list[Target]:
    """Return each slice's target, then its stream targets, then its server targets.

    The order and the targets are those of ``discover_targets(streams=, servers=)``.
    """
    targets: dict[Target, None] = {}  # ordered, without repeats
    for data_slice in slices:
        targets[Target(data_slice)] = None
        targets.update((Target(data_slice, stream=stream), None) for stream in streams)
        targets.update((Target(data_slice, server=server), None) for server in servers)
    return list(targets)


async def _demo(args: argparse.Namespace) -> None:
    simulator = Simulator.demo(args.seed)
    account = simulator.account
    async with simulator.client() as client:
        slices = await client.data_slices()
        names = {data_slice.id: data_slice.name for data_slice in slices}
        names.update({stream.id: stream.name for stream in account.streams})
        names.update({server.id: server.name for server in account.servers})
        busiest = sorted(account.streams, key=lambda stream: -stream.audience)[:3]
        targets = [Target(data_slice.id) for data_slice in slices]
        targets += [Target(slices[0].id, stream=stream.id) for stream in busiest]
        title = "WMSPanel demo (simulated account)"
        await _live(client, targets, names, args, title)


async def _live(
    client: WMSPanelClient,
    targets: Sequence[Target],
    names: dict[str, str],
    args: argparse.Namespace,
    title: str,
) -> None:
    console = _console()
    _warnings.show = True
    async with client.poll(targets, interval=args.interval) as stream:
        if args.json:
            async for snapshot in stream:
                _print_line(snapshot_line(snapshot, names))
        elif console.is_terminal:
            view = WatchView(targets, names, title)
            _warnings.view = view
            try:
                await _live_view(console, view, stream)
            finally:
                _warnings.view = None
        else:
            async for snapshot in stream:
                _print_line(plain_line(snapshot, names))


async def _live_view(console: Console, view: WatchView, stream: SnapshotStream) -> None:
    def render() -> None:
        live.update(view.render(stream.stats, utc_now(), console.width), refresh=True)

    async def refresh_every_second() -> None:
        while True:
            await anyio.sleep(1.0)
            render()

    with Live(
        view.render(stream.stats, utc_now(), console.width),
        console=console,
        auto_refresh=False,  # rich's refresh runs in a thread; we refresh from the event loop
        redirect_stdout=False,
        redirect_stderr=False,
    ) as live:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(refresh_every_second)
            last = -math.inf
            async for snapshot in stream:
                view.add(snapshot)
                if anyio.current_time() - last >= 0.2:  # many targets: not a frame for each
                    render()
                    last = anyio.current_time()
            task_group.cancel_scope.cancel()  # pragma: no cover - the stream never ends


async def _exporter(args: argparse.Namespace) -> None:
    await run_exporter(args, lambda: _connected(args))


async def _simulator(args: argparse.Namespace) -> None:
    try:
        account = Account.generate(args.seed, daily_limit=args.daily_limit)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    simulator = Simulator(
        [account],
        seed=args.seed,
        latency=args.latency,
        error_rate=args.error_rate,
        log_requests=args.log_requests,
    )
    if args.log_requests:
        _log_requests_to_stderr()
    async with AsyncExitStack() as stack:
        try:
            server = await stack.enter_async_context(
                serve(simulator, host=args.host, port=args.port)
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:
            msg = f"cannot serve on {args.host} port {args.port}: {exc.strerror or exc}"
            raise APIConnectionError(msg) from None
        _announce(server.url, account, as_json=args.json)
        await anyio.sleep_forever()


def _log_requests_to_stderr() -> None:
    """Send the simulator's request log (logger ``wmspanel_async.simulator``) to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", datefmt="%Y-%m-%dT%H:%M:%S")
    )
    request_log = logging.getLogger("wmspanel_async.simulator")
    request_log.addHandler(handler)
    request_log.setLevel(logging.INFO)
    request_log.propagate = False


def _announce(url: str, account: Account, *, as_json: bool) -> None:
    import json  # noqa: PLC0415 - only this command needs it

    # The simulated account's key is made up from the seed: showing it is the point.
    user_key = next(key for key in account.keys if key.slices is not None)
    if as_json:
        _print_line(
            json.dumps(
                {
                    "base_url": url,
                    "client_id": account.client_id,
                    "api_key": account.api_key,
                    "user_api_key": user_key.key,
                    "daily_limit": account.daily_limit,
                    "data_slices": [
                        {"id": s.id, "name": s.name, "lite": s.lite} for s in account.slices
                    ],
                    "servers": [{"id": s.id, "name": s.name} for s in account.servers],
                    "streams": [{"id": s.id, "name": s.name} for s in account.streams],
                }
            )
        )
        return
    slices = ", ".join(f"{s.name} ({s.id}{', lite' if s.lite else ''})" for s in account.slices)
    _print_line(
        f"WMSPanel API simulator on {url} (a simulated account; Ctrl-C to stop)\n"
        "Point a client at it:\n"
        f"  export WMSPANEL_BASE_URL={url}\n"
        f"  export WMSPANEL_CLIENT_ID={account.client_id}\n"
        f"  export WMSPANEL_API_KEY={account.api_key}\n"
        f"Data slices: {slices}"
    )


# Running -------------------------------------------------------------------------------------


#: The signals that stop a command cleanly (exit code 0, leases and connections let go).
#: SIGHUP too: a closed terminal, or a service manager asking the exporter to reload,
#: would otherwise kill the process by the default action, with nothing released. It
#: stops, and does not reload: restart the command to read its settings again.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


async def _stop_on_signals(scope: anyio.CancelScope) -> None:
    try:
        with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
            async for _ in signals:
                scope.cancel()
                return
    except NotImplementedError:  # pragma: no cover - Windows: Ctrl-C is a KeyboardInterrupt
        return


async def _run(
    command: Callable[[argparse.Namespace], Awaitable[None]], args: argparse.Namespace
) -> int:
    """Run ``command`` until it ends, ``--duration`` passes, or SIGINT, SIGTERM or SIGHUP comes."""
    duration: float | None = getattr(args, "duration", None)
    with anyio.move_on_after(duration):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(_stop_on_signals, task_group.cancel_scope)
            await command(args)
            task_group.cancel_scope.cancel()
    return EXIT_OK


def _unwrap(exc: BaseException) -> BaseException:
    """Return the error that ended the run, out of the task groups' exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        errors: list[BaseException] = [e for e in exc.exceptions if isinstance(e, Exception)]
        exc = (errors or list(exc.exceptions))[0]
    return exc


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, UsageError | ConfigurationError):
        return EXIT_USAGE
    if isinstance(exc, AuthenticationError):
        return EXIT_AUTH
    if isinstance(exc, InternalError):
        return EXIT_INTERNAL
    if isinstance(exc, APIConnectionError | RedisUnavailableError):
        return EXIT_NETWORK
    if isinstance(exc, WMSPanelError):
        return EXIT_API
    return EXIT_INTERNAL


def _fail(exc: BaseException) -> int:
    code = _exit_code(exc)
    message = " ".join(str(exc).split()) or type(exc).__name__
    if code == EXIT_INTERNAL and not isinstance(exc, InternalError):
        message = f"internal error ({type(exc).__name__}: {message}); please report it"
    sys.stderr.write(f"{PROG}: error: {_redact(message)}\n")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``wmspanel-async`` command and return its exit code.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` by default.
    """
    args = build_parser().parse_args(argv)
    if args.backend == "trio":
        try:
            import trio  # noqa: F401, PLC0415 - only to say clearly that it is missing
        except ImportError:  # pragma: no cover - our test environments have trio
            return _fail(UsageError("--backend trio needs trio: pip install trio"))
    _warnings.show, _warnings.view = False, None
    logger.addHandler(_warnings)
    try:
        return anyio.run(_run, args.run, args, backend=args.backend)
    except KeyboardInterrupt:  # pragma: no cover - signals are handled inside the loop
        return EXIT_OK
    except Exception as exc:  # the point: one line, never a traceback
        error = _unwrap(exc)
        if isinstance(error, BrokenPipeError):  # the reader went away, as `| head` does
            _silence_stdout()
            return EXIT_OK
        return _fail(error)
    finally:
        logger.removeHandler(_warnings)


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
