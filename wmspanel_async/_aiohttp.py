"""An httpx transport that sends requests with aiohttp: ``WMSPanelClient(transport="aiohttp")``.

httpx's own transport is most of the CPU a call costs; aiohttp's HTTP/1.1 machinery is far
cheaper. Above this module nothing changes: the client and its error handling see an
``httpx.AsyncBaseTransport``, ``httpx.Response`` objects and httpx's errors. One request
travels::

    Pipeline._attempt -> AiohttpTransport.handle_async_request
        -> a slot of the pool (httpx.PoolTimeout if none comes free in time)
        -> aiohttp.ClientSession.request: no body on GET, no redirect, httpx's timeouts
        -> httpx.Response whose body streams from aiohttp; closing it frees the slot

aiohttp's errors become httpx's, and only timeouts become timeout errors. No text we raise
quotes a URL's query (the key rides in it), and the query is cut from the texts of aiohttp's
own errors before they are chained. aiohttp runs on asyncio only.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import anyio
import httpx
from yarl import URL

from ._exceptions import ConfigurationError
from ._redact import exception_chain, rewrite_texts

#: The oldest aiohttp whose sessions can be kept from resending a request on their own.
OLDEST_AIOHTTP = (3, 11)
if tuple(int(part) for part in aiohttp.__version__.split(".")[:2]) < OLDEST_AIOHTTP:
    msg = f"aiohttp {aiohttp.__version__} is too old, 3.11 or later is needed"  # pragma: no cover
    raise ImportError(msg)  # pragma: no cover

#: Seconds an idle connection is kept for reuse, as in httpx's default pool.
KEEPALIVE_EXPIRY = 5.0

#: A URL's query and fragment, wherever a URL stands in a text; the scheme and path stay.
_URL_QUERY = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s?#'\"<>]*)[?#][^\s'\"<>]*")

#: The errors of a request that are the network's or the server's, never ours.
_NETWORK_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError, TimeoutError)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one ``aiohttp.ClientSession``, on asyncio only.

    The session (and its TLS context, with verification on) is made at the first request,
    inside the event loop; requests beyond ``max_connections`` wait for a free connection
    until the request's ``pool`` timeout. The ``connect`` timeout bounds the name lookup,
    the TCP connection and the TLS handshake, the ``read`` timeout each wait for data
    (aiohttp rounds a timeout over 5 s up to the next whole second of its clock); there is
    no ``write`` timeout, as a GET sends no body.

    Args:
        max_connections: Connections open at most, busy or idle.
    """

    def __init__(self, *, max_connections: int) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._slots: anyio.Semaphore | None = None
        self._timeouts: dict[tuple[float | None, float | None], aiohttp.ClientTimeout] = {}

    def __repr__(self) -> str:
        return f"<AiohttpTransport max_connections={self._max_connections}>"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return its response, whose body is read as it is streamed.

        Raises:
            httpx.TransportError: One of its subclasses, as httpx's own transport raises.
            ConfigurationError: The event loop is not asyncio's.
        """
        session, slots = self._session_and_slots()
        timeouts = request.extensions.get("timeout", {})
        await self._take_slot(slots, timeouts.get("pool"))
        try:
            body = await request.aread()
            headers = [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in request.headers.raw
                if name.lower() != b"transfer-encoding"  # aiohttp frames the body itself
            ]
            with _httpx_errors():
                response = await session.request(
                    request.method,
                    URL(str(request.url), encoded=True),  # as httpx encoded it, byte for byte
                    headers=headers,
                    data=body or None,  # None: no body and no framing header at all
                    allow_redirects=False,
                    timeout=self._client_timeout(timeouts.get("connect"), timeouts.get("read")),
                )
        except BaseException:
            slots.release()
            raise
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_ResponseStream(response, slots),
            extensions={
                "http_version": b"HTTP/1.0" if response.version == (1, 0) else b"HTTP/1.1",
                "reason_phrase": _wire_bytes(response.reason or ""),
            },
        )

    async def aclose(self) -> None:
        """Close the session and its connections; idempotent."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _session_and_slots(self) -> tuple[aiohttp.ClientSession, anyio.Semaphore]:
        if self._session is None or self._slots is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                msg = "the aiohttp transport runs on asyncio only, and no asyncio loop runs here"
                raise ConfigurationError(msg) from None
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                keepalive_timeout=KEEPALIVE_EXPIRY,
                ssl=httpx.create_ssl_context(),  # verified, with httpx's CA bundle
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # the httpx client above keeps cookies
                auto_decompress=False,  # httpx decodes, from the headers it is handed
                trust_env=False,  # as the default transport: no proxy from the environment
                timeout=aiohttp.ClientTimeout(),  # replaced by each request's own
            )
            if hasattr(self._session, "_retry_connection"):  # pragma: no branch - 3.11+
                # aiohttp resends a GET once, unseen, after a reset or a close without an
                # answer (on a fresh connection too): an attempt that the daily count would
                # miss, and a retry outside the client's own. The client retries by itself.
                self._session._retry_connection = False
            self._slots = anyio.Semaphore(self._max_connections)
        return self._session, self._slots

    async def _take_slot(self, slots: anyio.Semaphore, pool_timeout: float | None) -> None:
        try:
            slots.acquire_nowait()
        except anyio.WouldBlock:
            try:
                with anyio.fail_after(pool_timeout):
                    await slots.acquire()
            except TimeoutError:
                msg = (
                    f"no connection of the pool of {self._max_connections} came free within "
                    f"{pool_timeout:g} s"
                )
                raise httpx.PoolTimeout(msg) from None

    def _client_timeout(self, connect: float | None, read: float | None) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get((connect, read))
        if timeout is None:
            timeout = aiohttp.ClientTimeout(connect=connect, sock_connect=connect, sock_read=read)
            self._timeouts[connect, read] = timeout
        return timeout


