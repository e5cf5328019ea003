"""The API key appears in no exception, repr or log record, through every error path."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Callable

import httpx
import pytest
import respx
from support import API_KEY, SLICE_ID, make_client

from wmspanel_async import (
    APIError,
    ConfigurationError,
    InvalidResponseError,
    ServerError,
    WMSPanelClient,
    WMSPanelError,
    _redact,
)
from wmspanel_async._redact import REDACTED, Redactor, _SecretsLogFilter

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

pytestmark = pytest.mark.anyio


def echo_url(status: int) -> Callable[[httpx.Request], httpx.Response]:
    """A server that quotes the full request URL (with the key) back in its answer."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status,
            text=f"cannot serve {request.url}",
            headers={"Location": str(request.url), "Retry-After": "1"},
        )

    return answer


def raise_with_url(error: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    """A transport failure whose text quotes the URL it was given."""

    def fail(request: httpx.Request) -> httpx.Response:
        raise error(f"failed {request.url}")

    return fail


def status_echo(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"status": f"Error for {request.url}"})


FAILURES: dict[str, Callable[[httpx.Request], httpx.Response]] = {
    "403": echo_url(403),
    "404": echo_url(404),
    "301": echo_url(301),
    "429": echo_url(429),
    "503": echo_url(503),
    "not-json": echo_url(200),
    "status-not-ok": status_echo,
    "connect-error": raise_with_url(httpx.ConnectError),
    "timeout": raise_with_url(httpx.ReadTimeout),
    "protocol-error": raise_with_url(httpx.RemoteProtocolError),
}


def texts_of(error: BaseException) -> str:
    """Everything a user could print of an error: message, repr, chain, traceback."""
    parts = ["".join(traceback.format_exception(error))]
    seen: BaseException | None = error
    while seen is not None:
        parts += [str(seen), repr(seen)]
        if isinstance(seen, WMSPanelError):
            parts.append(repr(vars(seen)))
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


@pytest.mark.virtual_time
@pytest.mark.parametrize("use_http_client", [False, True], ids=["transport", "http_client"])
@pytest.mark.parametrize("failure", FAILURES)
async def test_key_never_leaks(
    api: respx.Router, caplog: pytest.LogCaptureFixture, failure: str, use_http_client: bool
) -> None:
    """No error path puts the key into a message, repr, chained cause or any log record."""
    caplog.set_level(logging.DEBUG)
    transport = httpx.MockTransport(FAILURES[failure])
    http_client = httpx.AsyncClient(transport=transport) if use_http_client else None
    options = (
        {"http_client": http_client, "transport": None}
        if use_http_client
        else {"transport": transport}
    )
    async with make_client(api, max_retries=1, **options) as client:
        with pytest.raises(WMSPanelError) as caught:
            await client.realtime(SLICE_ID, stream="s")
        assert API_KEY not in repr(client)
    if http_client is not None:
        await http_client.aclose()
    assert API_KEY not in texts_of(caught.value)
    assert caplog.records, "nothing was logged, so the test would prove nothing"
    for record in caplog.records:
        assert API_KEY not in record.getMessage(), record.name
    if failure not in {"connect-error", "timeout", "protocol-error"}:
        assert any(r.getMessage().startswith("GET /v1/realtime_data -> ") for r in caplog.records)
    assert API_KEY not in caplog.text


def quote_url_in_json_message(request: httpx.Request) -> httpx.Response:
    """An API error whose message is the full request URL, key and all."""
    return httpx.Response(200, json={"status": "Error", "message": str(request.url)})


def start_body_with_url(request: httpx.Request) -> httpx.Response:
    """A body that is not JSON and starts with the full request URL, key and all."""
    return httpx.Response(200, text=f"{request.url} is not served here")


#: Servers that quote the whole URL where our messages quote them whole too: in the status
#: message (up to 200 characters) and in the start of a non-JSON body (80 characters); with
#: the error each one raises.
WHOLE_URL_ECHOES: dict[
    str, tuple[Callable[[httpx.Request], httpx.Response], type[WMSPanelError]]
] = {
    "json-message": (quote_url_in_json_message, APIError),
    "not-json": (start_body_with_url, InvalidResponseError),
}

