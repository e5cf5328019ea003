"""Each call's URL: assembled from the endpoint's parse, byte for byte what httpx would build."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wmspanel_async import _urls
from wmspanel_async._constants import URLS_KEPT
from wmspanel_async._urls import RequestURLs

CREDENTIALS = {"client_id": "00000000-1111-2222-3333-444444444444", "api_key": "k&y=+ é"}
BASES = [
    "https://api.wmspanel.com",
    "http://127.0.0.1:8080/wms/",
    "http://[::1]:9/x",
    "https://user:p%40ss@Proxy.Example.ORG:443/api",
]
#: Ids as a user may type them: any text the Target's check lets through.
ids = st.text(min_size=1, max_size=40)
params = st.fixed_dictionaries(
    {"data_slice": ids}, optional={"stream": ids, "server": ids}
) | st.just({})


def httpx_sends_as_is(value: str) -> bool:
    """Whether this httpx takes ``value`` for encoded already, and sends it as it is.

    httpx 0.27 does so with a value of only unreserved characters and ``%``: ``%41``
    reaches the API as ``A``. From 0.28 on, httpx encodes every ``%``, as we do.
    """
    return "%" in value and str(httpx.URL("http://x/", params={"v": value})).endswith(f"?v={value}")


def public_url(base: str, path: str, query: dict[str, str]) -> httpx.URL:
    """The URL as httpx's public constructor builds it, as the client did before."""
    endpoint = httpx.URL(base).copy_with(path=httpx.URL(base).path.rstrip("/") + path)
    return httpx.URL(endpoint, params={**query, **CREDENTIALS})


@given(base=st.sampled_from(BASES), path=st.sampled_from(["/v1/realtime_data"]), query=params)
def test_an_assembled_url_is_what_httpx_builds(base: str, path: str, query: dict[str, str]) -> None:
    urls = RequestURLs(httpx.URL(base), CREDENTIALS)
    url = urls(path, query)
    assert urls.kept == {}  # assembled, with whichever encoding this httpx uses
    assert dict(url.params) == {**query, **CREDENTIALS}
    if any(map(httpx_sends_as_is, query.values())):
        return  # httpx 0.27 would send it unencoded (see the test below); ours is the right URL
    expected = public_url(base, path, query)
    assert str(url) == str(expected)
    assert url.raw_path == expected.raw_path
    assert url.netloc == expected.netloc
    assert httpx.Request("GET", url).headers == httpx.Request("GET", expected).headers


def test_a_value_that_looks_encoded_is_encoded_all_the_same() -> None:
    """httpx 0.27 took "%41" for encoded and sent it as is (the API read "A"); not we."""
    urls = RequestURLs(httpx.URL(BASES[0]), CREDENTIALS)
    url = urls("/v1/realtime_data", {"data_slice": "%41", "stream": "%"})
    assert url.raw_path.startswith(b"/v1/realtime_data?data_slice=%2541&stream=%25&")
    assert (url.params["data_slice"], url.params["stream"]) == ("%41", "%")
    assert urls.kept == {}


def test_the_endpoint_is_parsed_once_and_no_url_is_kept() -> None:
    urls = RequestURLs(httpx.URL(BASES[0]), CREDENTIALS)
    first = urls("/v1/realtime_data", {"data_slice": "a"})
    second = urls("/v1/realtime_data", {"data_slice": "a"})
    assert first == second
    assert first is not second
    assert urls.kept == {}
    assert list(urls._assemblers) == ["/v1/realtime_data"]


@pytest.mark.parametrize(
    "assembler",
    [
        pytest.param(lambda endpoint: lambda query: endpoint, id="the query is lost"),
        pytest.param(
            lambda endpoint: lambda query: endpoint.copy_with(query=query.encode()[:-1]),
            id="a byte differs",
        ),
        pytest.param(lambda endpoint: lambda query: 1 / 0, id="it raises"),
        pytest.param(lambda endpoint: endpoint._no_such_attribute, id="httpx changed"),
    ],
)
def test_a_client_keeps_urls_when_assembling_differs_from_httpx(
    monkeypatch: pytest.MonkeyPatch, assembler: object
) -> None:
    monkeypatch.setattr(_urls, "_assembler", assembler)
    urls = RequestURLs(httpx.URL(BASES[1]), CREDENTIALS)
    url = urls("/v1/realtime_data", {"data_slice": "a b"})
    assert url == public_url(BASES[1], "/v1/realtime_data", {"data_slice": "a b"})
    assert list(urls.kept.values()) == [url]


def test_kept_urls_are_bounded_the_oldest_out_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_urls, "_assembler", lambda endpoint: endpoint._no_such_attribute)
    urls = RequestURLs(httpx.URL(BASES[0]), CREDENTIALS)
    for index in range(URLS_KEPT + 10):
        urls("/v1/realtime_data", {"data_slice": f"{index:024x}"})
    assert len(urls.kept) == URLS_KEPT
    assert ("/v1/realtime_data", "data_slice", f"{9:024x}") not in urls.kept
    assert ("/v1/realtime_data", "data_slice", f"{10:024x}") in urls.kept
    newest = {"data_slice": f"{URLS_KEPT + 9:024x}"}
    assert urls("/v1/realtime_data", newest) is urls("/v1/realtime_data", newest)
    assert urls("/v1/realtime_data", newest).params["data_slice"] == newest["data_slice"]
