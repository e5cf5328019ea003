"""The layer below httpx's client that adds the credentials to each request.

httpx logs every request URL at INFO and puts it into its own error texts. Adding
``client_id`` and ``api_key`` here, after the client layer has logged and recorded the
request, keeps the key out of all of that: only the wire sees it.
"""

from __future__ import annotations

import httpx


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

    def __repr__(self) -> str:
        return f"<CredentialsTransport client_id={self._credentials['client_id']!r}>"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` with the credentials added, through the inner transport."""
        authenticated = httpx.Request(
            request.method,
            request.url.copy_merge_params(self._credentials),
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return await self._inner.handle_async_request(authenticated)

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._inner.aclose()
