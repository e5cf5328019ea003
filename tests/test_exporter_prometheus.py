"""The exporter with the real Prometheus tools: promtool's checks, and a Prometheus server.

Debian's ``prometheus`` package provides both (``.ci/run`` installs it). Without them these
tests skip, unless the ``CI`` variable is set: there a missing tool is a failure.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx
import pytest
from redis_support import free_port
from support import CLI_EXTRA, environment, python_command

from wmspanel_async import RealtimeStats, Target, WMSPanelClient
from wmspanel_async._exporter import serve_exporter
from wmspanel_async.prometheus import WMSPanelCollector
from wmspanel_async.testing import Account, Simulator

EXAMPLES = Path(__file__).parent.parent / "docs" / "examples"
FROZEN = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.timezone.utc)
#: Seconds to wait for Prometheus to start, and for it to have scraped what a test needs.
DEADLINE = 20.0


def tool(name: str) -> str:
    """Return the path of a Prometheus tool; skip without it, or fail when CI is set."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def frozen_simulator() -> Simulator:
    """The demo account without latency, its figures those of one moment."""
    return Simulator([Account.generate(0, daily_limit=10**6)], clock=lambda: FROZEN)


def sample_targets(simulator: Simulator) -> list[Target]:
    """A slice, a stream of it and a server of it."""
    account = simulator.account
    whole = account.slices[0].id
    return [
        Target(whole),
        Target(whole, stream=account.streams[1].id),
        Target(whole, server=account.servers[2].id),
    ]


# -- promtool ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_promtool_accepts_the_exposition() -> None:
    """promtool check metrics finds nothing to say about a scrape of real figures."""
    promtool = tool("promtool")
    simulator = frozen_simulator()
    targets = sample_targets(simulator)
    names = {s.id: f'{s.name} "quoted"\\ and\nnewline' for s in simulator.account.slices}
    async with (
        simulator.client(daily_limit=10**6) as client,
        client.keep_fresh(targets, interval=0.5) as fresh,
        anyio.create_task_group() as task_group,
    ):
        collector = WMSPanelCollector(fresh, slice_names=names)
        await task_group.start(collector.run)
        for target in targets:
            await fresh.wait(target)
        text = collector.exposition()
        task_group.cancel_scope.cancel()
    checked = await anyio.run_process(
        [promtool, "check", "metrics"], input=text.encode(), check=False
    )
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, b"", b"")
    assert "wmspanel_country_connected{" in text


def test_the_example_alert_rules_pass_promtool() -> None:
    """docs/examples/alerts.yml is valid, and its unit tests pass."""
    promtool = tool("promtool")
    for command in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        checked = subprocess.run(  # noqa: S603 - promtool on our example files
            [promtool, *command], cwd=EXAMPLES, capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "SUCCESS" in checked.stdout


# -- a Prometheus server -------------------------------------------------------------------


@attrs.frozen
class Prometheus:
    """A Prometheus server on loopback that scrapes ``exporter_port`` every second."""

    url: str
    exporter_port: int


@contextlib.contextmanager
def running_prometheus(home: Path, exporter_port: int) -> Iterator[Prometheus]:
    """Run Prometheus in ``home``, scraping ``exporter_port``, until the block ends."""
    binary = tool("prometheus")
    port = free_port()
    config = home / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: wmspanel\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{exporter_port}']\n"
    )
    log = (home / "prometheus.log").open("w")
    process = subprocess.Popen(  # noqa: S603 - Debian's prometheus, on our temporary files
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            assert process.poll() is None, (home / "prometheus.log").read_text()
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "Prometheus did not start in time"
            time.sleep(0.1)  # bounded polling, with the deadline above
        yield Prometheus(url, exporter_port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Start Prometheus in a temporary directory; stop it after the module's tests."""
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), free_port()) as server:
        yield server


