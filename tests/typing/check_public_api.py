"""Uses the public API as users do; type-checked by mypy --strict, never run."""

from __future__ import annotations

import datetime as dt

import anyio
import httpx

from wmspanel_async import (
    APIStatusError,
    DataSlice,
    FreshSnapshots,
    FreshStats,
    PollerStats,
    QuotaStatus,
    RealtimeStats,
    Snapshot,
    Subscription,
    Target,
    TargetLimitError,
    TargetNotWatchedError,
    WMSPanelClient,
    WMSPanelError,
)
from wmspanel_async.prometheus import WMSPanelCollector, metrics_app
from wmspanel_async.redis import RedisLedger, RedisShare


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
            await client.realtime("id", max_age=10.0)
        except WMSPanelError as error:
            message: str = str(error)
    async with WMSPanelClient(transport="aiohttp", max_connections=100) as fast:
        await fast.realtime("id")
    async with WMSPanelClient(transport="httpx") as default:
        await default.realtime("id")
    async with WMSPanelClient(transport=httpx.AsyncHTTPTransport(retries=1)) as custom:
        await custom.realtime("id")


async def show_many_readers(client: WMSPanelClient) -> None:
    fresh: FreshSnapshots
    async with client.keep_fresh([Target("id")], interval=10.0, max_targets=50) as fresh:
        latest: Snapshot | None = fresh.get(Target("id"))
        good: Snapshot | None = fresh.last_success(Target("id"))
        waited: Snapshot = await fresh.wait(Target("id"), newer_than=latest)
        try:
            fresh.watch(Target("other"), interval=30.0)
        except TargetLimitError as full:
            limit: int = full.limit
        except TargetNotWatchedError as unknown:
            asked: object = unknown.target
        subscription: Subscription
        async with fresh.subscribe([Target("id")], buffer=8) as subscription:
            async for _ in subscription:
                dropped: int = subscription.dropped
        fresh_stats: FreshStats = fresh.stats
        readers: int = fresh_stats.reads + fresh_stats.subscribers
        fresh.unwatch(Target("other"))
        collector = WMSPanelCollector(fresh, slice_names={"id": "Sports"})
        text: str = collector.exposition()
        app = metrics_app(collector)
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(collector.run)


async def show_sharing() -> None:
    async with (
        RedisLedger.from_url("redis://localhost:6379/0") as ledger,
        RedisShare.from_url("redis://localhost:6379/0", lease=5.0) as share,
        WMSPanelClient(ledger=ledger, daily_limit=15_000) as shared,
        shared.keep_fresh([Target("id")], share=share) as one_for_all,
    ):
        leading: bool = one_for_all.stats.leading
        counted: QuotaStatus = await shared.refresh_quota()
