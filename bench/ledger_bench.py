"""Ledger benchmark: the cost per call of counting in memory, in a file and in Redis.

    python bench/ledger_bench.py                # about 3 to 4 minutes; prints tables
    python bench/ledger_bench.py --rounds 9     # more rounds, steadier medians

It starts nginx on a free loopback port (../shared/bench/nginx-loopback.sh) and a
redis-server on another (a temporary directory, ``--save "" --appendonly no``), and stops
both at the end, on Ctrl-C too. Every measurement runs in a fresh child process, asyncio,
so that its CPU time (``time.process_time``: all threads) is its own. Measurements:

- calls: ``WMSPanelClient(..., daily_limit=10**9, max_connections=10, ledger=...)
  .realtime(slice)`` with each ledger (MemoryLedger, FileLedger on a temporary file,
  RedisLedger on the loopback Redis), with 10 calls in flight and with 1: CPU per call, and
  the median and p99 latency of single calls. Each in-flight worker asks for a slice of its
  own, so that no two calls share a request (identical calls in flight would), and the
  child checks that the ledger counted every call. For Redis, the server's own CPU per call
  (from ``INFO cpu``) too.
- alone: one operation at a time, 1 in flight: each ledger's ``reserve()``, the file
  ledger's locked read-modify-write called synchronously, and redis-py's bare EVALSHA of the
  ledger's script and PING: the round trip that a Redis ledger's call costs.
- heartbeat: a task sleeps 1 ms in a loop and records how late it wakes, while 10 workers
  make calls for ``--seconds``; and every step the event loop runs (a callback, a task's
  step) is timed: wall clock, CPU, and whether the OS preempted the loop's thread during it
  (a neighbour's doing on a shared machine, not the loop's). The longest step not preempted
  is the loop's longest block. Loads: none (idle); calls with MemoryLedger (the baseline);
  with a MemoryLedger that first hops to a worker thread and back, doing nothing there
  (what any ledger working in a thread pays); with FileLedger; with a FileLedger whose
  write sleeps 50 ms in its worker thread (a slow disk); 10 workers calling
  FileLedger.reserve() with no HTTP at all (the ledger's own share); and, for reference, a
  FileLedger doing its locked read-modify-write in the event loop (a synchronous write).
  The heap left by the imports is frozen (``gc.freeze()``) after the warm-up: its first
  full collection, 15 to 50 ms here whatever the ledger, would otherwise be the longest
  block of every run.

The measurements run in interleaved rounds (each round in a rotated order); the tables show
medians over the rounds, and the ratios to the memory ledger are medians of the ratios
within a round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import itertools
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio.to_thread
from loopback import API_KEY, CLIENT_ID, describe_package, nginx

from wmspanel_async import FileLedger, Ledger, MemoryLedger, QuotaStatus, WMSPanelClient
from wmspanel_async._quota import quota_status, utc_now

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
LIMIT = 10**9
IN_FLIGHT = 10
LEDGERS = ("memory", "file", "redis")
HEARTBEATS = (
    "idle",
    "memory",
    "memory+thread-hop",
    "file",
    "file-slow-disk",
    "file-reserve-only",
    "file-sync",
)
#: Seconds the heartbeat sleeps; how late it wakes beyond that is the loop's block.
BEAT = 0.001
#: Seconds a slow disk takes to write the quota file, in the heartbeat's slow-disk load.
SLOW_WRITE = 0.05
#: Calls before a heartbeat starts (20 take 1 s on the slow disk).
HEARTBEAT_WARMUP = 20
#: The issue's goal for the loop's longest block with the file ledger, in ms.
GOAL_MS = 1.0
#: The operations of the alone measurement, in their order in its table.
ALONE = (
    "MemoryLedger.reserve()",
    "FileLedger.reserve()",
    "FileLedger locked read-modify-write, synchronous",
    "RedisLedger.reserve()",
    "EVALSHA of the ledger's script (redis-py)",
    "PING (redis-py)",
)

Call = Callable[[int], Awaitable[Any]]


def slice_id(index: int) -> str:
    """Return a slice id of its own for worker ``index`` (nginx answers any)."""
    return f"53e03c9978a6fc8596{index:06x}"


def percentile(values: list[float], share: float) -> float:
    """Return the ``share`` quantile of ``values`` (0.99 for p99)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# -- in a child process --------------------------------------------------------------------


