"""Uses the public API as users do; type-checked by mypy --strict, never run."""

from __future__ import annotations

import datetime as dt

import httpx

from wmspanel_async import (
    APIStatusError,
    DataSlice,
    PollerStats,
    QuotaStatus,
    RealtimeStats,
    Snapshot,
    Target,
    WMSPanelClient,
    WMSPanelError,
)


async def show_everything() -> None:
    async with WMSPanelClient(timeout=httpx.Timeout(3.0), max_retries=0) as client:
        slices: list[DataSlice] = await client.data_slices()
        stats: RealtimeStats = await client.realtime(slices[0], stream="s", server="v")
        countries: list[str] = [entry.country for entry in stats.geo]
        snapshots: list[Snapshot] = await client.realtime_many([Target(slices[0]), Target("id")])
        for snapshot in snapshots:
            when: dt.datetime = snapshot.fetched_at
            if isinstance(snapshot.error, APIStatusError):
                code: int = snapshot.error.status_code
            elif snapshot.stats is not None:
                connected: int = snapshot.stats.connected
        quota: QuotaStatus = client.quota
        remaining: int = quota.remaining
        async with client.poll(await client.discover_targets(), interval=5.0) as stream:
            stream.add(Target("id", stream="s"), interval=60.0)
            stream.set_interval(10.0)
            async for polled in stream:
                figures: RealtimeStats | None = polled.stats
                stats_now: PollerStats = stream.stats
                skipped: int = stats_now.skipped
                stream.remove(polled.target)
        try:
            await client.realtime("id")
        except WMSPanelError as error:
            message: str = str(error)
    async with WMSPanelClient(transport="aiohttp", max_connections=100) as fast:
        await fast.realtime("id")
    async with WMSPanelClient(transport="httpx") as default:
        await default.realtime("id")
    async with WMSPanelClient(transport=httpx.AsyncHTTPTransport(retries=1)) as custom:
        await custom.realtime("id")
