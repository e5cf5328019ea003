"""The transports ``WMSPanelClient(transport=...)`` knows by name, and the asyncio check.

The client hands each request to its transport directly (no ``httpx.AsyncClient`` between,
so no log line or error text of httpx's client ever holds the URL and its key): one a user
hands in, or one named by :func:`named_transport` (httpx's own, or ours over aiohttp,
imported only when asked for).
"""

from __future__ import annotations

import httpx

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
