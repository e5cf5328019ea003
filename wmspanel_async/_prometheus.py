"""Prometheus metrics of a ``keep_fresh()`` poller: a collector, and an ASGI app for /metrics.

``wmspanel_async.prometheus`` re-exports them, and says what to install when
prometheus_client is missing.

One scrape travels: Prometheus GETs /metrics -> :func:`metrics_app` (prometheus_client's
content negotiation: the text format or OpenMetrics, gzipped on request; scrapes within half
a second share one writing) -> the registry asks the collector -> it reads the latest
snapshot of each watched target and the poller's stats from memory (never the API, never
waiting for it) into the metric families of this scrape (:meth:`WMSPanelCollector.collect`)
-> prometheus_client writes them out. Nothing is kept between scrapes but the poll duration
histogram, so a target no longer watched has no series at the next scrape, and two scrapes
cannot mix their figures.
"""

from __future__ import annotations

import bisect
import gzip
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from . import _metrics as m
from ._exceptions import APIError
from ._http_server import ASGIApp, Receive, Scope, Send
from ._http_server import answer_lifespan as _answer_lifespan
from ._http_server import send_text as _send_text
from ._quota import UTCClock
from ._quota import utc_now as _utc_now

if TYPE_CHECKING:
    from ._fresh import FreshSnapshots
    from ._models import Snapshot

