"""The API key appears in no exception, repr or log record, through every error path."""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Callable

import httpx
import pytest
import respx
from support import API_KEY, SLICE_ID, make_client

from wmspanel_async import APIError, InvalidResponseError, WMSPanelClient, WMSPanelError
from wmspanel_async._redact import REDACTED

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
