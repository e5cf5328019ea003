"""keep_fresh benchmark: get() against a dict read, subscriptions against an asyncio.Queue fan-out.

    python bench/fresh_bench.py                        # about 4 minutes; prints tables
    python bench/fresh_bench.py --rounds 5 --window 30   # steadier, about 10 minutes
    python bench/fresh_bench.py --parts reads memory     # the quick parts, about 15 s

Everything runs over the in-process simulator (``Simulator().client()``: no sockets, so the
poller's own cost is small and steady), on asyncio, with ``--targets`` targets of the
simulator's account. Each measurement runs in a fresh child process, so its CPU time and
memory are its own; the parts run in ``--rounds`` interleaved rounds (the fan-out modes in a
rotated order), and the tables give medians over the rounds. Parts:

- reads: once every target has a snapshot the interval is set to an hour, so nothing polls
  while measuring; then the CPU time (``time.process_time``) of ``--reads`` calls of
  ``fresh.get(target)``, the targets in turn, against the same loop over ``dict.get`` of a
  dict holding the same snapshots (three interleaved passes each, the median kept).
- fan-out: ``keep_fresh()`` at a 1 s interval, and after ``--warmup`` seconds the share of one
  core the process used (CPU time over wall time) for ``--window`` seconds, in three modes:
  ``poller``, no readers (the cost to subtract); ``fresh``, ``--subscribers`` tasks each
  ``async with fresh.subscribe() as s: async for snapshot in s:`` formatting an SSE line;
  ``queues``, the bare fan-out: one task reads one subscription and puts each snapshot into
  ``--subscribers`` ``asyncio.Queue(maxsize=64)`` (dropping the oldest of a full queue), each
  read by a task doing the same work. The readers' cost is a mode's share minus the poller's
  of the same round. Each run checks itself: deliveries per reader per second (one per
  poll), snapshots dropped, failed polls.
- memory: tracemalloc's count with ``--subscribers`` readers minus with none, in one process
  and per reader: first with every reader waiting for its next snapshot (buffers empty,
  polling paused), then with the readers held back until every buffer holds 64 snapshots
  (the default buffer); for subscriptions and for ``asyncio.Queue(maxsize=64)`` alike.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

from wmspanel_async import FreshSnapshots, Snapshot, Subscription, Target
from wmspanel_async._constants import SUBSCRIPTION_BUFFER
from wmspanel_async.testing import Account, Simulator

FANOUT_MODES = ("poller", "fresh", "queues")
MEMORY_MODES = ("memory-fresh", "memory-queues")
PARTS = ("reads", "fanout", "memory")
INTERVAL = 1.0  # seconds, for the fan-out
FAST = 0.1  # seconds: the interval that gives every target its first snapshot at once
PAUSED = 3600.0  # seconds: an interval that polls nothing while measuring
READ_RATE = 10_000  # reads per second, for the share of a core the reads goal is about
GOAL_READS = 0.05  # of one core, at READ_RATE
GOAL_FANOUT = 0.20  # of one core, for the subscribers over the poller alone


def account_targets(account: Account, count: int) -> list[Target]:
    """Return ``count`` targets the account answers: slices, their servers, their streams."""
    found: list[Target] = []
    for data_slice in account.slices:
        found.append(Target(data_slice.id))
        found += [Target(data_slice.id, server=server) for server in data_slice.servers]
        if not data_slice.lite:
            found += [
                Target(data_slice.id, stream=stream.id)
                for stream in account.streams
                if data_slice.streams is None or stream.id in data_slice.streams
            ]
    if len(found) < count:
        sys.exit(f"the simulated account has {len(found)} targets; ask for fewer")
    return found[:count]


class Tally:
    """What the readers of one child did: snapshots taken, bytes formatted, drops."""

    __slots__ = ("bytes", "deliveries", "dropped")

    def __init__(self) -> None:
        self.deliveries = 0
        self.bytes = 0
        self.dropped = 0

    def take(self, snapshot: Snapshot) -> None:
        """Do a reader's trivial work: format an SSE line of the snapshot, and count it."""
        line = f"data: {snapshot.stats.connected}\n\n"  # type: ignore[union-attr]
        self.bytes += len(line)
        self.deliveries += 1


