"""The API key appears in no exception, repr or log record, through every error path."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable

import httpx
import pytest
import respx
from conftest import API_KEY, SLICE_ID, make_client

from wmspanel_async import WMSPanelClient, WMSPanelError

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
        assert any(r.name == "httpx" for r in caplog.records)
    assert API_KEY not in caplog.text


async def test_key_absent_from_successful_traffic_logs(
    api: respx.Router, caplog: pytest.LogCaptureFixture
) -> None:
    """httpx's own request log line never carries the key: it is added below httpx."""
    caplog.set_level(logging.DEBUG)
    route = api.get("/v1/data_slices").respond(json={"status": "Ok", "data_slices": []})
    async with make_client(api) as client:
        await client.data_slices()
    assert route.calls.last.request.url.params["api_key"] == API_KEY  # on the wire, only
    httpx_lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert httpx_lines == [
        'HTTP Request: GET https://api.wmspanel.com/v1/data_slices "HTTP/1.1 200 OK"'
    ]


def test_reprs_hide_the_key() -> None:
    """The client and its transport show the client id, never the key."""
    client = WMSPanelClient("the-id", API_KEY)
    assert repr(client) == "<WMSPanelClient client_id='the-id' base_url='https://api.wmspanel.com'>"
    assert API_KEY not in repr(client._http._transport)
