"""The simulator answers as the documented API does, moves like a real service, and fails on cue."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import attrs
import httpx
import pytest
from support import sample_payload

from wmspanel_async import ServerError, Target
from wmspanel_async.testing import (
    Account,
    APIKey,
    Fault,
    FaultKind,
    Server,
    Simulator,
    Slice,
    Stream,
    serve,
)
from wmspanel_async.testing._simulator import _LoopClock
from wmspanel_async.testing._traffic import apportion

pytestmark = pytest.mark.anyio

NOON = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.timezone.utc)
SLICES = "/v1/data_slices"
REALTIME = "/v1/realtime_data"
OBJECT_ID = re.compile(r"[0-9a-f]{24}")


def fixed(when: dt.datetime) -> Callable[[], dt.datetime]:
    return lambda: when


class API:
    """Raw HTTP access to a simulator, as the account's (or another) key."""

    def __init__(self, simulator: Simulator, http: httpx.AsyncClient) -> None:
        self.simulator = simulator
        self.http = http
        self.account = simulator.account

    async def get(self, path: str, *, key: str | None = None, **params: str) -> httpx.Response:
        credentials = {"client_id": self.account.client_id, "api_key": key or self.account.api_key}
        return await self.http.get(path, params={**credentials, **params})

    async def realtime(self, **params: str) -> dict[str, Any]:
        response = await self.get(REALTIME, **params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["status"] == "Ok", body
        return body["realtime_data"]  # type: ignore[no-any-return]


@pytest.fixture
async def api() -> AsyncIterator[API]:
    """The generated account of seed 0, at a fixed noon, with no latency."""
    simulator = Simulator(seed=0, clock=fixed(NOON))
    async with httpx.AsyncClient(transport=simulator.transport(), base_url="http://sim") as http:
        yield API(simulator, http)


async def open_api(simulator: Simulator, **options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=simulator.transport(**options), base_url="http://sim")


# The documented answers --------------------------------------------------------------------


async def test_sample_account_answers_the_documented_payloads_byte_for_byte_in_json() -> None:
    """The sample account's answers equal the vendor's sample data_slices and realtime_data."""
    simulator = Simulator([Account.sample()])
    async with await open_api(simulator) as http:
        api = API(simulator, http)
        slices = await api.get(SLICES)
        realtime = await api.get(REALTIME, data_slice="53e03c9978a6fc8596000001")
    assert slices.json() == sample_payload("data_slices")
    assert realtime.json() == sample_payload("realtime_data")
    assert slices.headers["content-type"] == "application/json"


async def test_data_slices_shape(api: API) -> None:
    """data_slices lists id and name only, ids of 24 hex digits, in the account's order."""
    body = (await api.get(SLICES)).json()
    assert list(body) == ["status", "data_slices"]
    assert body["status"] == "Ok"
    assert [item["name"] for item in body["data_slices"]] == [
        "All streams",
        "Sports",
        "Europe edge",
        "Edges overview",
    ]
    for item in body["data_slices"]:
        assert list(item) == ["id", "name"]
        assert OBJECT_ID.fullmatch(item["id"])


async def test_show_servers_adds_server_ids(api: API) -> None:
    """show_servers=true adds each slice's server ids, as third-party code observed."""
    body = (await api.get(SLICES, show_servers="true")).json()
    by_name = {item["name"]: item for item in body["data_slices"]}
    edge = next(server for server in api.account.servers if server.name == "edge-fra-1")
    assert by_name["Europe edge"]["server_ids"] == [edge.id]
    assert len(by_name["All streams"]["server_ids"]) == 3


async def test_realtime_shape_and_geo_top_20(api: API) -> None:
    """realtime_data has connected, bandwidth and geo: at most 20 [alpha2, n] pairs by count."""
    data = await api.realtime(data_slice=api.account.slices[0].id)
    assert list(data) == ["connected", "bandwidth", "geo"]
    assert data["connected"] > 0
    assert data["bandwidth"] > 0
    geo = data["geo"]
    assert len(geo) == 20  # the account's streams draw viewers from 30 countries
    counts = [count for _, count in geo]
    assert counts == sorted(counts, reverse=True)
    assert all(re.fullmatch(r"[A-Z]{2}", country) for country, _ in geo)
    assert sum(counts) <= data["connected"]


# Figures that add up -----------------------------------------------------------------------


async def test_slice_figures_are_the_sums_of_streams_and_of_servers(api: API) -> None:
    """A slice's connected and bandwidth are the sums over its streams, and over its servers."""
    account = api.account
    whole = account.slices[0]
    total = await api.realtime(data_slice=whole.id)
    per_stream = [await api.realtime(data_slice=whole.id, stream=s.id) for s in account.streams]
    per_server = [await api.realtime(data_slice=whole.id, server=s.id) for s in account.servers]
    for parts in (per_stream, per_server):
        assert sum(part["connected"] for part in parts) == total["connected"]
        assert sum(part["bandwidth"] for part in parts) == total["bandwidth"]


async def test_stream_and_server_combined(api: API) -> None:
    """stream + server gives that stream on that server; over all servers it adds up."""
    account = api.account
    whole = account.slices[0]
    stream = account.streams[1]
    alone = await api.realtime(data_slice=whole.id, stream=stream.id)
    parts = [
        await api.realtime(data_slice=whole.id, stream=stream.id, server=server.id)
        for server in account.servers
    ]
    assert sum(part["connected"] for part in parts) == alone["connected"]
    for part in parts:
        assert part["bandwidth"] == part["connected"] * stream.bitrate


async def test_slice_with_chosen_streams_sums_only_those(api: API) -> None:
    """The Sports slice is exactly the sum of its two sports streams."""
    account = api.account
    sports = account.slices[1]
    assert sports.streams is not None
    total = await api.realtime(data_slice=sports.id)
    parts = [await api.realtime(data_slice=sports.id, stream=sid) for sid in sports.streams]
    assert total["connected"] == sum(part["connected"] for part in parts)


def test_apportion_is_exact() -> None:
    """Largest-remainder apportionment splits a total into integers that add up to it."""
    assert apportion(10, [1, 1, 1]) == [4, 3, 3]
    assert apportion(7, [0.5, 0.25, 0.25]) == [3, 2, 2]  # remainders .5, .75, .75
    assert apportion(0, [1, 2]) == [0, 0]
    assert apportion(5, [0, 0]) == [0, 0]


def stream_account(**stream_options: Any) -> Account:
    server = Server(id="a" * 24, name="s")
    options: dict[str, Any] = {
        "id": "b" * 24,
        "name": "live/x",
        "bitrate": 1_000_000,
        "audience": 1000,
        "servers": [(server.id, 1.0)],
    }
    options.update(stream_options)
    return Account(
        client_id="c",
        keys=[APIKey(key="d" * 32)],
        servers=[server],
        streams=[Stream(**options)],
        slices=[Slice(id="e" * 24, name="all", servers=[server.id])],
    )


async def test_countries_follow_their_weights() -> None:
    """Viewers are shared among countries in proportion to their weights."""
    account = stream_account(
        countries=[("US", 6), ("BR", 3), ("DE", 1)], volatility=0, daily_swing=0
    )
    simulator = Simulator([account], clock=fixed(NOON))
    async with await open_api(simulator) as http:
        data = await API(simulator, http).realtime(data_slice="e" * 24)
    assert data["geo"] == [["US", 600], ["BR", 300], ["DE", 100]]


async def test_bandwidth_is_viewers_times_bitrate() -> None:
    """One stream's bandwidth is its viewers times its bitrate."""
    simulator = Simulator([stream_account()], clock=fixed(NOON))
    async with await open_api(simulator) as http:
        data = await API(simulator, http).realtime(data_slice="e" * 24)
    assert data["connected"] > 0
    assert data["bandwidth"] == data["connected"] * 1_000_000


# Moving like a real service ------------------------------------------------------------------


async def figures_at(seed: int, when: dt.datetime) -> dict[str, Any]:
    simulator = Simulator(seed=seed, clock=fixed(when))
    async with await open_api(simulator) as http:
        return await API(simulator, http).realtime(data_slice=simulator.account.slices[0].id)


async def test_same_seed_same_numbers() -> None:
    """Two simulators with the same seed give the same figures at the same moment."""
    assert await figures_at(7, NOON) == await figures_at(7, NOON)
    assert await figures_at(7, NOON) != await figures_at(8, NOON)


async def test_figures_do_not_depend_on_earlier_requests() -> None:
    """The figures at a moment are a function of seed and time, not of the requests before."""
    later = NOON + dt.timedelta(minutes=5)
    now = [NOON]
    simulator = Simulator(seed=3, clock=lambda: now[0])
    async with await open_api(simulator) as http:
        api = API(simulator, http)
        for _ in range(30):  # walk through many steps first
            await api.realtime(data_slice=simulator.account.slices[0].id)
            now[0] += dt.timedelta(seconds=10)
        now[0] = later
        walked = await api.realtime(data_slice=simulator.account.slices[0].id)
    assert walked == await figures_at(3, later)


async def test_figures_move_step_by_step_and_stay_near_the_mean() -> None:
    """Viewers change from second to second, by little, around the stream's audience."""
    account = stream_account(daily_swing=0, audience=1000)
    now = [NOON]
    simulator = Simulator([account], clock=lambda: now[0])
    values = []
    async with await open_api(simulator) as http:
        api = API(simulator, http)
        for _ in range(600):
            values.append((await api.realtime(data_slice="e" * 24))["connected"])
            now[0] += dt.timedelta(seconds=1)
    steps = [abs(b - a) for a, b in itertools.pairwise(values)]
    assert len(set(values)) > 100
    assert max(steps) < 150  # a walk, not white noise: about 3 % of the level per second
    assert 700 < sum(values) / len(values) < 1300
    assert min(values) > 400
    assert max(values) < 2000


async def test_daily_rhythm_peaks_at_the_peak_hour() -> None:
    """A stream peaking at 20:00 UTC has about three times the viewers it has at 08:00."""
    account = stream_account(volatility=0, daily_swing=0.5, peak_hour=20)
    evening = Simulator([account], clock=fixed(NOON.replace(hour=20)))
    morning = Simulator([account], clock=fixed(NOON.replace(hour=8)))
    async with await open_api(evening) as http:
        peak = (await API(evening, http).realtime(data_slice="e" * 24))["connected"]
    async with await open_api(morning) as http:
        trough = (await API(morning, http).realtime(data_slice="e" * 24))["connected"]
    assert (peak, trough) == (1500, 500)


@pytest.mark.virtual_time
async def test_time_follows_the_event_loop_clock() -> None:
    """With the default clock, simulated time starts at ``start`` and moves with anyio's clock."""
    simulator = Simulator(start=NOON)
    assert simulator.now() == NOON
    await anyio.sleep(90)
    assert simulator.now() == NOON + dt.timedelta(seconds=90)


def test_loop_clock_never_goes_backwards() -> None:
    """A new event loop with an earlier clock does not move simulated time back."""
    clock = _LoopClock(NOON)

    async def read() -> dt.datetime:
        return clock()

    first = anyio.run(read, backend="trio")  # trio's clock starts at a random offset
    second = anyio.run(read, backend="asyncio")
    third = anyio.run(read, backend="trio")
    assert first <= second <= third


# Credentials, whitelist, keys and slices ---------------------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [
        {"client_id": "nobody", "api_key": "0" * 32},
        {"api_key": "0" * 32},
        {},
    ],
    ids=["unknown-client", "no-client-id", "nothing"],
)
async def test_unknown_credentials_get_403(api: API, credentials: dict[str, str]) -> None:
    """Unknown or missing credentials get HTTP 403, counted against nothing."""
    response = await api.http.get(SLICES, params=credentials)
    assert response.status_code == 403
    assert api.simulator.calls_today() == 0


