from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import anyio
import httpx
import pytest
import respx
from support import (
    API_KEY,
    CLIENT_ID,
    SLICE_ID,
    FakeUTCClock,
    make_client,
    sample_payload,
)

from wmspanel_async import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    ClientStateError,
    ConfigurationError,
    DataSlice,
    GeoEntry,
    InternalError,
    InvalidResponseError,
    RateLimitError,
    RealtimeStats,
    ServerError,
    Target,
    WMSPanelClient,
    __version__,
    _urls,
)
from wmspanel_async.testing import Simulator

pytestmark = pytest.mark.anyio

REALTIME = "/v1/realtime_data"
SLICES = "/v1/data_slices"


def query(request: httpx.Request) -> dict[str, str]:
    return dict(request.url.params)


async def test_data_slices_request_and_answer(api: respx.Router) -> None:
    """data_slices() sends GET /v1/data_slices with only the credentials and parses the list."""
    route = api.get(SLICES).respond(json=sample_payload("data_slices"))
    async with make_client(api) as client:
        slices = await client.data_slices()
    assert slices == [
        DataSlice(id="53e03c9978a6fc8596000001", name="Full data slice"),
        DataSlice(id="53e03ca678a6fc8599000001", name="DS2"),
    ]
    request = route.calls.last.request
    assert request.method == "GET"
    assert request.url.path == SLICES
    assert query(request) == {"client_id": CLIENT_ID, "api_key": API_KEY}
    assert request.headers["User-Agent"] == f"wmspanel-async/{__version__}"


async def test_realtime_sends_only_the_given_parameters(api: respx.Router) -> None:
    """realtime() sends data_slice, and stream/server only when they are given."""
    route = api.get(REALTIME).respond(json=sample_payload("realtime_data"))
    async with make_client(api) as client:
        stats = await client.realtime(SLICE_ID)
        await client.realtime(DataSlice(id=SLICE_ID, name="Full"), stream="st1")
        await client.realtime(SLICE_ID, server="sv1")
        await client.realtime(SLICE_ID, stream="st1", server="sv1")
    assert stats == RealtimeStats(
        connected=1, bandwidth=267784, geo=(GeoEntry(country="BR", connected=1),)
    )
    credentials = {"client_id": CLIENT_ID, "api_key": API_KEY}
    assert [query(call.request) for call in route.calls] == [
        {**credentials, "data_slice": SLICE_ID},
        {**credentials, "data_slice": SLICE_ID, "stream": "st1"},
        {**credentials, "data_slice": SLICE_ID, "server": "sv1"},
        {**credentials, "data_slice": SLICE_ID, "stream": "st1", "server": "sv1"},
    ]


async def test_base_url_path_prefix_is_kept(api: respx.Router) -> None:
    """A proxy mounted under a path gets the API paths below that path."""
    proxy = respx.Router(base_url="https://proxy.example/wmspanel", assert_all_called=False)
    route = proxy.get(SLICES).respond(json=sample_payload("data_slices"))
    async with make_client(
        api,
        base_url="https://proxy.example/wmspanel/",
        transport=httpx.MockTransport(proxy.async_handler),
    ) as client:
        await client.data_slices()
    assert route.calls.last.request.url.path == "/wmspanel/v1/data_slices"


async def test_empty_data_slice_is_refused(api: respx.Router) -> None:
    """An empty slice id is a typed error before any request."""
    async with make_client(api) as client:
        with pytest.raises(ConfigurationError, match="data_slice is empty"):
            await client.realtime("")
    assert api.calls.call_count == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"data_slice": b"abc"}, "data_slice must be an id string, got bytes b'abc'"),
        ({"data_slice": ["a"]}, "data_slice must be an id string, got list ['a']"),
        ({"data_slice": 53}, "data_slice must be an id string, got int 53"),
        ({"data_slice": None}, "data_slice must be an id string, got NoneType None"),
        ({"data_slice": SLICE_ID, "stream": ""}, "stream is empty; pass an id or None"),
        ({"data_slice": SLICE_ID, "server": ""}, "server is empty; pass an id or None"),
        ({"data_slice": SLICE_ID, "stream": b"s"}, "stream must be an id string, got bytes b's'"),
        ({"data_slice": SLICE_ID, "server": 7}, "server must be an id string, got int 7"),
    ],
)
async def test_ids_that_are_not_strings_are_refused(
    api: respx.Router, arguments: dict[str, Any], message: str
) -> None:
    """Ids are non-empty strings: anything else is refused before anything is sent."""
    with pytest.raises(ConfigurationError) as caught:
        Target(**arguments)
    assert str(caught.value) == message
    async with make_client(api) as client:
        with pytest.raises(ConfigurationError) as caught:
            await client.realtime(**arguments)
    assert str(caught.value) == message
    assert api.calls.call_count == 0


