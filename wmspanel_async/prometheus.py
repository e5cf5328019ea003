"""Prometheus metrics of a ``keep_fresh()`` poller (``pip install "wmspanel-async[prometheus]"``).

- :class:`WMSPanelCollector`: the figures of a ``keep_fresh()`` poller, for a registry.
- :func:`metrics_app`: an ASGI app answering ``GET`` with a collector's or registry's metrics,
  to mount at ``/metrics``.

Mount the app in your own ASGI app, or register the collector in a registry of yours::

    async with client.keep_fresh(targets, interval=30.0) as fresh:
        collector = WMSPanelCollector(fresh, slice_names={s.id: s.name for s in slices})
        app.mount("/metrics", metrics_app(collector))  # or REGISTRY.register(collector)
"""

try:
    from ._prometheus import POLL_DURATION_BUCKETS, SHARED_FOR, WMSPanelCollector, metrics_app
except ImportError as _missing:  # pragma: no cover - the bare install has no prometheus_client
    _message = (
        f"wmspanel_async.prometheus needs the prometheus extra ({_missing}): "
        "pip install 'wmspanel-async[prometheus]'"
    )
    raise ImportError(_message) from _missing

__all__ = ["POLL_DURATION_BUCKETS", "SHARED_FOR", "WMSPanelCollector", "metrics_app"]