async def test_wrong_key_gets_403(api: API) -> None:
    """A known client id with a wrong key gets 403."""
    response = await api.get(SLICES, key="f" * 32)
    assert response.status_code == 403
    assert response.json() == {"status": "Error", "message": "Access denied"}


async def test_whitelist_refuses_other_addresses() -> None:
    """With a whitelist, callers outside it get 403 and callers inside it are served."""
    account = Account.generate(1, whitelist=["203.0.113.0/24"])
    simulator = Simulator([account])
    async with await open_api(simulator, client_address="198.51.100.7") as http:
        outside = await API(simulator, http).get(SLICES)
    async with await open_api(simulator, client_address="203.0.113.9") as http:
        inside = await API(simulator, http).get(SLICES)
    assert outside.status_code == 403
    assert inside.status_code == 200


async def test_whitelist_refuses_callers_of_unknown_address() -> None:
    """With a whitelist, a connection whose address is unknown or unreadable is refused."""
    account = Account.generate(1, whitelist=["127.0.0.0/8"])
    simulator = Simulator([account])
    query = f"client_id={account.client_id}&api_key={account.api_key}".encode()
    statuses = []
    for client in (None, ("not-an-address", 1)):
        sent: list[dict[str, Any]] = []

        async def send(message: Any, sent: list[dict[str, Any]] = sent) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": SLICES, "query_string": query}
        await simulator({**scope, "client": client}, _no_body, send)
        statuses.append(sent[0]["status"])
    assert statuses == [403, 403]


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def test_user_key_sees_only_its_slices(api: API) -> None:
    """A user's key lists only its slices, and other slices look like unknown ones."""
    user_key = next(key for key in api.account.keys if key.slices is not None)
    assert user_key.slices is not None
    listed = (await api.get(SLICES, key=user_key.key)).json()["data_slices"]
    assert [item["id"] for item in listed] == list(user_key.slices)
    other = api.account.slices[0].id
    answer = (await api.get(REALTIME, key=user_key.key, data_slice=other)).json()
    unknown = (await api.get(REALTIME, data_slice="0" * 24)).json()
    assert answer == {"status": "Error", "message": f"data slice {other} not found"}
    assert unknown == answer | {"message": f"data slice {'0' * 24} not found"}


