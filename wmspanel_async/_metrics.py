"""The metric families of ``wmspanel_async.prometheus``: names, types, help texts, labels.

Defined once here; ``WMSPanelCollector.collect()`` makes prometheus_client's metric families
of them at every scrape, and prometheus_client writes them out.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)

Labels = tuple[str, ...]
Rows = list[tuple[Labels, float]]


@attrs.frozen
class Spec:
    """One metric family: its name, type, help text and label names."""

    name: str
    kind: Literal["gauge", "counter", "info", "histogram"]
    help: str
    labels: Labels = ()

    def family(self) -> Any:  # each kind's add_metric() takes other arguments
        """Return it as an empty prometheus_client metric family."""
        if self.kind == "gauge":
            return GaugeMetricFamily(self.name, self.help, labels=self.labels)
        if self.kind == "counter":
            return CounterMetricFamily(self.name, self.help, labels=self.labels)
        if self.kind == "info":  # its last label is the info's value
            return InfoMetricFamily(self.name, self.help, labels=self.labels[:-1])
        return HistogramMetricFamily(self.name, self.help)


#: Said by the help text of every per-target family.
POLLED_NOTE = "; polled in the background at the poller's interval, never fetched on scrape"
#: The labels of every per-target series; a target without a stream or server has "" there.
TARGET_LABELS = ("data_slice", "stream", "server")

UP = Spec(
    "wmspanel_up",
    "gauge",
    "1 if the target's last poll succeeded, 0 if it failed" + POLLED_NOTE,
    TARGET_LABELS,
)
REFUSED = Spec(
    "wmspanel_target_refused",
    "gauge",
    "1 if the API refused the target for good (an APIError, such as a stream of a lite "
    "slice): it is polled no more, and has no other series",
    TARGET_LABELS,
)
CONNECTED = Spec(
    "wmspanel_connected",
    "gauge",
    "Connections to the target, as of its last successful poll" + POLLED_NOTE,
    TARGET_LABELS,
)
BANDWIDTH = Spec(
    "wmspanel_bandwidth_bytes_per_second",
    "gauge",
    "Outgoing bandwidth of the target in bytes per second (the API's bits per second "
    "divided by 8), as of its last successful poll" + POLLED_NOTE,
    TARGET_LABELS,
)
COUNTRY = Spec(
    "wmspanel_country_connected",
    "gauge",
    "Connections to the target from one country (ISO 3166-1 alpha-2), for the top 20 "
    "countries of its last successful poll" + POLLED_NOTE,
    (*TARGET_LABELS, "country"),
)
AGE = Spec(
    "wmspanel_figures_age_seconds",
    "gauge",
    "Seconds since the target's exported figures were fetched (its last successful poll)"
    + POLLED_NOTE,
    TARGET_LABELS,
)
LAST_SUCCESS = Spec(
    "wmspanel_last_success_timestamp_seconds",
    "gauge",
    "Unix time of the target's last successful poll" + POLLED_NOTE,
    TARGET_LABELS,
)
SLICE_INFO = Spec(
    "wmspanel_data_slice",
    "info",
    "The name of each data slice, to join on data_slice",
    ("data_slice", "name"),
)
TARGETS = Spec("wmspanel_targets", "gauge", "Targets polled now")
INTERVAL = Spec(
    "wmspanel_poll_interval_seconds", "gauge", "Seconds between two polls of a target, as asked"
)
EFFECTIVE_INTERVAL = Spec(
    "wmspanel_poll_effective_interval_seconds",
    "gauge",
    "Seconds between two polls of a target in force, stretched so that the daily calls last "
    "until 00:00 UTC",
)
PAUSED = Spec(
    "wmspanel_poller_paused",
    "gauge",
    "1 while polling waits for the next 00:00 UTC because the daily calls are spent",
)
CALLS_USED = Spec(
    "wmspanel_api_calls_used",
    "gauge",
    "API calls this client counted since 00:00 UTC, against the account's daily limit",
)
CALLS_LIMIT = Spec(
    "wmspanel_api_calls_limit", "gauge", "API calls the account may make per UTC day"
)
QUOTA_RESET = Spec(
    "wmspanel_api_quota_reset_timestamp_seconds",
    "gauge",
    "Unix time of the next 00:00 UTC, when the daily calls are renewed",
)
POLLS = Spec("wmspanel_polls", "counter", "Polls sent to the API")
ERRORS = Spec("wmspanel_poll_errors", "counter", "Failed polls, by error class", ("error",))
SKIPPED = Spec(
    "wmspanel_ticks_skipped",
    "counter",
    "Polls due but not sent: busy (the target's previous poll was still in flight), backoff "
    "(a failing target waits), quota (the daily calls are spent)",
    ("reason",),
)
DURATION = Spec(
    "wmspanel_poll_duration_seconds", "histogram", "Seconds each poll took, failed polls included"
)
#: Every family, in the order of the exposition.
SPECS = (
    *(UP, REFUSED, CONNECTED, BANDWIDTH, COUNTRY, AGE, LAST_SUCCESS, SLICE_INFO),
    *(TARGETS, INTERVAL, EFFECTIVE_INTERVAL, PAUSED, CALLS_USED, CALLS_LIMIT, QUOTA_RESET),
    *(POLLS, ERRORS, SKIPPED, DURATION),
)
#: The error classes a poll may end with, each shown from the start (at 0) in
#: ``wmspanel_poll_errors_total``; others appear with their first.
POLL_ERRORS = (
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "InternalError",
    "InvalidResponseError",
    "RateLimitError",
    "RedisUnavailableError",
    "ServerError",
)
#: The reasons of ``wmspanel_ticks_skipped_total``, and the PollerStats field of each. A
#: keep_fresh() poller never skips a tick for a slow consumer, so that reason is left out.
SKIP_REASONS = (
    ("busy", "skipped_busy"),
    ("backoff", "skipped_backoff"),
    ("quota", "skipped_quota"),
)