#: Short enough that the request URL, key included, fits in the 80 characters of a body
#: that an error message quotes: https://a.b/v1/data_slices?client_id=c&api_key=<32>.
SHORT_BASE_URL = "https://a.b"


@pytest.mark.parametrize("use_http_client", [False, True], ids=["transport", "http_client"])
@pytest.mark.parametrize("echo", WHOLE_URL_ECHOES)
async def test_key_quoted_whole_in_an_answer_is_redacted(
    caplog: pytest.LogCaptureFixture, echo: str, use_http_client: bool
) -> None:
    """A key that an answer quotes whole, into our message, is blanked before raising."""
    caplog.set_level(logging.DEBUG)
    answer, error = WHOLE_URL_ECHOES[echo]
    transport = httpx.MockTransport(answer)
    async with contextlib.AsyncExitStack() as stack:
        if use_http_client:
            http_client = await stack.enter_async_context(httpx.AsyncClient(transport=transport))
            client = WMSPanelClient("c", API_KEY, base_url=SHORT_BASE_URL, http_client=http_client)
        else:
            client = WMSPanelClient("c", API_KEY, base_url=SHORT_BASE_URL, transport=transport)
        await stack.enter_async_context(client)
        with pytest.raises(error) as caught:
            await client.data_slices()
    # The whole key was in what the message quotes, and was blanked there.
    assert f"api_key={REDACTED}" in str(caught.value)
    assert API_KEY not in texts_of(caught.value)
    assert API_KEY not in caplog.text


async def test_key_absent_from_successful_traffic_logs(
    api: respx.Router, caplog: pytest.LogCaptureFixture
) -> None:
    """Each exchange is logged by its path alone: the key is only on the wire."""
    caplog.set_level(logging.DEBUG)
    route = api.get("/v1/data_slices").respond(json={"status": "Ok", "data_slices": []})
    async with make_client(api) as client:
        await client.data_slices()
    assert route.calls.last.request.url.params["api_key"] == API_KEY  # on the wire, only
    lines = [r.getMessage() for r in caplog.records if r.name == "wmspanel_async"]
    assert len(lines) == 1
    assert lines[0].startswith("GET /v1/data_slices -> 200 after ")
    assert lines[0].endswith(" s (attempt 1 of 3)")
    assert API_KEY not in caplog.text


def test_reprs_hide_the_key() -> None:
    """The client and its transport show the client id, never the key."""
    client = WMSPanelClient("the-id", API_KEY)
    assert repr(client) == "<WMSPanelClient client_id='the-id' base_url='https://api.wmspanel.com'>"
    assert API_KEY not in repr(client._transport)


@pytest.mark.parametrize(
    ("base_url", "shown"),
    [
        ("http://user:hunter2@127.0.0.1:8080/wms", "http://user:<redacted>@127.0.0.1:8080/wms"),
        ("https://proxy.example/wms?api_key=hunter2", "https://proxy.example/wms"),
        ("https://proxy.example/wms#hunter2", "https://proxy.example/wms"),
    ],
    ids=["userinfo-password", "api_key-in-query", "fragment"],
)
def test_repr_hides_what_base_url_holds(base_url: str, shown: str) -> None:
    """A password, a query or a fragment of base_url is not in the client's repr."""
    client = WMSPanelClient("the-id", API_KEY, base_url=base_url)
    assert repr(client) == f"<WMSPanelClient client_id='the-id' base_url={shown!r}>"
    assert "hunter2" not in repr(client)


