"""Properties of the client for any answer and any id, found by hypothesis.

Response path: whatever body the API sends (any JSON value, any bytes, deep nesting, huge
numbers, alone or inside the documented envelope), a call ends in a model or in a
``WMSPanelError``, never in anything raw; a body that is the documented JSON gives exactly
its figures, and one that is not gives ``InvalidResponseError``. Request path: any id text
reaches the server percent-encoded, as exactly the value given, with no parameter added or
changed. Each example runs in an event loop of its own (``anyio.run``) on asyncio and trio.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl

import anyio
import httpx
import pytest
from faulty_server import ONE_MIB, secret_fragment, texts_of
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from support import API_KEY, CLIENT_ID, SLICE_ID

from wmspanel_async import (
    ConfigurationError,
    DataSlice,
    GeoEntry,
    InvalidResponseError,
    RealtimeStats,
    Target,
    WMSPanelClient,
    WMSPanelError,
)

BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])
ENDPOINTS = ("realtime", "data_slices")

PROPERTIES = settings(
    max_examples=150,
    deadline=None,
    database=None,  # nothing written into the checkout; failures print their reproduction
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Handler = Callable[[httpx.Request], httpx.Response]


# -- driving the client ------------------------------------------------------------------


def call(backend: str, handler: Handler, endpoint: str, **ids: Any) -> object:
    """Make one call through ``handler`` in a fresh event loop; return its result or error.

    Only ``WMSPanelError`` is caught: anything else escaping fails the property.
    """

    async def main() -> object:
        transport = httpx.MockTransport(handler)
        async with WMSPanelClient(CLIENT_ID, API_KEY, transport=transport, max_retries=0) as client:
            try:
                if endpoint == "realtime":
                    return await client.realtime(ids.pop("data_slice", SLICE_ID), **ids)
                return await client.data_slices()
            except WMSPanelError as exc:
                return exc

    return anyio.run(main, backend=backend)


def answering(body: bytes, status: int = 200) -> Handler:
    """A server that answers every request with ``body``, as JSON."""

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"Content-Type": "application/json"})

    return handler


# -- what the answer should give (the oracle) --------------------------------------------


class Invalid(Exception):
    """The body is not the documented JSON: the call must raise InvalidResponseError."""


class NotOk(Exception):
    """The body's status is not "Ok": the call must raise a WMSPanelError saying so."""


class Either(Exception):
    """The documentation does not settle it (an empty id): a model or InvalidResponseError."""


def _integer(value: object) -> int:
    # JSON integers, and integral floats (how some encoders write large counters); not bools.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    raise Invalid


def _string(value: object) -> str:
    if isinstance(value, str):
        return value
    raise Invalid


def _list(value: object) -> list[Any]:
    if isinstance(value, list):
        return value
    raise Invalid


def _object(value: object) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise Invalid


def _envelope(payload: object, field: str) -> object:
    answer = _object(payload)
    if answer.get("status") != "Ok":
        raise NotOk
    if field not in answer:
        raise Invalid
    return answer[field]


def expected_realtime(payload: object) -> RealtimeStats:
    """The figures the documented realtime answer ``payload`` holds, or why there are none."""
    data = _object(_envelope(payload, "realtime_data"))
    if "connected" not in data or "bandwidth" not in data:
        raise Invalid
    geo = []
    for entry in _list(data.get("geo", [])):
        pair = _list(entry)
        if len(pair) != 2:
            raise Invalid
        geo.append(GeoEntry(country=_string(pair[0]), connected=_integer(pair[1])))
    return RealtimeStats(
        connected=_integer(data["connected"]),
        bandwidth=_integer(data["bandwidth"]),
        geo=tuple(geo),
    )


def expected_slices(payload: object) -> list[DataSlice]:
    """The slices the documented data_slices answer ``payload`` holds, or why there are none."""
    slices = []
    unsettled = False
    for entry in _list(_envelope(payload, "data_slices")):
        item = _object(entry)
        if "id" not in item or "name" not in item:
            raise Invalid
        server_ids = tuple(_string(server) for server in _list(item.get("server_ids", [])))
        slice_id = _string(item["id"])
        unsettled = unsettled or not slice_id
        slices.append(DataSlice(id=slice_id, name=_string(item["name"]), server_ids=server_ids))
    if unsettled:
        raise Either
    return slices


