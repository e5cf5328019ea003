"""What a client sends through, and the event loop it belongs to.

The client hands each request to its transport directly (no ``httpx.AsyncClient`` between,
so no log line or error text of httpx's client ever holds the URL and its key): one a user
hands in, or one named by :func:`named_transport` (httpx's own, or ours over aiohttp,
imported only when asked for); or, if a user gives one, through their own client. Its
connections belong to the first event loop that uses it (:class:`EventLoopBinding`).
"""

from __future__ import annotations

import httpx

from ._exceptions import ClientStateError, ConfigurationError

#: The transports ``WMSPanelClient(transport=...)`` knows by name.
TRANSPORT_NAMES = ("httpx", "aiohttp")
#: What installs the aiohttp transport.
AIOHTTP_EXTRA = 'pip install "wmspanel-async[aiohttp]"'


def chosen_transport(
    transport: object, http_client: httpx.AsyncClient | None, *, max_connections: int
) -> tuple[httpx.AsyncBaseTransport | httpx.AsyncClient, httpx.AsyncBaseTransport | None]:
    """Return what to send through, and the transport of it that the client owns, if any.

    Args:
        transport: ``WMSPanelClient``'s argument: a transport, a name, or ``None``.
        http_client: A user's client, never closed by us, or ``None``.
        max_connections: The pool's size, for a named transport.

    Raises:
        ConfigurationError: Both are given, or ``transport`` is neither a transport nor a
            name we know (see :func:`named_transport`).
    """
    if transport is not None and http_client is not None:
        msg = "pass either transport or http_client, not both"
        raise ConfigurationError(msg)
    if http_client is not None:
        return http_client, None
    if isinstance(transport, httpx.AsyncBaseTransport):
        return transport, transport
    if not isinstance(transport, str | None):
        msg = (
            f"transport must be an httpx.AsyncBaseTransport, 'httpx' or 'aiohttp', got "
            f"{type(transport).__name__}"
        )
        raise ConfigurationError(msg)
    named = named_transport(transport or "httpx", max_connections=max_connections)
    return named, named


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


class EventLoopBinding:
    """The event loop whose connections a client holds: the first that uses it.

    Args:
        asyncio_only: Refuse any event loop but asyncio's (the aiohttp transport).
    """

    def __init__(self, *, asyncio_only: bool) -> None:
        self._asyncio_only = asyncio_only
        self._event_loop: object = None

    def check(self) -> None:
        """Bind to the running event loop on first use; then raise if another runs this.

        Raises:
            ClientStateError: Another event loop than the first runs this code.
            ConfigurationError: The client is asyncio-only, and this is another loop.
        """
        # Imported here, not on `import wmspanel_async` (2 ms); once loaded, this costs a
        # lookup in sys.modules (~0.1 us a call).
        import anyio.lowlevel  # noqa: PLC0415

        event_loop = anyio.lowlevel.current_token().native_token
        if self._event_loop is None:
            if self._asyncio_only:
                require_asyncio()
            self._event_loop = event_loop
        elif self._event_loop is not event_loop:
            msg = (
                "this WMSPanelClient was first used in another event loop, and its connections "
                "belong to that loop; create one client per event loop"
            )
            raise ClientStateError(msg)