async def query(http: httpx.AsyncClient, promql: str) -> list[dict[str, Any]]:
    """Run a PromQL query over Prometheus's HTTP API; return its result."""
    answer = await http.get("/api/v1/query", params={"query": promql})
    answer.raise_for_status()
    body = answer.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def scraped_since(http: httpx.AsyncClient, series: str, since: float) -> list[float]:
    """Wait until Prometheus has samples of ``series`` scraped after ``since``; return them."""
    with anyio.fail_after(DEADLINE):
        while True:
            found = await query(http, f"{series}[10s]")
            values = [float(v) for row in found for t, v in row["values"] if t >= since]
            if values:
                return values
            await anyio.sleep(0.2)  # Prometheus scrapes every second


def selector(target: Target) -> str:
    # An empty label value is no label at all for Prometheus: {stream=""} matches that.
    return (
        f'{{data_slice="{target.data_slice}",stream="{target.stream or ""}",'
        f'server="{target.server or ""}"}}'
    )


@pytest.mark.anyio
async def test_prometheus_scrapes_the_simulators_figures(prometheus: Prometheus) -> None:
    """PromQL returns the simulator's figures of a slice, a stream and a server."""
    simulator = frozen_simulator()
    targets = sample_targets(simulator)
    names = {data_slice.id: data_slice.name for data_slice in simulator.account.slices}
    answers: dict[Target, RealtimeStats] = {}
    async with (
        simulator.client(daily_limit=10**6) as client,
        client.keep_fresh(targets, interval=0.5) as fresh,
        httpx.AsyncClient(base_url=prometheus.url, timeout=5) as http,
    ):
        for target in targets:
            await fresh.wait(target)
            answers[target] = await client.realtime(
                target.data_slice, stream=target.stream, server=target.server
            )
        since = time.time()
        async with serve_exporter(
            fresh, host="127.0.0.1", port=prometheus.exporter_port, slice_names=names
        ):
            for target, figures in answers.items():
                connected = await scraped_since(
                    http, f"wmspanel_connected{selector(target)}", since
                )
                assert set(connected) == {figures.connected}
                bandwidth = await scraped_since(
                    http, f"wmspanel_bandwidth_bytes_per_second{selector(target)}", since
                )
                assert set(bandwidth) == {figures.bandwidth / 8}
                top = figures.geo[0]
                country = await scraped_since(
                    http,
                    f'wmspanel_country_connected{selector(target)[:-1]},country="{top.country}"}}',
                    since,
                )
                assert set(country) == {top.connected}
            named = await query(
                http,
                f"wmspanel_connected{selector(targets[0])}"
                " * on (data_slice) group_left (name) wmspanel_data_slice_info",
            )
    assert [row["metric"]["name"] for row in named] == [simulator.account.slices[0].name]
    assert named[0]["metric"]["job"] == "wmspanel"


# -- the Grafana dashboard -----------------------------------------------------------------

DASHBOARD = EXAMPLES / "grafana-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: What Grafana puts for its interval variables; a minute holds many 1 s scrapes.
INTERVALS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1m"}


def dashboard_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard, those in rows (collapsed ones hold theirs) included."""
    for panel in panels:
        yield panel
        yield from dashboard_panels(panel.get("panels", []))


def fill_in(expr: str, slice_regex: str) -> str:
    """``expr`` as Grafana sends it, with ``$slice`` set to ``slice_regex``."""
    for name, value in INTERVALS.items():
        expr = expr.replace(name, value)
    expr = expr.replace("${slice}", slice_regex).replace("$slice", slice_regex)
    assert "$" not in expr, f"a variable the test does not fill in: {expr}"
    return expr


def grafana_escape(value: str) -> str:
    """``value`` in a regex of a multi-value variable, as Grafana's Prometheus source puts it."""
    return re.sub(r"([\\^$*+?.()|{}\[\]])", r"\\\\\1", value)