@pytest.mark.parametrize(
    ("base_url", "fragment"),
    [
        ("http://user:hunter2@127.0.0.1:99999", "has port 99999, out of range"),
        ("http://user:hunter2@127.0.0.1:0", "has port 0, out of range"),
        ("http://user:hunter2\x00@127.0.0.1", "is not a valid URL"),
        ("ftp://user:hunter2@example.com?api_key=hunter2", "is not HTTPS"),
    ],
    ids=["port-too-high", "port-0", "invalid", "not-https"],
)
def test_a_bad_base_url_is_refused_at_once_without_its_password(
    base_url: str, fragment: str
) -> None:
    """A bad base_url is a ConfigurationError when the client is made, quoting no password."""
    with pytest.raises(ConfigurationError, match=fragment) as caught:
        WMSPanelClient("the-id", API_KEY, base_url=base_url)
    assert "hunter2" not in texts_of(caught.value)
    assert "user:<redacted>@" in str(caught.value)


async def test_a_password_in_base_url_is_blanked_like_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server echoing base_url's password (a proxy's) has it blanked in errors and logs."""
    caplog.set_level(logging.DEBUG)
    password = "s3cret-Proxy-pass"

    def echo(request: httpx.Request) -> httpx.Response:
        text = f"proxy user:{password}@ refused {request.url.params['api_key'].upper()}"
        return httpx.Response(502, extensions={"reason_phrase": text.encode()})

    base_url = f"https://user:{password}@proxy.example/wms"
    transport = httpx.MockTransport(echo)
    async with WMSPanelClient("c", API_KEY, base_url=base_url, transport=transport) as client:
        with pytest.raises(ServerError) as caught:
            await client.data_slices()
        logging.getLogger("httpx").warning("echoed %s", password.upper())
    text = texts_of(caught.value)
    assert "proxy user:<redacted>@ refused <redacted>" in str(caught.value)
    assert password.lower() not in text.lower()
    assert API_KEY not in text.lower()
    assert password.lower() not in caplog.text.lower()
    assert API_KEY not in caplog.text.lower()


def test_a_key_is_blanked_in_any_case_and_cut_short() -> None:
    """Upper case, mixed case, api_key= in any case, and a key's head cut off: all blanked."""
    redact = Redactor(API_KEY)
    assert redact(f"API_KEY={API_KEY.upper()}") == f"API_KEY={REDACTED}"
    assert redact(f"key {API_KEY.upper()[:20]}...") == f"key {REDACTED}..."
    assert redact(f"tail {API_KEY[-12:]}") == f"tail {REDACTED}"
    assert redact(f"short {API_KEY[:11]}") == f"short {API_KEY[:11]}"  # 11 characters: kept
    assert redact.blank_bytes(f"x{API_KEY.upper()}x".encode()) == f"x{REDACTED}x".encode()


def test_scrub_cleans_arguments_that_are_not_texts() -> None:
    """Bytes, objects whose repr shows the key, group members: each is cleaned."""

    class Holder:
        def __repr__(self) -> str:
            return f"Holder({API_KEY})"

    inner = ValueError(f"api_key={API_KEY}".encode(), Holder(), 3)
    group = ExceptionGroup("several", [inner, KeyError(API_KEY.upper())])
    outer = RuntimeError("wrapped")
    outer.__cause__ = group
    Redactor(API_KEY).scrub(outer)
    assert inner.args == (f"api_key={REDACTED}".encode(), f"Holder({REDACTED})", 3)
    assert group.exceptions[1].args == (REDACTED,)
    assert API_KEY not in texts_of(outer).lower()


def test_a_client_collected_while_the_keys_are_read_breaks_no_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A finalizer that forgets a key while another client's key is added changes nothing.

    The garbage collector runs a collected client's finalizer wherever it likes, and once
    did so while the keys were being read: the new client failed to start with "dictionary
    changed size during iteration".
    """
    log_filter = _SecretsLogFilter()
    forget_first: Callable[[], None] | None = log_filter.register("a" * 32)
    forms = _redact._forms

    def forms_while_collecting(secret: str) -> tuple[str, ...]:
        nonlocal forget_first
        if forget_first is not None:  # as the collector would, mid-read
            forget, forget_first = forget_first, None
            forget()
        return forms(secret)

    monkeypatch.setattr(_redact, "_forms", forms_while_collecting)
    log_filter.register("b" * 32)
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "key %s", ("b" * 32,), None)
    assert log_filter.filter(record)
    assert record.getMessage() == f"key {REDACTED}"