async def test_an_unexpected_exception_is_an_internal_error(api: respx.Router) -> None:
    """A non-httpx exception from below is an InternalError asking for a report, key-free."""

    def broken(request: httpx.Request) -> httpx.Response:
        raise ValueError(str(request.url))

    async with make_client(api, transport=httpx.MockTransport(broken)) as client:
        with pytest.raises(InternalError, match="bug in wmspanel-async") as caught:
            await client.realtime(SLICE_ID)
        [snapshot] = await client.realtime_many([Target(SLICE_ID)])
    assert isinstance(caught.value.__cause__, ValueError)
    assert API_KEY not in str(caught.value)
    assert API_KEY not in str(caught.value.__cause__)
    assert isinstance(snapshot.error, InternalError)


# Configuration --------------------------------------------------------------------------


def test_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Missing arguments fall back to WMSPANEL_CLIENT_ID, _API_KEY and _BASE_URL."""
    monkeypatch.setenv("WMSPANEL_CLIENT_ID", "env-id")
    monkeypatch.setenv("WMSPANEL_API_KEY", "env-key")
    monkeypatch.setenv("WMSPANEL_BASE_URL", "https://proxy.example")
    client = WMSPanelClient()
    assert client.client_id == "env-id"
    assert client.base_url == httpx.URL("https://proxy.example")


@pytest.mark.parametrize("missing", ["WMSPANEL_CLIENT_ID", "WMSPANEL_API_KEY"])
def test_missing_credentials(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    """Missing credentials raise ConfigurationError naming the variable to set."""
    monkeypatch.setenv("WMSPANEL_CLIENT_ID", "env-id")
    monkeypatch.setenv("WMSPANEL_API_KEY", "env-key")
    monkeypatch.delenv(missing)
    with pytest.raises(ConfigurationError, match=missing):
        WMSPanelClient()


def test_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without base_url or $WMSPANEL_BASE_URL the client talks to api.wmspanel.com."""
    monkeypatch.delenv("WMSPANEL_BASE_URL", raising=False)
    assert WMSPanelClient(CLIENT_ID, API_KEY).base_url == httpx.URL("https://api.wmspanel.com")