async def test_lite_slice_has_totals_but_no_stream_figures(api: API) -> None:
    """A lite slice answers totals, and status Error for a stream."""
    lite = next(s for s in api.account.slices if s.lite)
    assert (await api.realtime(data_slice=lite.id))["connected"] > 0
    answer = (await api.get(REALTIME, data_slice=lite.id, stream=api.account.streams[0].id)).json()
    assert answer == {
        "status": "Error",
        "message": f"data slice {lite.id} is a lite slice: it has no per-stream realtime data",
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "data_slice is required"),
        ({"stream": "0" * 24}, "stream 000000000000000000000000 not found"),
        ({"server": "0" * 24}, "server 000000000000000000000000 not found"),
    ],
)
async def test_bad_parameters_get_status_error(
    api: API, params: dict[str, str], message: str
) -> None:
    """A missing slice, or a stream or server outside the slice, gets status Error with a reason."""
    if params:
        params["data_slice"] = api.account.slices[1].id
    response = await api.get(REALTIME, **params)
    assert response.status_code == 200
    assert response.json()["status"] == "Error"
    assert message in response.json()["message"]


async def test_stream_outside_a_slice_with_chosen_streams(api: API) -> None:
    """The Sports slice does not know the news stream: status Error, saying so."""
    news, sports = api.account.streams[0], api.account.slices[1]
    assert (news.name, sports.name, sports.lite) == ("live/news", "Sports", False)
    answer = (await api.get(REALTIME, data_slice=sports.id, stream=news.id)).json()
    assert answer == {
        "status": "Error",
        "message": f"stream {news.id} not found in data slice {sports.id}",
    }


