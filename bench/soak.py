"""Soak test: the poller against a faulty server for minutes, watching for slow leaks.

    python bench/soak.py                  # 10 minutes
    python bench/soak.py --minutes 1      # a quick look
    python -m nox -s soak -- --minutes 30

200 targets are polled (``client.poll()``, 5 s interval, 10 connections) against the
faulty server of the test suite (``tests/faulty_server.py``) on 127.0.0.1, in this process.
Each request is answered healthily, or (30 % of them) with a fault of the fault matrix
picked at random: resets, stalls, a trickle, short and oversize bodies, HTML, wrong types,
deep nesting, redirects, 5xx, 429 with assorted Retry-After, 403, 404 and servers that
echo the request (API key included). The consumer is sometimes slow: now and then it waits
up to one and a half intervals before taking the next snapshot.

Every 10 s it samples the process's resident memory (VmRSS), open file descriptors and
running tasks, and the poller's counters. At the end it checks that:

- after the warm-up, memory, descriptors and tasks show no growth trend beyond a small
  tolerance (least-squares slope over the run, times its length);
- once the poller, the client and the server are closed, descriptors and tasks are back
  to what they were before anything started;
- the poller's accounting adds up: polls + skipped ticks is the number of ticks due for
  every target over the run, within one tick per target (and the requests in flight);
- no snapshot carried anything but a model or a ``WMSPanelError``, the poller never failed,
  the redirect target saw no request, and no log record (any logger, DEBUG) nor error
  text held a piece of the API key.

It prints the samples as a table and a one-line verdict, and exits non-zero on failure.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import logging
import random
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import anyio
import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from faulty_server import (  # the test-support module lives in tests/
    Behaviour,
    Exchange,
    answer,
    close_unanswered,
    echo_in_json_message,
    echo_in_mistyped_field,
    echo_in_text_body,
    echo_reason,
    faulty_server,
    garbage_status_line,
    healthy,
    html,
    http_date,
    open_fds,
    oversize,
    rate_limited,
    redirect,
    reset_mid_body,
    reset_mid_headers,
    rotating_5xx,
    running_tasks,
    secret_fragment,
    settle,
    short_body,
    stall_after_headers,
    stall_before_headers,
    trickle,
    wrong_types,
)

from wmspanel_async import (
    RealtimeStats,
    Snapshot,
    Target,
    WMSPanelClient,
    WMSPanelError,
)

CLIENT_ID = "00000000-1111-2222-3333-444444444444"
API_KEY = "0123456789abcdef0123456789abcdef"
MIB = 1024 * 1024
DEEP = b'{"status": "Ok", "realtime_data": ' + b"[" * 1000 + b"]" * 1000 + b"}"


def faults(bystander: str) -> list[tuple[str, Behaviour, float]]:
    """The fault matrix, by name, with how often each is picked relative to the others."""
    past = http_date(dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
    return [
        ("reset-mid-headers", reset_mid_headers, 2),
        ("reset-mid-body", reset_mid_body, 2),
        ("closed-unanswered", close_unanswered, 2),
        ("garbage-status-line", garbage_status_line, 1),
        ("short-body", short_body, 2),
        ("stall-before-headers", stall_before_headers, 1),
        ("stall-after-headers", stall_after_headers, 1),
        ("trickle", trickle(every=0.01), 1),
        ("html", html, 2),
        ("wrong-types", wrong_types, 2),
        ("oversize-declared", oversize(declared=True), 0.5),
        ("oversize-chunked", oversize(declared=False), 0.5),
        ("deep-nesting", answer(200, DEEP), 1),
        ("redirect", redirect(302, bystander), 1),
        ("5xx-retry-after-0", rotating_5xx(), 2),
        ("5xx", rotating_5xx(retry_after=None), 2),
        ("429-1s", rate_limited("1"), 1),
        ("429-past-date", rate_limited(past), 0.5),
        ("429-garbage", rate_limited("soon"), 0.5),
        ("429-empty", rate_limited(""), 0.5),
        ("403", answer(403, "Forbidden"), 1),
        ("404", answer(404, "Not Found"), 1),
        ("reason-echo-503", echo_reason(503), 1),
        ("echo-in-json-message", echo_in_json_message, 1),
        ("echo-in-text-body", echo_in_text_body, 1),
        ("echo-in-mistyped-field", echo_in_mistyped_field, 1),
    ]


def picking(
    table: list[tuple[str, Behaviour, float]],
    rate: float,
    rng: random.Random,
    served: collections.Counter[str],
) -> Behaviour:
    """Answer healthily, or with probability ``rate`` with a fault of ``table`` by weight."""
    names = [name for name, _, _ in table]
    behaviours = {name: behaviour for name, behaviour, _ in table}
    weights = [weight for _, _, weight in table]

    async def behaviour(exchange: Exchange) -> None:
        name = "healthy" if rng.random() >= rate else rng.choices(names, weights)[0]
        served[name] += 1
        await (healthy if name == "healthy" else behaviours[name])(exchange)

    return behaviour


class KeyWatch(logging.Handler):
    """Counts log records (of any logger, DEBUG up) that hold a piece of the API key."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records = 0
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        if secret_fragment(text, API_KEY) is not None and len(self.leaks) < 5:
            self.leaks.append(f"{record.name}: {text[:300]}")