class SyncFileLedger(FileLedger):
    """A FileLedger that reads, counts and writes in the event loop: a synchronous write."""

    async def reserve(self, client_id: str, limit: int, now: dt.datetime) -> QuotaStatus:
        """Count a call without leaving the event loop (for reference only)."""
        return quota_status(self._locked(self._take, client_id, limit, now), limit, now)


class ThreadHopLedger(MemoryLedger):
    """A MemoryLedger that first goes to a worker thread and back, as FileLedger does."""

    async def reserve(self, client_id: str, limit: int, now: dt.datetime) -> QuotaStatus:
        """Hop to a worker thread (doing nothing there), then count in memory."""
        await anyio.to_thread.run_sync(int)
        return await super().reserve(client_id, limit, now)


def on_slow_disk(ledger: FileLedger) -> FileLedger:
    """Make ``ledger``'s every write of its file take ``SLOW_WRITE`` seconds longer."""
    write = ledger._save

    def slow_write(days: dict[str, dict[str, int]]) -> None:
        time.sleep(SLOW_WRITE)  # in the worker thread, as a slow disk would
        write(days)

    ledger._save = slow_write  # type: ignore[method-assign]
    return ledger


def make_ledger(kind: str, directory: Path, redis_url: str | None) -> Ledger:
    """Return the ledger of ``kind``, its file (if any) in ``directory``."""
    if kind == "redis":
        from wmspanel_async.redis import RedisLedger  # noqa: PLC0415 - redis children only

        return RedisLedger.from_url(str(redis_url))
    if kind == "memory+thread-hop":
        return ThreadHopLedger()
    if kind == "file-sync":
        return SyncFileLedger(directory / "quota.json")
    if kind == "file-slow-disk":
        return on_slow_disk(FileLedger(directory / "quota.json"))
    if kind.startswith("file"):
        return FileLedger(directory / "quota.json")
    return MemoryLedger()


@contextlib.asynccontextmanager
async def client_with(kind: str, port: int, redis_url: str | None) -> AsyncIterator[WMSPanelClient]:
    """Yield a client on the loopback nginx counting its calls in a ledger of ``kind``."""
    with tempfile.TemporaryDirectory(prefix="ledger-bench.") as directory:
        ledger = make_ledger(kind, Path(directory), redis_url)
        async with (
            ledger,
            WMSPanelClient(
                CLIENT_ID,
                API_KEY,
                base_url=f"http://127.0.0.1:{port}",
                daily_limit=LIMIT,
                max_connections=IN_FLIGHT,
                ledger=ledger,
            ) as api,
        ):
            yield api


def countdown(calls: int) -> Callable[[], bool]:
    """Return a test that is true ``calls`` times, for workers that share the calls."""
    left = iter(range(calls))
    return lambda: next(left, None) is not None


def until(deadline: float) -> Callable[[], bool]:
    """Return a test that is true until ``deadline`` (``time.perf_counter()``)."""
    return lambda: time.perf_counter() < deadline


async def drive(call: Call, in_flight: int, go_on: Callable[[], bool]) -> list[float]:
    """Make calls with ``in_flight`` workers while ``go_on()``; return each call's seconds."""
    latencies: list[float] = []

    async def worker(index: int) -> None:
        while go_on():
            started = time.perf_counter()
            await call(index)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker(index) for index in range(in_flight)))
    return latencies


async def redis_cpu(url: str) -> float:
    """Return the CPU seconds the Redis server at ``url`` has used (user + system)."""
    import redis.asyncio  # noqa: PLC0415 - redis children only

    async with redis.asyncio.Redis.from_url(url) as server:
        info = await server.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def calls_child(
    kind: str, port: int, redis_url: str | None, in_flight: int, calls: int, warmup: int
) -> dict[str, Any]:
    """Measure CPU and latency per ``realtime()`` call with the ledger of ``kind``."""
    async with client_with(kind, port, redis_url) as api:

        async def call(index: int) -> Any:
            return await api.realtime(slice_id(index))

        if (await call(0)).connected != 1234:
            msg = "nginx did not answer the API's sample"
            raise RuntimeError(msg)
        await drive(call, in_flight, countdown(warmup))
        counted = (await api.refresh_quota()).used
        server = await redis_cpu(str(redis_url)) if kind == "redis" else 0.0
        cpu, wall = time.process_time(), time.perf_counter()
        latencies = await drive(call, in_flight, countdown(calls))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        server = await redis_cpu(str(redis_url)) - server if kind == "redis" else 0.0
        counted = (await api.refresh_quota()).used - counted
    if counted != calls:
        msg = f"the {kind} ledger counted {counted} of {calls} calls"
        raise RuntimeError(msg)
    return {
        "cpu_us": cpu / calls * 1e6,
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "per_second": calls / wall,
        "server_cpu_us": server / calls * 1e6,
    }


