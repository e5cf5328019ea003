"""An async client for the WMSPanel realtime stats API, for asyncio and trio."""

# Under another name: a module's every public name is part of its API.
from typing import TYPE_CHECKING as _TYPE_CHECKING

from ._client import WMSPanelClient
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    ClientStateError,
    ConfigurationError,
    InternalError,
    InvalidResponseError,
    QuotaExhaustedError,
    RateLimitError,
    RedisUnavailableError,
    ServerError,
    TargetLimitError,
    TargetNotWatchedError,
    WMSPanelError,
)
from ._models import DataSlice, GeoEntry, QuotaStatus, RealtimeStats, Snapshot, Target
from ._quota import FileLedger, Ledger, MemoryLedger
from ._version import __version__

if _TYPE_CHECKING:
    from ._fresh import FreshSnapshots, FreshStats, Subscription
    from ._poller import PollerStats, SnapshotStream

#: Loaded on first use: the poller is most of what an import would load for nothing.
_LAZY = {
    "PollerStats": "_poller",
    "SnapshotStream": "_poller",
    "FreshSnapshots": "_fresh",
    "FreshStats": "_fresh",
    "Subscription": "_fresh",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib  # noqa: PLC0415 - the point

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "ClientStateError",
    "ConfigurationError",
    "DataSlice",
    "FileLedger",
    "FreshSnapshots",
    "FreshStats",
    "GeoEntry",
    "InternalError",
    "InvalidResponseError",
    "Ledger",
    "MemoryLedger",
    "PollerStats",
    "QuotaExhaustedError",
    "QuotaStatus",
    "RateLimitError",
    "RealtimeStats",
    "RedisUnavailableError",
    "ServerError",
    "Snapshot",
    "SnapshotStream",
    "Subscription",
    "Target",
    "TargetLimitError",
    "TargetNotWatchedError",
    "WMSPanelClient",
    "WMSPanelError",
    "__version__",
]