@pytest.mark.parametrize(
    "base_url", ["http://127.0.0.1:8080", "http://127.9.9.9", "http://[::1]:81", "http://localhost"]
)
def test_plain_http_is_allowed_on_loopback(base_url: str) -> None:
    """Local proxies and tests on loopback may use http://."""
    assert WMSPanelClient(CLIENT_ID, API_KEY, base_url=base_url).base_url == httpx.URL(base_url)


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("http://api.wmspanel.com", "is not HTTPS"),
        ("http://10.0.0.1", "is not HTTPS"),
        ("ftp://127.0.0.1", "is not HTTPS"),
        ("api.wmspanel.com", "has no host"),
        ("https://[::1", "is not a valid URL"),
    ],
)
def test_unsafe_or_broken_base_urls_are_refused(base_url: str, message: str) -> None:
    """Non-HTTPS (off loopback) and malformed base URLs raise ConfigurationError."""
    with pytest.raises(ConfigurationError, match=message):
        WMSPanelClient(CLIENT_ID, API_KEY, base_url=base_url)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_retries": -1}, "max_retries must be 0 or more"),
        ({"daily_limit": 0}, "daily_limit and max_connections must be 1 or more"),
        ({"max_connections": 0}, "daily_limit and max_connections must be 1 or more"),
        ({"deadline": 0}, "deadline must be a positive number"),
        ({"timeout": 0}, "timeout must be a positive number"),
        (
            {"transport": httpx.MockTransport(lambda _: httpx.Response(200)), "http_client": 1},
            "either transport or http_client",
        ),
        ({"transport": "requests"}, "transport='requests' is not a transport we know"),
        ({"transport": object()}, "transport must be an httpx.AsyncBaseTransport"),
        ({"transport": httpx.AsyncClient}, "transport must be an httpx.AsyncBaseTransport"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    """Out-of-range options raise ConfigurationError saying what is allowed."""
    with pytest.raises(ConfigurationError, match=message):
        WMSPanelClient(CLIENT_ID, API_KEY, **options)


def test_timeout_defaults() -> None:
    """A plain number bounds each phase, with connecting capped at 5 s."""
    assert WMSPanelClient(CLIENT_ID, API_KEY)._timeout == httpx.Timeout(10.0, connect=5.0)
    assert WMSPanelClient(CLIENT_ID, API_KEY, timeout=2)._timeout == httpx.Timeout(2.0)
    custom = httpx.Timeout(1.0, read=30.0)
    assert WMSPanelClient(CLIENT_ID, API_KEY, timeout=custom)._timeout is custom


# Status codes and bodies ------------------------------------------------------------------


async def test_403_is_an_authentication_error_naming_both_causes(api: respx.Router) -> None:
    """403 raises AuthenticationError at once (no retry) and explains both causes."""
    route = api.get(SLICES).respond(403)
    async with make_client(api) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.data_slices()
    assert caught.value.status_code == 403
    message = str(caught.value)
    assert "client_id or api_key is wrong" in message
    assert "IP address is not on the account's API whitelist" in message
    assert route.call_count == 1


async def test_other_4xx_are_not_retried(api: respx.Router) -> None:
    """404 raises a plain APIStatusError after a single attempt."""
    route = api.get(SLICES).respond(404)
    async with make_client(api) as client:
        with pytest.raises(APIStatusError) as caught:
            await client.data_slices()
    assert type(caught.value) is APIStatusError
    assert caught.value.status_code == 404
    assert "404 Not Found" in str(caught.value)
    assert route.call_count == 1


async def test_redirects_are_not_followed(api: respx.Router) -> None:
    """A 3xx is an APIStatusError; the target is named without its query string."""
    api.get(SLICES).respond(301, headers={"Location": f"https://other.example/x?api_key={API_KEY}"})
    elsewhere = api.get("https://other.example/x").respond(200)
    async with make_client(api) as client:
        with pytest.raises(APIStatusError) as caught:
            await client.data_slices()
    assert caught.value.status_code == 301
    assert "'https://other.example/x'" in str(caught.value)
    assert "set base_url" in str(caught.value)
    assert elsewhere.call_count == 0


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(429, RateLimitError), (500, ServerError), (503, ServerError), (408, APIStatusError)],
)
async def test_retryable_statuses_map_to_their_errors(
    api: respx.Router, status: int, error_type: type[APIStatusError]
) -> None:
    """Without retries left, 429, 5xx and 408 raise their own error types."""
    api.get(SLICES).respond(status, headers={"Retry-After": "7"})
    async with make_client(api, max_retries=0) as client:
        with pytest.raises(error_type) as caught:
            await client.data_slices()
    assert type(caught.value) is error_type
    assert caught.value.status_code == status
    assert caught.value.retry_after == 7.0


async def test_api_refusal_is_an_api_error(api: respx.Router) -> None:
    """A 200 with a non-"Ok" status raises APIError with the API's message, not retried."""
    route = api.get(REALTIME).respond(json={"status": "Error", "message": "no such slice"})
    async with make_client(api) as client:
        with pytest.raises(
            APIError, match="status 'Error' instead of \"Ok\": no such slice"
        ) as caught:
            await client.realtime(SLICE_ID)
    assert (caught.value.status, caught.value.api_message) == ("Error", "no such slice")
    assert not isinstance(caught.value, InvalidResponseError)
    assert route.call_count == 1


@pytest.mark.parametrize("declare_length", [True, False])
async def test_bodies_over_one_mebibyte_are_refused(
    api: respx.Router, declare_length: bool
) -> None:
    """Over 1 MiB is refused, whether announced by Content-Length or only streamed."""
    chunk = b" " * 65536

    async def endless() -> Any:
        for _ in range(17):
            yield chunk

    headers = {"Content-Length": str(17 * 65536)} if declare_length else {}
    api.get(SLICES).respond(200, headers=headers, stream=httpx.ByteStream(chunk * 17))
    if not declare_length:
        api.get(SLICES).mock(return_value=httpx.Response(200, content=endless()))
    async with make_client(api) as client:
        with pytest.raises(InvalidResponseError, match="more than 1048576 bytes"):
            await client.data_slices()