async def test_unknown_path_and_method(api: API) -> None:
    """Other paths get 404 and other methods 405, neither counted."""
    assert (await api.get("/v1/nothing")).status_code == 404
    response = await api.http.post(SLICES)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert api.simulator.calls_today() == 0


def test_account_validation() -> None:
    """Accounts refuse malformed ids and keys, and references to things they do not have."""
    with pytest.raises(ValueError, match="24 lowercase hex"):
        Server(id="nope", name="x")
    with pytest.raises(ValueError, match="32 lowercase hex"):
        APIKey(key="short")
    account = stream_account()
    with pytest.raises(ValueError, match="at least one API key"):
        attrs.evolve(account, keys=[])
    with pytest.raises(ValueError, match="names server"):
        attrs.evolve(account, slices=[Slice(id="e" * 24, name="x", servers=["f" * 24])])
    with pytest.raises(ValueError, match="names data slice"):
        attrs.evolve(account, keys=[APIKey(key="d" * 32, slices=["f" * 24])])
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 network"):
        attrs.evolve(account, whitelist=["not a network"])
    with pytest.raises(ValueError, match="0 or more"):
        attrs.evolve(account, daily_limit=-1)
    with pytest.raises(ValueError, match="bitrate must be 0 or more"):
        stream_account(bitrate=-1)
    with pytest.raises(ValueError, match="at least one account"):
        Simulator([])


