"""How long one scrape of the exporter takes with 1,000 targets of 20 countries each.

    python bench/exporter_bench.py                 # 1,000 targets, 21 scrapes: medians
    python bench/exporter_bench.py --targets 5000 --repeats 11

A keep_fresh() poller over an in-process fake API (every target answers 20 countries)
polls each target once; then each way of writing one scrape is timed, in a row, and the
median, minimum and maximum of each printed:

- ``exposition()``: what the exporter serves, read from the poller and written as text;
- the same, gzipped as the exporter sends it to Prometheus;
- ``collect()`` alone, and with prometheus_client's encoders (text format 0.0.4, and
  OpenMetrics): what a registry of yours does with the collector.

The goal: under 100 ms a scrape.

    python bench/exporter_bench.py --targets 100 --concurrent 50 --repeats 20

serves the exporter (``serve_exporter``, as the command does) on a loopback port instead,
and times 20 rounds of 50 scrapes at once over HTTP, gzipped as Prometheus asks: the
median, p99 and maximum of each scrape's answer time, as one Prometheus server among
many sees it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from collections.abc import Callable

import anyio
import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

import wmspanel_async
from wmspanel_async import FreshSnapshots, Target, WMSPanelClient
from wmspanel_async._exporter import serve_exporter
from wmspanel_async.prometheus import WMSPanelCollector

COUNTRIES = [f"{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(20)]
BODY = json.dumps(
    {
        "status": "Ok",
        "realtime_data": {
            "connected": 123_456,
            "bandwidth": 987_654_321,
            "geo": [[country, 1000 - index] for index, country in enumerate(COUNTRIES)],
        },
    }
).encode()


def answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=BODY, headers={"content-type": "application/json"})


def timed(repeats: int, build: Callable[[], object]) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        build()
        times.append(time.perf_counter() - started)
    return times


async def scrape_concurrently(fresh: FreshSnapshots, concurrent: int, rounds: int) -> list[float]:
    """Return the answer times of ``rounds`` rounds of ``concurrent`` scrapes at once."""
    times: list[float] = []
    async with serve_exporter(fresh, host="127.0.0.1", port=0) as (host, port):
        limits = httpx.Limits(max_connections=concurrent)
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", limits=limits) as http:

            async def one() -> None:
                started = time.perf_counter()
                answer = await http.get("/metrics", headers={"accept-encoding": "gzip"})
                assert answer.status_code == 200
                times.append(time.perf_counter() - started)

            for _ in range(rounds):
                async with anyio.create_task_group() as task_group:
                    for _ in range(concurrent):
                        task_group.start_soon(one)
    return times


async def main(targets_count: int, repeats: int, concurrent: int) -> None:
    targets = [Target(f"{i:024x}", stream=f"{i:024x}") for i in range(targets_count)]
    client = WMSPanelClient(
        "bench",
        "0" * 32,
        transport=httpx.MockTransport(answer),
        daily_limit=10**12,
        max_connections=50,
    )
    async with (
        client,
        client.keep_fresh(targets, interval=2.0, concurrency=50, max_targets=None) as fresh,
    ):
        for target in targets:
            await fresh.wait(target)
        if concurrent:
            times = sorted(await scrape_concurrently(fresh, concurrent, repeats))
            ms = [t * 1000 for t in times]
            p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
            print(f"wmspanel_async from {wmspanel_async.__file__}, Python {sys.version.split()[0]}")
            print(
                f"{targets_count} targets, {repeats} rounds of {concurrent} scrapes at once: "
                f"median {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms"
            )
            return
        names = {target.data_slice: f"slice {index}" for index, target in enumerate(targets)}
        collector = WMSPanelCollector(fresh, slice_names=names)
        registry = CollectorRegistry()
        registry.register(collector)
        text = collector.exposition()
        zipped = gzip.compress(text.encode(), compresslevel=1)
        modes = {
            "exposition() (what the exporter serves)": collector.exposition,
            "exposition() + gzip, as served": lambda: gzip.compress(
                collector.exposition().encode(), compresslevel=1
            ),
            "collect() alone": lambda: list(collector.collect()),
            "collect() + prometheus_client 0.0.4": lambda: generate_latest(registry),
            "collect() + prometheus_client OpenMetrics": lambda: generate_openmetrics(registry),
        }
        results = {name: timed(repeats, build) for name, build in modes.items()}

    samples = sum(1 for line in text.splitlines() if not line.startswith("#"))
    print(f"wmspanel_async from {wmspanel_async.__file__}, Python {sys.version.split()[0]}")
    print(
        f"{targets_count} targets x {len(COUNTRIES)} countries: {samples:,} samples, "
        f"{len(text):,} bytes ({len(zipped):,} gzipped); {repeats} scrapes each"
    )
    print(f"{'':<44}{'median ms':>10}{'min':>8}{'max':>8}")
    for name, times in results.items():
        ms = [t * 1000 for t in times]
        print(f"{name:<44}{statistics.median(ms):>10.1f}{min(ms):>8.1f}{max(ms):>8.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--concurrent", type=int, default=0, help="scrapes at once, over HTTP")
    options = parser.parse_args()
    anyio.run(main, options.targets, options.repeats, options.concurrent)