async def test_connection_errors_and_timeouts(api: respx.Router) -> None:
    """Transport failures become APIConnectionError and APITimeoutError."""
    api.get(SLICES).mock(side_effect=httpx.ConnectError("connection refused"))
    api.get(REALTIME).mock(side_effect=httpx.ReadTimeout("read timed out"))
    async with make_client(api, max_retries=0) as client:
        with pytest.raises(APIConnectionError, match="ConnectError: connection refused") as caught:
            await client.data_slices()
        assert type(caught.value) is APIConnectionError
        with pytest.raises(APITimeoutError, match="timed out"):
            await client.realtime(SLICE_ID)


# Lifecycle ---------------------------------------------------------------------------------


async def test_closed_client_refuses_calls(api: respx.Router) -> None:
    """After aclose() (idempotent) calls raise ClientStateError and send nothing."""
    client = make_client(api)
    await client.aclose()
    await client.aclose()
    assert "closed" in repr(client)
    with pytest.raises(ClientStateError, match="closed"):
        await client.data_slices()
    with pytest.raises(ClientStateError, match="closed"):
        await client.realtime_many([Target(SLICE_ID)])
    with pytest.raises(ClientStateError, match="closed"):
        async with client:
            pass
    assert api.calls.call_count == 0


async def test_user_http_client_is_not_closed(api: respx.Router) -> None:
    """A user's http_client works, never follows redirects, and stays open after aclose()."""
    api.get(SLICES).respond(json=sample_payload("data_slices"))
    api.get(REALTIME).respond(302, headers={"Location": "https://other.example/"})
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(api.async_handler), follow_redirects=True
    ) as http_client:
        async with make_client(api, transport=None, http_client=http_client) as client:
            assert len(await client.data_slices()) == 2
            with pytest.raises(APIStatusError) as caught:
                await client.realtime(SLICE_ID)
            assert caught.value.status_code == 302
        assert not http_client.is_closed
    assert query(api.calls[0].request)["api_key"] == API_KEY


def test_use_from_another_event_loop_is_refused(api: respx.Router) -> None:
    """A client used in one event loop raises ClientStateError in the next one."""
    api.get(SLICES).respond(json=sample_payload("data_slices"))
    client = make_client(api)
    assert len(anyio.run(client.data_slices)) == 2
    with pytest.raises(ClientStateError, match="another event loop"):
        anyio.run(client.data_slices, backend="trio")
    anyio.run(client.aclose)


# Many targets --------------------------------------------------------------------------------


async def test_realtime_many_keeps_order_and_isolates_failures(
    api: respx.Router, utc_clock: FakeUTCClock
) -> None:
    """Each target gets a snapshot in order; a failing one carries its error."""

    def answer(request: httpx.Request) -> httpx.Response:
        connected = int(request.url.params["data_slice"])
        if connected == 3:
            return httpx.Response(404)
        return httpx.Response(
            200, json={"status": "Ok", "realtime_data": {"connected": connected, "bandwidth": 0}}
        )

    api.get(REALTIME).mock(side_effect=answer)
    targets = [Target(str(n)) for n in range(6)]
    async with make_client(api, clock=utc_clock) as client:
        snapshots = await client.realtime_many(targets, concurrency=2)
    assert [s.target for s in snapshots] == targets
    assert [s.stats.connected if s.stats else None for s in snapshots] == [0, 1, 2, None, 4, 5]
    failed = snapshots[3]
    assert isinstance(failed.error, APIStatusError)
    assert failed.error.status_code == 404
    assert all(s.error is None for i, s in enumerate(snapshots) if i != 3)
    assert all(s.fetched_at == utc_clock.now for s in snapshots)
    assert all(s.latency >= 0 for s in snapshots)


