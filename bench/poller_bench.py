"""Poller benchmark: client.poll() against a bare httpx loop, on a loopback nginx.

    python bench/poller_bench.py                    # 3 to 4 minutes; prints a table
    python bench/poller_bench.py --transport aiohttp  # 3 to 4 minutes: the aiohttp table
    python bench/poller_bench.py --transport both     # 4 to 6 minutes: both tables

Each measurement runs in a fresh child process (so CPU time and memory are its own) against
nginx serving the API's sample answers on 127.0.0.1 (../shared/bench/nginx-loopback.sh),
at a 1 s interval with a pool of 10 connections. Three ways to drive the same workload:

- bare: the baseline, what one writes by hand: a task per target that sleeps until its
  next tick, takes one of 10 semaphore slots, GETs with httpx and decodes the JSON.
- poller: ``WMSPanelClient.poll()``, the real thing (credentials transport, status and size
  checks, cattrs models, quota ledger, snapshots).
- poller+bare-fetch: ``SnapshotStream`` fed the bare loop's GET + ``json()`` as its fetch
  function, to tell the scheduler's own cost from the client's per-request cost.
- poller-aiohttp (``--transport aiohttp`` or ``both``): ``WMSPanelClient(...,
  transport="aiohttp").poll()``, compared with the poller on the default transport.

The maximum number of targets is the largest with under 1 % of the ticks skipped (a target
still busy with its previous request, or a tick missed altogether). A loop that cannot keep
up skips nothing until its backlog reaches a whole interval, which takes a while; so the
search first measures the throughput of a loop flooded with 2,500 targets (doubled while the
loop keeps up with most of them, as the poller on aiohttp may), then checks candidates near it
in runs of 12 s (4 s of warm-up); the poller's search starts at the bare loop's maximum. Then
all three drive 80 % of the poller's maximum, twice, for lateness (when a request started minus
when it was due) and CPU seconds per 1,000 polls; and, for memory per target, 300 then 1,300
targets at an 8 s interval under tracemalloc, each measured once every target has been polled
(more than the 256 answers a client keeps for ``max_age``: that bounded cache is not a cost
per target). Measured from 100 and 500 targets at a fixed 3.7 s, as before 2026-12-07, the
figure also counted that cache filling up, and came out about 0.5 KiB higher. The aiohttp
part searches the maximum of the poller on aiohttp the same way, drives 80 % of it twice and
measures its memory per target; with ``--transport aiohttp`` alone, the poller's maximum on
httpx is searched from a flood too.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from typing import Any, Literal

import anyio
import httpx
from loopback import API_KEY, CLIENT_ID, nginx

from wmspanel_async import RealtimeStats, Snapshot, SnapshotStream, Target, WMSPanelClient
from wmspanel_async._poller import PollSettings
from wmspanel_async._quota import MemoryLedger, utc_now

MODES = ("bare", "poller", "poller+bare-fetch")
AIOHTTP_MODE = "poller-aiohttp"
FLOOD = 2500  # targets of the first flood; doubled while a loop keeps up with most of them
FLOOD_MOST = 40_000
#: The modes whose maximum the search did not bracket (a lower bound, or 0 if none passed).
UNBRACKETED: set[str] = set()
POOL = 10
INTERVAL = 1.0  # seconds; the memory runs use a longer one, to stay well below capacity
MEMORY_INTERVAL = 8.0
#: More than the client's ANSWERS_KEPT (256), so that the bounded cache is full in both runs.
MEMORY_TARGETS = (300, 1300)


def slice_id(index: int) -> str:
    return f"{index:024x}"


class Recorder:
    """What one run measures, from the end of the warm-up on."""

    def __init__(self) -> None:
        self.lateness: list[float] = []
        self.polls = 0
        self.skipped = 0
        self.cpu_start = 0.0
        self.measuring = False
        # Memory runs only: which targets have been polled once, and when all have.
        self.polled: bytearray | None = None
        self.polled_once = 0
        self.all_polled: anyio.Event | None = None

    def mark_polled(self, index: int) -> None:
        polled = self.polled
        if polled is not None and not polled[index]:
            polled[index] = 1
            self.polled_once += 1
            if self.polled_once == len(polled) and self.all_polled is not None:
                self.all_polled.set()

    def start(self) -> None:
        self.measuring = True
        self.cpu_start = time.process_time()
        self.wall_start = time.perf_counter()

    def result(self, targets: int, seconds: float) -> dict[str, Any]:
        cpu = time.process_time() - self.cpu_start
        wall = time.perf_counter() - self.wall_start
        ticks = self.polls + self.skipped
        ordered = sorted(self.lateness)

        def pct(fraction: float) -> float:
            return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0

        return {
            "targets": targets,
            "seconds": seconds,
            "polls": self.polls,
            "polls_per_second": self.polls / wall,
            "cpu_share": cpu / wall,
            "skipped": self.skipped,
            "skipped_ratio": self.skipped / ticks if ticks else 0.0,
            "p50": pct(0.5),
            "p99": pct(0.99),
            "cpu_per_1000": cpu / self.polls * 1000 if self.polls else 0.0,
            "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }


async def run_bare(port: int, targets: int, seconds: float, warmup: float, rec: Recorder) -> None:
    limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as http:
        slots = anyio.Semaphore(POOL)
        start = anyio.current_time() + 0.05
        measure_from = start + warmup
        end = start + seconds

        async def poll_forever(index: int) -> None:
            params = {"data_slice": slice_id(index), "client_id": CLIENT_ID, "api_key": API_KEY}
            due = start + index * INTERVAL / targets
            while due < end:
                await anyio.sleep_until(due)
                async with slots:
                    started = anyio.current_time()
                    response = await http.get("/v1/realtime_data", params=params)
                    response.json()
                rec.mark_polled(index)
                if rec.measuring:
                    rec.lateness.append(started - due)
                    rec.polls += 1
                due += INTERVAL
                now = anyio.current_time()
                while due < now:  # ticks that passed while busy: skipped
                    if rec.measuring:
                        rec.skipped += 1
                    due += INTERVAL

        async with anyio.create_task_group() as task_group:
            for index in range(targets):
                task_group.start_soon(poll_forever, index)
            await anyio.sleep_until(measure_from)
            rec.start()
            await anyio.sleep_until(end)
            task_group.cancel_scope.cancel()


async def consume(stream: SnapshotStream, seconds: float, warmup: float, rec: Recorder) -> None:
    engine = getattr(stream, "_engine", stream)  # its engine since the poller holds one
    if rec.polled is None:  # not a memory run
        # The stream keeps the lateness of its last 1,024 polls for stats; keep them all here.
        engine._lateness = collections.deque()
    with anyio.move_on_after(warmup):
        async for snapshot in stream:
            rec.mark_polled(int(snapshot.target.data_slice, 16))
    before = stream.stats
    engine._lateness.clear()
    rec.start()
    with anyio.move_on_after(seconds - warmup):
        async for _ in stream:
            pass
    after = stream.stats
    rec.polls = after.polls - before.polls
    rec.skipped = after.skipped - before.skipped
    rec.lateness = list(engine._lateness)


async def run_poller(
    port: int,
    targets: int,
    seconds: float,
    warmup: float,
    rec: Recorder,
    transport: Literal["httpx", "aiohttp"] = "httpx",
) -> None:
    async with WMSPanelClient(
        CLIENT_ID,
        API_KEY,
        base_url=f"http://127.0.0.1:{port}",
        daily_limit=10**9,
        max_connections=POOL,
        transport=transport,
    ) as client:
        stream = client.poll([Target(slice_id(i)) for i in range(targets)], interval=INTERVAL)
        async with stream:
            await consume(stream, seconds, warmup, rec)


async def run_poller_bare_fetch(
    port: int, targets: int, seconds: float, warmup: float, rec: Recorder
) -> None:
    limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as http:

        async def fetch(target: Target, deadline: float) -> Snapshot:
            params = {"data_slice": target.data_slice, "client_id": CLIENT_ID, "api_key": API_KEY}
            response = await http.get("/v1/realtime_data", params=params)
            data = response.json()["realtime_data"]
            stats = RealtimeStats(connected=data["connected"], bandwidth=data["bandwidth"])
            return Snapshot(target=target, stats=stats, error=None, fetched_at=utc_now(), latency=0)

        ledger = MemoryLedger()
        settings = PollSettings(
            quota=lambda: ledger.status(CLIENT_ID, 10**9, utc_now()),
            utc_clock=utc_now,
            interval=INTERVAL,
            concurrency=POOL,
        )
        stream = SnapshotStream(fetch, [Target(slice_id(i)) for i in range(targets)], settings)
        async with stream:
            await consume(stream, seconds, warmup, rec)


async def run_poller_aiohttp(
    port: int, targets: int, seconds: float, warmup: float, rec: Recorder
) -> None:
    await run_poller(port, targets, seconds, warmup, rec, transport="aiohttp")


RUNNERS = {
    "bare": run_bare,
    "poller": run_poller,
    "poller+bare-fetch": run_poller_bare_fetch,
    AIOHTTP_MODE: run_poller_aiohttp,
}


def child(mode: str, port: int, targets: int, seconds: float, memory: bool) -> None:
    """Run one measurement in this process and print its result as JSON."""
    global INTERVAL  # noqa: PLW0603 - one setting for the whole child process
    rec = Recorder()
    warmup = min(4.0, seconds / 3)
    if memory:
        INTERVAL = MEMORY_INTERVAL
        warmup = seconds  # the poller's snapshots are all marked as polled
        rec.polled = bytearray(targets)
        tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0]

        async def measure() -> None:
            rec.all_polled = anyio.Event()
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(RUNNERS[mode], port, targets, seconds, warmup, rec)
                with anyio.fail_after(seconds - 0.5):
                    await rec.all_polled.wait()  # every target polled at least once
                gc.collect()  # what is held, not what a collection would free
                result["traced_bytes"] = tracemalloc.get_traced_memory()[0] - baseline
                task_group.cancel_scope.cancel()

        result: dict[str, Any] = {}
        anyio.run(measure)
        print(json.dumps(result))
        return
    anyio.run(RUNNERS[mode], port, targets, seconds, warmup, rec)
    print(json.dumps(rec.result(targets, seconds)))


def measure(
    mode: str, port: int, targets: int, seconds: float, *, memory: bool = False
) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", mode, str(port), str(targets), str(seconds)]
    if memory:
        command.append("--memory")
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def find_max(mode: str, port: int, log: list[str], start: int | None = None) -> int:
    """Return the most targets polled at 1 s with under 1 % of ticks skipped.

    Without a ``start``, begin just below the throughput of a loop flooded with 2,500
    targets, or twice as many while the loop keeps up with 85 % of its flood (it was not
    flooded). Step up 6 % while the ticks hold, down 5 % while they do not, until the limit
    is bracketed (a pass and a fail), at most 6 runs, or 10 while every run passed (a flood
    can undershoot what a loop holds, as it does for the poller on aiohttp). A maximum the search
    did not bracket is a lower bound: it is added to :data:`UNBRACKETED`, and said so.
    """
    if start is None:
        flood = FLOOD
        while True:
            flooded = measure(mode, port, flood, 6.0)
            log.append(
                f"  {mode:<18} flooded with {flood} targets: "
                f"{flooded['polls_per_second']:6.0f} polls/s"
            )
            print(log[-1], flush=True)
            if flooded["polls_per_second"] < 0.85 * flood or flood * 2 > FLOOD_MOST:
                break
            flood *= 2
        start = int(flooded["polls_per_second"] * 0.97)
    best, targets = 0, round(start / 10) * 10
    outcomes: list[bool] = []
    while len(set(outcomes)) < 2 and (len(outcomes) < 6 or (all(outcomes) and len(outcomes) < 10)):
        result = measure(mode, port, targets, 12.0)
        passed = result["skipped_ratio"] < 0.01
        outcomes.append(passed)
        log.append(
            f"  {mode:<18} {targets:>5} targets: {result['skipped_ratio']:6.2%} skipped, "
            f"p99 {result['p99'] * 1000:7.1f} ms, CPU {result['cpu_share']:.0%} of a core"
        )
        print(log[-1], flush=True)
        if passed:
            best = max(best, targets)
            targets = round(targets * 1.06 / 10) * 10
        else:
            targets = round(targets * 0.95 / 10) * 10
    if len(set(outcomes)) < 2:
        UNBRACKETED.add(mode)
        log.append(f"  {mode:<18} not bracketed: the maximum is at least {best}")
        print(log[-1], flush=True)
    return best


def loaded_figures(rounds: list[dict[str, dict[str, Any]]], mode: str) -> dict[str, float]:
    """Return mean CPU and p50, and worst p99 and skips, of ``mode`` over ``rounds``."""
    return {
        "skipped_ratio": max(r[mode]["skipped_ratio"] for r in rounds),
        "p50": statistics.mean(r[mode]["p50"] for r in rounds),
        "p99": max(r[mode]["p99"] for r in rounds),
        "cpu_per_1000": statistics.mean(r[mode]["cpu_per_1000"] for r in rounds),
    }


def memory_per_target(mode: str, port: int) -> float:
    """Return tracemalloc's bytes with 1,300 targets minus with 300, divided by 1,000."""
    small, large = MEMORY_TARGETS
    low = measure(mode, port, small, 30.0, memory=True)["traced_bytes"]
    high = measure(mode, port, large, 30.0, memory=True)["traced_bytes"]
    return float(high - low) / (large - small)


