"""The simulator: a plain ASGI application that answers as the WMSPanel API does.

It serves ``GET /v1/data_slices`` and ``GET /v1/realtime_data`` with the documented paths,
query parameters and JSON shapes. Where the API's behaviour is not documented (what it answers
for an unknown slice, for a stream of a lite slice, once the daily limit is spent), the choice
made here is stated next to the code and in ``docs/simulator.md``.

Time inside the app comes from the event loop (``anyio.current_time()``), so a test on a
virtual clock moves the figures and the daily limit's reset without waiting.
"""

from __future__ import annotations

import collections
import datetime as dt
import ipaddress
import json
import logging
import math
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import anyio
import attrs
import httpx

from .._http_server import ASGIApp, Receive, Scope, Send, answer_lifespan
from .._models import DataSlice, Target
from .._quota import UTCClock, next_utc_midnight
from ._accounts import Account, APIKey, Slice
from ._faults import Fault, FaultKind, SimulatedDisconnect
from ._traffic import Traffic

if TYPE_CHECKING:
    from wmspanel_async import WMSPanelClient

DATA_SLICES = "/v1/data_slices"
REALTIME_DATA = "/v1/realtime_data"
#: The simulator's own read-only endpoint: today's calls per key and per path, as JSON. It is
#: not an API method: it is neither counted, nor delayed, nor spoiled by a fault.
STATS_PATH = "/_simulator/stats"
#: How many characters of an API key the stats and the request log show, before an ellipsis.
KEY_PREFIX_LENGTH = 4

#: One line per request when ``Simulator.log_requests`` is on (INFO), never with the key.
request_logger = logging.getLogger("wmspanel_async.simulator")
#: A base URL for clients wired to the simulator in process: the host can never resolve, so a
#: client that lost its transport fails instead of calling anything real.
IN_PROCESS_BASE_URL = "https://wmspanel-simulator.invalid"
#: The daily limit of the ``demo`` account: enough to refresh every second all day long, from
#: any hour on (the exporter's 16 targets of ``--demo --each-server`` need 1.4 million from
#: 00:00 UTC, and a million would stretch them).
DEMO_DAILY_LIMIT = 10_000_000


@attrs.frozen(kw_only=True)
class RequestRecord:
    """One request the simulator answered, for tests to look at.

    Attributes:
        at: When it was answered, by the simulator's clock.
        method: The HTTP method.
        path: The path.
        params: The query parameters, without ``api_key``.
        status_code: The HTTP status answered (0 when the connection was dropped unanswered).
        api_status: The JSON ``status`` answered, if the body was JSON with one.
        fault: The injected fault that shaped the answer, if any.
        counted: Whether the call counted against the daily limit.
    """

    at: dt.datetime
    method: str
    path: str
    params: dict[str, str]
    status_code: int
    api_status: str | None = None
    fault: FaultKind | None = None
    counted: bool = False


@attrs.define
class _Answer:
    status_code: int
    payload: dict[str, Any]
    headers: list[tuple[bytes, bytes]] = attrs.Factory(list)
    counted: bool = False

    def body(self) -> bytes:
        return json.dumps(self.payload).encode()


def _error(message: str, status_code: int = 200, *, counted: bool = True) -> _Answer:
    # Undocumented: third-party clients only check ``status != "Ok"``. We answer
    # ``{"status": "Error", "message": ...}``, with HTTP 200 for a request the API understood
    # but cannot serve (as a JSON API that puts its own status in the body would).
    return _Answer(status_code, {"status": "Error", "message": message}, counted=counted)


class _LoopClock:
    """UTC time that advances with the event loop's clock, from ``start``.

    On a virtual clock (trio's ``MockClock``, async-solipsism) the simulated time jumps with
    the virtual sleeps. It never goes backwards, even across event loops.
    """

    def __init__(self, start: dt.datetime | None) -> None:
        self._start = start
        self._origin: float | None = None
        self._last: dt.datetime | None = None

    def __call__(self) -> dt.datetime:
        loop_now = anyio.current_time()
        if self._origin is None:
            self._origin = loop_now
        start = self._start = self._start or dt.datetime.now(dt.timezone.utc)
        now = start + dt.timedelta(seconds=loop_now - self._origin)
        if self._last is not None and now < self._last:  # a new event loop, with its own clock
            self._start, self._origin, now = self._last, loop_now, self._last
        self._last = now
        return now


