"""Reading a body: the 1 MiB cap holds decoded, and a gzip bomb never takes memory.

The encodings are decoded by the client itself, in bounded steps, from the raw stream of
whichever transport: these tests pin what gets decoded (gzip, deflate in both of its
spellings, layers), what is refused (an encoding not asked for, a body that does not
decode, more than 1 MiB however it is encoded), and how much memory a bomb costs on each
transport over a real socket.
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from faulty_server import (
    ONE_MIB,
    REALTIME_OK,
    encoded,
    failing_first,
    faulty_server,
    gzip_bomb,
    healthy,
)
from support import API_KEY, CLIENT_ID, SLICE_ID

from wmspanel_async import InvalidResponseError, WMSPanelClient
from wmspanel_async._body import MAX_BODY_BYTES, read_body

pytestmark = pytest.mark.anyio

BODY = json.dumps(REALTIME_OK).encode()


def unchanged(data: bytes) -> bytes:
    return data


class Streamed(httpx.AsyncByteStream):
    """A raw body that streams 64 KiB at a time, as a transport hands it over."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), 64 * 1024):
            yield self.data[start : start + 64 * 1024]


def raw_response(data: bytes, encoding: str | None = None) -> httpx.Response:
    """A response whose raw body streams ``data``, unread, under ``Content-Encoding``."""
    headers = {} if encoding is None else {"Content-Encoding": encoding}
    return httpx.Response(200, headers=headers, stream=Streamed(data))


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (BODY, None),
        (BODY, "identity"),
        (gzip.compress(BODY), "gzip"),
        (gzip.compress(BODY), "x-gzip"),
        (gzip.compress(BODY), "GZIP"),
        (zlib.compress(BODY), "deflate"),
        (raw_deflate(BODY), "deflate"),
        (zlib.compress(gzip.compress(BODY)), "gzip, deflate"),
    ],
    ids=["plain", "identity", "gzip", "x-gzip", "upper-case", "zlib", "raw-deflate", "layers"],
)
async def test_encodings_asked_for_are_decoded(data: bytes, encoding: str | None) -> None:
    """gzip and deflate (zlib-wrapped or raw), alone or layered, give the body back."""
    assert await read_body(raw_response(data, encoding), unchanged) == BODY


@pytest.mark.parametrize(
    ("data", "encoding", "fragment"),
    [
        (b"\x0b\x02\x80{}\x03", "br", "encoded as 'br', which we did not ask for"),
        (b"(\xb5/\xfd", "zstd", "encoded as 'zstd', which we did not ask for"),
        (b"not gzip", "gzip", "not valid gzip"),
        (b"not deflate", "deflate", "not valid deflate"),
    ],
)
async def test_what_was_not_asked_for_or_does_not_decode_is_refused(
    data: bytes, encoding: str, fragment: str
) -> None:
    """An encoding we did not ask for is refused undecoded; a corrupt body is refused."""
    answer = raw_response(data, encoding)
    with pytest.raises(InvalidResponseError, match=fragment):
        await read_body(answer, unchanged)
    assert answer.is_closed


@pytest.mark.parametrize("encoding", ["identity", "gzip", "deflate"])
@pytest.mark.parametrize(("size", "fits"), [(MAX_BODY_BYTES, True), (MAX_BODY_BYTES + 1, False)])
async def test_the_cap_holds_on_the_decoded_body(encoding: str, size: int, fits: bool) -> None:
    """1 MiB decoded passes, one byte more is refused, whatever the encoding."""
    plain = b" " * size
    data = {"identity": plain, "gzip": gzip.compress(plain), "deflate": zlib.compress(plain)}
    answer = raw_response(data[encoding], encoding)
    if fits:
        assert await read_body(answer, unchanged) == plain
    else:
        with pytest.raises(InvalidResponseError, match="more than 1048576 bytes"):
            await read_body(answer, unchanged)
        assert answer.is_closed


async def test_a_bomb_is_refused_before_it_is_inflated() -> None:
    """A 1 GiB bomb is refused after inflating at most the cap and one byte, in no time."""
    answer = raw_response(gzip_bomb(1024), "gzip")
    started = anyio.current_time()
    with pytest.raises(InvalidResponseError, match="more than 1048576 bytes"):
        await read_body(answer, unchanged)
    assert anyio.current_time() - started < 1.0  # inflating 1 GiB would take seconds


async def test_the_raw_body_is_capped_too() -> None:
    """More than 1 MiB on the wire is refused even when it inflates to nothing."""
    # An empty stored block (5 bytes) inflates to nothing: many of them are all wire, no body.
    data = b"\x00\x00\x00\xff\xff" * (ONE_MIB // 5 + 1)
    with pytest.raises(InvalidResponseError, match="more than 1048576 bytes"):
        await read_body(raw_response(data, "deflate"), unchanged)


async def test_a_body_a_user_transport_read_already_is_checked_as_is() -> None:
    """A response built from bytes (MockTransport's) is read, capped and blanked as is."""
    assert await read_body(httpx.Response(200, content=BODY), bytes.upper) == BODY.upper()
    with pytest.raises(InvalidResponseError, match="more than 1048576 bytes"):
        await read_body(httpx.Response(200, content=b" " * (ONE_MIB + 1)), unchanged)


#: Peak memory, above what was traced before the call, that one bomb answer may cost.
BOMB_PEAK_BOUND = 8 * 1000 * 1000


@pytest.mark.heavy
@pytest.mark.parametrize(
    ("transport", "anyio_backend"),
    [("httpx", "asyncio"), ("httpx", "trio"), ("aiohttp", "asyncio")],
    ids=["httpx-asyncio", "httpx-trio", "aiohttp-asyncio"],
)
async def test_a_2_gib_bomb_costs_a_few_mib_of_memory(transport: str) -> None:
    """A 2 GiB gzip bomb (2 MiB on the wire, no Content-Length) peaks under 8 MB a call."""
    bomb = encoded(gzip_bomb(2048), "gzip", declared=False)
    async with faulty_server(failing_first(1, healthy, then=bomb)) as server:
        client = WMSPanelClient(
            CLIENT_ID,
            API_KEY,
            base_url=server.url,
            transport="aiohttp" if transport == "aiohttp" else "httpx",
            max_retries=0,
        )
        async with client:
            await client.realtime(SLICE_ID)  # warm: the converter and the pool exist
            tracemalloc.start()
            try:
                baseline = tracemalloc.get_traced_memory()[0]
                with pytest.raises(InvalidResponseError, match="more than 1048576 bytes"):
                    await client.realtime(SLICE_ID, stream="bomb")
                peak = tracemalloc.get_traced_memory()[1] - baseline
            finally:
                tracemalloc.stop()
    assert peak < BOMB_PEAK_BOUND, f"{peak / 1e6:.1f} MB"
    assert peak > MAX_BODY_BYTES // 2  # it did read up to the cap: the test measures something