def test_the_dashboard_has_its_variables_and_every_panel_its_data_source() -> None:
    """The datasource and slice variables are there, and every query uses ${datasource}."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["slice"]["type"] == "query"
    assert variables["slice"]["datasource"] == DATASOURCE
    assert variables["slice"]["query"] == "label_values(wmspanel_data_slice_info, name)"
    panels = [p for p in dashboard_panels(dashboard["panels"]) if p["type"] != "row"]
    assert len({panel["id"] for panel in dashboard_panels(dashboard["panels"])}) == len(
        list(dashboard_panels(dashboard["panels"]))
    )
    for panel in panels:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    exprs = [target["expr"] for panel in panels for target in panel["targets"]]
    assert sum("$slice" in expr for expr in exprs) >= 6


@pytest.fixture
def demo_prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    """A Prometheus of its own scraping ``exporter --demo --each-server`` every second."""
    if not CLI_EXTRA:
        pytest.skip("the command line is what the cli extra adds")
    exporter_port = free_port()
    with running_prometheus(tmp_path, exporter_port) as server:
        process = subprocess.Popen(  # noqa: S603 - our own command
            [
                *python_command(measured=False),
                *("-m", "wmspanel_async.cli", "exporter", "--demo", "--each-server"),
                *("--listen", f"127.0.0.1:{exporter_port}"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
        )
        try:
            yield server
        finally:
            process.terminate()
            _, stderr = process.communicate(timeout=DEADLINE)
            assert process.returncode == 0, stderr


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # only the test's HTTP client runs on it
async def test_every_dashboard_query_returns_series_from_the_demo(
    demo_prometheus: Prometheus,
) -> None:
    """Each panel's query, its variables filled in as Grafana would, has series in Prometheus.

    The slice variable takes one slice, two of them, and "All"; the options Grafana would
    offer for it come from Prometheus's label values API.
    """
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = sorted(
        {
            target["expr"]
            for panel in dashboard_panels(dashboard["panels"])
            for target in panel.get("targets", [])
        }
    )
    async with httpx.AsyncClient(base_url=demo_prometheus.url, timeout=5) as http:
        with anyio.fail_after(DEADLINE):
            while True:  # the slice variable's options, once the exporter has been scraped
                answer = await http.get(
                    "/api/v1/label/name/values", params={"match[]": "wmspanel_data_slice_info"}
                )
                answer.raise_for_status()
                names = answer.json()["data"]
                if names:
                    break
                await anyio.sleep(0.2)  # Prometheus scrapes every second
        assert "All streams" in names  # the demo's first slice, with its streams
        choices = ["All streams", f"({'|'.join(map(grafana_escape, names[:2]))})", ".*"]
        queries = [fill_in(expr, choice) for expr in exprs for choice in choices]
        empty: list[str] = queries
        with contextlib.suppress(TimeoutError), anyio.fail_after(DEADLINE):
            while empty:  # rate() needs two scrapes, and per-server figures a second poll
                empty = [promql for promql in empty if not await query(http, promql)]
                if empty:
                    await anyio.sleep(0.5)
        assert empty == [], "no series in time"


@pytest.mark.anyio
async def test_odd_country_values_come_out_escaped_and_pass_promtool() -> None:
    """Countries the API sends as ``"``, ``a"b`` or with a newline: escaped, promtool-clean.

    A slice named ``"`` alone (no backslash) too.
    """
    promtool = tool("promtool")
    odd = ['"', 'a"b', "x\ny"]
    body = {
        "status": "Ok",
        "realtime_data": {"connected": 3, "bandwidth": 8, "geo": [[c, 1] for c in odd]},
    }
    target = Target("0" * 24)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body)

    async with (
        WMSPanelClient("id", "k" * 32, transport=httpx.MockTransport(answer)) as client,
        client.keep_fresh([target], interval=10.0) as fresh,
    ):
        snapshot = await fresh.wait(target)
        text = WMSPanelCollector(fresh, slice_names={target.data_slice: '"'}).exposition()
    assert snapshot.stats is not None
    assert [entry.country for entry in snapshot.stats.geo] == odd
    for escaped in (r'country="\""', r'country="a\"b"', r'country="x\ny"'):
        assert f"wmspanel_country_connected{{{escaped}," in text
    assert r'name="\""' in text
    checked = await anyio.run_process(
        [promtool, "check", "metrics"], input=text.encode(), check=False
    )
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, b"", b"")
