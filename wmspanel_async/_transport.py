"""The layer below httpx's client that adds the credentials to each request.

httpx logs every request URL at INFO and puts it into its own error texts. Adding
``client_id`` and ``api_key`` here, after the client layer has logged and recorded the
request, keeps the key out of all of that: only the wire sees it.

Below it sits the transport that talks to the network: one a user hands in, or one named by
:func:`named_transport` (httpx's own, or ours over aiohttp, imported only when asked for).
"""

from __future__ import annotations

import httpx

from ._constants import URLS_KEPT
from ._exceptions import ConfigurationError

#: The transports ``WMSPanelClient(transport=...)`` knows by name.
TRANSPORT_NAMES = ("httpx", "aiohttp")
#: What installs the aiohttp transport.
AIOHTTP_EXTRA = 'pip install "wmspanel-async[aiohttp]"'


def named_transport(name: str, *, max_connections: int) -> httpx.AsyncBaseTransport:
    """Return the transport called ``name``, with a pool of ``max_connections``.

    Raises:
        ConfigurationError: ``name`` is none of :data:`TRANSPORT_NAMES`; or it is
            ``"aiohttp"`` and aiohttp cannot be imported, or the event loop is not asyncio's.
    """
    if name == "httpx":
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        return httpx.AsyncHTTPTransport(limits=limits)
    if name == "aiohttp":
        require_asyncio()  # first: installing aiohttp would not help on trio
        try:
            from ._aiohttp import AiohttpTransport  # noqa: PLC0415 - only for those who ask
        except ImportError as exc:
            msg = (
                f'transport="aiohttp" needs aiohttp, which cannot be imported here ({exc}): '
                f"{AIOHTTP_EXTRA}"
            )
            raise ConfigurationError(msg) from None
        return AiohttpTransport(max_connections=max_connections)
    known = " or ".join(repr(known) for known in TRANSPORT_NAMES)
    msg = f"transport={name!r} is not a transport we know: give {known}, or an httpx transport"
    raise ConfigurationError(msg)


def require_asyncio(what: str = 'transport="aiohttp"', instead: str = "") -> None:
    """Raise unless the event loop running this code, if any, is asyncio's.

    Args:
        what: What needs asyncio, for the message.
        instead: What to use on another event loop, for the message.

    Raises:
        ConfigurationError: Another event loop (trio's) runs this code.
    """
    try:
        import sniffio  # noqa: PLC0415 - trio depends on it, so it is there wherever trio is
    except ImportError:  # pragma: no cover - without sniffio, no trio: asyncio or no loop
        return
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:  # outside any event loop: checked at first use
        return
    if library != "asyncio":
        instead = instead or "use the default transport (httpx) here"
        msg = f"{what} runs on asyncio only, and this is {library}: {instead}, or run on asyncio"
        raise ConfigurationError(msg)


class CredentialsTransport(httpx.AsyncBaseTransport):
    """Wraps a transport and adds ``client_id`` and ``api_key`` to every request's query.

    Args:
        inner: The transport that talks to the network (or to a test double).
        client_id: The account's client id.
        api_key: The API key; never shown by this object.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, client_id: str, api_key: str) -> None:
        self._inner = inner
        self._credentials = {"client_id": client_id, "api_key": api_key}
        self._authenticated: dict[httpx.URL, httpx.URL] = {}

    def __repr__(self) -> str:
        return f"<CredentialsTransport client_id={self._credentials['client_id']!r}>"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` with the credentials added, through the inner transport."""
        url = self._authenticated.get(request.url)
        if url is None:
            if len(self._authenticated) >= URLS_KEPT:
                del self._authenticated[next(iter(self._authenticated))]  # the oldest
            url = self._authenticated[request.url] = request.url.copy_merge_params(
                self._credentials
            )
        authenticated = httpx.Request(
            request.method,
            url,
            headers=request.headers,
            # A GET has no body: handing on its empty stream would make some transports
            # frame one (aiohttp's sends an empty chunked body, which confuses servers).
            stream=None if request.method == "GET" else request.stream,
            extensions=request.extensions,
        )
        return await self._inner.handle_async_request(authenticated)

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._inner.aclose()
