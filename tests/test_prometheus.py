"""``wmspanel_async.prometheus``: the collector and the /metrics app, over a real keep_fresh().

Every test runs on asyncio and trio, on a virtual clock, against the in-process simulator
with its figures frozen at one moment, so that what a scrape shows can be compared with
what the simulator answers.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support import VirtualUTC

import wmspanel_async._prometheus
from wmspanel_async import Target
from wmspanel_async._metrics import POLL_ERRORS
from wmspanel_async.prometheus import POLL_DURATION_BUCKETS, WMSPanelCollector, metrics_app
from wmspanel_async.testing import Account, Fault, Simulator

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

INTERVAL = 10.0
FROZEN = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.timezone.utc)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def frozen_simulator() -> Simulator:
    """A simulator whose figures stay those of one moment, with calls to spare."""
    return Simulator([Account.generate(0, daily_limit=10**6)], clock=lambda: FROZEN)


def samples(text: str) -> Samples:
    """Every sample of an exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def key(metric: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (metric, tuple(sorted(labels.items())))


def labels_of(target: Target) -> dict[str, str]:
    return {
        "data_slice": target.data_slice,
        "stream": target.stream or "",
        "server": target.server or "",
    }


def of_target(found: Samples, target: Target) -> Samples:
    """The samples whose labels name ``target``."""
    wanted = labels_of(target)
    return {
        sample: value
        for sample, value in found.items()
        if {name: dict(sample[1]).get(name) for name in wanted} == wanted
    }


def sample_targets(simulator: Simulator) -> list[Target]:
    """A whole slice, one of its streams, one of its servers, and that stream on that server."""
    account = simulator.account
    whole, stream, server = account.slices[0].id, account.streams[1].id, account.servers[2].id
    return [
        Target(whole),
        Target(whole, stream=stream),
        Target(whole, server=server),
        Target(whole, stream=stream, server=server),
    ]


async def test_a_scrape_shows_the_simulators_figures_of_each_target() -> None:
    """Connected, bandwidth in bytes, the 20 countries, up, age and time of each target."""
    simulator = frozen_simulator()
    targets = sample_targets(simulator)
    names = {data_slice.id: data_slice.name for data_slice in simulator.account.slices}
    async with (
        simulator.client(daily_limit=10**6) as client,
        client.keep_fresh(targets, interval=INTERVAL) as fresh,
    ):
        polled = {target: await fresh.wait(target) for target in targets}
        newest = max(snapshot.fetched_at for snapshot in polled.values())
        collector = WMSPanelCollector(
            fresh, slice_names=names, clock=lambda: newest + dt.timedelta(seconds=5)
        )
        found = samples(collector.exposition())
        answers = {
            target: await client.realtime(
                target.data_slice, stream=target.stream, server=target.server
            )
            for target in targets
        }

    for target, figures in answers.items():
        labels = labels_of(target)
        fetched_at = polled[target].fetched_at
        assert found[key("wmspanel_up", **labels)] == 1
        assert found[key("wmspanel_connected", **labels)] == figures.connected > 0
        bandwidth = found[key("wmspanel_bandwidth_bytes_per_second", **labels)]
        assert bandwidth == figures.bandwidth / 8
        age = found[key("wmspanel_figures_age_seconds", **labels)]
        assert age == pytest.approx(5 + (newest - fetched_at).total_seconds())
        last = found[key("wmspanel_last_success_timestamp_seconds", **labels)]
        assert last == pytest.approx(fetched_at.timestamp())
        countries = {
            dict(sample[1])["country"]: value
            for sample, value in of_target(found, target).items()
            if sample[0] == "wmspanel_country_connected"
        }
        assert countries == {entry.country: entry.connected for entry in figures.geo}
        assert len(countries) == 20
        assert len(of_target(found, target)) == 5 + 20  # nothing else names the target
    for slice_id, name in names.items():
        assert found[key("wmspanel_data_slice_info", data_slice=slice_id, name=name)] == 1


async def test_a_target_no_longer_watched_has_no_series_at_the_next_scrape() -> None:
    """unwatch() drops every series of the target at the next scrape; the others stay."""
    simulator = frozen_simulator()
    kept, dropped = sample_targets(simulator)[:2]
    async with (
        simulator.client(daily_limit=10**6) as client,
        client.keep_fresh([kept], interval=INTERVAL) as fresh,
    ):
        collector = WMSPanelCollector(fresh, clock=lambda: FROZEN)
        fresh.watch(dropped)
        await fresh.wait(kept)
        await fresh.wait(dropped)
        before = samples(collector.exposition())
        fresh.unwatch(dropped)
        after = samples(collector.exposition())
    assert len(of_target(before, dropped)) == 25
    assert of_target(after, dropped) == {}
    assert of_target(after, kept) == of_target(before, kept)
    assert before[key("wmspanel_targets")] == 2
    assert after[key("wmspanel_targets")] == 1


async def test_a_failed_poll_is_up_0_with_the_last_figures_kept_and_the_error_counted() -> None:
    """The figures of the last success stay, with their age; the error class is counted."""
    simulator = frozen_simulator()
    failing, healthy = sample_targets(simulator)[:2]
    async with (
        simulator.client(daily_limit=10**6) as client,
        client.keep_fresh([failing, healthy], interval=INTERVAL) as fresh,
    ):
        collector = WMSPanelCollector(fresh)
        first = await fresh.wait(failing)
        simulator.inject(Fault.http_status(503), target=failing)
        failed = await fresh.wait(failing, newer_than=first)
        found = samples(collector.exposition())
    assert type(failed.error).__name__ == "ServerError"
    labels = labels_of(failing)
    assert found[key("wmspanel_up", **labels)] == 0
    assert first.stats is not None
    assert found[key("wmspanel_connected", **labels)] == first.stats.connected
    last = found[key("wmspanel_last_success_timestamp_seconds", **labels)]
    assert last == pytest.approx(first.fetched_at.timestamp())
    assert found[key("wmspanel_poll_errors_total", error="ServerError")] == 1
    assert found[key("wmspanel_up", **labels_of(healthy))] == 1


async def test_quota_interval_and_poller_counters_are_those_of_the_client_and_poller() -> None:
    """Calls used and allowed, the reset, the intervals, polls and skipped ticks by reason."""
    simulator = frozen_simulator()
    targets = sample_targets(simulator)
    async with (
        simulator.client(daily_limit=10**6) as client,
        client.keep_fresh(targets, interval=INTERVAL) as fresh,
    ):
        for target in targets:
            await fresh.wait(target)
        found = samples(WMSPanelCollector(fresh).exposition())
        stats, quota = fresh.stats, client.quota
    assert found[key("wmspanel_api_calls_used")] == quota.used == stats.polls
    assert found[key("wmspanel_api_calls_limit")] == 10**6
    reset = found[key("wmspanel_api_quota_reset_timestamp_seconds")]
    assert reset == quota.resets_at.timestamp()
    assert found[key("wmspanel_poll_interval_seconds")] == INTERVAL
    assert found[key("wmspanel_poll_effective_interval_seconds")] == stats.effective_interval
    assert found[key("wmspanel_poller_paused")] == 0
    assert found[key("wmspanel_targets")] == 4
    assert found[key("wmspanel_polls_total")] == stats.polls >= 4
    for reason in ("busy", "backoff", "quota"):
        assert found[key("wmspanel_ticks_skipped_total", reason=reason)] == 0
    # Every error class a poll may meet is there at 0 before its first, for rate().
    errors = {
        dict(labels)["error"]: value
        for (name, labels), value in found.items()
        if name == "wmspanel_poll_errors_total"
    }
    assert errors == dict.fromkeys(POLL_ERRORS, 0)
    assert {"ServerError", "APITimeoutError", "AuthenticationError"} <= set(errors)


async def test_the_duration_histogram_counts_every_poll_while_run_runs() -> None:
    """Not exported before run(); then each new snapshot's latency lands in its bucket."""
    simulator = frozen_simulator()
    targets = sample_targets(simulator)
    simulator.latency = 0.07  # between the buckets of 0.05 and 0.1 s
    async with (
        simulator.client(daily_limit=10**6) as client,
        client.keep_fresh(targets, interval=INTERVAL) as fresh,
        anyio.create_task_group() as task_group,
    ):
        collector = WMSPanelCollector(fresh)
        assert "wmspanel_poll_duration_seconds" not in collector.exposition()
        await task_group.start(collector.run)
        counted_before = fresh.stats.snapshots
        for target in targets:
            newer = await fresh.wait(target)
            await fresh.wait(target, newer_than=newer)
        await anyio.wait_all_tasks_blocked()  # the collector has taken every snapshot
        found = samples(collector.exposition())
        polls = fresh.stats.snapshots - counted_before
        task_group.cancel_scope.cancel()
    name = "wmspanel_poll_duration_seconds"
    assert polls >= 4
    assert found[key(f"{name}_count")] == polls
    assert found[key(f"{name}_sum")] == pytest.approx(0.07 * polls, rel=0.05)
    buckets = {
        bound: found[key(f"{name}_bucket", le=repr(bound))] for bound in POLL_DURATION_BUCKETS
    }
    assert buckets[0.05] == 0
    assert buckets[0.1] == buckets[30.0] == polls
    assert found[key(f"{name}_bucket", le="+Inf")] == polls


async def test_collect_and_exposition_write_the_same_metrics() -> None:
    """A registry's encoding of collect() and exposition() agree, sample for sample."""
    simulator = frozen_simulator()
    targets = sample_targets(simulator)
    async with (
        simulator.client(daily_limit=10**6) as client,
        client.keep_fresh(targets, interval=INTERVAL) as fresh,
        anyio.create_task_group() as task_group,
    ):
        collector = WMSPanelCollector(
            fresh, slice_names={"5e4a11907c7d4ef12200000c": "Sports"}, clock=lambda: FROZEN
        )
        await task_group.start(collector.run)
        for target in targets:
            await fresh.wait(target)
        await anyio.wait_all_tasks_blocked()
        registry = CollectorRegistry()
        registry.register(collector)
        ours = collector.exposition()
        theirs = generate_latest(registry).decode()
        task_group.cancel_scope.cancel()
    assert samples(ours) == samples(theirs)
    assert len(samples(ours)) > 4 * 25

    def families(text: str) -> list[tuple[str, str, str]]:
        return [(f.name, f.type, f.documentation) for f in text_string_to_metric_families(text)]

    assert families(ours) == families(theirs)
    assert [name for name, _, _ in families(ours)] == [
        "wmspanel_up",
        "wmspanel_target_refused",
        "wmspanel_connected",
        "wmspanel_bandwidth_bytes_per_second",
        "wmspanel_country_connected",
        "wmspanel_figures_age_seconds",
        "wmspanel_last_success_timestamp_seconds",
        "wmspanel_data_slice_info",
        "wmspanel_targets",
        "wmspanel_poll_interval_seconds",
        "wmspanel_poll_effective_interval_seconds",
        "wmspanel_poller_paused",
        "wmspanel_api_calls_used",
        "wmspanel_api_calls_limit",
        "wmspanel_api_quota_reset_timestamp_seconds",
        "wmspanel_polls",
        "wmspanel_poll_errors",
        "wmspanel_ticks_skipped",
        "wmspanel_poll_duration_seconds",
    ]


async def test_help_texts_say_the_figures_are_polled_not_fetched_on_scrape() -> None:
    """Each family has HELP and TYPE lines; counters end in _total, figures say "polled"."""
    simulator = frozen_simulator()
    async with simulator.client(daily_limit=10**6) as client:
        fresh = client.keep_fresh([Target(simulator.account.slices[0].id)], interval=INTERVAL)
        text = WMSPanelCollector(fresh).exposition()
    lines = text.splitlines()
    helps = {line.split()[2]: line for line in lines if line.startswith("# HELP ")}
    types = {line.split()[2]: line.split()[3] for line in lines if line.startswith("# TYPE ")}
    assert helps.keys() == types.keys()
    assert len(helps) == 18  # the histogram is left out until run() runs
    for name in ("up", "connected", "bandwidth_bytes_per_second", "country_connected"):
        assert helps[f"wmspanel_{name}"].endswith("never fetched on scrape")
    assert {name for name, kind in types.items() if kind == "counter"} == {
        "wmspanel_polls_total",
        "wmspanel_poll_errors_total",
        "wmspanel_ticks_skipped_total",
    }
    assert all(kind == "gauge" for name, kind in types.items() if not name.endswith("_total"))


async def test_before_and_after_the_block_a_scrape_has_no_target_series() -> None:
    """A collector may be scraped before keep_fresh() starts and after it ends: no error."""
    simulator = frozen_simulator()
    target = Target(simulator.account.slices[0].id)
    async with simulator.client(daily_limit=10**6) as client:
        fresh = client.keep_fresh([target], interval=INTERVAL)
        collector = WMSPanelCollector(fresh)
        before = samples(collector.exposition())
        async with fresh:
            await fresh.wait(target)
            during = samples(collector.exposition())
        after = samples(collector.exposition())
    assert of_target(before, target) == of_target(after, target) == {}
    assert len(of_target(during, target)) == 25
    assert before[key("wmspanel_targets")] == after[key("wmspanel_targets")] == 1


async def test_label_values_are_escaped() -> None:
    """Quotes, backslashes and newlines in a slice name survive the text format."""
    simulator = frozen_simulator()
    name = 'Sports "live"\\EU\nnight'
    async with simulator.client(daily_limit=10**6) as client:
        fresh = client.keep_fresh(interval=INTERVAL)
        collector = WMSPanelCollector(fresh, slice_names={"5e4a11907c7d4ef12200000c": name})
        text = collector.exposition()
    assert r'name="Sports \"live\"\\EU\nnight"' in text
    found = samples(text)
    assert found[key("wmspanel_data_slice_info", data_slice="5e4a11907c7d4ef12200000c", name=name)]


async def test_metrics_app_serves_the_exposition_gzipped_on_request_and_only_get() -> None:
    """GET gives the text format (gzipped if accepted); other methods get 405."""
    simulator = frozen_simulator()
    target = Target(simulator.account.slices[0].id)
    async with (
        simulator.client(daily_limit=10**6) as client,
        client.keep_fresh([target], interval=INTERVAL) as fresh,
    ):
        collector = WMSPanelCollector(fresh, clock=lambda: FROZEN)
        await fresh.wait(target)
        transport = httpx.ASGITransport(app=metrics_app(collector))
        async with httpx.AsyncClient(transport=transport, base_url="http://exporter") as http:
            plain = await http.get("/metrics", headers={"accept-encoding": "identity"})
            zipped = await http.get("/anything", headers={"accept-encoding": "br, gzip;q=0.5"})
            posted = await http.post("/metrics")
        expected = collector.exposition()
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "content-encoding" not in plain.headers
    assert plain.text == expected
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.text == expected  # httpx took the gzip off
    assert zipped.num_bytes_downloaded < len(expected) / 4
    assert (posted.status_code, posted.headers["allow"]) == (405, "GET")


async def test_metrics_app_of_a_registry_uses_prometheus_clients_encoder() -> None:
    """A registry is served whole, in OpenMetrics when asked; lifespan is acknowledged."""
    simulator = frozen_simulator()
    async with simulator.client(daily_limit=10**6) as client:
        registry = CollectorRegistry()
        registry.register(WMSPanelCollector(client.keep_fresh(interval=INTERVAL)))
        app = metrics_app(registry)
        accept = (b"accept", b"application/openmetrics-text; version=1.0.0")
        scope = {"type": "http", "method": "GET", "path": "/", "query_string": b""}
        start, body = await call(app, {**scope, "headers": [accept]}, [{"type": "http.request"}])
    assert dict(start["headers"])[b"content-type"].startswith(b"application/openmetrics-text")
    text = body["body"].decode()
    assert "# TYPE wmspanel_data_slice info\n" in text
    assert text.endswith("# EOF\n")
    lifespan = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    assert await call(app, {"type": "lifespan"}, lifespan) == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]