EXPECTED: dict[str, Callable[[object], object]] = {
    "realtime": expected_realtime,
    "data_slices": expected_slices,
}
MODELS: dict[str, Callable[[object], bool]] = {
    "realtime": lambda result: isinstance(result, RealtimeStats),
    "data_slices": lambda result: (
        isinstance(result, list) and all(isinstance(item, DataSlice) for item in result)
    ),
}


def assert_model_or_our_error(result: object, endpoint: str) -> None:
    """The weakest promise, for any body at all: a model, or one of our errors."""
    assert isinstance(result, WMSPanelError) or MODELS[endpoint](result), repr(result)


def assert_as_documented(result: object, payload: object, endpoint: str) -> None:
    """The call gives exactly what the oracle makes of ``payload``."""
    try:
        expected = EXPECTED[endpoint](payload)
    except NotOk:
        assert isinstance(result, WMSPanelError), repr(result)
        assert "status" in str(result)
    except Invalid:
        assert isinstance(result, InvalidResponseError), repr(result)
    except Either:
        assert isinstance(result, InvalidResponseError) or MODELS[endpoint](result), repr(result)
    else:
        assert result == expected


# -- strategies ----------------------------------------------------------------------------

integers = st.integers() | st.integers(min_value=-(10**300), max_value=10**300)
integral_floats = st.integers(min_value=-(2**60), max_value=2**60).map(float)
#: Any float JSON can carry from Python: huge ones and infinities included, never NaN.
floats = st.floats(allow_nan=False)
scalars = st.none() | st.booleans() | integers | floats | st.text(max_size=20)
#: What a careless encoder writes for an empty or missing list.
awkward: st.SearchStrategy[Any] = st.sampled_from(["", {}, None, "ab", [], 0])
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)

#: Numbers as the API writes them, or anything at all.
counts = integers | integral_floats | json_values
geo_entries = st.tuples(st.text(max_size=3), counts).map(list) | json_values
geos = st.lists(geo_entries, max_size=4) | awkward | json_values
realtime_data = (
    st.fixed_dictionaries(
        {"connected": counts, "bandwidth": counts}, optional={"geo": geos, "other": json_values}
    )
    | st.fixed_dictionaries(
        {}, optional={"connected": counts, "bandwidth": counts, "geo": geos, "other": json_values}
    )
    | awkward
    | json_values
)
_slice_fields = {
    "server_ids": st.lists(st.text(max_size=4), max_size=3) | awkward | json_values,
    "other": json_values,
}
slice_entries = (
    st.fixed_dictionaries(
        {"id": st.text(max_size=24), "name": st.text(max_size=10)}, optional=_slice_fields
    )
    | st.fixed_dictionaries(
        {},
        optional={
            "id": st.text(max_size=24) | json_values,
            "name": st.text(max_size=10) | json_values,
            **_slice_fields,
        },
    )
    | json_values
)
statuses = st.just("Ok") | st.sampled_from(["Error", "ok", "OK", ""]) | json_values