class StepTimer:
    """Times each step the event loop runs (a callback, or a task's step): its blocks.

    A step during which the OS preempted the loop's thread (an involuntary context switch:
    another process ran on its core) is counted apart: on a shared machine, its length
    is the neighbours', not the loop's. A step that waited (a voluntary context switch:
    the loop's own socket calls never block, so a wait for the GIL) is the loop's.
    """

    def __init__(self) -> None:
        self.on = False
        self.longest = self.longest_cpu = self.longest_gc = self.longest_own = 0.0
        self.what = ""
        self.over_goal = self.steps = self.waits = 0
        self._gc_started = 0.0

    def install(self) -> None:
        """Time every ``asyncio.Handle`` run from now on (while ``on``), and every GC pause."""
        run = asyncio.events.Handle._run
        gc.callbacks.append(self.time_gc)

        def timed_run(handle: asyncio.Handle) -> None:
            if not self.on:
                return run(handle)
            before = resource.getrusage(resource.RUSAGE_THREAD)
            wall, cpu = time.perf_counter(), time.thread_time()
            run(handle)
            wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
            after = resource.getrusage(resource.RUSAGE_THREAD)
            preempted = after.ru_nivcsw > before.ru_nivcsw
            self.count(handle, wall, cpu, preempted, after.ru_nvcsw - before.ru_nvcsw)
            return None

        asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]

    def time_gc(self, phase: str, info: dict[str, int]) -> None:
        """Keep the longest pause of the garbage collector (a ``gc.callbacks`` entry)."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self.on:
            self.longest_gc = max(self.longest_gc, time.perf_counter() - self._gc_started)

    def count(
        self, handle: asyncio.Handle, wall: float, cpu: float, preempted: bool, waits: int
    ) -> None:
        """Count one step of ``wall`` seconds (``cpu`` on the CPU, ``waits`` waits)."""
        self.steps += 1
        self.over_goal += wall * 1e3 > GOAL_MS
        self.longest = max(self.longest, wall)
        self.longest_cpu = max(self.longest_cpu, cpu)
        if not preempted and wall > self.longest_own:
            self.longest_own, self.waits = wall, waits
            self.what = step_name(handle)


def step_name(handle: asyncio.Handle) -> str:
    """Return what a step ran: its task's coroutine, or its callback."""
    callback = handle._callback  # type: ignore[attr-defined]
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        return f"task {owner.get_coro().__qualname__}"
    return str(getattr(callback, "__qualname__", callback))


async def heartbeat(deadline: float) -> list[float]:
    """Sleep ``BEAT`` in a loop until ``deadline``; return how late each wake-up was."""
    lateness = []
    while (started := time.perf_counter()) < deadline:
        await asyncio.sleep(BEAT)
        lateness.append(time.perf_counter() - started - BEAT)
    return lateness


async def heartbeat_child(kind: str, port: int, seconds: float) -> dict[str, Any]:
    """Measure the heartbeat's lateness, and the loop's steps, under ``kind`` for ``seconds``."""
    steps = StepTimer()
    steps.install()
    async with client_with("memory" if kind == "idle" else kind, port, None) as api:

        async def call(index: int) -> Any:
            if kind == "file-reserve-only":
                return await api.ledger.reserve(CLIENT_ID, LIMIT, utc_now())
            return await api.realtime(slice_id(index))

        await drive(call, IN_FLIGHT, countdown(HEARTBEAT_WARMUP))
        # The first full collection of the heap left by the imports takes 15 to 50 ms here,
        # whatever the ledger; a server freezes that heap after starting, and so do we.
        gc.collect()
        gc.freeze()
        deadline = time.perf_counter() + seconds
        load = drive(call, 0 if kind == "idle" else IN_FLIGHT, until(deadline))
        steps.on = True
        lateness, latencies = await asyncio.gather(heartbeat(deadline), load)
        steps.on = False
    return {
        "step_ms": steps.longest * 1e3,
        "step_cpu_ms": steps.longest_cpu * 1e3,
        "own_step_ms": steps.longest_own * 1e3,
        "own_step_waits": steps.waits,
        "step_what": steps.what,
        "gc_ms": steps.longest_gc * 1e3,
        "steps_over_goal": steps.over_goal / steps.steps,
        "max_ms": max(lateness) * 1e3,
        "p99_ms": percentile(lateness, 0.99) * 1e3,
        "p50_ms": statistics.median(lateness) * 1e3,
        "per_second": len(latencies) / seconds,
    }


