"""``wmspanel-async exporter``: what to poll (flags or a TOML file), then poll and serve it.

One run: the arguments and ``--config`` become a :class:`_Plan` (bad settings end here, with
exit code 2, before any call) -> one ``keep_fresh()`` poller over the targets given by id ->
``_exporter.serve_exporter`` serves /metrics inside it -> a task lists the data slices now
and every hour, for their names and for the targets of ``--all-slices`` and
``--each-server``, which it watches and unwatches as slices come and go. Nothing here stops
for the API: a refused key, an outage or a spent quota show in the metrics (and once in the
log), and the exporter keeps serving until SIGTERM, SIGHUP or Ctrl-C, each a clean stop
with exit code 0 (SIGHUP does not reload the config file: restart to read it again).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from wmspanel_async import (
    APIConnectionError,
    ConfigurationError,
    DataSlice,
    FreshSnapshots,
    Target,
    WMSPanelClient,
    WMSPanelError,
)
from wmspanel_async._constants import OBJECT_ID
from wmspanel_async._redact import LOG_FILTER
from wmspanel_async.testing import Simulator

from ._common import _connected
from ._options import (
    _add_stream_and_server,
    _api_options,
    _backend_option,
    _duration_option,
    _Parser,
    _positive,
)

if TYPE_CHECKING:
    from wmspanel_async.redis import RedisShare

logger = logging.getLogger("wmspanel_async.exporter")

#: The port /metrics is served on unless told otherwise. The Prometheus wiki's "default
#: port allocations" list gives each exporter a port of its own, so that exporters on one
#: host do not collide: 9100-9999 are all taken, and new exporters get ports from 10000
#: up. This one was free on that list, and is not a well-known port of other software
#: (Zabbix, often on the same hosts, has 10050-10053).
DEFAULT_PORT = 10054

#: Seconds between two listings of the data slices, for their names and for the targets
#: of --all-slices and --each-server: one call an hour.
SLICES_REFRESH = 3600.0
#: Seconds before the first new try after a listing failed; doubled after each failure in a
#: row, up to SLICES_REFRESH, so that a refused key costs a few dozen calls a day.
SLICES_RETRY = 30.0

_DEFAULT_INTERVAL = 30.0
_DEMO_INTERVAL = 1.0


def _is_ids(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


#: The settings a config file may have: how to check each, and what it must be.
_SETTINGS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "interval": (
        lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v > 0,
        "a positive number of seconds",
    ),
    "listen": (lambda v: isinstance(v, str), 'a "HOST:PORT" string'),
    "slices": (_is_ids, "a list of id strings"),
    "all_slices": (lambda v: isinstance(v, bool), "true or false"),
    "each_server": (lambda v: isinstance(v, bool), "true or false"),
    "streams": (_is_ids, "a list of id strings"),
    "servers": (_is_ids, "a list of id strings"),
    "targets": (
        lambda v: isinstance(v, list) and all(isinstance(t, dict) for t in v),
        "a list of [[targets]] tables",
    ),
}
_TARGET_KEYS = {"data_slice", "stream", "server"}


def add_exporter(commands: argparse._SubParsersAction[_Parser]) -> None:
    """Declare the ``exporter`` command and its options."""
    exporter = commands.add_parser(
        "exporter",
        parents=[_backend_option(), _api_options(), _duration_option()],
        help="serve the figures to Prometheus, polled within the daily calls",
        description=(
            "Serve realtime figures on /metrics for Prometheus: one poller fetches them in the "
            "background, within the account's daily calls, and a scrape never calls the API."
        ),
    )
    _add_target_options(exporter)
    _add_serving_options(exporter)
    exporter.set_defaults(run=_exporter)


def _add_target_options(parser: _Parser) -> None:
    """Declare the options that say what to poll."""
    targets = parser.add_argument_group("what to poll (repeatable options add up)")
    targets.add_argument(
        "--slice",
        action="append",
        default=[],
        dest="slices",
        metavar="ID",
        help="a data slice id (wmspanel-async slices lists them)",
    )
    targets.add_argument(
        "--all-slices",
        action="store_true",
        help="every data slice the key sees, listed again every hour",
    )
    targets.add_argument(
        "--each-server",
        action="store_true",
        help="also each of the slices' servers, as the API lists them",
    )
    _add_stream_and_server(targets, "also {what} in each slice; {where}")
    targets.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a TOML file with these settings and [[targets]] tables (see docs/exporter.md); "
        "options given on the command line win",
    )
    targets.add_argument(
        "--demo",
        action="store_true",
        help="poll a simulated account served in process: try it with nothing to configure",
    )


def _add_serving_options(parser: _Parser) -> None:
    """Declare the options that say how often to poll, and where to serve."""
    parser.add_argument(
        "--interval",
        type=_positive,
        metavar="S",
        help=f"seconds between two polls of a target (default: {_DEFAULT_INTERVAL:g}, "
        f"{_DEMO_INTERVAL:g} with --demo; stretched if the daily calls would not last)",
    )
    parser.add_argument(
        "--no-first-poll",
        action="store_true",
        help="spread the first polls over the interval instead of polling every target once "
        "at start (they are spread anyway when the daily calls left cannot afford it)",
    )
    parser.add_argument(
        "--share",
        metavar="URL",
        help="poll once for every exporter (and other process) that shares this Redis and "
        "keeps the same targets of the account fresh (redis://HOST:PORT/DB; pip install "
        "'wmspanel-async[redis]'); the targets are then fixed at start (default: the "
        "WMSPANEL_SHARE_URL variable, else no sharing)",
    )
    parser.add_argument(
        "--listen",
        type=_listen_address,
        metavar="HOST:PORT",
        help=f"where to serve /metrics (default: 127.0.0.1:{DEFAULT_PORT}; "
        f"0.0.0.0:{DEFAULT_PORT} for every IPv4 interface, :{DEFAULT_PORT} for all)",
    )


@attrs.frozen(kw_only=True)
class _Plan:
    """What one run polls and where it serves, from the options and the config file."""

    slices: tuple[str, ...] = ()
    all_slices: bool = False
    each_server: bool = False
    streams: tuple[str, ...] = ()
    servers: tuple[str, ...] = ()
    targets: tuple[Target, ...] = ()  # the config file's [[targets]]
    interval: float
    host: str
    port: int

    def explicit(self) -> list[Target]:
        """Return the targets named by id: polled from the start, whatever the API lists."""
        found: dict[Target, None] = dict.fromkeys(self.targets)
        for slice_id in self.slices:
            found.update(dict.fromkeys(self._around(slice_id)))
        return list(found)

    def discovered(self, slices: Sequence[DataSlice]) -> set[Target]:
        """Return the targets that come from the API's list of ``slices``."""
        found: set[Target] = set()
        for data_slice in slices:
            if self.all_slices:
                found.update(self._around(data_slice.id))
            if self.each_server and (self.all_slices or data_slice.id in self.slices):
                found.update(Target(data_slice.id, server=sid) for sid in data_slice.server_ids)
        return found

    def _around(self, slice_id: str) -> Iterable[Target]:
        yield Target(slice_id)
        yield from (Target(slice_id, stream=stream) for stream in self.streams)
        yield from (Target(slice_id, server=server) for server in self.servers)