class _ResponseStream(httpx.AsyncByteStream):
    """An aiohttp response's body as httpx reads it; closing it frees the pool's slot."""

    def __init__(self, response: aiohttp.ClientResponse, slots: anyio.Semaphore) -> None:
        self._response = response
        self._slots: anyio.Semaphore | None = slots

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        while self._slots is not None:  # closed: the rest is not wanted, as with httpx's own
            with _httpx_errors():
                chunk = await content.readany()
            if not chunk:
                return
            yield chunk

    async def aclose(self) -> None:
        # Back to the pool if the body was read to its end; closed otherwise.
        self._response.release()
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.release()


def _wire_bytes(text: str) -> bytes:
    """Return the bytes aiohttp decoded ``text`` from (UTF-8, undecodable bytes escaped)."""
    return text.encode("utf-8", "surrogateescape")


@contextmanager
def _httpx_errors() -> Iterator[None]:
    """Turn aiohttp's errors into httpx's, their texts cut of any URL's query."""
    try:
        yield
    except _NETWORK_ERRORS as exc:
        _cut_queries(exc)
        error_class = _httpx_error_class(exc)
        msg = f"{type(exc).__name__}: {exc}"
        raise error_class(msg) from exc


def _httpx_error_class(exc: BaseException) -> type[httpx.TransportError]:
    """Return the httpx error that means what ``exc`` means: a timeout only for a timeout."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):  # SocketTimeoutError among them
        return httpx.ReadTimeout
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ServerFingerprintMismatch):
        return httpx.ConnectError  # refused, unknown host, TLS refused
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError  # closed before the answer, or not HTTP
    if isinstance(exc, aiohttp.ClientPayloadError | OSError | aiohttp.ClientConnectionError):
        return httpx.ReadError  # the body cut short or garbled; a reset; a connection lost
    return httpx.TransportError


def _cut_queries(error: BaseException) -> None:
    """Cut the query (and fragment) of every URL in the texts of ``error`` and its chain."""
    for current in exception_chain(error):
        if isinstance(current, aiohttp.ClientResponseError):
            info = current.request_info  # its text quotes info.real_url
            current.request_info = aiohttp.RequestInfo(
                info.url.with_query(None).with_fragment(None),
                info.method,
                info.headers,
                info.real_url.with_query(None).with_fragment(None),
            )
            current.args = (current.request_info, *current.args[1:])
    rewrite_texts(error, functools.partial(_URL_QUERY.sub, r"\1"))
