"""Snapshots as JSON, for processes that share one poller: versioned, so readers can tell.

The format carries ``"v"``; a reader of another version refuses the snapshot with
:class:`WireFormatError`, which says so, instead of misreading it. Errors cross as their
class name, message and plain attributes, and come back as the same class of ours.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from . import _exceptions
from ._exceptions import WMSPanelError
from ._models import GeoEntry, RealtimeStats, Snapshot, Target

#: The version of the format written here.
WIRE_VERSION = 2


class WireFormatError(ValueError):
    """A shared snapshot this version cannot read."""


def target_key(target: Target) -> str:
    """Return ``target`` as a short text, the same in every process."""
    return json.dumps([target.data_slice, target.stream, target.server])


def dump_snapshot(snapshot: Snapshot, *, generation: int = 0) -> str:
    """Return ``snapshot`` as JSON text, from the poller of the lease's ``generation``."""
    stats, error = snapshot.stats, snapshot.error
    return json.dumps(
        {
            "v": WIRE_VERSION,
            "g": generation,
            "target": [snapshot.target.data_slice, snapshot.target.stream, snapshot.target.server],
            "stats": None
            if stats is None
            else {
                "connected": stats.connected,
                "bandwidth": stats.bandwidth,
                "geo": [[entry.country, entry.connected] for entry in stats.geo],
            },
            "error": None
            if error is None
            else {
                "type": type(error).__name__,
                "message": str(error),
                "attributes": {
                    name: value
                    for name, value in vars(error).items()
                    if isinstance(value, str | int | float | bool) or value is None
                },
            },
            "fetched_at": snapshot.fetched_at.isoformat(),
            "latency": snapshot.latency,
        }
    )


def load_snapshot(text: str | bytes) -> Snapshot:
    """Return the snapshot that :func:`dump_snapshot` wrote.

    Raises:
        WireFormatError: Another version wrote it, or it is not a snapshot.
    """
    return load_shared(text)[0]


def load_shared(text: str | bytes) -> tuple[Snapshot, int]:
    """Return the snapshot that :func:`dump_snapshot` wrote, and its lease's generation.

    Raises:
        WireFormatError: Another version wrote it, or it is not a snapshot.
    """
    try:
        data = json.loads(text)
        version = data.get("v")
    except (ValueError, AttributeError) as exc:
        msg = f"not a shared snapshot: {exc}"
        raise WireFormatError(msg) from None
    if version != WIRE_VERSION:
        msg = (
            f"the snapshot was written in format {version!r} and this version of "
            f"wmspanel-async reads format {WIRE_VERSION}: run the same version everywhere"
        )
        raise WireFormatError(msg)
    try:
        data_slice, stream, server = data["target"]
        stats = data["stats"]
        generation = int(data["g"])
        snapshot = Snapshot(
            target=Target(data_slice, stream=stream, server=server),
            stats=None
            if stats is None
            else RealtimeStats(
                connected=stats["connected"],
                bandwidth=stats["bandwidth"],
                geo=tuple(GeoEntry(country=c, connected=n) for c, n in stats["geo"]),
            ),
            error=None if data["error"] is None else _load_error(data["error"]),
            fetched_at=dt.datetime.fromisoformat(data["fetched_at"]),
            latency=float(data["latency"]),
        )
    except (KeyError, TypeError, ValueError, WMSPanelError) as exc:
        msg = f"a malformed shared snapshot: {type(exc).__name__}: {exc}"
        raise WireFormatError(msg) from None
    return snapshot, generation


def _load_error(data: dict[str, Any]) -> WMSPanelError:
    kind = getattr(_exceptions, data["type"], None)
    if not (isinstance(kind, type) and issubclass(kind, WMSPanelError)):
        kind = WMSPanelError
    # Made without its __init__, whose keyword arguments differ from class to class; the
    # message and the plain attributes are what readers look at.
    error = kind.__new__(kind)
    Exception.__init__(error, data["message"])
    vars(error).update(data.get("attributes", {}))
    return error