def test_generated_accounts_are_deterministic() -> None:
    """The same seed makes the same account; the key never shows in its repr."""
    assert Account.generate(5) == Account.generate(5)
    assert Account.generate(5) != Account.generate(6)
    account = Account.generate(5)
    assert account.api_key not in repr(account)
    assert account.api_key not in repr(Simulator([account]))


# The daily limit -----------------------------------------------------------------------------


@pytest.mark.virtual_time
async def test_daily_limit_and_its_reset_at_midnight_utc() -> None:
    """Past the daily limit calls get 429 with Retry-After until 00:00 UTC, then work again."""
    account = Account.generate(0, daily_limit=3)
    simulator = Simulator([account], start=dt.datetime(2026, 3, 2, 23, 59, tzinfo=dt.timezone.utc))
    async with await open_api(simulator) as http:
        api = API(simulator, http)
        statuses = [(await api.get(SLICES)).status_code for _ in range(3)]
        refused = await api.get(SLICES)
        await api.get(SLICES, key="0" * 32)  # refused credentials do not count
        await anyio.sleep(60)
        after_midnight = await api.get(SLICES)
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "60"
    assert refused.json() == {
        "status": "Error",
        "message": "the daily limit of 3 API calls is reached; it resets at 00:00 UTC",
    }
    assert after_midnight.status_code == 200
    assert simulator.calls_today() == 1
    assert [record.counted for record in simulator.requests] == [
        True,
        True,
        True,
        False,
        False,
        True,
    ]


async def test_calls_today_counts_per_account() -> None:
    """Each account has its own count; all keys of an account share it."""
    first, second = Account.generate(1), Account.generate(2)
    simulator = Simulator([first, second])
    async with await open_api(simulator) as http:
        for key in first.keys:
            await http.get(SLICES, params={"client_id": first.client_id, "api_key": key.key})
    assert simulator.calls_today(first.client_id) == 2
    assert simulator.calls_today(second.client_id) == 0


# Faults ----------------------------------------------------------------------------------


async def test_http_status_fault_with_retry_after(api: API) -> None:
    """An injected status answers with it and Retry-After, once, and is not counted."""
    api.simulator.inject(Fault.http_status(503, retry_after=7))
    failed = await api.get(SLICES)
    recovered = await api.get(SLICES)
    assert failed.status_code == 503
    assert failed.headers["retry-after"] == "7"
    assert failed.text == "503 Service Unavailable"
    assert Fault.http_status(599).body == b"599"
    assert recovered.status_code == 200
    assert api.simulator.calls_today() == 1
    assert [record.fault for record in api.simulator.requests] == [FaultKind.HTTP_STATUS, None]


async def test_faults_queue_by_times_and_path(api: API) -> None:
    """Faults are used in order, each for its number of requests, on its path only."""
    api.simulator.inject(Fault.http_status(502), times=2, path=REALTIME)
    api.simulator.inject(Fault.http_status(429, retry_after="Wed, 21 Oct 2026 07:28:00 GMT"))
    statuses = [
        (await api.get(SLICES)).status_code,
        (await api.get(REALTIME, data_slice=api.account.slices[0].id)).status_code,
        (await api.get(REALTIME, data_slice=api.account.slices[0].id)).status_code,
        (await api.get(SLICES)).status_code,
    ]
    assert statuses == [429, 502, 502, 200]
    with pytest.raises(ValueError, match="times must be 1 or more"):
        api.simulator.inject(Fault.disconnect(), times=0)


