"""An async client for the WMSPanel realtime stats API, for asyncio and trio."""

from ._client import WMSPanelClient, __version__
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
    ServerError,
    WMSPanelError,
)
from ._models import DataSlice, GeoEntry, QuotaStatus, RealtimeStats, Snapshot, Target
from ._poller import PollerStats, SnapshotStream

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "ClientStateError",
    "ConfigurationError",
    "DataSlice",
    "GeoEntry",
    "InternalError",
    "InvalidResponseError",
    "PollerStats",
    "QuotaExhaustedError",
    "QuotaStatus",
    "RateLimitError",
    "RealtimeStats",
    "ServerError",
    "Snapshot",
    "SnapshotStream",
    "Target",
    "WMSPanelClient",
    "WMSPanelError",
    "__version__",
]