async def call(app: Any, scope: dict[str, Any], messages: list[dict[str, Any]]) -> list[Any]:
    """Call an ASGI app with ``messages`` to receive; return what it sent."""
    incoming = iter(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_a_registry_refuses_a_second_collector_of_the_same_metrics() -> None:
    """describe() names the families without reading the poller: duplicates are caught."""
    simulator = frozen_simulator()
    async with simulator.client(daily_limit=10**6) as client:
        fresh = client.keep_fresh(interval=INTERVAL)
        registry = CollectorRegistry()
        registry.register(WMSPanelCollector(fresh))
        with pytest.raises(ValueError, match="Duplicated timeseries"):
            registry.register(WMSPanelCollector(fresh))


async def test_scrapes_close_together_share_one_writing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Within SHARED_FOR seconds a scrape of the same format gets the same bytes; then anew."""
    simulator = frozen_simulator()
    target = Target(simulator.account.slices[0].id)
    later = dt.datetime.now(dt.timezone.utc)  # the snapshots' clock is the client's, real
    ticks = iter(later + dt.timedelta(days=day) for day in range(1, 100))
    async with (
        simulator.client(daily_limit=10**6) as client,
        client.keep_fresh([target], interval=INTERVAL) as fresh,
    ):
        await fresh.wait(target)
        collector = WMSPanelCollector(fresh, clock=lambda: next(ticks))  # ages grow each time
        # On this virtual clock time jumps while the poller sleeps: the window is widened.
        monkeypatch.setattr(wmspanel_async._prometheus, "SHARED_FOR", 10**6)
        transport = httpx.ASGITransport(app=metrics_app(collector))
        async with httpx.AsyncClient(transport=transport, base_url="http://exporter") as http:
            first, second = [(await http.get("/metrics")).text for _ in range(2)]
            openmetrics = await http.get(
                "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
            )
        monkeypatch.setattr(wmspanel_async._prometheus, "SHARED_FOR", 0.0)
        transport = httpx.ASGITransport(app=metrics_app(collector))
        async with httpx.AsyncClient(transport=transport, base_url="http://exporter") as http:
            third, fourth = [(await http.get("/metrics")).text for _ in range(2)]
    assert first == second  # one writing for both
    assert openmetrics.text.endswith("# EOF\n")  # another format: written for itself
    assert third != fourth  # each written anew: the age moved on
    assert "wmspanel_figures_age_seconds" in third


async def test_a_target_the_api_refuses_is_refused_1_with_no_other_series() -> None:
    """A stream of a lite slice: wmspanel_target_refused 1, and no up 0 to alert on."""
    simulator = Simulator([Account.sample()])
    lite, stream = simulator.account.slices[1], simulator.account.streams[0]
    refused, good = Target(lite.id, stream=stream.id), Target(lite.id)
    async with (
        simulator.client() as client,
        client.keep_fresh([refused, good], interval=INTERVAL) as fresh,
    ):
        await fresh.wait(refused)
        await fresh.wait(good)
        found = samples(WMSPanelCollector(fresh).exposition())
    assert found[key("wmspanel_target_refused", **labels_of(refused))] == 1
    assert key("wmspanel_up", **labels_of(refused)) not in found
    assert key("wmspanel_figures_age_seconds", **labels_of(refused)) not in found
    assert found[key("wmspanel_up", **labels_of(good))] == 1
    assert key("wmspanel_target_refused", **labels_of(good)) not in found


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [(0.25, "0.25"), (30.0, "30.0"), (30.5, "+Inf")],
    ids=["on-a-bound", "on-the-last-bound", "past-the-last-bound"],
)
async def test_a_poll_counts_in_the_first_bucket_whose_bound_it_does_not_pass(
    seconds: float, bucket: str
) -> None:
    """``le`` is "less or equal": 0.25 s is in le="0.25"; 30.5 s only in +Inf (= _count).

    A poll's latency is a difference of clock readings, never exactly a bound: the
    collector's count of one is fed the bound itself here.
    """
    simulator = frozen_simulator()
    async with (
        simulator.client(daily_limit=10**6) as client,
        client.keep_fresh([], interval=INTERVAL) as fresh,
        anyio.create_task_group() as task_group,
    ):
        collector = WMSPanelCollector(fresh)
        await task_group.start(collector.run)
        collector._observe(seconds)
        found = samples(collector.exposition())
        task_group.cancel_scope.cancel()
    name = "wmspanel_poll_duration_seconds"
    bounds = [*map(repr, POLL_DURATION_BUCKETS), "+Inf"]
    counts = {bound: found[key(f"{name}_bucket", le=bound)] for bound in bounds}
    first = bounds.index(bucket)
    assert all(counts[bound] == 0 for bound in bounds[:first])
    assert all(counts[bound] == 1 for bound in bounds[first:])
    assert counts["+Inf"] == found[key(f"{name}_count")] == 1
    assert found[key(f"{name}_sum")] == seconds


async def test_the_age_of_a_failed_targets_figures_is_that_of_its_last_success() -> None:
    """After a failed poll, wmspanel_figures_age_seconds keeps growing from the last success."""
    simulator = frozen_simulator()
    target = Target(simulator.account.slices[0].id)
    async with (
        simulator.client(daily_limit=10**6, max_retries=0, clock=VirtualUTC()) as client,
        client.keep_fresh([target], interval=INTERVAL) as fresh,
    ):
        good = await fresh.wait(target)
        simulator.inject(Fault.http_status(503), target=target)
        failed = await fresh.wait(target, newer_than=good)
        assert failed.error is not None
        later = failed.fetched_at + dt.timedelta(seconds=7)
        found = samples(WMSPanelCollector(fresh, clock=lambda: later).exposition())
    labels = labels_of(target)
    assert found[key("wmspanel_up", **labels)] == 0
    expected = (later - good.fetched_at).total_seconds()
    assert expected >= 7 + INTERVAL / 2  # not the age of the failed poll (7 s)
    assert found[key("wmspanel_figures_age_seconds", **labels)] == pytest.approx(expected)
    assert found[key("wmspanel_last_success_timestamp_seconds", **labels)] == pytest.approx(
        good.fetched_at.timestamp()
    )


async def test_quotes_and_newlines_in_label_values_come_out_escaped() -> None:
    """A slice name of one ``"``, and countries with ``"`` or a newline: escaped, valid."""
    simulator = frozen_simulator()
    target = Target(simulator.account.slices[0].id)
    async with (
        simulator.client(daily_limit=10**6) as client,
        client.keep_fresh([target], interval=INTERVAL) as fresh,
    ):
        await fresh.wait(target)
        collector = WMSPanelCollector(fresh, slice_names={target.data_slice: '"'})
        text = collector.exposition()
    assert f'wmspanel_data_slice_info{{data_slice="{target.data_slice}",name="\\""}} 1.0' in text
    found = samples(text)
    assert found[key("wmspanel_data_slice_info", data_slice=target.data_slice, name='"')] == 1
