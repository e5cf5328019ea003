"""The exception tree of wmspanel-async.

Every failure leaves the package as one of these, so ``except WMSPanelError`` catches all of
them and nothing raw from httpx, anyio or cattrs ever reaches the caller::

    WMSPanelError
    ├── ConfigurationError        bad or missing settings, found before anything is sent
    ├── ClientStateError          the client is closed or used from another event loop
    ├── QuotaExhaustedError       the local daily call budget is spent
    ├── RedisUnavailableError     Redis, where calls are counted or polling shared, is down
    ├── APIError                  the API refused the request: status not "Ok", with a message
    ├── InvalidResponseError      the answer is not what the API documents
    ├── InternalError             a bug in wmspanel-async: please report it
    ├── TargetNotWatchedError     keep_fresh() was asked about a target it does not watch
    ├── TargetLimitError          keep_fresh() already watches max_targets targets
    ├── APIConnectionError        no answer: connection failed, reset, ...
    │   └── APITimeoutError       no answer in time
    └── APIStatusError            an HTTP status we do not accept
        ├── AuthenticationError   403: wrong credentials or caller IP not whitelisted
        ├── RateLimitError        429
        └── ServerError           5xx

No message ever contains the API key.
"""

from __future__ import annotations

import datetime as dt


class WMSPanelError(Exception):
    """Base class of every error raised by wmspanel-async."""


class ConfigurationError(WMSPanelError):
    """The client was configured wrongly; fix the arguments or the environment."""


class ClientStateError(WMSPanelError):
    """The client cannot be used any more: it was closed, or belongs to another event loop."""


class QuotaExhaustedError(WMSPanelError):
    """The local daily call budget is spent; no request was sent.

    Attributes:
        resets_at: When the budget is renewed (the next 00:00 UTC).
    """

    def __init__(self, message: str, *, resets_at: dt.datetime) -> None:
        super().__init__(message)
        self.resets_at = resets_at


class RedisUnavailableError(WMSPanelError):
    """Redis, where the shared ledger counts calls (or the shared poller lives), did not answer.

    Raised before anything is sent: a call the ledger could not count is not made. It waits
    about a second for Redis; a poller carries the error in its snapshots and recovers by
    itself once Redis answers again.

    Attributes:
        url: The Redis URL, without its password.
    """

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class APIError(WMSPanelError):
    """The API answered well-formed JSON whose ``status`` is not ``"Ok"``: it refused the request.

    WMSPanel answers so for a request it understood but will not serve, such as an unknown
    data slice, or a stream of a lite slice. Not retried: the same request gets the same
    answer.

    Attributes:
        status: The ``status`` the API answered, for example ``"Error"``.
        api_message: The API's ``message``, saying why, or ``None`` when it gave none.
    """

    def __init__(self, message: str, *, status: str, api_message: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.api_message = api_message


class InvalidResponseError(WMSPanelError):
    """The API answered something that is not the documented JSON.

    Attributes:
        field: The path of the offending field (for example ``realtime_data.connected``),
            or ``None`` when the whole body is at fault.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InternalError(WMSPanelError):
    """Something failed that wmspanel-async did not expect: a bug; please report it.

    The unexpected exception is chained as ``__cause__``, with its traceback.
    """


class TargetNotWatchedError(WMSPanelError, LookupError):
    """A reader of :meth:`WMSPanelClient.keep_fresh` asked about a target it does not watch.

    Give the target to ``keep_fresh()``, or call ``fresh.watch(target)`` before reading it.
    Also a :class:`LookupError`, as a missing dictionary key is.

    Attributes:
        target: The target asked about.
    """

    def __init__(self, message: str, *, target: object) -> None:
        super().__init__(message)
        self.target = target


class TargetLimitError(WMSPanelError):
    """``fresh.watch()`` would make :meth:`WMSPanelClient.keep_fresh` watch too many targets.

    A backend that watches targets named in URLs must not let its visitors start unbounded
    polling: ``max_targets`` bounds it. Unwatch targets, or raise ``max_targets``.

    Attributes:
        limit: The ``max_targets`` in force.
    """

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class APIConnectionError(WMSPanelError):
    """No answer came back: the connection failed or broke off."""


class APITimeoutError(APIConnectionError):
    """No answer came back in time."""


class APIStatusError(WMSPanelError):
    """The API answered with an HTTP status other than 200.

    Attributes:
        status_code: The HTTP status code of the answer.
        retry_after: Seconds the server asked us to wait (``Retry-After``), or ``None``.
    """

    def __init__(self, message: str, *, status_code: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class AuthenticationError(APIStatusError):
    """403: the credentials are wrong, or the caller's IP is not on the account's whitelist."""


class RateLimitError(APIStatusError):
    """429: the API asks us to slow down; see ``retry_after``."""


class ServerError(APIStatusError):
    """5xx: the API failed on its side."""
