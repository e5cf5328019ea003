"""The client against a misbehaving server over a real loopback socket: every fault, typed.

Each case of the matrix is run three ways, one behaviour per test: the call ends in the exact
error class (or the answer) within its time bound, with the number of attempts the server
counted; the API key is in no error text and no log record of any logger at DEBUG, even where
the server echoes it back; and no task or file descriptor is left behind.

Every test runs on both transports, with the same expectations: httpx's (the default) on
asyncio and trio, and aiohttp's (``transport="aiohttp"``) on asyncio, the only loop it runs
on; that aiohttp refuses trio is pinned in ``test_aiohttp_transport.py``, with what else is
the aiohttp transport's own (its error mapping, pool, wire format).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import sys
import zlib
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Literal

import anyio
import attrs
import pytest
import sniffio
from faulty_server import (
    REALTIME_OK,
    Behaviour,
    SeenRequest,
    answer,
    close_unanswered,
    echo_escaped,
    echo_in_json_message,
    echo_in_json_status,
    echo_in_mistyped_field,
    echo_in_text_body,
    echo_reason,
    echo_upper_case_message,
    echo_upper_case_reason,
    encoded,
    failing_first,
    faulty_server,
    garbage_status_line,
    gzip_bomb,
    healthy,
    html,
    http_date,
    nul_in_echoed_header,
    open_fds,
    oversize,
    rate_limited,
    redirect,
    refused_url,
    reset_mid_body,
    reset_mid_headers,
    rotating_5xx,
    running_tasks,
    secret_fragment,
    settle,
    short_body,
    stall_after_headers,
    stall_before_headers,
    texts_of,
    trickle,
    wrong_types,
)
from support import API_KEY, CLIENT_ID, SLICE_ID

from wmspanel_async import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    DataSlice,
    GeoEntry,
    InvalidResponseError,
    RateLimitError,
    RealtimeStats,
    ServerError,
    WMSPanelClient,
    WMSPanelError,
)

Transport = Literal["httpx", "aiohttp"]

#: Each transport on each backend it runs on. aiohttp is asyncio's only, so its trio pair is
#: never generated (this overrides conftest.py's ``anyio_backend`` fixture, and needs no
#: virtual clock: the matrix measures real time).
ON_EACH_TRANSPORT = pytest.mark.parametrize(
    ("transport", "anyio_backend"),
    [("httpx", "asyncio"), ("httpx", "trio"), ("aiohttp", "asyncio")],
    ids=["httpx-asyncio", "httpx-trio", "aiohttp-asyncio"],
)

pytestmark = [pytest.mark.anyio, ON_EACH_TRANSPORT]

#: Where the bystander listens, the target of redirects: another host where there is one.
OTHER_HOST = "127.0.0.2" if sys.platform == "linux" else "127.0.0.1"
#: The client's wall clock in every case: one hour before the daily reset at 00:00 UTC.
NOW = dt.datetime(2026, 11, 26, 23, 0, tzinfo=dt.timezone.utc)
UNTIL_RESET = 3600.0
STREAM = "live/sports-1"
SAMPLE_STATS = RealtimeStats(
    connected=1, bandwidth=267784, geo=(GeoEntry(country="BR", connected=1),)
)
SAMPLE_SLICES = [
    DataSlice(id="53e03c9978a6fc8596000001", name="Full data slice"),
    DataSlice(id="53e03ca678a6fc8599000001", name="DS2"),
]

Check = Callable[[WMSPanelError | None], None]


def no_check(_: WMSPanelError | None) -> None:
    pass


@attrs.frozen
class Case:
    """One fault: how the server behaves, what the client must make of it, how fast.

    ``make`` builds the behaviour from the URL of a bystander server (a redirect target).
    ``error`` is the exact class expected (``None``: the call succeeds); ``exact=False``
    accepts any ``WMSPanelError`` subclass of it. The call must end within
    ``bound * 3 + 1`` seconds and not before ``at_least``. ``attempts`` is how many requests
    the server must have seen (``None`` for the refused port, which has no server).
    """

    make: Callable[[str], Behaviour]
    error: type[WMSPanelError] | None
    attempts: int | None = 1
    bound: float = 0.0
    at_least: float = 0.0
    timeout: float = 1.0
    deadline: float = 5.0
    max_retries: int = 0
    endpoint: str = "realtime"
    exact: bool = True
    check: Check = no_check


def fixed(behaviour: Behaviour) -> Callable[[str], Behaviour]:
    return lambda _bystander: behaviour


def status_is(code: int) -> Check:
    def check(error: WMSPanelError | None) -> None:
        assert isinstance(error, APIStatusError)
        assert error.status_code == code

    return check


def retry_after_is(expected: float | None) -> Check:
    def check(error: WMSPanelError | None) -> None:
        assert isinstance(error, RateLimitError)
        assert error.status_code == 429
        if expected is None:
            assert error.retry_after is None
        else:
            assert error.retry_after is not None
            assert error.retry_after == pytest.approx(expected, abs=1.0)
            assert 0.0 <= error.retry_after <= UNTIL_RESET

    return check


def field_is(field: str) -> Check:
    def check(error: WMSPanelError | None) -> None:
        assert isinstance(error, InvalidResponseError)
        assert error.field == field

    return check


def message_has(*parts: str) -> Check:
    def check(error: WMSPanelError | None) -> None:
        for part in parts:
            assert part in str(error)

    return check


def redirected(error: WMSPanelError | None) -> None:
    status_is(302)(error)
    assert "redirect" in str(error)


CASES: dict[str, Case] = {
    # No answer at all.
    "refused": Case(fixed(healthy), APIConnectionError, attempts=None),
    "closed-unanswered": Case(fixed(close_unanswered), APIConnectionError),
    "garbage-status-line": Case(fixed(garbage_status_line), APIConnectionError),
    "reset-mid-headers": Case(fixed(reset_mid_headers), APIConnectionError),
    "reset-mid-body": Case(fixed(reset_mid_body), APIConnectionError),
    "short-body": Case(fixed(short_body), APIConnectionError),
    # Too slow: the attempt's timeout, or the call's deadline for a steady trickle.
    "stall-before-headers": Case(
        fixed(stall_before_headers), APITimeoutError, bound=0.3, at_least=0.3, timeout=0.3
    ),
    "stall-after-headers": Case(
        fixed(stall_after_headers), APITimeoutError, bound=0.3, at_least=0.3, timeout=0.3
    ),
    "trickle": Case(
        fixed(trickle(every=0.05)),
        APITimeoutError,
        bound=1.0,
        at_least=1.0,
        timeout=0.3,
        deadline=1.0,
        check=message_has("deadline"),
    ),
    # Answers that are not the documented JSON.
    "html": Case(fixed(html), InvalidResponseError),
    "wrong-types": Case(
        fixed(wrong_types), InvalidResponseError, check=field_is("realtime_data.connected")
    ),
    "oversize-declared": Case(fixed(oversize(declared=True)), InvalidResponseError),
    "oversize-chunked": Case(fixed(oversize(declared=False)), InvalidResponseError),
    "deep-nesting": Case(
        fixed(
            answer(200, b'{"status": "Ok", "realtime_data": ' + b"[" * 1000 + b"]" * 1000 + b"}")
        ),
        InvalidResponseError,
    ),
    "realtime-data-null": Case(
        fixed(answer(200, {"status": "Ok", "realtime_data": None})), InvalidResponseError
    ),
    "geo-empty-string": Case(
        fixed(
            answer(
                200, {"status": "Ok", "realtime_data": {"connected": 1, "bandwidth": 2, "geo": ""}}
            )
        ),
        InvalidResponseError,
        check=field_is("realtime_data.geo"),
    ),
    "data-slices-empty-object": Case(
        fixed(answer(200, {"status": "Ok", "data_slices": {}})),
        InvalidResponseError,
        endpoint="data_slices",
        check=field_is("data_slices"),
    ),
    # Statuses.
    "403": Case(
        fixed(answer(403, "Forbidden")), AuthenticationError, max_retries=2, check=status_is(403)
    ),
    "404": Case(
        fixed(answer(404, "no such page")), APIStatusError, max_retries=2, check=status_is(404)
    ),
    "redirect-to-another-host": Case(
        lambda bystander: redirect(302, bystander), APIStatusError, max_retries=2, check=redirected
    ),
    "5xx-burst-shorter-than-retries": Case(
        fixed(failing_first(2, rotating_5xx())), None, attempts=3, max_retries=3
    ),
    "5xx-burst-as-long-as-retries": Case(
        fixed(failing_first(3, rotating_5xx())), None, attempts=4, max_retries=3
    ),
    "5xx-burst-longer-than-retries": Case(
        fixed(failing_first(4, rotating_5xx())),
        ServerError,
        attempts=4,
        max_retries=3,
        check=status_is(504),  # 500, 502, 503, 504: the fourth attempt is the last
    ),
    "5xx-backoff-without-retry-after": Case(
        fixed(failing_first(1, rotating_5xx(retry_after=None))),
        None,
        attempts=2,
        bound=0.5,
        max_retries=1,
    ),
    "5xx-retry-after-beyond-deadline": Case(
        fixed(rotating_5xx(retry_after="2")),
        ServerError,
        deadline=1.0,
        max_retries=3,
        check=status_is(500),
    ),
    # A broken attempt, then the answer: the retry is a fresh request on a fresh connection.
    "reset-then-answer": Case(
        fixed(failing_first(1, reset_mid_body)), None, attempts=2, max_retries=1
    ),
    "stall-then-answer": Case(
        fixed(failing_first(1, stall_before_headers)),
        None,
        attempts=2,
        bound=0.3,
        at_least=0.3,
        timeout=0.3,
        max_retries=1,
    ),
    # 429 and every form of Retry-After (the client's clock is 23:00 UTC).
    "429-seconds": Case(fixed(rate_limited("7")), RateLimitError, check=retry_after_is(7.0)),
    "429-date-ahead": Case(
        fixed(rate_limited(http_date(NOW + dt.timedelta(seconds=30)))),
        RateLimitError,
        check=retry_after_is(30.0),
    ),
    "429-date-past": Case(
        fixed(rate_limited(http_date(NOW - dt.timedelta(hours=1)))),
        RateLimitError,
        check=retry_after_is(0.0),
    ),
    "429-garbage": Case(
        fixed(rate_limited("soon, maybe")), RateLimitError, check=retry_after_is(None)
    ),
    "429-empty": Case(fixed(rate_limited("")), RateLimitError, check=retry_after_is(None)),
    "429-absent": Case(fixed(rate_limited(None)), RateLimitError, check=retry_after_is(None)),
    "429-a-day": Case(
        fixed(rate_limited("86400")), RateLimitError, check=retry_after_is(UNTIL_RESET)
    ),
    "429-400-digits": Case(
        fixed(rate_limited("9" * 400)), RateLimitError, check=retry_after_is(UNTIL_RESET)
    ),
    "429-date-next-year": Case(
        fixed(rate_limited(http_date(NOW + dt.timedelta(days=365)))),
        RateLimitError,
        check=retry_after_is(UNTIL_RESET),
    ),
    "429-a-day-not-waited-for": Case(
        fixed(rate_limited("86400")),
        RateLimitError,
        max_retries=2,
        check=retry_after_is(UNTIL_RESET),
    ),
    "429-zero-then-answer": Case(
        fixed(failing_first(1, rate_limited("0"))), None, attempts=2, max_retries=1
    ),
    # Servers that echo the request (the key with it) back.
    "reason-echo-200": Case(fixed(echo_reason(200)), None),
    "reason-echo-503": Case(fixed(echo_reason(503)), ServerError, check=status_is(503)),
    "reason-echo-404": Case(fixed(echo_reason(404)), APIStatusError, check=status_is(404)),
    "reason-echo-403": Case(fixed(echo_reason(403)), AuthenticationError, check=status_is(403)),
    "echo-in-json-message": Case(
        fixed(echo_in_json_message),
        WMSPanelError,
        exact=False,
        endpoint="data_slices",
        check=message_has("Error", "cannot serve GET /v1/data_slices"),
    ),
    "echo-in-json-status": Case(
        fixed(echo_in_json_status), WMSPanelError, exact=False, endpoint="data_slices"
    ),
    "echo-in-text-body": Case(
        fixed(echo_in_text_body), InvalidResponseError, endpoint="data_slices"
    ),
    "echo-in-mistyped-field": Case(
        fixed(echo_in_mistyped_field),
        InvalidResponseError,
        check=field_is("realtime_data.connected"),
    ),
    # The key in every spelling: upper case, JSON-escaped where a quote cuts, in a header.
    "echo-upper-case-in-json-message": Case(
        fixed(echo_upper_case_message),
        APIError,
        endpoint="data_slices",
        check=message_has("API_KEY=<redacted> is not valid"),
    ),
    "echo-upper-case-reason-503": Case(
        fixed(echo_upper_case_reason(503)), ServerError, check=status_is(503)
    ),
    "echo-escaped-key-cut-in-json-message": Case(
        fixed(echo_escaped('{"status": "Error", "message": "{pad}{key}"}', cut_at=200)),
        APIError,
        endpoint="data_slices",
    ),
    "echo-escaped-key-cut-in-mistyped-field": Case(
        fixed(
            echo_escaped(
                '{"status": "Ok", "realtime_data": {"connected": "{pad}{key}", "bandwidth": 1}}',
                cut_at=40,
            )
        ),
        InvalidResponseError,
        check=field_is("realtime_data.connected"),
    ),
    "nul-in-echoed-header": Case(fixed(nul_in_echoed_header), APIConnectionError),
    # Encoded bodies: decoded in bounded steps, and only the encodings asked for.
    "gzip-answer": Case(
        fixed(encoded(gzip.compress(json.dumps(REALTIME_OK).encode()), "gzip")), None
    ),
    "deflate-answer": Case(
        fixed(encoded(zlib.compress(json.dumps(REALTIME_OK).encode()), "deflate")), None
    ),
    "gzip-bomb-undeclared": Case(
        fixed(encoded(gzip_bomb(64), "gzip", declared=False)),
        InvalidResponseError,
        check=message_has("more than 1048576 bytes"),
    ),
    "gzip-not-gzip": Case(
        fixed(encoded(b"this is not gzip at all", "gzip")),
        InvalidResponseError,
        check=message_has("not valid gzip"),
    ),
    "brotli-not-asked-for": Case(
        fixed(encoded(b"\x0b\x02\x80{}\x03", "br")),
        InvalidResponseError,
        check=message_has("encoded as 'br', which we did not ask for"),
    ),
}


@attrs.define
class Outcome:
    """What one run of a case left behind."""

    result: object = None
    error: WMSPanelError | None = None
    elapsed: float = 0.0
    requests: list[SeenRequest] = attrs.Factory(list)
    bystander_requests: list[SeenRequest] = attrs.Factory(list)
    server_errors: list[Exception] = attrs.Factory(list)
    tasks: tuple[int, int] = (0, 0)
    fds: tuple[int, int] = (0, 0)
    records: list[logging.LogRecord] = attrs.Factory(list)  # at DEBUG, from every logger


class _Keep(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


#: Each case's outcome on each transport and backend, for the three tests that read it: a
#: case runs once, not once a test (a third of the matrix's minutes, waiting on faults).
_OUTCOMES: dict[tuple[str, Transport, str], Outcome] = {}


async def outcome_of(name: str, transport: Transport) -> Outcome:
    """Return what case ``name`` left behind on ``transport`` here, running it the first time."""
    key = (name, transport, sniffio.current_async_library())
    if key not in _OUTCOMES:
        root = logging.getLogger()
        level, keep = root.level, _Keep([])
        root.setLevel(logging.DEBUG)
        root.addHandler(keep)
        try:
            _OUTCOMES[key] = await run_case(CASES[name], transport, keep.records)
        finally:
            root.removeHandler(keep)
            root.setLevel(level)
    return _OUTCOMES[key]


async def run_case(case: Case, transport: Transport, records: list[logging.LogRecord]) -> Outcome:
    """Run one case on ``transport`` from a clean slate, counting tasks and descriptors."""
    outcome = Outcome(records=records)
    tasks_before, fds_before = running_tasks(), open_fds()
    async with AsyncExitStack() as stack:
        bystander = await stack.enter_async_context(faulty_server(healthy, host=OTHER_HOST))
        if case.attempts is None:
            url, server = stack.enter_context(refused_url()), None
        else:
            server = await stack.enter_async_context(faulty_server(case.make(bystander.url)))
            url = server.url
        client = WMSPanelClient(
            CLIENT_ID,
            API_KEY,
            base_url=url,
            timeout=case.timeout,
            deadline=case.deadline,
            max_retries=case.max_retries,
            clock=lambda: NOW,
            transport=transport,
        )
        async with client:
            started = anyio.current_time()
            try:
                if case.endpoint == "realtime":
                    outcome.result = await client.realtime(SLICE_ID, stream=STREAM)
                else:
                    outcome.result = await client.data_slices()
            except WMSPanelError as exc:
                outcome.error = exc
            outcome.elapsed = anyio.current_time() - started
        outcome.bystander_requests = bystander.requests
        if server is not None:
            outcome.requests = server.requests
            outcome.server_errors = server.errors
    outcome.tasks = (tasks_before, await settle(running_tasks, tasks_before))
    outcome.fds = (fds_before, await settle(open_fds, fds_before))
    return outcome


@pytest.mark.parametrize("name", CASES)
async def test_fault_gives_its_typed_error_in_time(name: str, transport: Transport) -> None:
    """Each fault ends in its exact error class (or the answer) in time, with counted attempts."""
    case = CASES[name]
    outcome = await outcome_of(name, transport)
    assert outcome.server_errors == []  # a server that reads no request body stayed in step
    if case.error is None:
        assert outcome.error is None, texts_of(outcome.error)
        expected = SAMPLE_STATS if case.endpoint == "realtime" else SAMPLE_SLICES
        assert outcome.result == expected
    elif case.exact:
        assert type(outcome.error) is case.error, repr(outcome.error)
    else:
        assert isinstance(outcome.error, case.error), repr(outcome.error)
    case.check(outcome.error)
    assert outcome.elapsed <= case.bound * 3 + 1.0
    assert outcome.elapsed >= case.at_least * 0.9
    if case.attempts is not None:
        assert len(outcome.requests) == case.attempts  # the transport resent nothing itself
    expected_path = "/v1/realtime_data" if case.endpoint == "realtime" else "/v1/data_slices"
    for request in outcome.requests:
        assert request.method == "GET"
        assert request.path == expected_path
        assert "transfer-encoding" not in dict(request.headers)  # a GET has no body to frame
    assert outcome.bystander_requests == []  # never redirected, never elsewhere


@pytest.mark.parametrize("name", CASES)
async def test_fault_keeps_the_key_out_of_errors_and_logs(name: str, transport: Transport) -> None:
    """Whatever the server sends back, the key is in no error text and no DEBUG log record."""
    outcome = await outcome_of(name, transport)
    if outcome.requests:  # it did reach the server: the key travelled, as it must
        assert outcome.requests[0].param("api_key") == API_KEY
    if outcome.error is not None:
        text = texts_of(outcome.error)
        assert secret_fragment(text, API_KEY) is None, text
    # The guard against a test that proves nothing. httpcore logs each step of a connection
    # at DEBUG; aiohttp does not, and there the first record is the client's own line for a
    # response head. So on aiohttp one attempt that ends in a connection error or a timeout
    # before any head (refused, closed, reset, stalled) logs nothing: its error texts,
    # checked above, are what such a case proves.
    no_head_on_aiohttp = transport == "aiohttp" and isinstance(
        outcome.error, (APIConnectionError, APITimeoutError)
    )
    if not no_head_on_aiohttp:
        assert outcome.records, "nothing was logged, so the test would prove nothing"
    formatter = logging.Formatter("%(levelname)s %(name)s:%(filename)s:%(lineno)d %(message)s")
    for record in outcome.records:
        message = record.getMessage()
        assert secret_fragment(message, API_KEY) is None, f"{record.name}: {message}"
        assert secret_fragment(formatter.format(record), API_KEY) is None


@pytest.mark.parametrize("name", CASES)
async def test_fault_leaves_no_task_or_descriptor_behind(name: str, transport: Transport) -> None:
    """Once the client and the server are closed, no task or file descriptor is left over."""
    outcome = await outcome_of(name, transport)
    tasks_before, tasks_after = outcome.tasks
    fds_before, fds_after = outcome.fds
    assert tasks_after <= tasks_before
    assert fds_after <= fds_before


async def test_id_text_cannot_add_parameters_on_the_wire(transport: Transport) -> None:
    """An id full of query syntax reaches the server as exactly one value, nothing added."""
    stream = "a&api_key=evil&data_slice=x#frag"
    server_id = "b c+d%26?/=;"
    async with faulty_server(healthy) as server:
        async with WMSPanelClient(
            CLIENT_ID, API_KEY, base_url=server.url, max_retries=0, transport=transport
        ) as client:
            stats = await client.realtime(SLICE_ID, stream=stream, server=server_id)
    assert stats == SAMPLE_STATS
    [request] = server.requests
    assert "#" not in request.target
    assert request.path == "/v1/realtime_data"
    assert sorted(request.params) == sorted(
        [
            ("data_slice", SLICE_ID),
            ("stream", stream),
            ("server", server_id),
            ("client_id", CLIENT_ID),
            ("api_key", API_KEY),
        ]
    )
