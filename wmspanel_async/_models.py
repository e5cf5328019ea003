"""Frozen values the client hands out; the wire format lives in ``_converter``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs

from ._exceptions import ConfigurationError, WMSPanelError


@attrs.frozen(kw_only=True)
class DataSlice:
    """A data slice of the account: a named view on some of its servers and streams.

    Attributes:
        id: The slice's id, 24 hex digits; it never changes.
        name: The name shown in WMSPanel.
        server_ids: The ids of the slice's servers, when asked for with
            ``data_slices(show_servers=True)``; empty otherwise.
    """

    id: str
    name: str
    server_ids: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class GeoEntry:
    """The viewers of one country.

    Attributes:
        country: ISO 3166-1 alpha-2 code, for example ``"US"``.
        connected: Connections from that country now.
    """

    country: str
    connected: int


@attrs.frozen(kw_only=True)
class RealtimeStats:
    """Realtime figures of a data slice, stream or server.

    Attributes:
        connected: Connections now.
        bandwidth: Current transmission speed (WMSPanel shows it in bits per second).
        geo: Up to 20 countries with the most viewers, as the API orders them.
    """

    connected: int
    bandwidth: int
    geo: tuple[GeoEntry, ...] = ()


def _slice_id(data_slice: DataSlice | str) -> str:
    return data_slice.id if isinstance(data_slice, DataSlice) else data_slice


def _check_id(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    # An id is sent as query text: anything but a non-empty string would be sent as its
    # repr (b'...', [...]) or as an empty parameter, and the API would answer about
    # something else than what was meant.
    if value is None and attribute.name != "data_slice":
        return
    if not isinstance(value, str):
        msg = f"{attribute.name} must be an id string, got {type(value).__name__} {value!r:.60}"
        raise ConfigurationError(msg)
    if not value:
        what = "a DataSlice or its id" if attribute.name == "data_slice" else "an id or None"
        msg = f"{attribute.name} is empty; pass {what}"
        raise ConfigurationError(msg)


@attrs.frozen
class Target:
    """What to ask realtime figures for: a data slice, optionally one stream and/or server.

    Targets are hashable and compare by value, so they can key dictionaries and sets.
    Ids are checked when the target is made, before anything is sent.

    Attributes:
        data_slice: The slice's id (a ``DataSlice`` given here is reduced to its id).
        stream: A stream id, for one stream's figures (regular slices only).
        server: A server id, for one server's share.

    Raises:
        ConfigurationError: An id is not a string, or is empty.
    """

    data_slice: str = attrs.field(converter=_slice_id, validator=_check_id)
    stream: str | None = attrs.field(default=None, validator=_check_id)
    server: str | None = attrs.field(default=None, validator=_check_id)

    def __str__(self) -> str:
        parts = [f"data_slice={self.data_slice}"]
        if self.stream is not None:
            parts.append(f"stream={self.stream}")
        if self.server is not None:
            parts.append(f"server={self.server}")
        return " ".join(parts)


@attrs.frozen(kw_only=True)
class Snapshot:
    """The outcome of one fetch of a target: its figures or the error that prevented them.

    Attributes:
        target: The target fetched.
        stats: The figures, or ``None`` when the fetch failed.
        error: Why the fetch failed, or ``None`` when it succeeded.
        fetched_at: When the answer (or the failure) arrived, an aware UTC datetime.
        latency: Seconds the fetch took, retries included.
    """

    target: Target
    stats: RealtimeStats | None
    error: WMSPanelError | None
    fetched_at: dt.datetime
    latency: float


@attrs.frozen(kw_only=True)
class QuotaStatus:
    """The daily call budget as counted by this client, at one moment.

    Attributes:
        used: Calls counted since the last 00:00 UTC (every HTTP attempt counts one).
        remaining: Calls left until ``resets_at``.
        limit: Calls allowed per UTC day.
        resets_at: The next 00:00 UTC, when ``used`` returns to zero.
    """

    used: int
    remaining: int
    limit: int
    resets_at: dt.datetime