async def fresh_reader(
    fresh: FreshSnapshots,
    tally: Tally,
    opened: list[Subscription] | None = None,
    resume: asyncio.Event | None = None,
) -> None:
    """Read every snapshot of one subscription, added to ``opened`` if given.

    With ``resume``, wait for it after each snapshot: a reader that can be held back.
    """
    async with fresh.subscribe() as snapshots:
        if opened is not None:
            opened.append(snapshots)
        async for snapshot in snapshots:
            tally.take(snapshot)
            if resume is not None:
                await resume.wait()


async def queue_reader(
    queue: asyncio.Queue[Snapshot], tally: Tally, resume: asyncio.Event | None = None
) -> None:
    """Read every snapshot of one queue; with ``resume``, wait for it after each."""
    while True:
        tally.take(await queue.get())
        if resume is not None:
            await resume.wait()


async def fan_out(
    fresh: FreshSnapshots, queues: list[asyncio.Queue[Snapshot]], tally: Tally
) -> None:
    """Put every snapshot of one subscription into each queue, dropping a full one's oldest."""
    async with fresh.subscribe() as snapshots:
        async for snapshot in snapshots:
            for queue in queues:
                if queue.full():
                    queue.get_nowait()
                    tally.dropped += 1
                queue.put_nowait(snapshot)


async def first_snapshots(fresh: FreshSnapshots, targets: Sequence[Target]) -> None:
    """Wait until every target has a snapshot, and check that none is an error."""
    for target in targets:
        snapshot = await fresh.wait(target)
        if snapshot.error is not None:
            sys.exit(f"{target}: {snapshot.error!r}")


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait for them to end."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def cpu_per_call(call: Callable[[Target], object], sequence: Sequence[Target]) -> float:
    """Return the µs of CPU per ``call(target)`` over ``sequence``."""
    started = time.process_time()
    for target in sequence:
        call(target)
    return (time.process_time() - started) / len(sequence) * 1e6


def cpu_per_loop(sequence: Sequence[Target]) -> float:
    """Return the µs of CPU per turn of a loop over ``sequence`` that does nothing."""
    started = time.process_time()
    for _ in sequence:
        pass
    return (time.process_time() - started) / len(sequence) * 1e6


async def run_reads(args: argparse.Namespace) -> dict[str, Any]:
    """Measure ``fresh.get()`` against ``dict.get`` of the same snapshots."""
    simulator = Simulator()
    targets = account_targets(simulator.account, args.targets)
    sequence = [targets[index % len(targets)] for index in range(args.reads)]
    async with (
        simulator.client(daily_limit=10**9) as client,
        client.keep_fresh(targets, interval=FAST) as fresh,
    ):
        await first_snapshots(fresh, targets)
        fresh.set_interval(PAUSED)
        plain = {target: fresh.get(target) for target in targets}
        before = fresh.stats
        passes: dict[str, list[float]] = {"dict": [], "get": [], "loop": []}
        for _ in range(3):
            passes["dict"].append(cpu_per_call(plain.get, sequence))
            passes["get"].append(cpu_per_call(fresh.get, sequence))
            passes["loop"].append(cpu_per_loop(sequence))
        after = fresh.stats
    return {
        **{f"{kind}_us": statistics.median(figures) for kind, figures in passes.items()},
        "reads": after.reads - before.reads,
        "polls": after.polls - before.polls,
    }


def counters(fresh: FreshSnapshots, tally: Tally) -> dict[str, float]:
    """Return the running counts a fan-out window is the difference of."""
    stats = fresh.stats
    return {
        "cpu": time.process_time(),
        "wall": time.perf_counter(),
        "deliveries": tally.deliveries,
        "snapshots": stats.snapshots,
        "polls": stats.polls,
        "failed": sum(stats.errors.values()),
        "dropped": stats.dropped + tally.dropped,
    }