#: Upper bounds, in seconds, of the buckets of ``wmspanel_poll_duration_seconds``: an API
#: call takes tens of milliseconds to a few seconds, and a poll gives up after two intervals
#: (at most the client's 30 s deadline).
POLL_DURATION_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class WMSPanelCollector:
    """A Prometheus collector of the figures a :class:`~wmspanel_async.FreshSnapshots` keeps.

    Every scrape builds its metrics anew from the latest snapshot of each watched target
    and from ``fresh.stats``; it never calls the API, and never waits for it. Scrape it in
    the event loop's thread (mount :func:`metrics_app` in your ASGI app, as
    ``wmspanel-async exporter`` does), not from prometheus_client's threaded HTTP server:
    the snapshots are read from the loop that polls. A scrape reads every target, so targets
    watched with ``drop_unread_after`` stay polled while Prometheus scrapes.

    Per target, labelled ``data_slice``, ``stream`` and ``server`` (``""`` when the target has
    none), once it has been polled: ``wmspanel_up``, and from its last successful poll
    ``wmspanel_connected``, ``wmspanel_bandwidth_bytes_per_second``,
    ``wmspanel_country_connected`` (with ``country``), ``wmspanel_figures_age_seconds`` and
    ``wmspanel_last_success_timestamp_seconds``. Then ``wmspanel_data_slice_info``, the
    daily calls, the intervals and the poller's counters: see the exporter's guide.

    Args:
        fresh: The poller whose figures to export. The collector may be made and
            registered before its ``async with`` block is entered; until then (and once it
            is left, or has failed) scrapes show no per-target series.
        slice_names: Data slice names by id, for ``wmspanel_data_slice_info``; read at every
            scrape, so a dict you update later is shown as it is then.
        clock: The clock the client was given, if not the real UTC time: the figures' ages
            are measured with it.
    """

    def __init__(
        self,
        fresh: FreshSnapshots,
        *,
        slice_names: Mapping[str, str] | None = None,
        clock: UTCClock = _utc_now,
    ) -> None:
        self._fresh = fresh
        self._slice_names: Mapping[str, str] = {} if slice_names is None else slice_names
        self._clock = clock
        self._observing = False
        self._bucket_counts = [0] * len(POLL_DURATION_BUCKETS)
        self._duration_count = 0
        self._duration_sum = 0.0

    def __repr__(self) -> str:
        return f"<WMSPanelCollector of {self._fresh!r}>"

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Feed ``wmspanel_poll_duration_seconds`` with every poll from now on.

        The poller's stats have no latency histogram, so this subscribes to every new
        snapshot and counts its latency. Run it in a task of the ``keep_fresh()`` block
        (``await task_group.start(collector.run)``); it returns when the block is left.
        Without it, the histogram is not exported.

        Raises:
            ClientStateError: The ``keep_fresh()`` block was not entered yet, or was left.
            Exception: The error that stopped polling, if it stopped by an error.
        """
        # A large buffer: a scrape or a busy loop may hold this task back while hundreds of
        # targets are polled, and a snapshot dropped from it is a poll the histogram misses.
        async with self._fresh.subscribe(buffer=4096, latest=False) as snapshots:
            self._observing = True
            task_status.started()
            try:
                async for snapshot in snapshots:
                    self._observe(snapshot.latency)
            finally:
                self._observing = False

    def _observe(self, seconds: float) -> None:
        self._duration_count += 1
        self._duration_sum += seconds
        bucket = bisect.bisect_left(POLL_DURATION_BUCKETS, seconds)  # its bound is >= seconds
        if bucket < len(POLL_DURATION_BUCKETS):  # longer polls are only in +Inf
            self._bucket_counts[bucket] += 1

    def describe(self) -> Iterator[Metric]:
        """Return the metric families without samples, so that a registry checks names.

        Reads nothing from the poller: registering the collector before polling starts is
        fine, and registering two in the same registry raises ``ValueError`` (duplicate
        series).
        """
        return iter([spec.family() for spec in m.SPECS])

    def collect(self) -> Iterator[Metric]:
        """Return this scrape's metrics as prometheus_client metric families."""
        rows = self._rows()
        families = []
        for spec in m.SPECS:
            family = spec.family()
            if spec is m.DURATION:
                if not self._observing:
                    continue
                family.add_metric([], self._buckets(), self._duration_sum)
            elif spec is m.SLICE_INFO:
                for (slice_id, name), _ in rows[spec]:
                    family.add_metric([slice_id], {"name": name})
            else:
                for labels, value in rows[spec]:
                    family.add_metric(labels, value)
            families.append(family)
        return iter(families)

    def exposition(self) -> str:
        """Return this scrape's metrics in the Prometheus text format (version 0.0.4).

        The metrics of :meth:`collect`, written by prometheus_client's encoder.
        """
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return generate_latest(registry).decode()

    def _rows(self) -> dict[m.Spec, m.Rows]:
        """Read the poller once, and return the samples of this scrape by family."""
        fresh = self._fresh
        stats = fresh.stats
        rows: dict[m.Spec, m.Rows] = {spec: [] for spec in m.SPECS}
        readings: list[tuple[Snapshot | None, Snapshot | None]] = []
        for target in fresh.targets:
            try:
                readings.append((fresh.get(target), fresh.last_success(target)))
            except LookupError:  # no longer watched: no series
                continue
            except Exception:  # a stopped or failed keep_fresh() raises its error to any reader
                readings = []
                break
        now = self._clock()
        up, connected = rows[m.UP].append, rows[m.CONNECTED].append
        refused = rows[m.REFUSED].append
        bandwidth, country = rows[m.BANDWIDTH].append, rows[m.COUNTRY].append
        age, last_success = rows[m.AGE].append, rows[m.LAST_SUCCESS].append
        for latest, success in readings:
            if latest is None:
                continue
            target = latest.target
            labels = (target.data_slice, target.stream or "", target.server or "")
            if isinstance(latest.error, APIError):  # refused for good: polled no more
                refused((labels, 1))
                continue
            up((labels, 1 if latest.error is None else 0))
            if success is None or success.stats is None:
                continue
            figures = success.stats
            connected((labels, figures.connected))
            bandwidth((labels, figures.bandwidth / 8))
            for entry in figures.geo:
                country(((*labels, entry.country), entry.connected))
            age((labels, max(0.0, (now - success.fetched_at).total_seconds())))
            last_success((labels, success.fetched_at.timestamp()))

        rows[m.SLICE_INFO] = [((slice_id, name), 1) for slice_id, name in self._slice_names.items()]
        quota = stats.quota
        for spec, value in (
            (m.TARGETS, stats.targets),
            (m.INTERVAL, stats.interval),
            (m.EFFECTIVE_INTERVAL, stats.effective_interval),
            (m.PAUSED, 1 if stats.paused else 0),
            (m.CALLS_USED, quota.used),
            (m.CALLS_LIMIT, quota.limit),
            (m.QUOTA_RESET, quota.resets_at.timestamp()),
            (m.POLLS, stats.polls),
        ):
            rows[spec] = [((), value)]
        # Every error a poll may meet is there from the start, at 0, so that rate() and
        # increase() see its first one.
        errors = dict.fromkeys(m.POLL_ERRORS, 0) | dict(stats.errors)
        rows[m.ERRORS] = [((error,), count) for error, count in sorted(errors.items())]
        rows[m.SKIPPED] = [((reason,), getattr(stats, field)) for reason, field in m.SKIP_REASONS]
        return rows

    def _buckets(self) -> list[tuple[str, float]]:
        """Return the histogram's cumulative counts by upper bound, ``+Inf`` last."""
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip(POLL_DURATION_BUCKETS, self._bucket_counts, strict=True):
            cumulative += count
            buckets.append((repr(bound), cumulative))
        buckets.append(("+Inf", self._duration_count))
        return buckets


