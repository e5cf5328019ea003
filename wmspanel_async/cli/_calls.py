"""``wmspanel-async slices`` and ``realtime``: one call each, its answer printed once.

They are the API's two calls as they are, for a look at an account or a script's use
(``--json``); ``watch`` is what keeps figures coming.
"""

from __future__ import annotations

import argparse

from wmspanel_async import Target
from wmspanel_async._constants import OBJECT_ID

from ._common import _connected, _print_line, _slice_by_id_or_name
from ._options import SERVER_HELP, STREAM_HELP, _api_options, _backend_option, _json_option, _Parser
from ._view import realtime_text, slice_line, slices_text, snapshot_line, target_label


def add_slices(commands: argparse._SubParsersAction[_Parser]) -> None:
    """Declare the ``slices`` command."""
    slices = commands.add_parser(
        "slices",
        parents=[_backend_option(), _api_options(), _json_option()],
        help="list the data slices the key may see",
        description="List the data slices the API key may see: their ids and names.",
    )
    slices.set_defaults(run=_slices)


def add_realtime(commands: argparse._SubParsersAction[_Parser]) -> None:
    """Declare the ``realtime`` command and its options."""
    realtime = commands.add_parser(
        "realtime",
        parents=[_backend_option(), _api_options(), _json_option()],
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