def envelopes(field: str, contents: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The documented envelope around ``contents``, sometimes with its status or field off."""
    return st.fixed_dictionaries(
        {"status": statuses},
        optional={field: contents, "message": json_values, "other": json_values},
    ) | st.fixed_dictionaries({"status": st.just("Ok"), field: contents})


PAYLOADS = {
    "realtime": envelopes("realtime_data", realtime_data) | json_values,
    "data_slices": envelopes(
        "data_slices", st.lists(slice_entries, max_size=4) | awkward | json_values
    )
    | json_values,
}

#: Nesting depths around the JSON decoder's recursion limit, and far beyond.
depths = st.sampled_from([1, 10, 500, 900, 990, 999, 1000, 1001, 2000, 100_000]) | st.integers(
    1, 5000
)


@st.composite
def deep_bodies(draw: st.DrawFn) -> bytes:
    """A body nested ``depth`` levels, alone, inside the envelope, or as the status."""
    depth = draw(depths)
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    closed = draw(st.booleans())
    nested = opener * depth + (b"1" + closer * depth if closed else b"")
    where = draw(
        st.sampled_from(
            [
                b"%s",
                b'{"status": "Ok", "realtime_data": %s}',
                b'{"status": "Ok", "data_slices": %s}',
                b'{"status": "Ok", "realtime_data": {"connected": %s, "bandwidth": 1}}',
                b'{"status": %s}',
                b'{"status": "Error", "message": %s}',
            ]
        )
    )
    return where.replace(b"%s", nested)


special_bodies = st.sampled_from(
    [
        b"",
        b"null",
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"\xef\xbb\xbf{}",
        b"9" * 5000,  # beyond Python's digit limit for int()
        b'{"status": "Ok", "realtime_data": {"connected": ' + b"9" * 5000 + b', "bandwidth": 1}}',
        b'{"status": "Ok", "realtime_data": {"connected": 1e999, "bandwidth": 1}}',
        b'{"status": "Ok", "realtime_data": {"connected": NaN, "bandwidth": 1}}',
        b'{"status": "Ok", "realtime_data": {"connected": 1, "bandwidth": 1, "geo": ""}}',
        b'{"status": "Ok", "realtime_data": {"connected": 1, "bandwidth": 1, "geo": {}}}',
        b'{"status": "Ok", "realtime_data": {"connected": 1, "bandwidth": 1, "geo": null}}',
        b'{"status": "Ok", "realtime_data": null}',
        b'{"status": "Ok", "data_slices": ""}',
        b'{"status": "Ok", "data_slices": {}}',
        b'{"status": "Ok", "data_slices": null}',
        b"<html><body>Welcome</body></html>",
    ]
)
any_bodies = st.binary(max_size=300) | special_bodies | deep_bodies()


# -- the response path ---------------------------------------------------------------------


@BACKENDS
@pytest.mark.parametrize("endpoint", ENDPOINTS)
@PROPERTIES
@given(body=any_bodies)
def test_any_body_gives_a_model_or_our_error(backend: str, endpoint: str, body: bytes) -> None:
    """Any bytes at all, deep nesting and huge numbers included: a model or a WMSPanelError."""
    result = call(backend, answering(body), endpoint)
    assert_model_or_our_error(result, endpoint)


@BACKENDS
@pytest.mark.parametrize("endpoint", ENDPOINTS)
@PROPERTIES
@given(data=st.data())
def test_any_json_gives_exactly_what_it_documents(
    backend: str, endpoint: str, data: st.DataObject
) -> None:
    """Any JSON value, bare or enveloped: its figures if documented, else InvalidResponseError."""
    payload = data.draw(PAYLOADS[endpoint], label="payload")
    result = call(backend, answering(json.dumps(payload).encode()), endpoint)
    event(f"gave {type(result).__name__}")
    assert_as_documented(result, payload, endpoint)


def _realtime(**data: object) -> dict[str, object]:
    return {"status": "Ok", "realtime_data": {"connected": 1, "bandwidth": 2, **data}}


def _slices(value: object) -> dict[str, object]:
    return {"status": "Ok", "data_slices": value}


SHAPES = [
    pytest.param("realtime", _realtime(geo=""), id="geo-empty-string"),
    pytest.param("realtime", _realtime(geo={}), id="geo-empty-object"),
    pytest.param("realtime", _realtime(geo=None), id="geo-null"),
    pytest.param("realtime", _realtime(geo="ab"), id="geo-string"),
    pytest.param("realtime", _realtime(geo=[["US"]]), id="geo-short-pair"),
    pytest.param("realtime", _realtime(geo=[["US", True]]), id="geo-bool-count"),
    pytest.param("realtime", _realtime(geo=[["US", 1.5]]), id="geo-fractional-count"),
    pytest.param("realtime", _realtime(connected=True), id="connected-bool"),
    pytest.param("realtime", _realtime(connected=2**200, bandwidth=1e300), id="huge-numbers"),
    pytest.param("realtime", _realtime(bandwidth=float("inf")), id="infinite-bandwidth"),
    pytest.param("realtime", {"status": "Ok", "realtime_data": None}, id="realtime-data-null"),
    pytest.param("realtime", {"status": "Ok", "realtime_data": []}, id="realtime-data-list"),
    pytest.param("realtime", {"status": "Ok", "realtime_data": "x"}, id="realtime-data-string"),
    pytest.param("realtime", {"status": "Error", "message": "overloaded"}, id="status-error"),
    pytest.param("data_slices", _slices(""), id="slices-empty-string"),
    pytest.param("data_slices", _slices({}), id="slices-empty-object"),
    pytest.param("data_slices", _slices(None), id="slices-null"),
    pytest.param("data_slices", _slices("ab"), id="slices-string"),
    pytest.param(
        "data_slices",
        _slices([{"id": "x", "name": "n", "server_ids": ""}]),
        id="server-ids-empty-string",
    ),
    pytest.param(
        "data_slices",
        _slices([{"id": "x", "name": "n", "server_ids": "ab"}]),
        id="server-ids-string",
    ),
    pytest.param(
        "data_slices",
        _slices([{"id": "x", "name": "n", "server_ids": {}}]),
        id="server-ids-empty-object",
    ),
    pytest.param(
        "data_slices", _slices([{"id": "x", "name": "n", "server_ids": None}]), id="server-ids-null"
    ),
    pytest.param("data_slices", {"message": "no status"}, id="status-missing"),
]


@BACKENDS
@pytest.mark.parametrize(("endpoint", "payload"), SHAPES)
def test_listed_shapes_give_what_they_document(
    backend: str, endpoint: str, payload: object
) -> None:
    """The shapes named in the issue ("" / {} / null for a list, and so on) are pinned."""
    result = call(backend, answering(json.dumps(payload).encode()), endpoint)
    assert_as_documented(result, payload, endpoint)


@BACKENDS
@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(("size", "fits"), [(ONE_MIB, True), (ONE_MIB + 1, False)])
def test_body_size_limit_is_one_mebibyte(
    backend: str, endpoint: str, size: int, fits: bool
) -> None:
    """A documented answer padded to exactly 1 MiB parses; one byte more is refused."""
    payload: object = {"status": "Ok", "data_slices": []}
    if endpoint == "realtime":
        payload = {"status": "Ok", "realtime_data": {"connected": 1, "bandwidth": 2}}
    compact = json.dumps(payload).encode()
    body = compact + b" " * (size - len(compact))
    result = call(backend, answering(body), endpoint)
    if fits:
        assert result == EXPECTED[endpoint](payload)
    else:
        assert isinstance(result, InvalidResponseError), repr(result)
        assert "1048576 bytes" in str(result)


ECHO_TEMPLATES = [
    "{query}",
    "{url}",
    '{{"status": "{query}"}}',
    '{{"status": "{prefix}{query}"}}',
    '{{"status": "Error", "message": "{prefix}{url}"}}',
    '{{"status": "Ok", "realtime_data": {{"connected": "{prefix}{query}", "bandwidth": 1}}}}',
    '{{"status": "Ok", "realtime_data": {{"connected": 1, "bandwidth": 1, "geo": [["{query}"]]}}}}',
    '{{"status": "Ok", "data_slices": [{{"id": 1, "name": "{prefix}api_key={key}"}}]}}',
    "<html>{prefix}{url}</html>",
    # The bare key, with no "api_key=" before it to give it away.
    "unknown key {prefix}{key}",
    '{{"status": "unknown key {prefix}{key}"}}',
    '{{"status": "Error", "message": "{prefix}{key}{prefix}{key}"}}',
    '{{"status": "Ok", "realtime_data": {{"connected": "{prefix}{key}", "bandwidth": 1}}}}',
]


class Recorder(logging.Handler):
    """Keeps every formatted record, traceback text included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(logging.Formatter("%(name)s %(message)s").format(record))


@contextlib.contextmanager
def recording_every_record() -> Iterator[Recorder]:
    """Record what every logger logs at DEBUG while the block runs."""
    recorder = Recorder()
    root = logging.getLogger()
    level = root.level
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    try:
        yield recorder
    finally:
        root.removeHandler(recorder)
        root.setLevel(level)


@BACKENDS
@pytest.mark.parametrize("endpoint", ENDPOINTS)
@PROPERTIES
@given(
    template=st.sampled_from(ECHO_TEMPLATES),
    prefix=st.text(st.characters(codec="ascii", exclude_characters='"\\'), max_size=60),
    status=st.sampled_from([200, 200, 400, 403, 404, 429, 500, 503]),
)
def test_echoed_key_never_leaks(
    backend: str, endpoint: str, template: str, prefix: str, status: int
) -> None:
    """A body quoting the request (key included) at any offset leaks no piece of the key."""

    def echo(request: httpx.Request) -> httpx.Response:
        text = template.format(
            query=request.url.query.decode(), url=request.url, prefix=prefix, key=API_KEY
        )
        return httpx.Response(status, content=text.encode(), headers={"Retry-After": "1"})

    with recording_every_record() as recorder:
        result = call(backend, echo, endpoint)
    assert isinstance(result, WMSPanelError), repr(result)
    text = texts_of(result)
    assert secret_fragment(text, API_KEY) is None, text
    for line in recorder.texts:
        assert secret_fragment(line, API_KEY) is None, line


#: Servers that quote the bare key (no "api_key=" before it) where the client cuts texts
#: short: status, body text, reason phrase, a mistyped value. (status, body, reason phrase)
BARE_KEY_ECHOES = {
    "text-body": (200, "{prefix}{key}", None),
    "json-status": (200, '{{"status": "{prefix}{key}"}}', None),
    "json-message": (200, '{{"status": "Error", "message": "{prefix}{key}"}}', None),
    "mistyped-field": (
        200,
        '{{"status": "Ok", "realtime_data": {{"connected": "{prefix}{key}", "bandwidth": 1}}}}',
        None,
    ),
    "reason-phrase-503": (503, "{{}}", "{prefix}{key}"),
    "reason-phrase-404": (404, "{{}}", "{prefix}{key}"),
}


@BACKENDS
@pytest.mark.parametrize("echo", BARE_KEY_ECHOES)
def test_a_key_cut_short_at_any_offset_never_leaks(backend: str, echo: str) -> None:
    """Wherever a quoted text is cut, no piece of a bare key survives in errors or logs."""
    status, body, reason = BARE_KEY_ECHOES[echo]
    offsets = range(230)
    leaks: list[tuple[int, str]] = []
    prefix = ""

    def handler(_: httpx.Request) -> httpx.Response:
        extensions = {}
        if reason is not None:
            extensions["reason_phrase"] = reason.format(prefix=prefix, key=API_KEY).encode()
        content = body.format(prefix=prefix, key=API_KEY).encode()
        return httpx.Response(status, content=content, extensions=extensions)

    async def main() -> None:
        nonlocal prefix
        transport = httpx.MockTransport(handler)
        async with WMSPanelClient(CLIENT_ID, API_KEY, transport=transport, max_retries=0) as client:
            for offset in offsets:
                prefix = "x" * offset
                try:
                    await client.realtime(SLICE_ID)
                except WMSPanelError as exc:
                    piece = secret_fragment(texts_of(exc), API_KEY)
                    if piece is not None:
                        leaks.append((offset, f"error: {piece}"))
                else:
                    pytest.fail(f"offset {offset}: no error")

    with recording_every_record() as recorder:
        anyio.run(main, backend=backend)
    leaks += [
        (-1, f"log: {line[:200]}") for line in recorder.texts if secret_fragment(line, API_KEY)
    ]
    offsets_leaking = sorted({offset for offset, _ in leaks})
    assert not leaks, f"{len(leaks)} leaks at offsets {offsets_leaking}, first: {leaks[0]}"


#: JSON answers that the client refuses, quoting the ``{echo}`` they hold (cut short).
SPELLED_KEY_TEMPLATES = [
    '{{"status": "{echo}"}}',
    '{{"status": "Error", "message": "{echo}"}}',
    '{{"status": "Ok", "realtime_data": {{"connected": "{echo}", "bandwidth": 1}}}}',
    '{{"status": "Ok", "realtime_data": {{"connected": 1, "bandwidth": "{echo}"}}}}',
    '{{"status": "Ok", "realtime_data": {{"connected": 1, "bandwidth": 1, "geo": [["{echo}"]]}}}}',
    '{{"status": "Ok", "realtime_data": {{"connected": 1, "bandwidth": 1, '
    '"geo": [["BR", "{echo}"]]}}}}',
    '{{"status": "Ok", "data_slices": [{{"id": "{echo}", "name": 1}}]}}',
]


@st.composite
def spellings(draw: st.DrawFn, key: str) -> tuple[str, bool]:
    """Spell ``key`` as a server might echo it into JSON: any case, any character escaped.

    Returns the spelling and whether it is cut short (a head of 12 or more characters).
    """
    length = draw(st.integers(min_value=12, max_value=len(key)) | st.just(len(key)))
    spelled = []
    for char in key[:length]:
        char = char.upper() if draw(st.booleans()) else char.lower()  # noqa: PLW2901
        if draw(st.booleans()):
            escape = f"\\u{ord(char):04x}"
            char = escape.upper().replace("\\U", "\\u") if draw(st.booleans()) else escape  # noqa: PLW2901
        spelled.append(char)
    return "".join(spelled), length < len(key)


@BACKENDS
@PROPERTIES
@given(
    key=st.text("0123456789abcdefABCDEF", min_size=32, max_size=32),
    data=st.data(),
    template=st.sampled_from(SPELLED_KEY_TEMPLATES),
    prefix=st.text(st.characters(codec="ascii", exclude_characters='"\\'), max_size=230),
    label=st.sampled_from(["", "api_key=", "API_KEY=", "Api_Key="]),
)
def test_a_key_in_any_case_escaped_and_cut_never_leaks(
    backend: str, *, key: str, data: st.DataObject, template: str, prefix: str, label: str
) -> None:
    """Any case, any JSON escapes, any field, cut anywhere: no 12 characters of the key leak.

    Checked in every text of the error and of all it leads to (messages, reprs, arguments,
    attributes, the traceback) and in every log record.
    """
    spelled, cut = data.draw(spellings(key))
    event(f"cut short: {cut}")
    body = template.format(echo=f"{prefix}{label}{spelled}").encode()
    endpoint = "data_slices" if "data_slices" in template else "realtime"

    async def main() -> object:
        transport = httpx.MockTransport(answering(body))
        async with WMSPanelClient(CLIENT_ID, key, transport=transport, max_retries=0) as client:
            try:
                if endpoint == "realtime":
                    return await client.realtime(SLICE_ID)
                return await client.data_slices()
            except WMSPanelError as exc:
                return exc

    with recording_every_record() as recorder:
        result = anyio.run(main, backend=backend)
    assert isinstance(result, WMSPanelError), repr(result)
    text = texts_of(result)
    assert secret_fragment(text, key) is None, text
    for line in recorder.texts:
        assert secret_fragment(line, key) is None, line


@BACKENDS
@PROPERTIES
@given(
    key=st.text("0123456789abcdefABCDEF", min_size=32, max_size=32),
    flips=st.lists(st.booleans(), min_size=32, max_size=32),
    prefix=st.text(st.characters(codec="ascii", exclude_characters="\r\n"), max_size=120),
    status=st.sampled_from([400, 404, 500, 503]),
)
def test_a_key_in_any_case_in_a_reason_phrase_never_leaks(
    backend: str, key: str, flips: list[bool], prefix: str, status: int
) -> None:
    """A reason phrase quoting the key in any case, at any offset, leaks none of it."""
    echoed = "".join(c.upper() if flip else c.lower() for c, flip in zip(key, flips, strict=True))

    def handler(_: httpx.Request) -> httpx.Response:
        reason = f"{prefix}{echoed}".encode()
        return httpx.Response(status, content=b"{}", extensions={"reason_phrase": reason})

    async def main() -> object:
        transport = httpx.MockTransport(handler)
        async with WMSPanelClient(CLIENT_ID, key, transport=transport, max_retries=0) as client:
            try:
                return await client.realtime(SLICE_ID)
            except WMSPanelError as exc:
                return exc

    with recording_every_record() as recorder:
        result = anyio.run(main, backend=backend)
    assert isinstance(result, WMSPanelError), repr(result)
    assert secret_fragment(texts_of(result), key) is None, texts_of(result)
    for line in recorder.texts:
        assert secret_fragment(line, key) is None, line


# -- the request path ----------------------------------------------------------------------

ids = st.text(min_size=1)


def recording(seen: list[httpx.Request]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"status": "Ok", "realtime_data": {"connected": 1, "bandwidth": 2}}
        )

    return handler