async def test_fault_scoped_to_a_data_slice(api: API) -> None:
    """A fault for one data slice spoils only its realtime requests, streams included."""
    first, second = api.account.slices[0].id, api.account.slices[1].id
    stream = api.account.streams[1].id  # live/sports-1, in both slices
    api.simulator.inject(Fault.http_status(502), times=2, data_slice=second)
    statuses = [
        (await api.get(SLICES)).status_code,
        (await api.get(REALTIME, data_slice=first)).status_code,
        (await api.get(REALTIME, data_slice=second, stream=stream)).status_code,
        (await api.get(REALTIME, data_slice=first, stream=stream)).status_code,
        (await api.get(REALTIME, data_slice=second)).status_code,
        (await api.get(REALTIME, data_slice=second)).status_code,
    ]
    assert statuses == [200, 200, 502, 200, 502, 200]


async def test_fault_scoped_to_a_target(api: API) -> None:
    """A fault for a target spoils requests for exactly it: same slice, stream and server."""
    whole = api.account.slices[0]
    stream = api.account.streams[0].id
    target = Target(whole.id, stream=stream)
    api.simulator.inject(Fault.status("Error", "no such stream"), target=target)
    untouched = [
        await api.get(REALTIME, data_slice=whole.id),
        await api.get(REALTIME, data_slice=whole.id, stream=stream, server=whole.servers[0]),
    ]
    spoiled = await api.get(REALTIME, data_slice=whole.id, stream=stream)
    assert [response.json()["status"] for response in untouched] == ["Ok", "Ok"]
    assert spoiled.json() == {"status": "Error", "message": "no such stream"}


async def test_scoped_faults_fail_one_target_of_realtime_many() -> None:
    """With a slice's fault outlasting the retries, realtime_many fails that slice alone."""
    simulator = Simulator(clock=fixed(NOON))
    sports = simulator.account.slices[1]
    simulator.inject(Fault.http_status(503, retry_after=0), times=3, data_slice=sports)
    async with simulator.client() as client:
        targets = [Target(data_slice.id) for data_slice in simulator.account.slices]
        snapshots = await client.realtime_many(targets)
    failed = [snapshot.target for snapshot in snapshots if snapshot.error is not None]
    assert failed == [Target(sports.id)]
    assert isinstance(snapshots[1].error, ServerError)
    assert all(snapshot.stats is not None for snapshot in snapshots if snapshot.error is None)


def test_scope_is_a_slice_or_a_target() -> None:
    """data_slice and target together are refused: a target names its slice already."""
    simulator = Simulator()
    whole = simulator.account.slices[0].id
    with pytest.raises(ValueError, match="not both"):
        simulator.inject(Fault.disconnect(), data_slice=whole, target=Target(whole))


async def test_malformed_and_status_faults(api: API) -> None:
    """Malformed bodies and non-Ok statuses are answered with HTTP 200."""
    api.simulator.inject(Fault.malformed())
    api.simulator.inject(Fault.status("Busy", "try later"))
    html = await api.get(SLICES)
    busy = await api.get(SLICES)
    assert (html.status_code, html.headers["content-type"]) == (200, "text/html")
    assert html.text.startswith("<html>")
    assert busy.json() == {"status": "Busy", "message": "try later"}


async def test_truncated_and_disconnect_faults_fail_like_the_network(api: API) -> None:
    """A truncated body or a dropped connection raises httpx.RemoteProtocolError in process."""
    api.simulator.inject(Fault.truncated())
    api.simulator.inject(Fault.disconnect())
    with pytest.raises(httpx.RemoteProtocolError, match="halfway"):
        await api.get(SLICES)
    with pytest.raises(httpx.RemoteProtocolError, match="dropped the connection"):
        await api.get(SLICES)
    assert [record.status_code for record in api.simulator.requests] == [200, 0]
    assert api.simulator.calls_today() == 1  # the truncated answer was served, and counted