async def run_fanout(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Measure the CPU share of one fan-out mode over a window, after a warm-up."""
    simulator = Simulator()
    targets = account_targets(simulator.account, args.targets)
    tally = Tally()
    async with (
        simulator.client(daily_limit=10**9) as client,
        client.keep_fresh(targets, interval=INTERVAL) as fresh,
    ):
        tasks: list[asyncio.Task[None]] = []
        if mode == "fresh":
            tasks += [
                asyncio.create_task(fresh_reader(fresh, tally)) for _ in range(args.subscribers)
            ]
        elif mode == "queues":
            queues: list[asyncio.Queue[Snapshot]] = [
                asyncio.Queue(maxsize=SUBSCRIPTION_BUFFER) for _ in range(args.subscribers)
            ]
            tasks += [asyncio.create_task(queue_reader(queue, tally)) for queue in queues]
            tasks.append(asyncio.create_task(fan_out(fresh, queues, tally)))
        await asyncio.sleep(args.warmup)
        before = counters(fresh, tally)
        await asyncio.sleep(args.window)
        after = counters(fresh, tally)
        lateness_p99 = fresh.stats.lateness_p99
        await stop(tasks)
    delta = {name: after[name] - before[name] for name in before}
    readers = args.subscribers if mode != "poller" else 0
    return {
        "cpu_share": delta["cpu"] / delta["wall"],
        "deliveries_per_second": delta["deliveries"] / delta["wall"],
        "per_reader_per_second": delta["deliveries"] / delta["wall"] / readers if readers else 0.0,
        "delivered_of_due": (
            delta["deliveries"] / (delta["snapshots"] * readers) if readers else 1.0
        ),
        "polls_per_second": delta["polls"] / delta["wall"],
        "failed": delta["failed"],
        "dropped": delta["dropped"],
        "lateness_p99": lateness_p99,
    }


def traced() -> int:
    """Return the bytes tracemalloc counts as allocated now, after a full collection."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def until(done: Callable[[], bool], timeout: float = 30.0) -> None:
    """Sleep in short steps until ``done()`` is true; give up after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            sys.exit("the readers' buffers did not reach the state to measure")
        await asyncio.sleep(0.05)


async def run_memory(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Measure tracemalloc's bytes per reader: buffers empty, then holding 64 snapshots."""
    tracemalloc.start()
    simulator = Simulator()
    targets = account_targets(simulator.account, args.targets)
    tally = Tally()
    resume = asyncio.Event()
    resume.set()
    async with (
        simulator.client(daily_limit=10**9) as client,
        client.keep_fresh(targets, interval=FAST) as fresh,
    ):
        await first_snapshots(fresh, targets)
        tasks: list[asyncio.Task[None]] = []
        queues: list[asyncio.Queue[Snapshot]] = []
        opened: list[Subscription] = []
        if mode == "memory-queues":
            tasks.append(asyncio.create_task(fan_out(fresh, queues, tally)))
        fresh.set_interval(PAUSED)
        await asyncio.sleep(0.2)
        base = traced()
        if mode == "memory-fresh":
            tasks += [
                asyncio.create_task(fresh_reader(fresh, tally, opened, resume))
                for _ in range(args.subscribers)
            ]
        else:
            queues += [asyncio.Queue(maxsize=SUBSCRIPTION_BUFFER) for _ in range(args.subscribers)]
            tasks += [asyncio.create_task(queue_reader(queue, tally, resume)) for queue in queues]
        await asyncio.sleep(0.5)  # every reader took its first snapshots, and waits
        empty = traced() - base
        resume.clear()
        fresh.set_interval(FAST)
        if mode == "memory-fresh":
            await until(lambda: all(subscription.dropped for subscription in opened))
        else:
            await until(lambda: all(queue.full() for queue in queues))
        full = traced() - base
        await stop(tasks)
    tracemalloc.stop()
    return {"empty": empty / args.subscribers, "full": full / args.subscribers}


def child(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one measurement in this process and return its result."""
    if mode == "reads":
        return asyncio.run(run_reads(args))
    if mode in FANOUT_MODES:
        return asyncio.run(run_fanout(mode, args))
    return asyncio.run(run_memory(mode, args))


def measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one measurement in a fresh child process and return its result."""
    command = [sys.executable, __file__, "--child", mode]
    for option in ("targets", "subscribers", "reads", "warmup", "window"):
        command += [f"--{option}", str(getattr(args, option))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode:
        sys.exit(f"{mode} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_rounds(args: argparse.Namespace) -> list[dict[str, dict[str, Any]]]:
    """Run every measurement of the chosen parts ``--rounds`` times; print progress."""
    rounds: list[dict[str, dict[str, Any]]] = []
    for index in range(args.rounds):
        modes: list[str] = []
        if "reads" in args.parts:
            modes.append("reads")
        if "fanout" in args.parts:
            shift = index % len(FANOUT_MODES)
            modes += FANOUT_MODES[shift:] + FANOUT_MODES[:shift]
        if "memory" in args.parts:
            modes += MEMORY_MODES
        results: dict[str, dict[str, Any]] = {}
        for mode in modes:
            results[mode] = measure(mode, args)
            print(f"  round {index + 1}: {mode:<13} {json.dumps(results[mode])}", flush=True)
        rounds.append(results)
    return rounds


def spread(figures: list[float], form: str) -> str:
    """Return the median of ``figures``, then their minimum and maximum, each in ``form``."""
    return " | ".join(
        format(figure, form) for figure in (statistics.median(figures), min(figures), max(figures))
    )


def met(ok: bool) -> str:
    """Say whether a goal is met."""
    return "met" if ok else "NOT met"


def reads_table(rounds: list[dict[str, dict[str, Any]]]) -> list[str]:
    """Return the lines of the reads table and its goal."""
    dict_us = [r["reads"]["dict_us"] for r in rounds]
    get_us = [r["reads"]["get_us"] for r in rounds]
    ratios = [r["reads"]["get_us"] / r["reads"]["dict_us"] for r in rounds]
    share = statistics.median(get_us) * READ_RATE / 1e6
    reads = sorted({r["reads"]["reads"] for r in rounds})
    polls = sum(r["reads"]["polls"] for r in rounds)
    return [
        "",
        "| read | µs CPU / read (median) | min | max | share of a core at 10,000/s | vs dict.get |",
        "|---|---:|---:|---:|---:|---:|",
        f"| `dict.get(target)` | {spread(dict_us, '.3f')} "
        f"| {statistics.median(dict_us) * READ_RATE / 1e6:.3%} | 1.00x |",
        f"| `fresh.get(target)` | {spread(get_us, '.3f')} | {share:.3%} "
        f"| {statistics.median(ratios):.2f}x |",
        "",
        f"fresh.get / dict.get: {statistics.median(ratios):.2f}x "
        f"(rounds {', '.join(f'{x:.2f}' for x in ratios)}); the loop alone "
        f"{statistics.median(r['reads']['loop_us'] for r in rounds):.3f} µs a turn; "
        f"get() calls counted by fresh.stats in a round (3 passes): {reads}; "
        f"polls while measuring: {polls}",
        f"goal: 10,000 reads/s < {GOAL_READS:.0%} of one core: {share:.3%}: "
        f"{met(share < GOAL_READS)}",
    ]


def fanout_table(rounds: list[dict[str, dict[str, Any]]], subscribers: int) -> list[str]:
    """Return the lines of the fan-out table, the ratio and the goal."""

    def over_poller(mode: str) -> list[float]:
        return [r[mode]["cpu_share"] - r["poller"]["cpu_share"] for r in rounds]

    names = {
        "poller": "poller alone (0 readers)",
        "fresh": f"{subscribers} x `fresh.subscribe()`",
        "queues": f"{subscribers} x `asyncio.Queue` (bare fan-out)",
    }
    lines = [
        "",
        "| mode | CPU, % of a core (median) | min | max | readers' share (minus poller) "
        "| µs CPU / delivery | deliveries / reader / s | delivered / due | dropped "
        "| failed polls | poller p99 lateness ms (worst round) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in FANOUT_MODES:
        rows = [r[mode] for r in rounds]
        readers = "| - | - | - | - "
        if mode != "poller":
            extra = statistics.median(over_poller(mode))
            per_second = statistics.median(row["deliveries_per_second"] for row in rows)
            readers = (
                f"| {extra:.1%} | {extra * 1e6 / per_second:.1f} "
                f"| {statistics.median(row['per_reader_per_second'] for row in rows):.2f} "
                f"| {min(row['delivered_of_due'] for row in rows):.3f} "
            )
        lines.append(
            f"| {names[mode]} | {spread([row['cpu_share'] * 100 for row in rows], '.1f')} "
            + readers
            + f"| {sum(row['dropped'] for row in rows)} | {sum(row['failed'] for row in rows)} "
            f"| {max(row['lateness_p99'] for row in rows) * 1000:.1f} |"
        )
    fresh, queues = over_poller("fresh"), over_poller("queues")
    ratios = [a / b for a, b in zip(fresh, queues, strict=True)]
    share = statistics.median(fresh)
    return [
        *lines,
        "",
        f"subscriptions / bare queues, readers' share: {statistics.median(ratios):.2f}x "
        f"(rounds {', '.join(f'{x:.2f}' for x in ratios)})",
        f"goal: {subscribers} subscribers, readers' share < {GOAL_FANOUT:.0%} of one core: "
        f"{share:.1%} (rounds {', '.join(f'{x:.1%}' for x in fresh)}): "
        f"{met(share < GOAL_FANOUT)}",
    ]


def memory_table(rounds: list[dict[str, dict[str, Any]]]) -> list[str]:
    """Return the lines of the memory table."""
    medians = {
        mode: {
            state: statistics.median(r[mode][state] for r in rounds) for state in ("empty", "full")
        }
        for mode in MEMORY_MODES
    }
    fresh, queues = medians["memory-fresh"], medians["memory-queues"]
    return [
        "",
        f"| reader (its task included) | buffer empty: bytes / reader "
        f"| {SUBSCRIPTION_BUFFER} buffered: bytes / reader |",
        "|---|---:|---:|",
        f"| `fresh.subscribe()` | {fresh['empty']:.0f} | {fresh['full']:.0f} |",
        f"| `asyncio.Queue(maxsize={SUBSCRIPTION_BUFFER})` | {queues['empty']:.0f} "
        f"| {queues['full']:.0f} |",
        f"| subscriptions / queues | {fresh['empty'] / queues['empty']:.2f}x "
        f"| {fresh['full'] / queues['full']:.2f}x |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", metavar="MODE", choices=("reads", *FANOUT_MODES, *MEMORY_MODES))
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every measurement")
    parser.add_argument("--targets", type=int, default=20, help="targets kept fresh")
    parser.add_argument("--subscribers", type=int, default=1000, help="readers of the fan-out")
    parser.add_argument("--reads", type=int, default=1_000_000, help="get() calls per pass")
    parser.add_argument("--warmup", type=float, default=4.0, help="fan-out seconds before")
    parser.add_argument("--window", type=float, default=20.0, help="fan-out seconds measured")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return

    started = time.monotonic()
    rounds = run_rounds(args)
    lines = [
        "",
        f"keep_fresh benchmark: {args.targets} targets, in-process simulator, asyncio, "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, {args.rounds} rounds",
    ]
    if "reads" in args.parts:
        lines += reads_table(rounds)
    if "fanout" in args.parts:
        lines.append("")
        lines.append(
            f"fan-out: interval {INTERVAL:g} s, {args.warmup:g} s of warm-up, "
            f"{args.window:g} s measured"
        )
        lines += fanout_table(rounds, args.subscribers)
    if "memory" in args.parts:
        lines += memory_table(rounds)
    lines.append(f"(took {time.monotonic() - started:.0f} s)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
