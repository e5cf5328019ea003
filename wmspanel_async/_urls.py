"""The URL of each GET: the base URL, the endpoint's path, the call's query, the credentials.

A poller asks for the same thousands of URLs every tick, and httpx's public constructors parse
and check the whole URL each time (35 to 60 µs, a quarter of our call path). Keeping each
target's URL saved that time but cost about 0.6 KiB a target. So the endpoint is parsed once,
and each call's URL is assembled from that parse and the call's query string, encoded as
``httpx.QueryParams`` encodes it: 2 µs, and nothing kept.

Assembling sets one private attribute of ``httpx.URL``, and httpx has changed how it encodes
a query (a space is ``+`` from 0.28 on, ``%20`` before; and 0.27 sent a value of only
unreserved characters and ``%`` as it is, so that ``%41`` reached the API as ``A``, where we
encode every ``%``). So each client checks, when it is made, which encoding gives exactly
the URL the public constructor builds from its base URL; if none does with some future
release, that client falls back to building each target's URL publicly once and keeping it
(``URLS_KEPT`` at most): as fast, with the memory as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from urllib.parse import quote, quote_plus

import httpx

from ._constants import URLS_KEPT

#: Parameters whose encoding exercises every rule: spaces, reserved and non-ASCII characters.
_PROBE_PARAMS = {"data_slice": "a b&c=d/e?f#g%20+h", "stream": "é中~_.-"}

#: How ``httpx.QueryParams`` encodes a value: as ``urlencode()`` from httpx 0.28 on, and
#: with ``%20`` for a space and ``%2F`` for a slash before.
_VALUE_ENCODINGS: tuple[Callable[[str], str], ...] = (
    quote_plus,
    functools.partial(quote, safe=""),
)


def _assembler(endpoint: httpx.URL) -> Callable[[str], httpx.URL]:
    """Return what makes the URL of ``endpoint`` with a query string, without parsing it."""
    parsed = endpoint._uri_reference
    at = parsed._fields.index("query")
    before, after = tuple(parsed[:at]), tuple(parsed[at + 1 :])
    make = type(parsed)._make  # a third of the time of its _replace()

    def assembled(query: str) -> httpx.URL:
        url = httpx.URL.__new__(httpx.URL)
        url._uri_reference = make((*before, query, *after))
        return url

    return assembled


def _query(params: dict[str, str], encode: Callable[[str], str]) -> str:
    # The names are ours, and need no encoding.
    return "&".join([f"{name}={encode(value)}" for name, value in params.items()])


def _assembles_as_httpx_builds(endpoint: httpx.URL, encode: Callable[[str], str]) -> bool:
    """Whether an assembled URL is, in every part a transport reads, what httpx would build."""
    expected = httpx.URL(endpoint, params=_PROBE_PARAMS)
    try:
        url = _assembler(endpoint)(_query(_PROBE_PARAMS, encode))
        request = httpx.Request("GET", url)
        return (
            str(url) == str(expected)
            and url.raw_path == expected.raw_path
            and url.netloc == expected.netloc
            and (url.scheme, url.host, url.port) == (expected.scheme, expected.host, expected.port)
            and url.params == expected.params
            and request.url == expected
            and request.headers["Host"] == httpx.Request("GET", expected).headers["Host"]
        )
    except Exception:  # whatever a changed httpx raises: fall back
        return False


class RequestURLs:
    """Builds the URL of ``GET path?params`` with the credentials added.

    Args:
        base_url: The API's base URL; the endpoints' paths are appended to its path.
        credentials: The query parameters that carry the credentials, added last.
    """

    def __init__(self, base_url: httpx.URL, credentials: dict[str, str]) -> None:
        self._base_url = base_url
        self._credentials = credentials
        self._endpoints: dict[str, httpx.URL] = {}
        self._assemblers: dict[str, Callable[[str], httpx.URL]] = {}
        #: Each target's URL, kept only when assembling does not work with this httpx.
        self.kept: dict[tuple[str, ...], httpx.URL] = {}
        encodings = (e for e in _VALUE_ENCODINGS if _assembles_as_httpx_builds(base_url, e))
        self._encode = next(encodings, None)
        self._credentials_query = "" if self._encode is None else _query(credentials, self._encode)

    def __call__(self, path: str, params: dict[str, str]) -> httpx.URL:
        """Return the URL of ``GET path?params``, the credentials' parameters last."""
        encode = self._encode
        if encode is None:
            return self._kept_url(path, params)
        assembled = self._assemblers.get(path)
        if assembled is None:
            assembled = self._assemblers[path] = _assembler(self._endpoint(path))
        query = self._credentials_query
        return assembled(f"{_query(params, encode)}&{query}" if params else query)

    def _endpoint(self, path: str) -> httpx.URL:
        endpoint = self._endpoints.get(path)
        if endpoint is None:  # one per endpoint of the API: two
            base = self._base_url
            endpoint = self._endpoints[path] = base.copy_with(path=base.path.rstrip("/") + path)
        return endpoint

    def _kept_url(self, path: str, params: dict[str, str]) -> httpx.URL:
        kept = self.kept
        key = (path, *(part for item in params.items() for part in item))
        url = kept.get(key)
        if url is None:
            if len(kept) >= URLS_KEPT:
                del kept[next(iter(kept))]  # the oldest
            url = httpx.URL(self._endpoint(path), params={**params, **self._credentials})
            kept[key] = url
        return url