def httpx_part(port: int, log: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Measure the bare loop and the poller on httpx; return the poller's figures and a table."""
    maxima = {"bare": find_max("bare", port, log)}
    maxima["poller"] = find_max("poller", port, log, start=maxima["bare"])
    at = max(int(maxima["poller"] * 0.8), 10)
    # Two interleaved rounds, so that a neighbour's burst of CPU does not favour one.
    rounds = [{mode: measure(mode, port, at, 10.0) for mode in MODES} for _ in range(2)]
    loaded = {mode: loaded_figures(rounds, mode) for mode in MODES}
    per_target = {mode: memory_per_target(mode, port) for mode in MODES}

    bare = loaded["bare"]
    lines = [
        "",
        f"poller benchmark: interval 1 s, pool {POOL}, nginx on loopback, "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, asyncio",
        "",
        f"| {'':<18} | max targets | at {at} targets: skipped | p50 ms | p99 ms "
        "| CPU s / 1000 polls | vs bare | memory / target |",
        f"|{'-' * 20}|-------------|{'-' * (len(str(at)) + 22)}|--------|--------"
        "|--------------------|---------|-----------------|",
    ]
    for mode in MODES:
        result = loaded[mode]
        lines.append(
            f"| {mode:<18} | {maxima.get(mode, '-'):>11} "
            f"| {result['skipped_ratio']:>{len(str(at)) + 20}.2%} "
            f"| {result['p50'] * 1000:6.2f} | {result['p99'] * 1000:6.2f} "
            f"| {result['cpu_per_1000']:18.3f} "
            f"| {result['cpu_per_1000'] / bare['cpu_per_1000']:6.2f}x "
            f"| {per_target[mode] / 1024:11.2f} KiB |"
        )
    lines.append("")
    lines.append(
        "ratios vs bare: max targets "
        + f"poller {maxima['poller'] / maxima['bare']:.2f}x"
        + "; memory per target "
        + ", ".join(f"{m} {per_target[m] / per_target['bare']:.2f}x" for m in MODES[1:])
    )
    lines.append(f"(at {at} targets: mean CPU and p50, worst p99 and skips of 2 runs each)")
    poller = {"max": maxima["poller"], "at": at, **loaded["poller"]}
    poller["memory"] = per_target["poller"]
    return poller, lines


def aiohttp_part(port: int, log: list[str], poller: dict[str, Any] | None) -> list[str]:
    """Measure the poller on aiohttp against the poller on httpx; return a table.

    ``poller``: the httpx poller's figures from :func:`httpx_part`, or ``None`` to measure
    them here (its maximum searched from a flood, then two runs at 80 % of it, interleaved
    with the aiohttp poller's).
    """
    mode = AIOHTTP_MODE
    figures: dict[str, dict[str, Any]] = {}
    if poller is None:
        figures["poller"] = {"max": find_max("poller", port, log)}
    else:
        figures["poller"] = poller
    figures[mode] = {"max": find_max(mode, port, log)}
    figures[mode]["at"] = max(int(figures[mode]["max"] * 0.8), 10)
    measured = [mode]
    if poller is None:
        measured.insert(0, "poller")
        figures["poller"]["at"] = max(int(figures["poller"]["max"] * 0.8), 10)
    rounds = [{m: measure(m, port, figures[m]["at"], 10.0) for m in measured} for _ in range(2)]
    for m in measured:
        figures[m].update(loaded_figures(rounds, m))
        figures[m]["memory"] = memory_per_target(m, port)

    httpx_poller, aio = figures["poller"], figures[mode]
    lines = [
        "",
        f"poller on aiohttp: interval 1 s, pool {POOL}, nginx on loopback, "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, asyncio",
        "",
        "| | max targets | vs httpx | at 80 %: targets | skipped | p50 ms | p99 ms "
        "| CPU s / 1000 polls | vs httpx | memory / target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in (("poller (httpx)", httpx_poller), (mode, aio)):
        lines.append(
            f"| {name} | {row['max']} | {row['max'] / httpx_poller['max']:.2f}x | {row['at']} "
            f"| {row['skipped_ratio']:.2%} | {row['p50'] * 1000:.2f} | {row['p99'] * 1000:.2f} "
            f"| {row['cpu_per_1000']:.3f} "
            f"| {row['cpu_per_1000'] / httpx_poller['cpu_per_1000']:.2f}x "
            f"| {row['memory'] / 1024:.2f} KiB |"
        )
    ratio = aio["max"] / httpx_poller["max"]
    unsure = sorted({"poller", mode} & UNBRACKETED)
    lines += [
        "",
        f"goal: max targets on aiohttp >= 2.5x httpx's: {ratio:.2f}x "
        f"({aio['max']} / {httpx_poller['max']}): {'met' if ratio >= 2.5 else 'NOT met'}"
        + (f" (not bracketed, unsure: {', '.join(unsure)})" if unsure else ""),
        f"goal: p99 lateness on aiohttp at 80 % of its max ({aio['at']} targets) < 20 ms: "
        f"{aio['p99'] * 1000:.1f} ms: {'met' if aio['p99'] < 0.020 else 'NOT met'}",
        "(at 80 % of each one's max: mean CPU and p50, worst p99 and skips of 2 runs each)",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=4, metavar=("MODE", "PORT", "TARGETS", "SECONDS"))
    parser.add_argument("--memory", action="store_true")
    parser.add_argument(
        "--transport",
        choices=("httpx", "aiohttp", "both"),
        default="httpx",
        help="httpx: the bare loop and the poller on httpx (the default); aiohttp: the "
        "poller on aiohttp against the poller on httpx; both: the two tables",
    )
    args = parser.parse_args()
    if args.child:
        mode, port, targets, seconds = args.child
        child(mode, int(port), int(targets), float(seconds), args.memory)
        return

    started = time.monotonic()
    with nginx() as port:
        log: list[str] = []
        poller = None
        if args.transport in ("httpx", "both"):
            poller, lines = httpx_part(port, log)
            print("\n".join(lines), flush=True)
        if args.transport in ("aiohttp", "both"):
            print("\n".join(aiohttp_part(port, log, poller)), flush=True)
    print(f"(took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
