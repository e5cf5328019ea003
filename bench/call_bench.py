"""Call benchmark: CPU per call of our client against bare httpx and aiohttp, on a loopback nginx.

    python bench/call_bench.py                 # about 80 s; prints a table
    python bench/call_bench.py --repeats 11    # more rounds, steadier medians
    python bench/call_bench.py --modes bare-httpx+url client-httpx   # some modes only

Each measurement runs in a fresh child process (so its CPU time is its own) against nginx
serving the API's sample answers on 127.0.0.1 (../shared/bench/nginx-loopback.sh), on
asyncio, with 10 requests in flight (10 workers sharing one count of calls) and a pool of
10 connections. A child makes ``--warmup`` calls, then measures the CPU time
(``time.process_time``: user + system, all threads) of ``--calls`` more. Modes:

- bare-httpx: ``httpx.AsyncClient`` GET + ``response.json()``, what one writes by hand.
- bare-httpx-over-aiohttp: the same client given our ``AiohttpTransport``: the baseline the
  issue names for ``transport="aiohttp"`` (the client itself hands its requests to the
  transport without an ``httpx.AsyncClient``, so bare-aiohttp is the floor below it).
- bare-aiohttp: ``aiohttp.ClientSession`` GET + ``await response.json()``, for orientation.
- client-httpx: ``WMSPanelClient(...).realtime(slice)`` on the default transport.
- client-aiohttp: the same with ``transport="aiohttp"``.
- bare-httpx+url, bare-httpx-over-aiohttp+url (only with ``--modes``): the bare loops GETting
  an ``httpx.URL`` built once, query and all; a bare loop builds its URL each time, which
  costs tens of µs that a client caching its URLs does not pay.

Every bare mode sends the query the client sends (data_slice, client_id, api_key). The
modes run in interleaved rounds (each round in a rotated order), so that a neighbour's burst
of CPU falls on all of them alike; the table shows each mode's median over the rounds, and
the ratios are medians of the ratios within a round (and, for a second look, the ratios of
the smallest figures, which a neighbour disturbed least).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from loopback import API_KEY, CLIENT_ID, describe_package, nginx

SLICE = "53e03c9978a6fc8596000001"
PARAMS = {"data_slice": SLICE, "client_id": CLIENT_ID, "api_key": API_KEY}
PATH = "/v1/realtime_data"
MODES = (
    "bare-httpx",
    "bare-httpx-over-aiohttp",
    "bare-aiohttp",
    "client-httpx",
    "client-aiohttp",
)
#: Not run unless asked for (--modes): the bare loops with their URL built once.
EXTRA_MODES = ("bare-httpx+url", "bare-httpx-over-aiohttp+url")
IN_FLIGHT = 10
#: The issue's goals: (numerator, denominator, most allowed).
GOALS = (
    ("client-aiohttp", "bare-httpx-over-aiohttp", 1.10),
    ("client-httpx", "bare-httpx", 1.05),
)
#: Our layer's cost on each transport: (client mode, its bare baseline, most allowed in µs).
LAYERS = (
    ("aiohttp", "client-aiohttp", "bare-httpx-over-aiohttp", 35.0),
    ("httpx", "client-httpx", "bare-httpx", None),
    ("aiohttp, against a URL built once", "client-aiohttp", "bare-httpx-over-aiohttp+url", None),
    ("httpx, against a URL built once", "client-httpx", "bare-httpx+url", None),
)

Call = Callable[[], Awaitable[Any]]


def bare_httpx_mode(
    transport: str, *, url_once: bool = False
) -> Callable[[str], contextlib.AbstractAsyncContextManager[Call]]:
    @contextlib.asynccontextmanager
    async def bare_httpx(base_url: str) -> AsyncIterator[Call]:
        import httpx  # noqa: PLC0415 - each child imports only what its mode needs

        if transport == "aiohttp":
            from wmspanel_async._aiohttp import AiohttpTransport  # noqa: PLC0415

            aiohttp_transport = AiohttpTransport(max_connections=IN_FLIGHT)
            http = httpx.AsyncClient(base_url=base_url, transport=aiohttp_transport)
        else:
            limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
            http = httpx.AsyncClient(base_url=base_url, limits=limits)
        async with http:
            if url_once:
                url = httpx.URL(base_url + PATH, params=PARAMS)  # absolute: used as it is

                async def call() -> Any:
                    response = await http.get(url)
                    return response.json()

            else:

                async def call() -> Any:
                    response = await http.get(PATH, params=PARAMS)
                    return response.json()

            yield call

    return bare_httpx


@contextlib.asynccontextmanager
async def bare_aiohttp(base_url: str) -> AsyncIterator[Call]:
    import aiohttp  # noqa: PLC0415

    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    async with aiohttp.ClientSession(base_url, connector=connector) as session:

        async def call() -> Any:
            async with session.get(PATH, params=PARAMS) as response:
                return await response.json()

        yield call


def client_mode(transport: str) -> Callable[[str], contextlib.AbstractAsyncContextManager[Call]]:
    @contextlib.asynccontextmanager
    async def client(base_url: str) -> AsyncIterator[Call]:
        from wmspanel_async import WMSPanelClient  # noqa: PLC0415

        async with WMSPanelClient(
            CLIENT_ID,
            API_KEY,
            base_url=base_url,
            daily_limit=10**9,
            max_connections=IN_FLIGHT,
            transport=transport,  # type: ignore[arg-type]
        ) as api:
            # Identical calls in flight share one request: each call asks for another
            # slice (ids as long as SLICE's), so that each call is one request, as in the
            # bare modes.
            slices = itertools.cycle([f"{number:024x}" for number in range(4 * IN_FLIGHT)])

            async def call() -> Any:
                return await api.realtime(next(slices))

            yield call

    return client


RUNNERS = {
    "bare-httpx": bare_httpx_mode("httpx"),
    "bare-httpx-over-aiohttp": bare_httpx_mode("aiohttp"),
    "bare-httpx+url": bare_httpx_mode("httpx", url_once=True),
    "bare-httpx-over-aiohttp+url": bare_httpx_mode("aiohttp", url_once=True),
    "bare-aiohttp": bare_aiohttp,
    "client-httpx": client_mode("httpx"),
    "client-aiohttp": client_mode("aiohttp"),
}


def connected(answer: Any) -> int:
    """Return the ``connected`` figure of an answer, whichever mode gave it."""
    if isinstance(answer, dict):
        return int(answer["realtime_data"]["connected"])
    return int(answer.connected)


async def run_child(mode: str, port: int, calls: int, warmup: int) -> dict[str, Any]:
    async with RUNNERS[mode](f"http://127.0.0.1:{port}") as call:
        remaining = 0

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await call()

        if connected(await call()) != 1234:
            msg = "nginx did not answer the API's sample"
            raise RuntimeError(msg)
        remaining = warmup
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        remaining = calls
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"mode": mode, "calls": calls, "cpu_us": cpu / calls * 1e6, "per_second": calls / wall}


def measure(mode: str, port: int, calls: int, warmup: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", mode, str(port)]
    command += ["--calls", str(calls), "--warmup", str(warmup)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode:
        sys.exit(f"{mode} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PORT"))
    parser.add_argument("--calls", type=int, default=3000, help="measured calls per run")
    parser.add_argument("--warmup", type=int, default=300, help="calls before measuring")
    parser.add_argument("--repeats", type=int, default=11, help="rounds of all modes")
    parser.add_argument("--modes", nargs="+", choices=MODES + EXTRA_MODES, default=list(MODES))
    args = parser.parse_args()
    if args.child:
        mode, port = args.child
        print(json.dumps(asyncio.run(run_child(mode, int(port), args.calls, args.warmup))))
        return

    started = time.monotonic()
    print(describe_package(), flush=True)
    modes: list[str] = args.modes
    rounds: list[dict[str, dict[str, Any]]] = []
    with nginx() as port:
        for index in range(args.repeats):
            shift = index % len(modes)
            results = {}
            for mode in modes[shift:] + modes[:shift]:
                results[mode] = measure(mode, port, args.calls, args.warmup)
                print(
                    f"  round {index + 1}: {mode:<24} {results[mode]['cpu_us']:7.1f} µs CPU/call,"
                    f" {results[mode]['per_second']:6.0f} calls/s",
                    flush=True,
                )
            rounds.append(results)

    def cpu(mode: str) -> list[float]:
        return [r[mode]["cpu_us"] for r in rounds]

    base = "bare-httpx" if "bare-httpx" in modes else modes[0]
    lines = [
        "",
        f"call benchmark: GET + JSON, {IN_FLIGHT} in flight, pool {IN_FLIGHT}, nginx on "
        f"loopback, asyncio, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        f"{args.calls} calls per run after {args.warmup} of warm-up, {args.repeats} rounds",
        "",
        "| mode | µs CPU / call (median) | min | max | calls/s | vs " + base + " |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mode in modes:
        lines.append(
            f"| {mode} | {statistics.median(cpu(mode)):.1f} | {min(cpu(mode)):.1f} "
            f"| {max(cpu(mode)):.1f} "
            f"| {statistics.median(r[mode]['per_second'] for r in rounds):.0f} "
            f"| {statistics.median(cpu(mode)) / statistics.median(cpu(base)):.2f}x |"
        )
    lines.append("")
    for numerator, denominator, most in GOALS:
        if numerator not in modes or denominator not in modes:
            continue
        ratios = sorted(r[numerator]["cpu_us"] / r[denominator]["cpu_us"] for r in rounds)
        ratio = statistics.median(ratios)
        of_minima = min(cpu(numerator)) / min(cpu(denominator))
        lines.append(
            f"{numerator} / {denominator}: {ratio:.3f}x; goal <= {most:.2f}x: "
            f"{'met' if ratio <= most else 'NOT met'} "
            f"(rounds {', '.join(f'{x:.3f}' for x in ratios)}; of the minima {of_minima:.3f}x)"
        )
    for transport, client, bare, most_us in LAYERS:
        if client not in modes or bare not in modes:
            continue
        costs = sorted(r[client]["cpu_us"] - r[bare]["cpu_us"] for r in rounds)
        cost = statistics.median(costs)
        goal = "" if most_us is None else f"; goal < {most_us:.0f} µs: "
        if most_us is not None:
            goal += "met" if cost < most_us else "NOT met"
        lines.append(
            f"our layer on {transport}: {cost:.1f} µs per call{goal} "
            f"(rounds {', '.join(f'{x:.1f}' for x in costs)}; "
            f"of the minima {min(cpu(client)) - min(cpu(bare)):.1f} µs)"
        )
    lines.append(f"(took {time.monotonic() - started:.0f} s)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
