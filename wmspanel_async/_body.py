"""Reading an answer's body: the size cap, and decompression in bounded steps.

The client asks for ``Accept-Encoding: gzip, deflate`` and decodes the body itself, from
the raw bytes the transport streams (httpx's, ours over aiohttp, or a user's): each network
chunk is inflated with ``zlib``'s ``max_length`` set to what is left under the cap plus one
byte, so a gzip bomb (a few MiB on the wire, gigabytes inflated) never holds more than the
cap in memory, on every transport alike. An encoding we did not ask for (``br``, ``zstd``)
is refused, not decoded. One body travels::

    read_body(response) -> Content-Length over the cap? refused unread
        -> response.aiter_raw() -> each chunk inflated, at most the room left (+1 byte)
        -> over the cap (raw or inflated)? the stream is closed and drained, refused
        -> the joined body, with the key blanked by the caller's ``blank``
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncIterator, Callable

import httpx

from ._exceptions import InvalidResponseError

#: Bodies above this are refused: the documented answers are a few KiB at most.
MAX_BODY_BYTES = 1024 * 1024

#: What the client asks for; :func:`read_body` decodes these (and ``identity``), no more.
ACCEPT_ENCODING = "gzip, deflate"

_TOO_LARGE = (
    f"the API answered more than {MAX_BODY_BYTES} bytes (decompressed); the documented "
    "answers are far smaller, so base_url probably points at something else"
)


class _Inflater:
    """One ``gzip`` or ``deflate`` layer, inflated a bounded step at a time."""

    __slots__ = ("_decompressor", "_encoding", "_first")

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        # deflate is meant as zlib-wrapped, but some servers send it raw: httpx tries both.
        self._first = encoding == "deflate"
        wbits = zlib.MAX_WBITS | 16 if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self._decompressor = zlib.decompressobj(wbits)

    def inflate(self, data: bytes, room: int) -> bytes:
        """Return at most ``room`` bytes inflated from ``data`` (a partial answer if more).

        Raises:
            InvalidResponseError: ``data`` is not what its encoding says.
        """
        try:
            try:
                out = self._decompressor.decompress(data, room)
            except zlib.error:
                if not self._first:
                    raise
                self._decompressor = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate
                out = self._decompressor.decompress(data, room)
        except zlib.error as exc:
            reason = str(exc)
        else:
            self._first = False
            return out
        msg = (
            f"the API answered a body that is not valid {self._encoding} although its "
            f"Content-Encoding says so ({reason}); base_url probably points at something else"
        )
        raise InvalidResponseError(msg)


def _inflaters(content_encoding: str) -> list[_Inflater]:
    """Return the layers to undo for ``content_encoding``, the last one applied first.

    Raises:
        InvalidResponseError: An encoding other than ``gzip``, ``deflate`` or ``identity``.
    """
    layers = []
    for name in reversed(content_encoding.lower().split(",")):
        encoding = name.strip()
        if encoding in ("", "identity"):
            continue
        if encoding not in ("gzip", "x-gzip", "deflate"):
            msg = (
                f"the API answered a body encoded as {encoding[:20]!r}, which we did not ask "
                f"for (Accept-Encoding: {ACCEPT_ENCODING}); base_url probably points at "
                "something else"
            )
            raise InvalidResponseError(msg)
        layers.append(_Inflater(encoding))
    return layers


async def _drain(response: httpx.Response, raw: AsyncIterator[bytes]) -> None:
    """End a body read half-way: close the response, then run its stream out.

    Left half-way, httpx's chain of async generators would be abandoned (trio warns of
    each): closing the response ends the chain, and the loop then runs it out (or finds the
    socket closed, which ends it as well).
    """
    await response.aclose()
    with contextlib.suppress(httpx.HTTPError, httpx.StreamError):
        async for _ in raw:
            pass


def _fits(layers: list[_Inflater], chunk: bytes, chunks: list[bytes], room: int) -> bool:
    """Decode ``chunk`` onto ``chunks``; return whether it fits in ``room`` bytes.

    Each layer inflates at most one byte more than the room: enough to tell the cap is
    passed, so that a bomb never holds more than the cap in memory. A layer that fills it
    (an inner one included, which leaves input unread) passes the cap.
    """
    for layer in layers:
        chunk = layer.inflate(chunk, room + 1)
        if len(chunk) > room:
            return False
    if len(chunk) > room:  # no layers: the raw chunk itself
        return False
    chunks.append(chunk)
    return True


async def read_body(response: httpx.Response, blank: Callable[[bytes], bytes]) -> bytes:
    """Read and decode the body of ``response``, at most :data:`MAX_BODY_BYTES` of it.

    Args:
        response: A response whose body is not read yet (or was read by a user's transport).
        blank: Blanks secrets in the whole body, before any part of it is quoted.

    Raises:
        InvalidResponseError: The body is larger than the cap, raw or decoded, or is encoded
            in a way we did not ask for, or does not decode.
        httpx.HTTPError: The transport failed while the body streamed.
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise InvalidResponseError(_TOO_LARGE)
    if response.is_stream_consumed:
        # A transport of the user's made the response from bytes in memory (httpx read and
        # decoded them then): there is nothing left to bound.
        body = response.content
        if len(body) > MAX_BODY_BYTES:
            raise InvalidResponseError(_TOO_LARGE)
        return blank(body)
    try:
        layers = _inflaters(response.headers.get("Content-Encoding", ""))
    except InvalidResponseError:
        await response.aclose()
        raise
    chunks: list[bytes] = []
    size = raw_size = 0
    raw = response.aiter_raw()
    try:
        async for chunk in raw:
            raw_size += len(chunk)
            if raw_size > MAX_BODY_BYTES or not _fits(layers, chunk, chunks, MAX_BODY_BYTES - size):
                break
            size += len(chunks[-1])
        else:
            # Blanked whole on the way in: what quotes a part of it later could cut a key
            # in half, and half a key is no longer found.
            return blank(b"".join(chunks))
    except InvalidResponseError:
        await _drain(response, raw)
        raise
    chunks.clear()
    await _drain(response, raw)
    raise InvalidResponseError(_TOO_LARGE)
