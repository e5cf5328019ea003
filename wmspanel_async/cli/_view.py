"""What the commands show: human units, sparklines, JSON lines and the live ``watch`` view."""

from __future__ import annotations

import collections
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from wmspanel_async import DataSlice, PollerStats, RealtimeStats, Snapshot, Target

_SPARKS = "▁▂▃▄▅▆▇█"
_BIT_UNITS = ("bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s", "Pbit/s")
#: Connected counts kept per target for its sparkline.
HISTORY = 40
TOP_COUNTRIES = 3


def human_bandwidth(bits_per_second: float) -> str:
    """Return a bandwidth in bits per second with a decimal unit, three digits at most.

    >>> human_bandwidth(267784)
    '268 kbit/s'
    >>> human_bandwidth(15_488_772_000)
    '15.5 Gbit/s'
    """
    value = float(bits_per_second)
    unit = 0
    while abs(value) >= 999.5 and unit < len(_BIT_UNITS) - 1:
        value /= 1000
        unit += 1
    if unit == 0 or abs(value) >= 99.95:
        return f"{value:.0f} {_BIT_UNITS[unit]}"
    if abs(value) >= 9.995:
        return f"{value:.1f} {_BIT_UNITS[unit]}"
    return f"{value:.2f} {_BIT_UNITS[unit]}"


def sparkline(values: Sequence[int]) -> str:
    """Return one block character per value, from the smallest to the largest.

    The scale spans at least a tenth of the largest value, so that a move of 1 % does not
    look like a crash.

    >>> sparkline([1, 2, 3, 4, 5, 6, 7, 8])
    '▁▂▃▄▅▆▇█'
    """
    if not values:
        return ""
    low: float = min(values)
    high = max(values)
    if high == low:
        return _SPARKS[3] * len(values)
    low = min(low, high - high / 10)
    scale = (len(_SPARKS) - 1) / (high - low)
    return "".join(_SPARKS[round((value - low) * scale)] for value in values)


def top_countries(stats: RealtimeStats, count: int = TOP_COUNTRIES) -> str:
    """Return the leading countries with their share of the connections, like ``US 31%``."""
    if not stats.connected or not stats.geo:
        return "-"
    return " ".join(
        f"{entry.country} {entry.connected / stats.connected:.0%}" for entry in stats.geo[:count]
    )


def target_label(target: Target, names: Mapping[str, str]) -> str:
    """Return a short name for ``target``: the slice's name, then stream and server ids."""
    label = names.get(target.data_slice, target.data_slice)
    if target.stream is not None:
        label += f" / {names.get(target.stream, target.stream)}"
    if target.server is not None:
        label += f" @ {names.get(target.server, target.server)}"
    return label


def stats_json(stats: RealtimeStats) -> dict[str, Any]:
    """Return ``stats`` as JSON-ready data."""
    return {
        "connected": stats.connected,
        "bandwidth": stats.bandwidth,
        "geo": [{"country": e.country, "connected": e.connected} for e in stats.geo],
    }


def snapshot_line(snapshot: Snapshot, names: Mapping[str, str]) -> str:
    """Return one JSON line for ``snapshot``: target, name, time, latency, stats or error."""
    target = snapshot.target
    record = {
        "target": {
            "data_slice": target.data_slice,
            "stream": target.stream,
            "server": target.server,
        },
        "name": target_label(target, names),
        "fetched_at": snapshot.fetched_at.isoformat().replace("+00:00", "Z"),
        "latency": round(snapshot.latency, 6),
        "stats": None if snapshot.stats is None else stats_json(snapshot.stats),
        "error": (
            None
            if snapshot.error is None
            else {"type": type(snapshot.error).__name__, "message": str(snapshot.error)}
        ),
    }
    return json.dumps(record, ensure_ascii=False)


def slice_line(data_slice: DataSlice) -> str:
    """Return one JSON line for a data slice."""
    return json.dumps({"id": data_slice.id, "name": data_slice.name}, ensure_ascii=False)


def slices_text(slices: Sequence[DataSlice]) -> str:
    """Return the data slices as aligned lines of id and name, under a header."""
    lines = [f"{'ID':<24}  Name"]
    lines += [f"{data_slice.id:<24}  {data_slice.name}" for data_slice in slices]
    return "\n".join(lines)


def realtime_text(label: str, stats: RealtimeStats) -> str:
    """Return one target's figures as a few labelled lines."""
    countries = ", ".join(f"{e.country} {e.connected:,}" for e in stats.geo) or "-"
    return (
        f"{label}\n"
        f"connected  {stats.connected:,}\n"
        f"bandwidth  {human_bandwidth(stats.bandwidth)}\n"
        f"countries  {countries}"
    )


