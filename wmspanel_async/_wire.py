"""Snapshots as JSON, for processes that share one poller: versioned, so readers can tell.

The format carries ``"v"``; a reader of another version refuses the snapshot with
:class:`WireFormatError`, which says so, instead of misreading it. Errors cross as their
class name, message and plain attributes, and come back as the same class of ours. Each
message carries ``"g"``, the generation of the lease of the poller that wrote it; besides
snapshots, that poller publishes its figures (``"poller"``: the fields of ``PollerStats``).
"""

from __future__ import annotations

import datetime as dt
import json
from types import MappingProxyType
from typing import Any

import attrs

from . import _exceptions
from ._exceptions import WMSPanelError
from ._models import GeoEntry, QuotaStatus, RealtimeStats, Snapshot, Target
from ._poller import PollerStats

#: The version of the format written here.
WIRE_VERSION = 2
#: The shared poller's figures are kept beside the snapshots, under this name.
FIGURES_KEY = "poller"


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


def dump_figures(stats: PollerStats, *, generation: int) -> str:
    """Return the poller's figures (the fields of :class:`PollerStats`) as JSON text."""
    figures = {field.name: getattr(stats, field.name) for field in attrs.fields(PollerStats)}
    quota = stats.quota
    return json.dumps(
        {
            "v": WIRE_VERSION,
            "g": generation,
            "poller": {
                **figures,
                "errors": dict(figures["errors"]),
                "quota": [quota.used, quota.remaining, quota.limit, quota.resets_at.isoformat()],
            },
        }
    )


def load_snapshot(text: str | bytes) -> Snapshot:
    """Return the snapshot that :func:`dump_snapshot` wrote.

    Raises:
        WireFormatError: Another version wrote it, or it is not a snapshot.
    """
    shared, _ = load_shared(text)
    if not isinstance(shared, Snapshot):
        msg = "not a shared snapshot: the poller's figures"
        raise WireFormatError(msg)
    return shared


def load_shared(text: str | bytes) -> tuple[Snapshot | PollerStats, int]:
    """Return what :func:`dump_snapshot` or :func:`dump_figures` wrote, and its generation.

    Raises:
        WireFormatError: Another version wrote it, or it is neither.
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
    if "poller" in data:
        return _load_figures(data["poller"]), _generation(data)
    try:
        data_slice, stream, server = data["target"]
        stats = data["stats"]
        generation = _generation(data)
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


def _generation(data: dict[str, Any]) -> int:
    generation = data.get("g")
    if not isinstance(generation, int):
        msg = f"a shared message without a lease generation: {generation!r:.40}"
        raise WireFormatError(msg)
    return generation


def _load_figures(figures: object) -> PollerStats:
    try:
        if not isinstance(figures, dict):
            raise TypeError(type(figures).__name__)  # noqa: TRY301 - one message for all
        used, remaining, limit, resets_at = figures["quota"]
        loaded = PollerStats(
            **{name: value for name, value in figures.items() if name not in ("errors", "quota")},
            errors=MappingProxyType({str(k): int(v) for k, v in figures["errors"].items()}),
            quota=QuotaStatus(
                used=int(used),
                remaining=int(remaining),
                limit=int(limit),
                resets_at=dt.datetime.fromisoformat(resets_at),
            ),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        msg = f"malformed shared figures: {type(exc).__name__}: {exc}"
        raise WireFormatError(msg) from None
    return loaded
