"""A monitoring daemon: polls every data slice, logs the figures and its own health.

With the credentials in ``WMSPANEL_CLIENT_ID`` and ``WMSPANEL_API_KEY``, run::

    python daemon.py --quota-file /var/lib/wmspanel-daemon/quota.json

It stops cleanly on SIGINT or SIGTERM (exit code 0). It exits with 3 when the API refuses
the credentials, which restarting cannot fix (with systemd: ``RestartPreventExitStatus=3``),
with 2 for missing settings, and with 1 when the first call fails (restart it later).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

import anyio
from anyio.abc import TaskGroup

from wmspanel_async import (
    AuthenticationError,
    ConfigurationError,
    SnapshotStream,
    Target,
    WMSPanelClient,
    WMSPanelError,
)

EXIT_OK, EXIT_FAILED, EXIT_SETTINGS, EXIT_CREDENTIALS = 0, 1, 2, 3

logger = logging.getLogger("wmspanel_daemon")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description="Poll WMSPanel's realtime figures.")
    parser.add_argument(
        "--interval", type=float, default=60.0, help="seconds between two polls of a slice"
    )
    parser.add_argument(
        "--quota-file", help="a file that keeps the day's call count across restarts"
    )
    parser.add_argument(
        "--daily-limit", type=int, default=15_000, help="the account's calls per UTC day"
    )
    parser.add_argument(
        "--health-every", type=float, default=300.0, help="seconds between two health lines"
    )
    return parser.parse_args(argv)


def setup_logging() -> None:
    """Log to stderr (journald and container runtimes collect it), INFO and up."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


async def stop_on_signals(scope: anyio.CancelScope) -> None:
    """Cancel ``scope`` at the first SIGINT or SIGTERM."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logger.info("%s received, stopping", signal.Signals(signum).name)
            scope.cancel()
            return


async def report_health(snapshots: SnapshotStream, every: float) -> None:
    """Log a health line every ``every`` seconds, a WARNING while some slice is down."""
    while True:
        await anyio.sleep(every)
        stats = snapshots.stats
        logger.log(
            logging.WARNING if stats.targets_down else logging.INFO,
            "health: %d slices, %d down, %d polls, %d errors, every %g s, %d calls left today",
            stats.targets,
            stats.targets_down,
            stats.polls,
            sum(stats.errors.values()),
            stats.effective_interval,
            stats.quota.remaining,
        )


async def watch(client: WMSPanelClient, args: argparse.Namespace, task_group: TaskGroup) -> None:
    """Poll every data slice and log its figures, until cancelled."""
    slices = await client.data_slices()
    names = {data_slice.id: data_slice.name for data_slice in slices}
    targets = [Target(data_slice) for data_slice in slices]
    logger.info("polling %d data slices every %g s", len(targets), args.interval)
    async with client.poll(targets, interval=args.interval) as snapshots:
        task_group.start_soon(report_health, snapshots, args.health_every)
        async for snapshot in snapshots:
            # A slice that fails is logged by the poller: once when it goes down, once when
            # it recovers.
            if snapshot.stats is not None:
                logger.info(
                    "%s: %d connected, %d bit/s",
                    names[snapshot.target.data_slice],
                    snapshot.stats.connected,
                    snapshot.stats.bandwidth,
                )


async def main(args: argparse.Namespace) -> int:
    """Poll until a signal comes, and return the exit code."""
    try:
        client = WMSPanelClient(quota_file=args.quota_file, daily_limit=args.daily_limit)
    except ConfigurationError as error:
        logger.critical("%s", error)
        return EXIT_SETTINGS
    async with client, anyio.create_task_group() as task_group:
        task_group.start_soon(stop_on_signals, task_group.cancel_scope)
        try:
            await watch(client, args, task_group)
        except AuthenticationError as error:
            logger.critical("%s; stopping, as retrying cannot help", error)
            task_group.cancel_scope.cancel()
            return EXIT_CREDENTIALS
        except WMSPanelError as error:  # the first call failed
            logger.critical("%s", error)
            task_group.cancel_scope.cancel()
            return EXIT_FAILED
    logger.info("stopped")
    return EXIT_OK


if __name__ == "__main__":
    arguments = parse_args()
    setup_logging()
    sys.exit(anyio.run(main, arguments))