@pytest.mark.virtual_time
async def test_slow_fault_and_latency_take_event_loop_time() -> None:
    """Latency and slow faults wait on anyio's clock; a read timeout cuts them short."""
    simulator = Simulator(latency=0.25)
    simulator.inject(Fault.slow(2))
    async with await open_api(simulator) as http:
        api = API(simulator, http)
        started = anyio.current_time()
        assert (await api.get(SLICES)).status_code == 200
        assert anyio.current_time() - started == pytest.approx(2.25)
        simulator.inject(Fault.slow(30))
        started = anyio.current_time()
        with pytest.raises(httpx.ReadTimeout, match="within 5 s"):
            await http.get(SLICES, timeout=5)
        assert anyio.current_time() - started == pytest.approx(5)


@pytest.mark.virtual_time
async def test_jitter_is_bounded_and_seeded() -> None:
    """Latency jitter stays within its bound, and repeats with the seed."""

    async def delays(seed: int) -> list[float]:
        simulator = Simulator(seed=seed, latency=0.1, jitter=0.2)
        found = []
        async with await open_api(simulator) as http:
            for _ in range(20):
                started = anyio.current_time()
                await API(simulator, http).get(SLICES)
                found.append(anyio.current_time() - started)
        return found

    first = await delays(1)
    assert all(0.1 <= delay <= 0.3 + 1e-9 for delay in first)
    assert first == pytest.approx(await delays(1))
    assert len(set(first)) == 20


async def test_error_rate_is_seeded_and_clearable(api: API) -> None:
    """error_rate fails about that share of requests, the same ones for the same seed."""

    async def statuses(simulator: Simulator) -> list[int]:
        async with await open_api(simulator) as http:
            return [(await API(simulator, http).get(SLICES)).status_code for _ in range(200)]

    first = await statuses(Simulator(seed=2, error_rate=0.25, clock=fixed(NOON)))
    again = await statuses(Simulator(seed=2, error_rate=0.25, clock=fixed(NOON)))
    assert first == again
    assert 30 <= first.count(500) <= 70
    simulator = Simulator(seed=2, error_rate=1.0, error_fault=Fault.http_status(504))
    simulator.inject(Fault.http_status(418))
    simulator.clear_faults()
    assert set(await statuses(simulator)) == {200}


async def test_requests_are_recorded_without_the_key(api: API) -> None:
    """The request log keeps the parameters, minus api_key."""
    await api.get(REALTIME, data_slice=api.account.slices[0].id)
    record = api.simulator.requests[-1]
    assert record.params == {
        "client_id": api.account.client_id,
        "data_slice": api.account.slices[0].id,
    }
    assert (record.method, record.path, record.status_code, record.api_status) == (
        "GET",
        REALTIME,
        200,
        "Ok",
    )
    assert api.account.api_key not in repr(record)


async def test_lifespan_and_other_scopes() -> None:
    """The app completes the ASGI lifespan protocol and ignores other scope types."""
    simulator = Simulator()
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: Any) -> None:
        sent.append(message)

    await simulator({"type": "lifespan"}, receive, send)
    await simulator({"type": "websocket"}, receive, send)
    assert sent == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]


async def test_demo_simulator_allows_a_day_of_refreshes() -> None:
    """The demo account may call ten million times a day and answers in 20 to 80 ms."""
    demo = Simulator.demo()
    assert demo.account.daily_limit == 10_000_000
    assert (demo.latency, demo.jitter) == (0.02, 0.06)
    async with demo.client() as client:
        assert client.quota.limit == 10_000_000
        assert (await client.data_slices())[0].name == "All streams"


# What the served simulator says of its calls -------------------------------------------------