async def _exporter(args: argparse.Namespace) -> None:
    await run(args, lambda: _connected(args))


async def run(
    args: argparse.Namespace,
    connect: Callable[[], AbstractAsyncContextManager[WMSPanelClient]],
) -> None:
    """Run the exporter until cancelled (by SIGTERM, SIGHUP or Ctrl-C).

    Raises:
        ConfigurationError: Bad options, config file or credentials, or no prometheus extra.
        APIConnectionError: The listening address cannot be bound.
    """
    try:
        from wmspanel_async._exporter import serve_exporter  # noqa: PLC0415 - the extra
    except ImportError as exc:
        msg = (
            f"the exporter needs the prometheus extra ({exc}): "
            "pip install 'wmspanel-async[prometheus]'"
        )
        raise ConfigurationError(msg) from None
    plan = _plan(args)
    if args.demo:
        simulator = Simulator.demo()
        connect = simulator.client
        if not (plan.slices or plan.targets or plan.all_slices):
            # What `wmspanel-async demo` shows: every slice, and the busiest streams of one.
            busiest = sorted(simulator.account.streams, key=lambda stream: -stream.audience)
            first = simulator.account.slices[0].id
            plan = attrs.evolve(
                plan,
                all_slices=True,
                targets=tuple(Target(first, stream=stream.id) for stream in busiest[:3]),
            )
    names: dict[str, str] = {}
    with _log_to_stderr():
        async with AsyncExitStack() as stack:
            client = await stack.enter_async_context(connect())
            share = await _share(args, stack)
            targets = plan.explicit()
            if share is not None and (plan.all_slices or plan.each_server):
                # One set of targets per share: what the API lists now, fixed from now on.
                slices = await client.data_slices(show_servers=plan.each_server)
                targets += sorted(plan.discovered(slices) - set(targets), key=str)
            fresh = await stack.enter_async_context(
                client.keep_fresh(
                    targets,
                    interval=plan.interval,
                    max_targets=None,
                    share=share,
                    first_poll_now=not args.no_first_poll,
                )
            )
            serving = serve_exporter(fresh, host=plan.host, port=plan.port, slice_names=names)
            try:
                host, port = await stack.enter_async_context(serving)
            except OSError as exc:
                msg = f"cannot listen on {plan.host or '*'}:{plan.port}: {exc.strerror or exc}"
                raise APIConnectionError(msg) from None
            shown = f"[{host}]" if ":" in host else host or "0.0.0.0"  # noqa: S104 - as bound
            print(f"wmspanel-async exporter: serving http://{shown}:{port}/metrics")
            sys.stdout.flush()
            await _follow_slices(client, fresh, plan, names, fixed=share is not None)