@BACKENDS
@PROPERTIES
@given(data_slice=ids, stream=st.none() | ids, server=st.none() | ids)
@example(data_slice=SLICE_ID, stream="a&api_key=evil&data_slice=x#frag", server=None)
@example(data_slice="x?client_id=evil", stream="%41%26", server="a+b c;d")
def test_any_id_text_reaches_the_server_as_given(
    backend: str, data_slice: str, stream: str | None, server: str | None
) -> None:
    """Ids are percent-encoded: the server sees exactly them, and only the expected params."""
    seen: list[httpx.Request] = []
    result = call(
        backend, recording(seen), "realtime", data_slice=data_slice, stream=stream, server=server
    )
    assert result == RealtimeStats(connected=1, bandwidth=2)
    [request] = seen
    assert request.url.path == "/v1/realtime_data"
    raw_path = request.url.raw_path
    assert raw_path.startswith(b"/v1/realtime_data?")
    assert raw_path.isascii()
    assert not any(byte in raw_path for byte in b" #\r\n\t")
    query = raw_path.partition(b"?")[2].decode("ascii")
    expected = {"data_slice": data_slice, "client_id": CLIENT_ID, "api_key": API_KEY}
    if stream is not None:
        expected["stream"] = stream
    if server is not None:
        expected["server"] = server
    params = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    assert sorted(params) == sorted(expected.items())