async def test_realtime_many_bounds_concurrency(api: respx.Router) -> None:
    """No more than `concurrency` requests are in flight at once."""
    in_flight = 0
    most_in_flight = 0
    release = anyio.Event()
    arrived = 0

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most_in_flight, arrived
        in_flight += 1
        arrived += 1
        most_in_flight = max(most_in_flight, in_flight)
        if arrived == 3:
            release.set()
        await release.wait()
        in_flight -= 1
        return httpx.Response(200, json=sample_payload("realtime_data"))

    async with make_client(api, transport=httpx.MockTransport(answer)) as client:
        snapshots = await client.realtime_many([Target(str(n)) for n in range(20)], concurrency=3)
    assert most_in_flight == 3
    assert all(s.stats is not None for s in snapshots)


async def test_realtime_many_edge_cases(api: respx.Router) -> None:
    """No targets gives no snapshots; a concurrency below 1 is refused."""
    async with make_client(api) as client:
        assert await client.realtime_many([]) == []
        with pytest.raises(ConfigurationError, match="concurrency"):
            await client.realtime_many([Target(SLICE_ID)], concurrency=0)


async def test_snapshot_of_one_target(api: respx.Router, utc_clock: FakeUTCClock) -> None:
    """snapshot() returns the figures with the wall-clock time of the answer."""
    api.get(REALTIME).respond(json=sample_payload("realtime_data"))
    async with make_client(api, clock=utc_clock) as client:
        snapshot = await client.snapshot(Target(DataSlice(id=SLICE_ID, name="x"), stream="s"))
    assert snapshot.target == Target(SLICE_ID, stream="s")
    assert snapshot.stats is not None
    assert snapshot.stats.connected == 1
    assert snapshot.error is None
    assert snapshot.fetched_at == dt.datetime(2026, 11, 26, 23, 59, tzinfo=dt.timezone.utc)


def test_target_is_a_hashable_value() -> None:
    """Targets compare by value, hash, accept a DataSlice, and print readably."""
    assert Target(DataSlice(id="a", name="n")) == Target("a")
    assert len({Target("a"), Target("a"), Target("a", stream="s")}) == 2
    assert str(Target("a", stream="s", server="v")) == "data_slice=a stream=s server=v"
    assert str(Target("a")) == "data_slice=a"


async def test_show_servers_adds_server_ids(api: respx.Router) -> None:
    """data_slices(show_servers=True) asks for server ids and keeps them on each slice."""
    payload = sample_payload("data_slices")
    payload["data_slices"][0]["server_ids"] = ["5a0000000000000000000001"]
    route = api.get(SLICES).respond(json=payload)
    async with make_client(api) as client:
        slices = await client.data_slices(show_servers=True)
    assert query(route.calls.last.request)["show_servers"] == "true"
    assert slices[0].server_ids == ("5a0000000000000000000001",)
    assert slices[1].server_ids == ()


async def test_discover_targets_each_server_against_the_simulator() -> None:
    """each_server=True adds one target per server that each slice names, without repeats."""
    simulator = Simulator.demo()
    async with simulator.client() as client:
        targets = await client.discover_targets(each_server=True, servers=[])
        plain = await client.discover_targets()
    expected = []
    for data_slice in simulator.account.slices:
        expected.append(Target(data_slice.id))
        expected += [Target(data_slice.id, server=server) for server in data_slice.servers]
    assert targets == expected
    assert plain == [Target(data_slice.id) for data_slice in simulator.account.slices]
    assert len(targets) > len(plain)


@pytest.mark.virtual_time
async def test_a_reason_phrase_echoing_the_key_is_blanked_everywhere(
    api: respx.Router, caplog: pytest.LogCaptureFixture
) -> None:
    """A server echoing the request line in its reason phrase puts the key in no text."""
    caplog.set_level(logging.DEBUG)

    def echo(request: httpx.Request) -> httpx.Response:
        reason = f"Boom GET {request.url.raw_path.decode()} {API_KEY}"
        return httpx.Response(
            500, extensions={"reason_phrase": reason.encode()}, headers={"X-Echo": API_KEY}
        )

    async with make_client(api, transport=httpx.MockTransport(echo), max_retries=1) as client:
        with pytest.raises(ServerError) as caught:
            await client.realtime(SLICE_ID)
    assert "Boom GET /v1/realtime_data" in str(caught.value)
    assert API_KEY not in str(caught.value)
    names = {record.name for record in caplog.records}
    assert "wmspanel_async" in names
    assert "retry 1 of 1" in caplog.text
    assert API_KEY not in caplog.text
    for record in caplog.records:
        assert API_KEY not in record.getMessage()