async def _share(args: argparse.Namespace, stack: AsyncExitStack) -> RedisShare | None:
    """Return the Redis share that ``--share`` (or ``WMSPANEL_SHARE_URL``) names, if any."""
    url = None if args.demo else args.share or os.environ.get("WMSPANEL_SHARE_URL")
    if not url:
        return None
    from wmspanel_async.redis import RedisShare  # noqa: PLC0415 - the redis extra

    return await stack.enter_async_context(RedisShare.from_url(url))


def _plan(args: argparse.Namespace) -> _Plan:
    config = _read_config(args.config) if args.config is not None else {}
    host, port = args.listen or config.get("listen") or ("127.0.0.1", DEFAULT_PORT)
    interval = args.interval or config.get("interval")
    plan = _Plan(
        slices=_ids([*config.get("slices", []), *args.slices], "data slice"),
        all_slices=args.all_slices or config.get("all_slices", False),
        each_server=args.each_server or config.get("each_server", False),
        streams=_ids([*config.get("streams", []), *args.streams], "stream"),
        servers=_ids([*config.get("servers", []), *args.servers], "server"),
        targets=tuple(config.get("targets", ())),
        interval=interval or (_DEMO_INTERVAL if args.demo else _DEFAULT_INTERVAL),
        host=host,
        port=port,
    )
    if not (plan.slices or plan.all_slices or plan.targets or args.demo):
        msg = "nothing to export: give --slice ID, --all-slices, --config FILE or --demo"
        raise ConfigurationError(msg)
    return plan


def _ids(values: Iterable[str], what: str) -> tuple[str, ...]:
    for value in values:
        if not OBJECT_ID.fullmatch(value):
            msg = f"a {what} id is 24 lowercase hex digits, got {value!r}"
            raise ConfigurationError(msg)
    return tuple(dict.fromkeys(values))


def _read_config(path: Path) -> dict[str, Any]:
    """Read and check the TOML file; return its settings, ``listen`` and ``targets`` parsed."""
    if sys.version_info >= (3, 11):
        import tomllib  # noqa: PLC0415 - only --config needs it
    else:  # pragma: no cover - our CI runs the heavy tests on the newest Python
        try:
            import tomli as tomllib  # noqa: PLC0415
        except ImportError:
            msg = "--config needs Python 3.11 or later, or the tomli package: pip install tomli"
            raise ConfigurationError(msg) from None
    where = f"the config file {str(path)!r}"
    try:
        config: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        msg = f"cannot read {where}: {exc.strerror or exc}"
        raise ConfigurationError(msg) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        msg = f"{where} is not valid TOML: {exc}"
        raise ConfigurationError(msg) from None
    unknown = sorted(set(config) - _SETTINGS.keys())
    if unknown:
        msg = f"{where} has unknown settings {unknown}; it may have {list(_SETTINGS)}"
        raise ConfigurationError(msg)
    for key, value in config.items():
        check, expected = _SETTINGS[key]
        if not check(value):
            msg = f"{where}: {key} = {value!r} is not {expected}"
            raise ConfigurationError(msg)
    try:
        if "listen" in config:
            config["listen"] = _listen_address(config["listen"])
    except argparse.ArgumentTypeError as exc:
        msg = f"{where}: listen: {exc}"
        raise ConfigurationError(msg) from None
    config["targets"] = [_config_target(table, where) for table in config.get("targets", [])]
    return config