def rss_mib() -> float:
    """This process's resident memory, in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@attrs.frozen
class Sample:
    t: float
    rss: float
    fds: int
    tasks: int
    polls: int
    skipped: int
    snapshots: int
    errors: int


@attrs.define
class Run:
    """What one soak run saw."""

    samples: list[Sample] = attrs.Factory(list)
    served: collections.Counter[str] = attrs.Factory(collections.Counter)
    errors: collections.Counter[str] = attrs.Factory(collections.Counter)
    odd_snapshots: list[str] = attrs.Factory(list)
    slow_pauses: int = 0
    elapsed: float = 0.0
    stats: Any = None
    fatal: BaseException | None = None
    bystander_requests: int = 0
    baseline: tracemalloc.Snapshot | None = None
    growth: list[str] = attrs.Factory(list)
    before: tuple[int, int] = (0, 0)
    after: tuple[int, int] = (0, 0)


def check_snapshot(snapshot: Snapshot, run: Run) -> None:
    """Count a snapshot's outcome; note any that is neither figures nor one of our errors."""
    if snapshot.error is None:
        if not isinstance(snapshot.stats, RealtimeStats) and len(run.odd_snapshots) < 5:
            run.odd_snapshots.append(f"no error and no figures: {snapshot!r:.200}")
        return
    error: object = snapshot.error  # typed as ours; checked, since that is the point
    run.errors[type(error).__name__] += 1
    if not isinstance(error, WMSPanelError) and len(run.odd_snapshots) < 5:
        run.odd_snapshots.append(f"not a WMSPanelError: {error!r:.200}")
    elif secret_fragment(str(error), API_KEY) and len(run.odd_snapshots) < 5:
        run.odd_snapshots.append(f"key in the error: {error!r:.200}")