#: Seconds a written scrape is served again to scrapes of the same format: Prometheus
#: servers in HA, or a burst of dashboards, share one writing instead of each paying for it.
SHARED_FOR = 0.5


def metrics_app(source: Collector, *, disable_compression: bool = False) -> ASGIApp:
    """Return an ASGI app that answers ``GET`` with the metrics of ``source``.

    Mount it in your ASGI app (for example ``app.mount("/metrics", metrics_app(collector))``
    in FastAPI or Starlette); it answers the same on any path below where it is mounted, in
    the text format or in OpenMetrics as the scraper asks (prometheus_client's encoders and
    content negotiation), gzipped when it accepts it, and 405 to other methods than ``GET``.
    The metrics are gathered in the event loop, in the request's task: no thread is
    involved. Scrapes of the same format within ``SHARED_FOR`` seconds of one another get
    the same answer, written once.

    Args:
        source: A :class:`WMSPanelCollector`, or any other prometheus_client collector, or a
            ``CollectorRegistry`` (``REGISTRY`` adds the process metrics).
        disable_compression: Never gzip the answer.
    """
    if isinstance(source, CollectorRegistry):
        registry = source
    else:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(source)
    # By format and compression (a few at most, whatever the scrapers send): when written.
    written: dict[tuple[str, bool], tuple[float, bytes]] = {}

    def write(accept: bytes, zipped: bool) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept.decode("latin-1"))
        now = anyio.current_time()
        found = written.get((content_type, zipped))
        if found is not None and now - found[0] < SHARED_FOR:
            return found[1], content_type
        body = encoder(registry)
        if zipped:
            # The fastest level: a few MB of repetitive text still shrink tenfold, in a
            # fifteenth of the time of gzip's default (which prometheus_client's app uses).
            body = gzip.compress(body, compresslevel=1)
        written[content_type, zipped] = (now, body)
        return body, content_type

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _answer_lifespan(receive, send)
            return
        if scope["method"] != "GET":
            await _send_text(send, 405, "only GET is supported\n", [(b"allow", b"GET")])
            return
        # The request is read whole before the answer (a GET has no body): a server that
        # streams it, httpx's ASGITransport among them, is not left with it half-read.
        message = await receive()
        while message["type"] == "http.request" and message.get("more_body", False):
            message = await receive()
        headers = dict(scope["headers"])
        zipped = not disable_compression and _accepts_gzip(headers.get(b"accept-encoding", b""))
        body, content_type = write(headers.get(b"accept", b""), zipped)
        answer_headers = [(b"content-type", content_type.encode())]
        if zipped:
            answer_headers.append((b"content-encoding", b"gzip"))
        answer_headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": answer_headers})
        await send({"type": "http.response.body", "body": body})

    return app


def _accepts_gzip(accept_encoding: bytes) -> bool:
    codings = (part.split(b";")[0].strip() for part in accept_encoding.lower().split(b","))
    return b"gzip" in codings