async def test_stats_endpoint_counts_calls_per_key_and_per_path_over_a_socket() -> None:
    """GET /_simulator/stats gives today's calls per key (blanked) and per path, uncounted."""
    account = Account.generate(0, daily_limit=100)
    user_key = next(key for key in account.keys if key.slices is not None)
    simulator = Simulator([account], clock=fixed(NOON))
    simulator.inject(Fault.http_status(503, retry_after=0), path=REALTIME)
    async with serve(simulator) as server, httpx.AsyncClient(base_url=server.url) as http:
        api = API(simulator, http)
        await api.get(SLICES)
        await api.get(SLICES, key=user_key.key)
        data_slice = account.slices[0].id
        statuses = [(await api.get(REALTIME, data_slice=data_slice)).status_code for _ in "ab"]
        refused = await api.get(SLICES, key="not-the-key-at-all")
        response = await http.get("/_simulator/stats")
        again = (await http.get("/_simulator/stats")).json()
        posted = await http.post("/_simulator/stats")
    assert statuses == [503, 200]
    assert refused.status_code == 403
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    stats = response.json()
    assert stats == again  # reading the stats counts nowhere
    assert posted.status_code == 405
    assert stats["day"] == "2026-03-02"
    [seen] = stats["accounts"]
    assert seen["client_id"] == account.client_id
    assert seen["daily_limit"] == 100
    assert seen["calls_today"] == 3 == simulator.calls_today()
    by_key = {entry["key"]: entry["calls_today"] for entry in seen["keys"]}
    assert by_key[account.api_key[:4] + "\u2026"] == 2
    assert by_key[user_key.key[:4] + "\u2026"] == 1
    assert stats["paths"] == {
        SLICES: {"requests": 3, "counted": 2, "statuses": {"200": 2, "403": 1}},
        REALTIME: {"requests": 2, "counted": 1, "statuses": {"200": 1, "503": 1}},
    }
    text = response.text
    for key in account.keys:
        assert key.key not in text
        assert key.key[:5] not in text
    assert all(record.path != "/_simulator/stats" for record in simulator.requests)


async def test_stats_start_again_each_simulated_day() -> None:
    """The stats are today's: past midnight UTC, the counts start from zero."""
    now = [NOON]
    simulator = Simulator(clock=lambda: now[0])
    async with await open_api(simulator) as http:
        await API(simulator, http).get(SLICES)
        assert simulator.stats()["paths"][SLICES]["requests"] == 1
        now[0] = NOON + dt.timedelta(days=1)
        stats = (await http.get("/_simulator/stats")).json()
    assert stats["day"] == "2026-03-03"
    assert stats["paths"] == {}
    assert stats["accounts"][0]["calls_today"] == 0
    assert {entry["calls_today"] for entry in stats["accounts"][0]["keys"]} == {0}


async def test_log_requests_logs_one_line_per_request_without_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """log_requests=True logs method, path, status and client_id at INFO, never the key."""
    simulator = Simulator(clock=fixed(NOON), log_requests=True)
    account = simulator.account
    caplog.set_level(logging.INFO, logger="wmspanel_async.simulator")
    async with serve(simulator) as server, httpx.AsyncClient(base_url=server.url) as http:
        api = API(simulator, http)
        await api.get(REALTIME, data_slice=account.slices[1].id)
        await api.get(SLICES, key="wrong-key-wrong-key")
        await http.get("/_simulator/stats")
    lines = [r.getMessage() for r in caplog.records if r.name == "wmspanel_async.simulator"]
    assert all(r.levelno == logging.INFO for r in caplog.records)
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"GET {REALTIME} 200 client_id={account.client_id} ")
    assert f"data_slice={account.slices[1].id}" in lines[0]
    assert lines[0].endswith("status=Ok counted")
    assert lines[1].startswith(f"GET {SLICES} 403 client_id={account.client_id} ")
    assert lines[1].endswith("not counted")
    assert lines[2] == "GET /_simulator/stats 200 (not counted)"
    for line in lines:
        assert account.api_key not in line
        assert "wrong-key" not in line


async def test_requests_are_not_logged_by_default(caplog: pytest.LogCaptureFixture) -> None:
    """Without log_requests the simulator logs nothing per request."""
    simulator = Simulator(clock=fixed(NOON))
    caplog.set_level(logging.DEBUG, logger="wmspanel_async.simulator")
    async with await open_api(simulator) as http:
        await API(simulator, http).get(SLICES)
    assert [r for r in caplog.records if r.name == "wmspanel_async.simulator"] == []