async def soak(args: argparse.Namespace) -> Run:
    """Poll through the faulty server for ``args.minutes``; return what was seen."""
    rng = random.Random(args.seed)  # a reproducible mix
    run = Run()
    run.before = (open_fds(), running_tasks())
    targets = [Target(f"{index:024x}") for index in range(args.targets)]
    duration = args.minutes * 60.0
    warmup = warmup_seconds(args)
    async with faulty_server(healthy) as bystander:
        table = faults(bystander.url)
        faulty = picking(table, args.fault_rate, rng, run.served)
        async with faulty_server(faulty, record=False) as server:
            client = WMSPanelClient(
                CLIENT_ID,
                API_KEY,
                base_url=server.url,
                timeout=args.timeout,
                daily_limit=10**9,
                max_connections=args.connections,
            )
            async with client:
                stream = client.poll(targets, interval=args.interval, raise_on_auth_error=False)
                try:
                    async with stream as snapshots:
                        start = anyio.current_time()

                        def sample() -> None:
                            stats = snapshots.stats
                            run.samples.append(
                                Sample(
                                    t=anyio.current_time() - start,
                                    rss=rss_mib(),
                                    fds=open_fds(),
                                    tasks=running_tasks(),
                                    polls=stats.polls,
                                    skipped=stats.skipped,
                                    snapshots=stats.snapshots,
                                    errors=sum(stats.errors.values()),
                                )
                            )

                        async def sampler() -> None:
                            due = start
                            while True:
                                sample()
                                tracing = tracemalloc.is_tracing()
                                if tracing and run.baseline is None and due - start >= warmup:
                                    run.baseline = traced()
                                due += args.sample_every
                                await anyio.sleep_until(due)

                        async with anyio.create_task_group() as task_group:
                            task_group.start_soon(sampler)
                            with anyio.move_on_after(duration):
                                async for snapshot in snapshots:
                                    check_snapshot(snapshot, run)
                                    if rng.random() < args.slow_rate:
                                        run.slow_pauses += 1
                                        await anyio.sleep(rng.uniform(0.5, 1.5 * args.interval))
                            run.stats = snapshots.stats
                            run.elapsed = anyio.current_time() - start
                            sample()
                            if run.baseline is not None:
                                run.growth = top_growth(run.baseline)
                            task_group.cancel_scope.cancel()
                except Exception as exc:  # the poller failed: that is the finding
                    run.fatal = exc
        run.bystander_requests = bystander.request_count
    run.after = (
        await settle(open_fds, run.before[0]),
        await settle(running_tasks, run.before[1]),
    )
    return run


def warmup_seconds(args: argparse.Namespace) -> float:
    """Seconds from the start whose samples are not held against the run."""
    minutes: float = args.minutes
    return min(60.0, 0.25 * minutes * 60.0)


def traced() -> tracemalloc.Snapshot:
    """The allocations traced now, tracemalloc's own left out."""
    return tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(inclusive=False, filename_pattern=tracemalloc.__file__)]
    )


def top_growth(baseline: tracemalloc.Snapshot, limit: int = 10) -> list[str]:
    """The source lines whose allocations grew most since ``baseline``."""
    differences = traced().compare_to(baseline, "lineno")
    return [str(difference) for difference in differences[:limit]]


