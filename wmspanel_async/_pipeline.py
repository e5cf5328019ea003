"""The request pipeline: one call's whole journey, below the client's public methods.

One call travels: ``Pipeline.call`` (the deadline; identical calls in flight share one
request, ``_coalesce``) -> ``_get_with_retries`` (each attempt reserves one call of the
day's quota from the ledger; ``_retry`` decides whether and when to try again) ->
``_attempt`` (the URL with the credentials, from ``_urls``; one HTTP exchange through the
sender, its status check; ``_body`` reads and decodes the body within its cap) -> the
transport (httpx's, ours over aiohttp, or a user's) -> the network; then the body goes
through the parse function the client gave (``_converter``) into a model. Whatever leaves
here, answer or error, has had the client's secrets blanked (``_redact``).

The client (``_client``) is the public face over it: it checks its arguments, owns the
transport and the lifecycle, and says whose call it is (:class:`Caller`); nothing here
imports it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import anyio
import httpx

from ._body import ACCEPT_ENCODING, read_body
from ._coalesce import Flights
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    InternalError,
    WMSPanelError,
)
from ._quota import Ledger, UTCClock
from ._redact import Redactor
from ._retry import RetryBudget, parse_retry_after, retry_delay, seconds_until_reset
from ._status import status_error
from ._urls import RequestURLs

logger = logging.getLogger("wmspanel_async")

_T = TypeVar("_T")

#: Sends a GET of a URL, and returns the response with its body unread.
Send = Callable[[httpx.URL], Awaitable[httpx.Response]]


class Caller(Protocol):
    """Whose call it is: the client's public settings, read at each call."""

    client_id: str
    account: str
    ledger: Ledger
    daily_limit: int
    max_retries: int


#: A GET's body: none. One stream for every request, as reading it changes nothing.
_NO_BODY = httpx.ByteStream(b"")


def _plain_get_headers(base_url: httpx.URL, headers: dict[str, str]) -> httpx.Headers:
    """Return the headers httpx's client would send on a GET to ``base_url``, and ours."""
    return httpx.Headers(
        {
            "Host": base_url.netloc.decode("ascii"),
            "Accept": "*/*",
            "Accept-Encoding": ACCEPT_ENCODING,
            "Connection": "keep-alive",
            **headers,
        }
    )


async def _send_to_transport(
    transport: httpx.AsyncBaseTransport,
    headers: httpx.Headers,
    extensions: dict[str, object],
    url: httpx.URL,
) -> httpx.Response:
    """Hand a GET of ``url`` to ``transport``, and return the response with its body unread.

    Straight to the transport, without httpx's client: its request building, cookies, hooks
    and log line were most of our CPU per call, and that log line would quote the URL, key
    and all.
    """
    request = httpx.Request("GET", url, headers=headers, stream=_NO_BODY, extensions=extensions)
    return await transport.handle_async_request(request)


async def _send_with_http_client(
    http_client: httpx.AsyncClient, headers: dict[str, str], timeouts: httpx.Timeout, url: httpx.URL
) -> httpx.Response:
    """Send a GET of ``url`` through a user's client, and return the response unread."""
    request = http_client.build_request("GET", url, headers=headers, timeout=timeouts)
    # Never follow a redirect, whatever the user's client says: it would carry the key to
    # another address.
    return await http_client.send(request, stream=True, follow_redirects=False)


def sender(
    through: httpx.AsyncBaseTransport | httpx.AsyncClient,
    *,
    base_url: httpx.URL,
    headers: dict[str, str],
    timeout: httpx.Timeout,
) -> Send:
    """Return what sends a GET through a transport, or through a user's ``httpx.AsyncClient``.

    Args:
        through: The transport the client owns, or the user's client.
        base_url: The API's base URL, for the ``Host`` header.
        headers: Our headers (``User-Agent``, ``Accept-Encoding``).
        timeout: The timeouts of one attempt.
    """
    if isinstance(through, httpx.AsyncClient):
        return functools.partial(_send_with_http_client, through, headers, timeout)
    return functools.partial(
        _send_to_transport,
        through,
        _plain_get_headers(base_url, headers),
        {"timeout": timeout.as_dict()},
    )