not_ids = (
    st.just("")
    | st.binary()
    | st.integers()
    | st.floats()
    | st.booleans()
    | st.lists(st.text(min_size=1), max_size=2)
    | st.tuples(st.text(min_size=1))
    | st.dictionaries(st.text(), st.text(), max_size=2)
)


def _sent_nothing(backend: str, attempt: Callable[[WMSPanelClient], Awaitable[object]]) -> object:
    """Run ``attempt`` on a client whose server counts requests; return its error."""
    seen: list[httpx.Request] = []

    async def main() -> object:
        transport = httpx.MockTransport(recording(seen))
        async with WMSPanelClient(CLIENT_ID, API_KEY, transport=transport, max_retries=0) as client:
            try:
                await attempt(client)
            except WMSPanelError as exc:
                return exc
        return None

    error = anyio.run(main, backend=backend)
    assert seen == []
    return error


@BACKENDS
@PROPERTIES
@given(where=st.sampled_from(["data_slice", "stream", "server"]), bad=not_ids)
@example(where="data_slice", bad=b"abc")
@example(where="data_slice", bad=None)
@example(where="stream", bad="")
@example(where="server", bad=123)
def test_an_id_that_is_not_a_nonempty_string_is_refused_unsent(
    backend: str, where: str, bad: object
) -> None:
    """Target() and realtime() refuse non-string or empty ids with ConfigurationError."""
    if where != "data_slice" and bad is None:
        return  # no stream or server: allowed
    ids: dict[str, Any] = {"data_slice": SLICE_ID, where: bad}
    with pytest.raises(ConfigurationError):
        Target(ids.pop("data_slice"), **ids)

    async def realtime(client: WMSPanelClient) -> object:
        arguments: dict[str, Any] = {"data_slice": SLICE_ID, where: bad}
        return await client.realtime(arguments.pop("data_slice"), **arguments)

    error = _sent_nothing(backend, realtime)
    assert isinstance(error, ConfigurationError), repr(error)


@BACKENDS
def test_an_empty_data_slice_object_is_refused_unsent(backend: str) -> None:
    """A DataSlice whose id is empty is refused before anything is sent."""

    async def realtime(client: WMSPanelClient) -> object:
        return await client.realtime(DataSlice(id="", name="nameless"))

    with pytest.raises(ConfigurationError):
        Target(DataSlice(id="", name="nameless"))
    assert isinstance(_sent_nothing(backend, realtime), ConfigurationError)
