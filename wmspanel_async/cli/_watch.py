"""``wmspanel-async watch`` and ``demo``: a poller's figures, shown live until stopped.

Both poll targets and show each snapshot: in a live table on a terminal, as plain lines
when piped, or as JSON lines with ``--json``. ``watch`` polls an account's slices;
``demo`` polls a simulated account served in process, so that it needs no settings.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

import anyio
from rich.console import Console
from rich.live import Live

from wmspanel_async import DataSlice, SnapshotStream, Target, WMSPanelClient
from wmspanel_async._quota import utc_now
from wmspanel_async.testing import Simulator

from ._common import UsageError, _connected, _print_line, _slice_by_id_or_name, _warnings
from ._options import (
    _add_stream_and_server,
    _api_options,
    _backend_option,
    _duration_option,
    _json_option,
    _Parser,
    _positive,
)
from ._view import WatchView, plain_line, snapshot_line


def add_watch(commands: argparse._SubParsersAction[_Parser]) -> None:
    """Declare the ``watch`` command and its options."""
    watch = commands.add_parser(
        "watch",
        parents=[_backend_option(), _api_options(), _json_option(), _duration_option()],
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


def add_demo(commands: argparse._SubParsersAction[_Parser]) -> None:
    """Declare the ``demo`` command and its options."""
    demo = commands.add_parser(
        "demo",
        parents=[_backend_option(), _json_option(), _duration_option()],
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


def _console() -> Console:
    return Console(highlight=False, soft_wrap=False)


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