async def timed(operation: Callable[[], Awaitable[Any]], ops: int) -> dict[str, float]:
    """Run ``operation`` ``ops`` times, one at a time (after a tenth as many to warm up)."""
    for _ in range(ops // 10):
        await operation()
    latencies = []
    cpu = time.process_time()
    for _ in range(ops):
        started = time.perf_counter()
        await operation()
        latencies.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu
    return {
        "p50_us": statistics.median(latencies) * 1e6,
        "p99_us": percentile(latencies, 0.99) * 1e6,
        "max_us": max(latencies) * 1e6,
        "cpu_us": cpu / ops * 1e6,
    }


async def alone_child(redis_url: str, ops: int) -> dict[str, dict[str, float]]:
    """Time each operation of ``ALONE`` on its own, one at a time."""
    import redis.asyncio  # noqa: PLC0415 - redis children only

    from wmspanel_async._redis import _RESERVE  # noqa: PLC0415
    from wmspanel_async.redis import RedisLedger  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="ledger-bench.") as directory:
        memory, file = MemoryLedger(), FileLedger(Path(directory) / "quota.json")

        async def file_synchronous() -> int:
            return file._locked(file._take, CLIENT_ID, LIMIT, utc_now())

        async with (
            RedisLedger.from_url(redis_url) as ledger,
            redis.asyncio.Redis.from_url(redis_url) as bare,
        ):
            script = bare.register_script(_RESERVE)
            operations = (
                lambda: memory.reserve(CLIENT_ID, LIMIT, utc_now()),
                lambda: file.reserve(CLIENT_ID, LIMIT, utc_now()),
                file_synchronous,
                lambda: ledger.reserve(CLIENT_ID, LIMIT, utc_now()),
                lambda: script(keys=["ledger-bench:calls:"], args=[LIMIT, 1, 0, 3600]),
                bare.ping,
            )
            return {name: await timed(op, ops) for name, op in zip(ALONE, operations, strict=True)}


def child(spec: dict[str, Any]) -> None:
    """Run the measurement ``spec`` describes and print its figures as JSON."""
    task = spec["task"]
    if task == "calls":
        args = (spec["port"], spec["redis_url"], spec["in_flight"], spec["calls"])
        figures = calls_child(spec["ledger"], *args, spec["warmup"])
    elif task == "heartbeat":
        figures = heartbeat_child(spec["load"], spec["port"], spec["seconds"])
    else:
        figures = alone_child(spec["redis_url"], spec["ops"])
    print(json.dumps(asyncio.run(figures)))