def trend(points: list[tuple[float, float]]) -> float:
    """Growth over the span of ``points`` along their least-squares line."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return 0.0
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / spread
    return slope * (points[-1][0] - points[0][0])


def verdict(run: Run, args: argparse.Namespace, watch: KeyWatch) -> tuple[bool, list[str]]:
    """Check the run; return whether it passed and the figures (or failures) to show."""
    failures: list[str] = []
    figures: list[str] = []
    if run.fatal is not None:
        failures.append(f"the poller failed: {run.fatal!r:.300}")
    warmup = warmup_seconds(args)
    settled = [sample for sample in run.samples if sample.t >= warmup]
    slack = 2 * args.connections + 4  # connections in flight, each end in this process
    limits = {"rss": max(8.0, 0.05 * (settled[0].rss if settled else 0.0)), "fds": slack}
    limits["tasks"] = slack
    for metric, limit in limits.items():
        growth = trend([(sample.t, float(getattr(sample, metric))) for sample in settled])
        unit = " MiB" if metric == "rss" else ""
        figures.append(f"{metric} {growth:+.1f}{unit}")
        if growth > limit:
            failures.append(f"{metric} grew {growth:+.1f}{unit} after warm-up (limit {limit:g})")
    (fds_before, tasks_before), (fds_after, tasks_after) = run.before, run.after
    if fds_after > fds_before or tasks_after > tasks_before:
        failures.append(
            f"left behind after closing: fds {fds_before} -> {fds_after}, "
            f"tasks {tasks_before} -> {tasks_after}"
        )
    stats = run.stats
    if stats is not None:
        due = args.targets * run.elapsed / args.interval
        counted = stats.polls + stats.skipped
        tolerance = args.targets + args.connections
        figures.append(f"ticks {counted} of {due:.0f} due")
        if abs(counted - due) > tolerance:
            failures.append(
                f"polls + skipped = {counted}, but {due:.0f} ticks were due (±{tolerance})"
            )
        if stats.effective_interval != args.interval:
            failures.append(f"the interval was stretched to {stats.effective_interval:g} s")
    elif run.fatal is None:
        failures.append("no statistics were taken")
    if run.odd_snapshots:
        failures.append("odd snapshots: " + "; ".join(run.odd_snapshots))
    if run.bystander_requests:
        failures.append(f"a redirect was followed: {run.bystander_requests} requests elsewhere")
    if watch.leaks:
        failures.append("key in log records: " + " | ".join(watch.leaks))
    return not failures, failures or figures


def report(run: Run, args: argparse.Namespace, watch: KeyWatch) -> bool:
    print(
        f"\nsoak: {run.elapsed:.0f} s, {args.targets} targets every {args.interval:g} s, "
        f"{args.fault_rate:.0%} faults, {args.connections} connections, timeout "
        f"{args.timeout:g} s, {args.backend}, seed {args.seed}"
    )
    header = (
        f"{'t (s)':>7} {'RSS (MiB)':>10} {'fds':>5} {'tasks':>6} {'polls':>8} {'skipped':>8} "
        f"{'snapshots':>10} {'errors':>7}"
    )
    print(header)
    print("-" * len(header))
    for sample in run.samples:
        print(
            f"{sample.t:7.1f} {sample.rss:10.1f} {sample.fds:5d} {sample.tasks:6d} "
            f"{sample.polls:8d} {sample.skipped:8d} {sample.snapshots:10d} {sample.errors:7d}"
        )
    print(f"before / after closing: fds {run.before[0]} / {run.after[0]}, ", end="")
    print(f"tasks {run.before[1]} / {run.after[1]}")
    stats = run.stats
    if stats is not None:
        due = args.targets * run.elapsed / args.interval
        print(
            f"ticks due {due:.0f}; polls {stats.polls} + skipped {stats.skipped} = "
            f"{stats.polls + stats.skipped} (busy {stats.skipped_busy}, slow consumer "
            f"{stats.skipped_slow_consumer}, backoff {stats.skipped_backoff}, quota "
            f"{stats.skipped_quota}); snapshots {stats.snapshots}; lateness p50 "
            f"{stats.lateness_p50 * 1000:.1f} ms, p99 {stats.lateness_p99 * 1000:.1f} ms"
        )
    print(f"slow-consumer pauses {run.slow_pauses}; log records checked {watch.records}")
    print("errors: " + ", ".join(f"{k} {v}" for k, v in sorted(run.errors.items())))
    print("served: " + ", ".join(f"{k} {v}" for k, v in run.served.most_common()))
    if run.growth:
        print("allocations grown most since the warm-up (tracemalloc):")
        for line in run.growth:
            print(f"  {line}")
    passed, lines = verdict(run, args, watch)
    print(("PASS: " if passed else "FAIL: ") + "; ".join(lines))
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between polls")
    parser.add_argument("--fault-rate", type=float, default=0.3, help="share of faulty answers")
    parser.add_argument("--slow-rate", type=float, default=0.001, help="share of slow takes")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per attempt")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="trace allocations (slower) and show the lines that grew most after warm-up",
    )
    args = parser.parse_args(argv)

    watch = KeyWatch()
    root = logging.getLogger()
    root.addHandler(watch)
    root.setLevel(logging.DEBUG)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    # Let the poller's and the client's warnings be counted, not printed 10,000 times.
    logging.lastResort = None
    if args.tracemalloc:
        tracemalloc.start()
    try:
        run = anyio.run(soak, args, backend=args.backend)
    finally:
        root.removeHandler(watch)
    return 0 if report(run, args, watch) else 1


if __name__ == "__main__":
    sys.exit(main())