def _config_target(table: dict[str, Any], where: str) -> Target:
    unknown = sorted(set(table) - _TARGET_KEYS)
    if unknown or "data_slice" not in table:
        msg = (
            f"{where}: each [[targets]] table has data_slice, and optionally stream and "
            f"server; got {sorted(table)}"
        )
        raise ConfigurationError(msg)
    for key, value in table.items():
        if not (isinstance(value, str) and OBJECT_ID.fullmatch(value)):
            msg = (
                f"{where}: [[targets]] {key} takes an id of 24 lowercase hex digits, got {value!r}"
            )
            raise ConfigurationError(msg)
    return Target(table["data_slice"], stream=table.get("stream"), server=table.get("server"))


def _listen_address(text: str) -> tuple[str, int]:
    """Parse ``HOST:PORT``, an IPv6 host in brackets (``[::1]:9999``), or ``:PORT``.

    Raises:
        argparse.ArgumentTypeError: Anything else, such as ``[::1:5`` or ``::1:5``.
    """
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        valid = _is_ipv6(host)
    else:  # a bracket or a colon out of place is a typo, never part of a name
        valid = not any(char in host for char in "[]:")
    if not (valid and colon and port.isdigit() and int(port) <= 65535):
        msg = (
            f'expected HOST:PORT (such as "127.0.0.1:9999", "[::1]:9999" or ":9999"), got {text!r}'
        )
        raise argparse.ArgumentTypeError(msg)
    return host, int(port)


def _is_ipv6(text: str) -> bool:
    import ipaddress  # noqa: PLC0415 - only for a bracketed --listen

    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


async def _follow_slices(
    client: WMSPanelClient,
    fresh: FreshSnapshots,
    plan: _Plan,
    names: dict[str, str],
    *,
    fixed: bool = False,
) -> None:
    """List the data slices now and every hour: names for the metrics, discovered targets.

    Targets the listing brings are watched, and those it no longer brings unwatched (their
    series go with them), unless the targets are ``fixed`` (a share's); a failed listing
    keeps what the last one found, and is tried again after 30 s, then after twice as long
    each time, up to an hour.
    """
    discovered: set[Target] = set()
    explicit = set(plan.explicit())
    warned: set[str] = set()
    failures = 0
    while True:
        try:
            slices = await client.data_slices(show_servers=plan.each_server)
        except WMSPanelError as error:
            failures += 1
            if failures == 1:
                logger.warning(
                    "cannot list the data slices (%s: %s); slice names and the targets of "
                    "--all-slices and --each-server wait for the next try",
                    type(error).__name__,
                    error,
                )
            await anyio.sleep(min(SLICES_REFRESH, SLICES_RETRY * 2 ** (failures - 1)))
            continue
        if failures:
            logger.info("listed the data slices again, after %d failed tries", failures)
            failures = 0
        names.clear()
        names.update((data_slice.id, data_slice.name) for data_slice in slices)
        for slice_id in set(plan.slices) - names.keys() - warned:
            warned.add(slice_id)
            logger.warning(
                "data slice %s is not among the %d this key sees; its polls will fail",
                slice_id,
                len(names),
            )
        wanted = plan.discovered(slices) - explicit
        if fixed:
            if wanted - set(fresh.targets) and "fixed" not in warned:
                warned.add("fixed")
                logger.warning(
                    "the API lists targets this exporter does not poll: with --share the "
                    "targets are fixed at start; restart the exporters to export them"
                )
            await anyio.sleep(SLICES_REFRESH)
            continue
        for target in sorted(wanted - discovered, key=str):
            fresh.watch(target)
        for target in discovered - wanted:
            fresh.unwatch(target)
        discovered = wanted
        await anyio.sleep(SLICES_REFRESH)


class _StderrHandler(logging.Handler):
    """Writes the package's log records to stderr, one line each, for journald or a pipe."""

    def emit(self, record: logging.LogRecord) -> None:
        message = " ".join(record.getMessage().split())
        sys.stderr.write(f"wmspanel-async exporter: {record.levelname.lower()}: {message}\n")
        sys.stderr.flush()


@contextlib.contextmanager
def _log_to_stderr() -> Iterator[None]:
    """Log INFO and above of the package to stderr, without the API key, while in the block."""
    package = logging.getLogger("wmspanel_async")
    handler = _StderrHandler(logging.INFO)
    handler.addFilter(LOG_FILTER)  # the records of every logger of ours, not only its own
    level = package.level
    package.setLevel(logging.INFO)
    package.addHandler(handler)
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(level)