# -- in the parent: servers, rounds, tables -------------------------------------------------


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers_ping(port: int) -> bool:
    """Return whether a Redis server answers PING on ``port`` of 127.0.0.1."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Run a redis-server on a free loopback port, without persistence; yield its URL."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ledger-bench-redis.") as directory:
        log = Path(directory) / "redis.log"
        command = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
        command += ["--appendonly", "no", "--dir", directory, "--logfile", str(log)]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        try:
            for _ in range(50):
                if server.poll() is not None or answers_ping(port):
                    break
                time.sleep(0.1)
            if not answers_ping(port):
                sys.exit(f"redis-server did not start:\n{log.read_text(errors='replace')}")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.terminate()
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the measurement ``spec`` in a fresh child process and return its figures."""
    command = [sys.executable, __file__, "--child", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode:
        sys.exit(f"{spec} failed:\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def round_specs(index: int, args: argparse.Namespace, port: int, url: str) -> list[dict[str, Any]]:
    """Return the measurements of round ``index``: each group rotated, the groups too."""
    shared = {"port": port, "redis_url": url}
    calls = {"task": "calls", "calls": args.calls, "warmup": args.warmup} | shared
    groups: list[list[dict[str, Any]]] = [
        [calls | {"ledger": ledger, "in_flight": in_flight} for ledger in LEDGERS]
        for in_flight in (IN_FLIGHT, 1)
    ]
    groups.append(
        [
            {"task": "heartbeat", "load": load, "seconds": args.seconds} | shared
            for load in HEARTBEATS
        ]
    )
    groups.append([{"task": "alone", "ops": args.ops} | shared])
    rotated = [group[index % len(group) :] + group[: index % len(group)] for group in groups]
    shift = index % len(rotated)
    return list(itertools.chain.from_iterable(rotated[shift:] + rotated[:shift]))


def key(spec: dict[str, Any]) -> str:
    """Return the name of a measurement in the results of a round."""
    if spec["task"] == "calls":
        return f"calls {spec['ledger']} {spec['in_flight']}"
    if spec["task"] == "heartbeat":
        return f"heartbeat {spec['load']}"
    return "alone"


def progress(name: str, figures: dict[str, Any]) -> str:
    """Return the progress line of one measurement."""
    if name.startswith("calls"):
        return (
            f"{figures['cpu_us']:7.1f} µs CPU/call, p50 {figures['p50_ms']:.3f} ms, "
            f"p99 {figures['p99_ms']:.3f} ms, {figures['per_second']:.0f} calls/s"
        )
    if name.startswith("heartbeat"):
        return (
            f"max late {figures['max_ms']:.3f} ms, p99 {figures['p99_ms']:.3f} ms, "
            f"{figures['per_second']:.0f} calls/s; longest step {figures['step_ms']:.3f} ms, "
            f"on the CPU {figures['step_cpu_ms']:.3f} ms, not preempted "
            f"{figures['own_step_ms']:.3f} ms, {figures['own_step_waits']} waits "
            f"({figures['step_what']}); "
            f"longest GC {figures['gc_ms']:.3f} ms"
        )
    return ", ".join(f"{op.split()[0]} p50 {f['p50_us']:.0f} µs" for op, f in figures.items())


def median_of(rounds: list[dict[str, Any]], name: str, field: str) -> float:
    """Return the median over the rounds of one figure of one measurement."""
    return statistics.median(r[name][field] for r in rounds)


def ratio_to_memory(rounds: list[dict[str, Any]], ledger: str, flight: int, field: str) -> float:
    """Return the median over the rounds of ``field`` with ``ledger`` / with memory."""
    return statistics.median(
        r[f"calls {ledger} {flight}"][field] / r[f"calls memory {flight}"][field] for r in rounds
    )


def calls_table(rounds: list[dict[str, Any]], flight: int) -> list[str]:
    """Return the table of CPU and latency per call, ``flight`` calls in flight."""
    lines = [
        f"{flight} in flight:",
        "",
        "| ledger | µs CPU / call | min | max | p50 ms | p99 ms | calls/s "
        "| CPU vs memory | p50 vs memory | p99 vs memory | Redis server µs CPU / call |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ledger in LEDGERS:
        name = f"calls {ledger} {flight}"
        cpu = [r[name]["cpu_us"] for r in rounds]
        server = f"{median_of(rounds, name, 'server_cpu_us'):.1f}" if ledger == "redis" else "-"
        lines.append(
            f"| {ledger} | {statistics.median(cpu):.1f} | {min(cpu):.1f} | {max(cpu):.1f} "
            f"| {median_of(rounds, name, 'p50_ms'):.3f} | {median_of(rounds, name, 'p99_ms'):.3f} "
            f"| {median_of(rounds, name, 'per_second'):.0f} "
            f"| {ratio_to_memory(rounds, ledger, flight, 'cpu_us'):.2f}x "
            f"| {ratio_to_memory(rounds, ledger, flight, 'p50_ms'):.2f}x "
            f"| {ratio_to_memory(rounds, ledger, flight, 'p99_ms'):.2f}x | {server} |"
        )
    return [*lines, ""]


def alone_table(rounds: list[dict[str, Any]]) -> list[str]:
    """Return the table of single operations, one at a time."""
    lines = [
        "One operation at a time (medians over the rounds; max: the largest of any round):",
        "",
        "| operation | p50 µs | p99 µs | max µs | µs CPU / op |",
        "|---|---:|---:|---:|---:|",
    ]
    for op in ALONE:
        figures = [r["alone"][op] for r in rounds]
        p50, p99, cpu = (
            statistics.median(f[field] for f in figures) for field in ("p50_us", "p99_us", "cpu_us")
        )
        worst = max(f["max_us"] for f in figures)
        lines.append(f"| {op} | {p50:.1f} | {p99:.1f} | {worst:.0f} | {cpu:.1f} |")
    return [*lines, ""]


def heartbeat_table(rounds: list[dict[str, Any]]) -> list[str]:
    """Return the table of the heartbeat's lateness and the loop's steps, and the verdicts."""
    lines = [
        f"Heartbeat (sleep {BEAT * 1e3:g} ms in a loop) and the loop's steps, {IN_FLIGHT} "
        "workers (medians over the rounds; min and max of the heartbeat's max):",
        "",
        "| load | heartbeat max ms | min | max | p99 ms | p50 ms | longest step ms "
        "| longest not preempted ms | longest on the CPU ms | steps > 1 ms | longest GC ms "
        "| calls/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    fields = ("p99_ms", "p50_ms", "step_ms", "own_step_ms", "step_cpu_ms", "steps_over_goal")
    for load in HEARTBEATS:
        name = f"heartbeat {load}"
        worst = [r[name]["max_ms"] for r in rounds]
        p99, p50, step, own, cpu, over = (median_of(rounds, name, field) for field in fields)
        gc_ms, per_second = (median_of(rounds, name, field) for field in ("gc_ms", "per_second"))
        lines.append(
            f"| {load} | {statistics.median(worst):.3f} | {min(worst):.3f} | {max(worst):.3f} "
            f"| {p99:.3f} | {p50:.3f} | {step:.3f} | {own:.3f} | {cpu:.3f} | {over:.3%} "
            f"| {gc_ms:.3f} | {per_second:.0f} |"
        )

    def median(load: str, field: str) -> float:
        return median_of(rounds, f"heartbeat {load}", field)

    loads = ("memory", "memory+thread-hop", "file", "file-reserve-only")
    own = {load: median(load, "own_step_ms") for load in loads}
    cpu = {load: median(load, "step_cpu_ms") for load in ("memory", "file", "file-reserve-only")}
    verdict = "met" if max(own["file"], own["file-reserve-only"]) < GOAL_MS else "NOT met"
    slow = median("file-slow-disk", "max_ms")
    return [
        *lines,
        "",
        f"longest block with FileLedger (the loop's longest step not preempted by the OS): "
        f"{own['file']:.3f} ms with calls (MemoryLedger {own['memory']:.3f} ms), "
        f"{own['file-reserve-only']:.3f} ms with reserve() alone; goal < {GOAL_MS:g} ms: {verdict}",
        f"a MemoryLedger hopping to a thread and back: {own['memory+thread-hop']:.3f} ms",
        f"of which on the CPU at most: {cpu['file']:.3f} ms with calls (MemoryLedger "
        f"{cpu['memory']:.3f} ms), {cpu['file-reserve-only']:.3f} ms with reserve() alone",
        f"heartbeat max, wall clock: FileLedger {median('file', 'max_ms'):.3f} ms, MemoryLedger "
        f"{median('memory', 'max_ms'):.3f} ms, idle loop {median('idle', 'max_ms'):.3f} ms",
        f"slow disk ({SLOW_WRITE * 1e3:g} ms a write, in the worker thread): heartbeat max "
        f"{slow:.3f} ms: {'not' if slow < SLOW_WRITE * 1e3 / 2 else 'MAYBE'} blocked by the disk",
    ]


def main() -> None:
    """Run the rounds (or, with --child, one measurement) and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=1500, help="measured calls per run")
    parser.add_argument("--warmup", type=int, default=200, help="calls before measuring")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per heartbeat run")
    parser.add_argument("--ops", type=int, default=1000, help="operations per alone timing")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of all measurements")
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return

    # A plain kill ends the run as Ctrl-C does: through the finally blocks that stop servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    print(describe_package(), flush=True)
    rounds: list[dict[str, Any]] = []
    with nginx() as port, redis_server() as url:
        print(f"nginx on 127.0.0.1:{port}, redis-server at {url}", flush=True)
        for index in range(args.rounds):
            results = {}
            for spec in round_specs(index, args, port, url):
                name = key(spec)
                results[name] = measure(spec)
                print(
                    f"  round {index + 1}: {name:<28} {progress(name, results[name])}", flush=True
                )
            rounds.append(results)

    lines = [
        "",
        f"ledger benchmark: realtime() on nginx on loopback, pool {IN_FLIGHT}, asyncio, "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}; {args.calls} calls per run "
        f"after {args.warmup} of warm-up, heartbeat runs of {args.seconds:g} s, "
        f"{args.rounds} rounds",
        "",
    ]
    lines += calls_table(rounds, IN_FLIGHT) + calls_table(rounds, 1)
    lines += alone_table(rounds) + heartbeat_table(rounds)
    lines.append(f"(took {time.monotonic() - started:.0f} s)")
    print("\n".join(lines))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted (nginx and redis-server stopped)")
