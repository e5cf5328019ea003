"""Failures the simulator can be told to produce, for testing how a client copes."""

from __future__ import annotations

import enum

import attrs

from .._http_server import reason_phrase


class FaultKind(enum.Enum):
    """What a :class:`Fault` does to an answer."""

    #: Answer an HTTP status of the fault's choosing instead of the API's answer.
    HTTP_STATUS = "http_status"
    #: Answer 200 with a body that is not the API's JSON.
    MALFORMED = "malformed"
    #: Answer 200 with JSON whose ``status`` is not ``"Ok"``.
    API_STATUS = "api_status"
    #: Start the real answer, then drop the connection halfway through its body.
    TRUNCATED = "truncated"
    #: Drop the connection without answering.
    DISCONNECT = "disconnect"
    #: Wait, then give the real answer.
    SLOW = "slow"


class SimulatedDisconnect(Exception):
    """Raised by the simulator to drop the connection; servers and transports abort on it."""


@attrs.frozen(kw_only=True)
class Fault:
    """One failure to inject: build it with one of the class methods.

    Faults that replace the answer (``http_status``, ``malformed``, ``api_status``,
    ``disconnect``) happen in front of the API, as a proxy or load balancer would fail: they
    are not counted against the daily limit. ``truncated`` and ``slow`` spoil a real answer,
    which is counted.

    Attributes:
        kind: What the fault does.
        status_code: The HTTP status of an ``http_status`` fault.
        retry_after: The ``Retry-After`` header to send, if any.
        body: The body of an ``http_status`` or ``malformed`` fault.
        content_type: The content type of ``body``.
        api_status: The ``status`` of an ``api_status`` fault.
        delay: Seconds a ``slow`` fault waits before answering.
    """

    kind: FaultKind
    status_code: int = 200
    retry_after: str | None = None
    body: bytes = b""
    content_type: str = "application/json"
    api_status: str = "Ok"
    delay: float = 0.0

    @classmethod
    def http_status(
        cls, status_code: int, *, retry_after: float | str | None = None, body: bytes | None = None
    ) -> Fault:
        """Answer ``status_code``, optionally with ``Retry-After``.

        Args:
            status_code: The HTTP status, for example 503 or 429.
            retry_after: Seconds (a number) or an HTTP date (a string) for ``Retry-After``.
            body: The body; by default a short text naming the status.
        """
        if isinstance(retry_after, int | float):
            retry_after = f"{retry_after:g}"
        if body is None:
            body = f"{status_code} {reason_phrase(status_code)}".strip().encode()
        return cls(
            kind=FaultKind.HTTP_STATUS,
            status_code=status_code,
            retry_after=retry_after,
            body=body,
            content_type="text/plain; charset=utf-8",
        )

    @classmethod
    def malformed(
        cls,
        body: bytes = b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        *,
        content_type: str = "text/html",
    ) -> Fault:
        """Answer 200 with ``body``, which is not the API's JSON (an HTML page by default)."""
        return cls(kind=FaultKind.MALFORMED, body=body, content_type=content_type)

    @classmethod
    def status(cls, api_status: str = "Error", message: str = "Internal error") -> Fault:
        """Answer 200 with ``{"status": api_status, "message": message}``."""
        return cls(kind=FaultKind.API_STATUS, api_status=api_status, body=message.encode())

    @classmethod
    def truncated(cls) -> Fault:
        """Send the real answer's headers and half its body, then drop the connection."""
        return cls(kind=FaultKind.TRUNCATED)

    @classmethod
    def disconnect(cls) -> Fault:
        """Drop the connection without answering anything."""
        return cls(kind=FaultKind.DISCONNECT)

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """Wait ``delay`` seconds (on the event loop's clock), then give the real answer."""
        return cls(kind=FaultKind.SLOW, delay=delay)