def plain_line(snapshot: Snapshot, names: Mapping[str, str]) -> str:
    """Return one line of text for ``snapshot``, for ``watch`` into a file or pipe."""
    when = snapshot.fetched_at.strftime("%H:%M:%S")
    label = target_label(snapshot.target, names)
    if snapshot.stats is None:
        return f"{when} {label}: {type(snapshot.error).__name__}: {snapshot.error}"
    stats = snapshot.stats
    return (
        f"{when} {label}: {stats.connected:,} connected, {human_bandwidth(stats.bandwidth)}, "
        f"{top_countries(stats)}"
    )


class _Row:
    def __init__(self) -> None:
        self.last: Snapshot | None = None
        self.stats: RealtimeStats | None = None
        self.history: collections.deque[int] = collections.deque(maxlen=HISTORY)


class WatchView:
    """The live view of ``watch`` and ``demo``: one row per target, then the poller's figures.

    Args:
        targets: The targets, in the order of the rows.
        names: Names for slice, stream and server ids.
        title: The line above the table.
    """

    def __init__(self, targets: Sequence[Target], names: Mapping[str, str], title: str) -> None:
        self._names = names
        self._title = title
        self._rows = {target: _Row() for target in targets}
        self.warning: str | None = None

    def add(self, snapshot: Snapshot) -> None:
        """Take a snapshot into its target's row."""
        row = self._rows.setdefault(snapshot.target, _Row())
        row.last = snapshot
        if snapshot.stats is not None:
            row.stats = snapshot.stats
            row.history.append(snapshot.stats.connected)

    def render(self, stats: PollerStats, now: dt.datetime, width: int = 120) -> RenderableType:
        """Return the whole view as of ``now``, for a terminal ``width`` columns wide."""
        layout = _Layout.for_width(width)
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold")
        table.add_column("Target", no_wrap=True, width=layout.target, overflow="ellipsis")
        table.add_column("Connected", justify="right", no_wrap=True, width=_CONNECTED)
        table.add_column("Bandwidth", justify="right", no_wrap=True, width=_BANDWIDTH)
        table.add_column(
            "Top countries" if layout.countries > 1 else "Countries",
            no_wrap=True,
            width=layout.countries_width,
        )
        table.add_column("Trend", no_wrap=True, width=layout.trend)
        table.add_column("Status", no_wrap=True, width=layout.status, overflow="ellipsis")
        for target, row in self._rows.items():
            table.add_row(*self._cells(target, row, layout))

        stretched = stats.effective_interval > stats.interval * 1.001
        header = Text.assemble(
            (self._title, "bold"),
            f" · every {_seconds(stats.effective_interval)}",
            (" (stretched to fit the daily calls)", "yellow") if stretched else "",
            f" · {now:%H:%M:%S} UTC",
        )
        quota = stats.quota
        errors = sum(stats.errors.values())
        footer = Text.assemble(
            f"polls {stats.polls:,} · skipped {stats.skipped:,} · ",
            (f"errors {errors:,}", "red" if errors else ""),
            f" · calls today {quota.used:,} of {quota.limit:,}, reset {quota.resets_at:%H:%M} UTC",
            (" · paused until the quota resets", "yellow") if stats.paused else "",
        )
        parts: list[RenderableType] = [header, table, footer]
        if self.warning:
            parts.append(Text(f"warning: {self.warning}", style="yellow", overflow="ellipsis"))
        parts.append(Text("Ctrl-C to quit", style="dim"))
        return Group(*parts)

    def _cells(self, target: Target, row: _Row, layout: _Layout) -> tuple[RenderableType, ...]:
        label = Text(target_label(target, self._names))
        if row.last is None:
            return (label, "…", "", "", "", Text("waiting", style="dim"))
        stats = row.stats
        if row.last.error is not None:
            status = Text(type(row.last.error).__name__, style="bold red")
        else:
            status = Text(f"ok {row.last.latency * 1000:.0f} ms", style="green")
        if stats is None:
            return (label, "-", "-", "-", "", status)
        history = list(row.history)[-layout.trend :]
        return (
            label,
            f"{stats.connected:,}",
            human_bandwidth(stats.bandwidth),
            top_countries(stats, layout.countries),
            Text(sparkline(history), style="cyan"),
            status,
        )


_CONNECTED = 9
_BANDWIDTH = 11
#: Three columns (padding, rule, padding) between two of the six columns, and one to spare.
_SEPARATORS = 3 * 5 + 1


@attrs.frozen
class _Layout:
    """Column widths for a terminal width: the sparkline takes what the others leave."""

    target: int
    countries: int
    countries_width: int
    status: int
    trend: int

    @classmethod
    def for_width(cls, width: int) -> _Layout:
        if width >= 120:
            target, countries, countries_width, status = 30, 3, 20, 14
        elif width >= 96:
            target, countries, countries_width, status = 24, 2, 13, 9
        else:
            target, countries, countries_width, status = 16, 1, 9, 9
        used = target + _CONNECTED + _BANDWIDTH + countries_width + status + _SEPARATORS
        return cls(target, countries, countries_width, status, max(5, min(HISTORY, width - used)))


def _seconds(value: float) -> str:
    return f"{value:g} s" if value < 120 else f"{value / 60:.1f} min"