@attrs.define
class _Injection:
    fault: Fault
    remaining: int
    path: str | None
    #: The query parameters a request must carry (``data_slice``, ``stream``, ``server``);
    #: a value of ``None`` means the parameter must be absent.
    params: dict[str, str | None] | None

    def matches(self, path: str, params: dict[str, str]) -> bool:
        if self.path is not None and self.path != path:
            return False
        if self.params is None:
            return True
        return all(params.get(name) == value for name, value in self.params.items())


class Simulator:
    """A faithful stand-in for the WMSPanel API, as an ASGI application.

    Mount it in process with :meth:`transport` (or :meth:`client`), or on a loopback port with
    :func:`wmspanel_async.testing.serve`.

    Args:
        accounts: The accounts it serves; by default one made by ``Account.generate(seed)``.
        seed: Same seed, same figures at the same simulated time; it also drives the
            random faults and latency.
        clock: Returns the simulated UTC time; by default time starts at ``start`` and
            advances with the event loop's clock (``anyio.current_time()``).
        start: The simulated time at the first request; by default the real time then.
        latency: Seconds every answer waits before it is given.
        jitter: Up to this many seconds are added to ``latency``, at random.
        error_rate: The share of requests (0 to 1) answered by ``error_fault`` instead.
        error_fault: The fault of ``error_rate``; by default HTTP 500.
        log_requests: Log one line per request answered (logger ``wmspanel_async.simulator``,
            level INFO): method, path, status, the ``client_id``; never the ``api_key``.

    Attributes:
        accounts: The accounts served.
        seed: The seed.
        latency: Seconds every answer waits; may be changed at any time.
        jitter: Extra random seconds of latency; may be changed at any time.
        error_rate: The share of requests that fail; may be changed at any time.
        error_fault: How they fail; may be changed at any time.
        requests: The last 1,000 requests answered, oldest first.
        log_requests: Whether each request is logged; may be changed at any time.
    """

    def __init__(
        self,
        accounts: Iterable[Account] | None = None,
        *,
        seed: int = 0,
        clock: UTCClock | None = None,
        start: dt.datetime | None = None,
        latency: float = 0.0,
        jitter: float = 0.0,
        error_rate: float = 0.0,
        error_fault: Fault | None = None,
        log_requests: bool = False,
    ) -> None:
        self.accounts: tuple[Account, ...] = (
            tuple(accounts) if accounts is not None else (Account.generate(seed),)
        )
        if not self.accounts:
            msg = "a simulator needs at least one account"
            raise ValueError(msg)
        self.seed: int = seed
        self.latency: float = latency
        self.jitter: float = jitter
        self.error_rate: float = error_rate
        self.error_fault: Fault = error_fault or Fault.http_status(500)
        self.requests: collections.deque[RequestRecord] = collections.deque(maxlen=1000)
        self.log_requests: bool = log_requests
        self._clock: UTCClock = clock or _LoopClock(start)
        self._by_client_id = {account.client_id: account for account in self.accounts}
        self._traffic = {
            account.client_id: Traffic(account, seed + index)
            for index, account in enumerate(self.accounts)
        }
        self._usage: dict[str, tuple[dt.date, int]] = {}
        # Today's tallies for stats(): counted calls per (client_id, key), requests per path.
        self._tally_day: dt.date | None = None
        self._by_key: collections.Counter[tuple[str, str]] = collections.Counter()
        self._by_path: dict[str, collections.Counter[str]] = {}
        self._injections: list[_Injection] = []
        self._random = random.Random(f"wmspanel-simulator:{seed}")  # noqa: S311 - not crypto

    @classmethod
    def demo(cls, seed: int = 0) -> Simulator:
        """Return the simulator of ``wmspanel-async demo``.

        Its one account (``Account.generate(seed)``) may call ten million times a day,
        enough to refresh every second; answers take 20 to 80 ms, like a distant server.
        """
        account = Account.generate(seed, daily_limit=DEMO_DAILY_LIMIT)
        return cls([account], seed=seed, latency=0.02, jitter=0.06)

    def __repr__(self) -> str:
        return f"<Simulator seed={self.seed} accounts={len(self.accounts)}>"

    @property
    def account(self) -> Account:
        """The first account served."""
        return self.accounts[0]

    def now(self) -> dt.datetime:
        """Return the simulated UTC time (inside an event loop, with the default clock)."""
        return self._clock()

    def inject(
        self,
        fault: Fault,
        *,
        times: int = 1,
        path: str | None = None,
        data_slice: Slice | DataSlice | str | None = None,
        target: Target | None = None,
    ) -> None:
        """Spoil the next ``times`` requests (to ``path``, if given) with ``fault``.

        Injected faults queue up: each request takes the first pending fault that applies
        to it. A fault scoped to a data slice or a target spoils only realtime requests for
        it, so that one slice can fail while ``realtime_many()`` or the poller fetches
        others: with ``times=3`` it outlasts the client's two retries of that slice.

        Args:
            fault: What goes wrong.
            times: How many requests it spoils.
            path: Only requests to this path (``"/v1/realtime_data"``, ...); any by default.
            data_slice: Only realtime requests for this data slice (a simulated ``Slice``,
                a ``DataSlice`` or its id), whatever their ``stream`` and ``server``.
            target: Only realtime requests for exactly this target: its slice, and its
                stream and server, or none where it has none.

        Raises:
            ValueError: ``times`` is below 1, or both ``data_slice`` and ``target`` are given.
            ConfigurationError: ``data_slice`` is an id that is not a non-empty string.
        """
        if times < 1:
            msg = f"times must be 1 or more, got {times!r}"
            raise ValueError(msg)
        params: dict[str, str | None] | None = None
        if data_slice is not None and target is not None:
            msg = "pass data_slice or target, not both: a target names its data slice"
            raise ValueError(msg)
        if data_slice is not None:
            slice_id = data_slice.id if isinstance(data_slice, Slice | DataSlice) else data_slice
            params = {"data_slice": Target(slice_id).data_slice}
        elif target is not None:
            params = {
                "data_slice": target.data_slice,
                "stream": target.stream,
                "server": target.server,
            }
        if params is not None:
            path = path or REALTIME_DATA
        self._injections.append(_Injection(fault, times, path, params))

    def clear_faults(self) -> None:
        """Forget the faults still pending, and set ``error_rate`` back to 0."""
        self._injections.clear()
        self.error_rate = 0.0

    def calls_today(self, client_id: str | None = None) -> int:
        """Return the calls counted today (simulated UTC day) for an account.

        Args:
            client_id: The account's client id; the first account's by default.
        """
        client_id = client_id or self.account.client_id
        day, used = self._usage.get(client_id, (None, 0))
        return used if day == self.now().date() else 0

    def stats(self) -> dict[str, Any]:
        """Return today's calls (simulated UTC day), as ``GET /_simulator/stats`` serves them.

        The keys are shown blanked, as their first few characters and an ellipsis::

            {
              "day": "2026-12-06",
              "accounts": [{"client_id": "...", "daily_limit": 15000, "calls_today": 42,
                            "keys": [{"key": "5f3c…", "calls_today": 42}]}],
              "paths": {"/v1/realtime_data": {"requests": 43, "counted": 41,
                                              "statuses": {"200": 41, "503": 2}}}
            }

        ``calls_today`` counts the calls spent against the daily limit; a path's
        ``requests`` counts every request answered to it today, counted or not (refused keys,
        injected faults, the limit reached). The stats endpoint itself counts nowhere.
        """
        self._roll_tallies()
        accounts = []
        for account in self.accounts:
            keys = [
                {
                    "key": _key_prefix(key.key),
                    "calls_today": self._by_key[account.client_id, key.key],
                }
                for key in account.keys
            ]
            accounts.append(
                {
                    "client_id": account.client_id,
                    "daily_limit": account.daily_limit,
                    "calls_today": self.calls_today(account.client_id),
                    "keys": keys,
                }
            )
        paths = {
            path: {
                "requests": tally["requests"],
                "counted": tally["counted"],
                "statuses": {
                    name.removeprefix("status:"): count
                    for name, count in sorted(tally.items())
                    if name.startswith("status:")
                },
            }
            for path, tally in sorted(self._by_path.items())
        }
        return {
            "day": self._tally_day.isoformat() if self._tally_day else None,
            "accounts": accounts,
            "paths": paths,
        }

    def _roll_tallies(self) -> None:
        today = self.now().date()
        if self._tally_day != today:
            self._tally_day = today
            self._by_key.clear()
            self._by_path.clear()

    def transport(self, *, client_address: str = "127.0.0.1") -> httpx.AsyncBaseTransport:
        """Return an httpx transport that sends requests to this simulator, in process.

        Unlike a bare ``httpx.ASGITransport`` it honours the request's read timeout (raising
        ``httpx.ReadTimeout``) and turns a dropped connection into ``httpx.RemoteProtocolError``,
        as the network would.

        Args:
            client_address: The caller's IP address, as the whitelist sees it.
        """
        return SimulatorTransport(self, client_address=client_address)

    def client(self, *, api_key: str | None = None, **options: Any) -> WMSPanelClient:
        """Return a ``WMSPanelClient`` wired in process to the first account.

        Args:
            api_key: The key to use; the account's first account-wide key by default.
            **options: More ``WMSPanelClient`` arguments (``daily_limit`` defaults to the
                account's).
        """
        from wmspanel_async import WMSPanelClient  # noqa: PLC0415 - the client sits above us

        options.setdefault("transport", self.transport())
        options.setdefault("base_url", IN_PROCESS_BASE_URL)
        options.setdefault("daily_limit", max(self.account.daily_limit, 1))
        return WMSPanelClient(self.account.client_id, api_key or self.account.api_key, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ASGI connection (``http``; ``lifespan`` is acknowledged)."""
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        await self._http(scope, send)

    async def _http(self, scope: Scope, send: Send) -> None:
        params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        method, path = scope["method"], scope["path"]
        if path == STATS_PATH:
            await self._serve_stats(method, send)
            return

        def record(
            status_code: int, answer: _Answer | None = None, fault: Fault | None = None
        ) -> None:
            entry = RequestRecord(
                at=self.now(),
                method=method,
                path=path,
                params={key: value for key, value in params.items() if key != "api_key"},
                status_code=status_code,
                api_status=(answer.payload.get("status") if answer else None),
                fault=fault.kind if fault else None,
                counted=bool(answer and answer.counted),
            )
            self.requests.append(entry)
            self._tally(entry)

        delay = self.latency + (self._random.uniform(0, self.jitter) if self.jitter > 0 else 0)
        if delay > 0:
            await anyio.sleep(delay)

        fault = self._next_fault(path, params)
        if fault is not None and fault.kind is not FaultKind.SLOW:
            if fault.kind is FaultKind.DISCONNECT:
                record(0, fault=fault)
                msg = "the simulator dropped the connection (injected fault)"
                raise SimulatedDisconnect(msg)
            if fault.kind is not FaultKind.TRUNCATED:
                status_code, headers, body = _fault_answer(fault)
                record(status_code, fault=fault)
                await _respond(send, status_code, body, headers)
                return
        elif fault is not None:
            await anyio.sleep(fault.delay)

        answer = self._answer(method, path, params, scope.get("client"))
        record(answer.status_code, answer, fault)
        body = answer.body()
        headers = [(b"content-type", b"application/json"), *answer.headers]
        if fault is not None and fault.kind is FaultKind.TRUNCATED:
            await _respond(send, answer.status_code, body, headers, cut=len(body) // 2)
            msg = "the simulator dropped the connection halfway through the body (injected fault)"
            raise SimulatedDisconnect(msg)
        await _respond(send, answer.status_code, body, headers)

    async def _serve_stats(self, method: str, send: Send) -> None:
        if method != "GET":
            status_code, payload = 405, {"status": "Error", "message": "use GET"}
            headers = [(b"content-type", b"application/json"), (b"allow", b"GET")]
        else:
            status_code, payload = 200, self.stats()
            headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
        if self.log_requests:
            request_logger.info("%s %s %d (not counted)", method, STATS_PATH, status_code)
        await _respond(send, status_code, json.dumps(payload).encode(), headers)

    def _tally(self, entry: RequestRecord) -> None:
        self._roll_tallies()
        tally = self._by_path.setdefault(entry.path, collections.Counter())
        tally["requests"] += 1
        tally["counted"] += entry.counted
        tally[f"status:{entry.status_code}"] += 1
        if self.log_requests:
            notes = [f"client_id={entry.params.get('client_id', '-')}"]
            notes += [
                f"{name}={entry.params[name]}"
                for name in ("data_slice", "stream", "server")
                if name in entry.params
            ]
            if entry.api_status is not None:
                notes.append(f"status={entry.api_status}")
            if entry.fault is not None:
                notes.append(f"fault={entry.fault.value}")
            notes.append("counted" if entry.counted else "not counted")
            request_logger.info(
                "%s %s %d %s", entry.method, entry.path, entry.status_code, " ".join(notes)
            )

    def _next_fault(self, path: str, params: dict[str, str]) -> Fault | None:
        for injection in self._injections:
            if injection.matches(path, params):
                injection.remaining -= 1
                if injection.remaining == 0:
                    self._injections.remove(injection)
                return injection.fault
        if self.error_rate > 0 and self._random.random() < self.error_rate:
            return self.error_fault
        return None

    def _answer(
        self, method: str, path: str, params: dict[str, str], client: Iterable[Any] | None
    ) -> _Answer:
        if path not in (DATA_SLICES, REALTIME_DATA):
            return _error(f"no such API method: {path}", 404, counted=False)
        if method != "GET":
            answer = _error(f"{method} is not allowed; use GET", 405, counted=False)
            answer.headers.append((b"allow", b"GET"))
            return answer
        account = self._by_client_id.get(params.get("client_id", ""))
        api_key = _find_key(account, params.get("api_key", ""))
        # Wrong credentials and a caller outside the whitelist look the same: 403.
        if account is None or api_key is None or not _whitelisted(account, client):
            return _error("Access denied", 403, counted=False)
        now = self.now()
        limited = self._spend(account, now)
        if limited is not None:
            return limited
        self._roll_tallies()
        self._by_key[account.client_id, api_key.key] += 1
        visible = [s for s in account.slices if api_key.slices is None or s.id in api_key.slices]
        if path == DATA_SLICES:
            return self._data_slices(visible, show_servers=params.get("show_servers") == "true")
        return self._realtime(account, visible, params, now)

    def _spend(self, account: Account, now: dt.datetime) -> _Answer | None:
        today = now.date()
        day, used = self._usage.get(account.client_id, (today, 0))
        if day != today:
            used = 0
        if used >= account.daily_limit:
            # Undocumented: we answer 429 with Retry-After up to 00:00 UTC, which clients
            # already understand, and a JSON message like the API's other errors.
            answer = _error(
                f"the daily limit of {account.daily_limit} API calls is reached; "
                "it resets at 00:00 UTC",
                429,
                counted=False,
            )
            wait = math.ceil((next_utc_midnight(now) - now).total_seconds())
            answer.headers.append((b"retry-after", str(max(wait, 1)).encode()))
            return answer
        self._usage[account.client_id] = (today, used + 1)
        return None

    @staticmethod
    def _data_slices(visible: list[Slice], *, show_servers: bool) -> _Answer:
        slices: list[dict[str, Any]] = []
        for data_slice in visible:
            item: dict[str, Any] = {"id": data_slice.id, "name": data_slice.name}
            if show_servers:
                item["server_ids"] = list(data_slice.servers)
            slices.append(item)
        return _Answer(200, {"status": "Ok", "data_slices": slices}, counted=True)

    def _realtime(
        self, account: Account, visible: list[Slice], params: dict[str, str], now: dt.datetime
    ) -> _Answer:
        slice_id = params.get("data_slice", "")
        if not slice_id:
            return _error("data_slice is required")
        data_slice = next((s for s in visible if s.id == slice_id), None)
        if data_slice is None:
            # The same answer for a slice that does not exist and one this key may not see,
            # so that a user's key cannot probe for other users' slices.
            return _error(f"data slice {slice_id} not found")
        servers: tuple[str, ...] = data_slice.servers
        streams = data_slice.streams
        server, stream = params.get("server"), params.get("stream")
        if server:
            if server not in servers:
                return _error(f"server {server} not found in data slice {slice_id}")
            servers = (server,)
        if stream:
            # Lite slices keep totals only: there is no per-stream figure to give.
            if data_slice.lite:
                return _error(
                    f"data slice {slice_id} is a lite slice: it has no per-stream realtime data"
                )
            in_slice = {
                candidate.id
                for candidate in account.streams
                if (streams is None or candidate.id in streams)
                and any(server_id in data_slice.servers for server_id, _ in candidate.servers)
            }
            if stream not in in_slice:
                return _error(f"stream {stream} not found in data slice {slice_id}")
            streams = (stream,)
        figures = self._traffic[account.client_id].figures(now, servers=servers, streams=streams)
        realtime = {
            "connected": figures.connected,
            "bandwidth": figures.bandwidth,
            "geo": figures.top_geo(),
        }
        return _Answer(200, {"status": "Ok", "realtime_data": realtime}, counted=True)


def _key_prefix(key: str) -> str:
    """Return the first few characters of a key and an ellipsis: enough to tell keys apart.

    A key too short for its first characters to be a small part of it shows none of them.
    """
    shown = key[:KEY_PREFIX_LENGTH] if len(key) >= 4 * KEY_PREFIX_LENGTH else ""
    return f"{shown}\u2026"


def _find_key(account: Account | None, key: str) -> APIKey | None:
    if account is None or not key:
        return None
    return next((api_key for api_key in account.keys if api_key.key == key), None)


def _whitelisted(account: Account, client: Iterable[Any] | None) -> bool:
    if not account.whitelist:
        return True
    if client is None:
        return False
    try:
        address = ipaddress.ip_address(next(iter(client)))
    except (ValueError, StopIteration):
        return False
    return any(
        address in ipaddress.ip_network(network, strict=False) for network in account.whitelist
    )


def _fault_answer(fault: Fault) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    headers = [(b"content-type", fault.content_type.encode())]
    if fault.retry_after is not None:
        headers.append((b"retry-after", fault.retry_after.encode()))
    if fault.kind is FaultKind.API_STATUS:
        body = json.dumps({"status": fault.api_status, "message": fault.body.decode()}).encode()
        return 200, headers, body
    return fault.status_code, headers, fault.body


async def _respond(
    send: Send,
    status_code: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    cut: int | None = None,
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status_code, "headers": headers})
    if cut is None:
        await send({"type": "http.response.body", "body": body})
    else:
        await send({"type": "http.response.body", "body": body[:cut], "more_body": True})


class SimulatorTransport(httpx.AsyncBaseTransport):
    """Sends requests to an ASGI app in process, failing the way the network would.

    Args:
        app: The ASGI app, usually a :class:`Simulator`.
        client_address: The caller's IP address the app sees.
    """

    def __init__(self, app: ASGIApp, *, client_address: str = "127.0.0.1") -> None:
        self._inner = httpx.ASGITransport(app, client=(client_address, 50_000))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` through the app, within its read timeout."""
        timeout = request.extensions.get("timeout", {}).get("read")
        try:
            with anyio.fail_after(timeout):
                return await self._inner.handle_async_request(request)
        except TimeoutError:
            msg = f"the simulator did not answer within {timeout:g} s"
            raise httpx.ReadTimeout(msg, request=request) from None
        except SimulatedDisconnect as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from None