class Pipeline:
    """Makes one call: deadline, sharing, quota, retries, one attempt, checks, redaction.

    Args:
        send: What sends one GET (see :func:`sender`).
        base_url: The API's base URL.
        credentials: The query parameters that carry the credentials.
        redact: Blanks the client's secrets in every text.
        deadline: Seconds a call may take in all, or ``None``.
        clock: Returns the current aware UTC datetime.
    """

    def __init__(
        self,
        send: Send,
        *,
        base_url: httpx.URL,
        credentials: dict[str, str],
        redact: Redactor,
        deadline: float | None,
        clock: UTCClock,
    ) -> None:
        self._send = send
        self._redact = redact
        self._deadline = deadline
        self._clock = clock
        self._retry_budget = RetryBudget()
        self._flights = Flights()
        self._warned_long_retry_after = False
        self.request_url = RequestURLs(base_url, credentials)

    def close(self) -> None:
        """End the calls in flight with :class:`ClientStateError`."""
        self._flights.close()

    async def call(
        self,
        caller: Caller,
        path: str,
        params: dict[str, str],
        parse: Callable[[bytes], _T],
        *,
        max_retries: int | None = None,
        deadline: float | None = None,
        share: bool = True,
    ) -> _T:
        """Make one call of ``caller``'s, and return its body parsed by ``parse``.

        Args:
            caller: Whose call: its ledger, account, daily limit and retries.
            path: The endpoint, such as ``/v1/realtime_data``.
            params: The query, without the credentials.
            parse: Turns the body into the answer (and checks it).
            max_retries: Retries for this call, instead of ``caller.max_retries``.
            deadline: Seconds this call may take in all, if shorter than the client's.
            share: Whether identical calls in flight share one request.

        Raises:
            WMSPanelError: One of its subclasses, for whatever went wrong.
        """
        retries = caller.max_retries if max_retries is None else max_retries
        if deadline is None or (self._deadline is not None and self._deadline < deadline):
            deadline = self._deadline
        if not share:
            return await self._call_alone(
                caller, path, params, parse, retries=retries, deadline=deadline
            )
        return await self._flights.share(
            (path, tuple(params.items()), retries, deadline),
            lambda: self._call_alone(
                caller, path, params, parse, retries=retries, deadline=deadline
            ),
        )

    async def _call_alone(
        self,
        caller: Caller,
        path: str,
        params: dict[str, str],
        parse: Callable[[bytes], _T],
        *,
        retries: int,
        deadline: float | None,
    ) -> _T:
        try:
            with anyio.move_on_after(deadline) as deadline_scope:
                body = await self._get_with_retries(caller, path, params, deadline_scope, retries)
                return parse(body)
        except WMSPanelError as exc:
            # Last line of defence: a server may echo the query string in what we quote.
            self._redact.scrub(exc)
            raise
        except Exception as exc:
            self._redact.scrub(exc)
            msg = (
                f"GET {path} failed with an unexpected {type(exc).__name__}: {exc}; this is a "
                "bug in wmspanel-async, please report it with the traceback"
            )
            raise InternalError(msg) from exc
        msg = (
            f"GET {path} did not finish within its {deadline:g} s deadline, retries included; "
            "check the network or raise the client's deadline"
        )
        raise APITimeoutError(msg)

    async def _get_with_retries(
        self,
        caller: Caller,
        path: str,
        params: dict[str, str],
        deadline_scope: anyio.CancelScope,
        max_retries: int,
    ) -> bytes:
        retry_costs = 0
        attempt = 0
        while True:
            status = await caller.ledger.reserve(caller.account, caller.daily_limit, self._clock())
            try:
                body = await self._attempt(caller, path, params, attempt, max_retries)
            except (APIConnectionError, APIStatusError) as error:
                self._redact.scrub(error)  # before it is logged below
                delay = retry_delay(
                    error,
                    attempt=attempt,
                    max_retries=max_retries,
                    calls_left=status.remaining,
                    now=anyio.current_time(),
                    deadline=deadline_scope.deadline,
                )
                if delay is None:
                    raise
                cost = self._retry_budget.withdraw(after_timeout=isinstance(error, APITimeoutError))
                if cost is None:
                    raise
                retry_costs += cost
                attempt += 1
                logger.warning(
                    "GET %s failed (%s: %s); retry %d of %d in %.2f s",
                    path,
                    type(error).__name__,
                    error,
                    attempt,
                    max_retries,
                    delay,
                )
                await anyio.sleep(delay)
            else:
                self._retry_budget.deposit(retry_costs)
                return body

    async def _attempt(
        self, caller: Caller, path: str, params: dict[str, str], attempt: int, max_retries: int
    ) -> bytes:
        url = self.request_url(path, params)
        started = anyio.current_time()
        try:
            response = await self._send(url)
            # Logged as soon as the head is in, as httpx's client logs it: a body that then
            # fails to arrive is still seen to have started.
            logger.debug(
                "GET %s -> %d after %.3f s (attempt %d of %d)",
                path,
                response.status_code,
                anyio.current_time() - started,
                attempt + 1,
                max_retries + 1,
            )
            try:
                body = await read_body(response, self._redact.blank_bytes)
            finally:
                await response.aclose()
        except httpx.RequestError as exc:
            # A transport's error may quote the URL it was given, and that URL holds the key.
            self._redact.scrub(exc)
            if isinstance(exc, httpx.TimeoutException):
                msg = f"GET {path} timed out ({type(exc).__name__}); the API or network is slow"
                raise APITimeoutError(msg) from exc
            msg = f"GET {path} failed: {type(exc).__name__}: {exc}; check the network and base_url"
            raise APIConnectionError(msg) from exc
        if not response.is_success:
            raise self._status_error(caller, path, response)
        return body

    def _status_error(self, caller: Caller, path: str, response: httpx.Response) -> APIStatusError:
        now = self._clock()
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
        if retry_after is not None and retry_after > (until_reset := seconds_until_reset(now)):
            if not self._warned_long_retry_after:
                self._warned_long_retry_after = True
                logger.warning(
                    "GET %s: the API asked to wait %.0f s, past the daily reset at 00:00 UTC; "
                    "waiting %.0f s, until the reset, instead (said once per client)",
                    path,
                    retry_after,
                    until_reset,
                )
            retry_after = until_reset
        location = response.headers.get("Location") if response.is_redirect else None
        return status_error(
            path,
            response.status_code,
            self._redact(response.reason_phrase),  # whole, before it is cut short
            client_id=caller.client_id,
            retry_after=retry_after,
            location=None if location is None else self._redact(location),
        )
