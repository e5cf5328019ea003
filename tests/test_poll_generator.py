"""Wrapping ``client.poll()`` in an async generator works when the consumer closes it itself.

A generator suspended inside ``async with client.poll()`` is suspended inside a task group's
cancel scope: closed by the garbage collector or the event loop's finalizer (in another task)
it fails with "Attempted to exit cancel scope in a different task". Closed by the consumer, in
the consumer's task, with ``contextlib.aclosing``, it leaves the block cleanly, as
``docs/poller.md`` shows. Every test runs on asyncio and trio, on a virtual clock.
"""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing

import anyio
import anyio.lowlevel
import pytest

from wmspanel_async import Snapshot, Target, WMSPanelClient
from wmspanel_async.testing import Simulator

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

NOON = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.timezone.utc)


async def snapshots_of(
    client: WMSPanelClient, targets: Sequence[Target], interval: float
) -> AsyncIterator[Snapshot]:
    """The generator owns the whole ``async with client.poll()`` block."""
    async with client.poll(targets, interval=interval) as snapshots:
        async for snapshot in snapshots:
            yield snapshot


def quiet_loop_errors(backend: str) -> list[dict[str, object]]:
    """Collect what asyncio's loop would report as unhandled (a finalizer's error)."""
    errors: list[dict[str, object]] = []
    if backend == "asyncio":
        import asyncio

        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    return errors


def leave_by(how: str, deadline: anyio.CancelScope) -> None:
    """Raise, or cancel the consumer's scope (a ``break`` is the consumer's own)."""
    if how == "raise":
        raise LookupError(how)
    deadline.cancel()


@pytest.mark.parametrize("leave", ["break", "raise", "cancel"])
async def test_aclosing_leaves_the_poll_block_in_the_consumers_task(
    anyio_backend_name: str, leave: str
) -> None:
    """break, an exception or a cancellation in the consumer: the poller stops, no error."""
    simulator = Simulator(clock=lambda: NOON)
    errors = quiet_loop_errors(anyio_backend_name)
    seen: list[Snapshot] = []
    async with simulator.client(daily_limit=1_000_000) as client:
        targets = [Target(data_slice.id) for data_slice in simulator.account.slices[:2]]
        with anyio.move_on_after(60) as deadline:
            try:
                async with aclosing(snapshots_of(client, targets, 1.0)) as snapshots:
                    async for snapshot in snapshots:
                        seen.append(snapshot)
                        if len(seen) == 5:
                            if leave == "break":
                                break
                            leave_by(leave, deadline)
            except LookupError:
                assert leave == "raise"
        assert not deadline.cancelled_caught or leave == "cancel"
        calls = simulator.calls_today()
        await anyio.sleep(10)  # the poller is gone: no call after the consumer left
        assert simulator.calls_today() == calls
        assert (
            await client.realtime(targets[0].data_slice)
        ).connected > 0  # the client still works
    gc.collect()
    await anyio.lowlevel.checkpoint()
    assert len(seen) == 5
    assert all(snapshot.error is None for snapshot in seen)
    assert errors == []
