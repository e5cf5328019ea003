"""Fetching targets' realtime figures: one, many at once, or once for a poller's tick.

A target's figures come from memory when an answer of the last ``max_age`` seconds is
kept (``_coalesce.RecentAnswers``), else from one call through the request pipeline
(``_pipeline``) with the target's query; every answer is kept for the next. A snapshot
is the outcome either way, figures or error, with when and how fast it came. The client
(``_client``) owns what this uses, and its public methods check their arguments first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import anyio

from ._coalesce import RecentAnswers
from ._exceptions import ConfigurationError, WMSPanelError
from ._models import RealtimeStats, Snapshot, Target
from ._pipeline import Caller, Pipeline
from ._quota import UTCClock

REALTIME_PATH = "/v1/realtime_data"


class Fetcher:
    """Fetches targets for one client.

    Args:
        caller: Whose calls: the client.
        pipeline: What makes each call.
        parse: Turns a realtime answer's body into figures.
        recent: The latest answers of recent targets, for ``max_age``.
        clock: Returns the current aware UTC datetime, for the snapshots.
        check_usable: Raises unless the client may make a call now.
    """

    def __init__(
        self,
        caller: Caller,
        pipeline: Pipeline,
        *,
        parse: Callable[[bytes], RealtimeStats],
        recent: RecentAnswers[RealtimeStats],
        clock: UTCClock,
        check_usable: Callable[[], None],
    ) -> None:
        self._caller = caller
        self._pipeline = pipeline
        self._parse = parse
        self._recent = recent
        self._clock = clock
        self._check_usable = check_usable

    async def stats(
        self,
        target: Target,
        max_retries: int | None = None,
        deadline: float | None = None,
        *,
        max_age: float | None = None,
        share: bool = True,
    ) -> RealtimeStats:
        """Return ``target``'s figures, at most ``max_age`` seconds old (``None``: now)."""
        self._check_usable()
        if max_age is not None:
            recent = self._recent.get(target, max_age, anyio.current_time())
            if recent is not None:
                return recent
        params = {"data_slice": target.data_slice}
        if target.stream is not None:
            params["stream"] = target.stream
        if target.server is not None:
            params["server"] = target.server
        stats = await self._pipeline.call(
            self._caller,
            REALTIME_PATH,
            params,
            self._parse,
            max_retries=max_retries,
            deadline=deadline,
            share=share,
        )
        self._recent.put(target, stats, anyio.current_time())
        return stats

    async def snapshot(
        self,
        target: Target,
        max_retries: int | None = None,
        deadline: float | None = None,
        *,
        max_age: float | None = None,
        share: bool = True,
    ) -> Snapshot:
        """Return ``target``'s figures, or the error of ours that came instead, as a snapshot."""
        started = anyio.current_time()
        stats, error = None, None
        try:
            stats = await self.stats(target, max_retries, deadline, max_age=max_age, share=share)
        except WMSPanelError as exc:
            error = exc
        return Snapshot(
            target=target,
            stats=stats,
            error=error,
            fetched_at=self._clock(),
            latency=anyio.current_time() - started,
        )

    async def many(
        self, targets: Iterable[Target], concurrency: int, max_age: float | None
    ) -> list[Snapshot]:
        """Return a snapshot of each of ``targets``, in order, ``concurrency`` at a time.

        Raises:
            ConfigurationError: ``concurrency`` is below 1.
        """
        if concurrency < 1:
            msg = f"concurrency must be 1 or more, got {concurrency!r}"
            raise ConfigurationError(msg)
        targets = list(targets)
        snapshots: list[Snapshot | None] = [None] * len(targets)
        pending = iter(enumerate(targets))

        async def work_through_pending() -> None:
            for index, target in pending:
                snapshots[index] = await self.snapshot(target, max_age=max_age)

        async with anyio.create_task_group() as task_group:
            for _ in range(min(concurrency, len(targets))):
                task_group.start_soon(work_through_pending)
        return [snapshot for snapshot in snapshots if snapshot is not None]

    async def poll_once(self, target: Target, deadline: float) -> Snapshot:
        """Fetch ``target`` once for a poller: no retries (the next tick is the retry)."""
        # Not shared: a poller has one request per target in flight, and its own deadline.
        return await self.snapshot(target, 0, deadline, share=False)