@pytest.mark.parametrize(("max_retries", "expected"), [(None, "of 3"), (0, "of 1"), (4, "of 5")])
async def test_attempt_log_counts_the_attempts_this_call_may_make(
    api: respx.Router, caplog: pytest.LogCaptureFixture, max_retries: int | None, expected: str
) -> None:
    """The DEBUG line per attempt says "attempt 1 of N" with N from this call's retries."""
    caplog.set_level(logging.DEBUG, "wmspanel_async")
    api.get(REALTIME).respond(json=sample_payload("realtime_data"))
    async with make_client(api) as client:
        await client.snapshot(Target(SLICE_ID), max_retries=max_retries)
    [line] = [r.getMessage() for r in caplog.records if r.name == "wmspanel_async"]
    assert line.endswith(f"(attempt 1 {expected})")


@pytest.mark.parametrize(
    "base_url",
    [
        f"https://?api_key={API_KEY}",
        f"ftp://api.wmspanel.com/?api_key={API_KEY}",
        f"https://api.wmspanel.com:port/?api_key={API_KEY}",
        f"http://example.com/#{API_KEY}",
    ],
)
def test_a_refused_base_url_is_quoted_without_its_query(base_url: str) -> None:
    """A key in a base URL's query or fragment is never quoted when the URL is refused."""
    with pytest.raises(ConfigurationError, match="base_url") as caught:
        WMSPanelClient(CLIENT_ID, API_KEY, base_url=base_url)
    assert API_KEY not in str(caught.value)


async def test_a_transport_handed_in_sees_a_get_without_a_body() -> None:
    """A GET reaches a user's transport already read, with no body and no framing header."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=sample_payload("realtime_data"))

    async with WMSPanelClient(CLIENT_ID, API_KEY, transport=httpx.MockTransport(answer)) as client:
        await client.realtime(SLICE_ID)
    assert seen[0].content == b""
    assert "transfer-encoding" not in seen[0].headers
    assert "content-length" not in seen[0].headers


async def test_a_transport_handed_in_gets_the_headers_of_a_plain_get() -> None:
    """The request carries Host (port included), httpx's usual headers and ours; no cookie."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json=sample_payload("realtime_data"), headers={"Set-Cookie": "session=1"}
        )

    async with WMSPanelClient(
        CLIENT_ID,
        API_KEY,
        base_url="https://proxy.example:8443/wms/",
        transport=httpx.MockTransport(answer),
    ) as client:
        await client.realtime(SLICE_ID)
        await client.realtime(SLICE_ID)
    assert [request.headers.raw for request in seen] == 2 * [
        [
            (b"Host", b"proxy.example:8443"),
            (b"Accept", b"*/*"),
            (b"Accept-Encoding", b"gzip, deflate"),
            (b"Connection", b"keep-alive"),
            (b"User-Agent", f"wmspanel-async/{__version__}".encode()),
        ]
    ]
    assert seen[0].url.path == "/wms/v1/realtime_data"
    assert seen[0].extensions["timeout"] == {
        "connect": 5.0,
        "read": 10.0,
        "write": 10.0,
        "pool": 10.0,
    }


def no_longer_assembles(endpoint: httpx.URL) -> None:
    """What assembling does if a release of httpx drops the attribute it relies on."""
    raise AttributeError("_uri_reference")


@pytest.mark.parametrize("assembles", [True, False], ids=["assembled", "built-and-kept"])
async def test_each_call_sends_its_ids_and_the_credentials(
    api: respx.Router, monkeypatch: pytest.MonkeyPatch, assembles: bool
) -> None:
    """Assembled, or built once and kept if a release of httpx broke assembling."""
    if not assembles:
        monkeypatch.setattr(_urls, "_assembler", no_longer_assembles)
    api.get(REALTIME).respond(json=sample_payload("realtime_data"))
    async with make_client(api) as client:
        for _ in range(2):
            await client.realtime(SLICE_ID, stream="s")
        first, second = (call.request.url for call in api.calls)
        assert first == second
        assert dict(first.params) == {
            "data_slice": SLICE_ID,
            "stream": "s",
            "client_id": CLIENT_ID,
            "api_key": API_KEY,
        }
        kept = client._pipeline.request_url.kept
        assert list(kept.values()) == ([] if assembles else [first])
