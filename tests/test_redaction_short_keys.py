"""A short placeholder key is blanked where it stands as a value, never as a word of a message.

tests/test_redaction.py holds the guarantee for real keys (32 hex digits): never shown,
anywhere. These tests pin what a first try with a made-up key such as ``wrong`` shows.
"""

from __future__ import annotations

import logging

import httpx
import pytest
import respx
from support import API_KEY, CLIENT_ID

from wmspanel_async import AuthenticationError, WMSPanelClient
from wmspanel_async._redact import LOG_FILTER, REDACTED, Redactor

SHORT_KEY = "wrong"


@pytest.mark.parametrize(
    "text",
    [
        "either client_id or api_key is wrong, or this machine's IP address is not whitelisted",
        "wrong credentials",
        "something went wrong",
        "wrongly typed",
        "the key was wrong.",
    ],
)
def test_short_key_leaves_the_words_of_a_message_alone(text: str) -> None:
    """A key that is also an English word does not blank that word in prose."""
    assert Redactor(SHORT_KEY)(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("wrong", REDACTED),
        (
            "GET /v1/data_slices?api_key=wrong HTTP/1.1",
            f"GET /v1/data_slices?api_key={REDACTED} HTTP/1.1",
        ),
        ("?key=wrong&data_slice=x", f"?key={REDACTED}&data_slice=x"),
        ("https://proxy.example/wrong/v1", f"https://proxy.example/{REDACTED}/v1"),
        ("no data slice 'wrong' for this key", f"no data slice '{REDACTED}' for this key"),
        ('{"api_key": "wrong"}', f'{{"api_key": "{REDACTED}"}}'),
    ],
    ids=["whole-text", "api_key-value", "query-value", "url-path", "single-quotes", "json"],
)
def test_short_key_is_blanked_where_it_stands_as_a_value(text: str, expected: str) -> None:
    """In a query, a URL, quotes, or as the whole text, a short key is blanked."""
    assert Redactor(SHORT_KEY)(text) == expected


def test_short_key_is_blanked_in_its_percent_encodings() -> None:
    """A short key with characters a URL escapes is blanked in its encoded forms too."""
    redact = Redactor("a b&c")
    assert redact("?x=a%20b%26c&y=1") == f"?x={REDACTED}&y=1"
    assert redact("?x=a+b%26c") == f"?x={REDACTED}"
    assert redact("'a b&c'") == f"'{REDACTED}'"


@pytest.mark.parametrize(
    "text",
    [
        f"a key {API_KEY} in prose",
        f"glued{API_KEY}glued",
        f"/v1/data_slices%3Fclient_id%3Dc%26api_key%3D{API_KEY}%26x",
        f"key is {API_KEY}.",
    ],
)
def test_a_real_key_is_blanked_wherever_it_appears(text: str) -> None:
    """A key as long as a real one is blanked everywhere, even glued to other text."""
    redacted = Redactor(API_KEY)(text)
    assert API_KEY not in redacted
    assert REDACTED in redacted


@pytest.mark.anyio
async def test_403_with_a_short_wrong_key_reads_plainly() -> None:
    """The 403 message with the key ``wrong`` still says the key is wrong."""
    router = respx.Router(base_url="https://api.wmspanel.com")
    router.get("/v1/data_slices").respond(403, text="Access denied for api_key=wrong")
    transport = httpx.MockTransport(router.async_handler)
    async with WMSPanelClient(CLIENT_ID, SHORT_KEY, transport=transport) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.data_slices()
    assert "either client_id or api_key is wrong, or this machine's IP" in str(caught.value)


def test_log_filter_keeps_words_and_blanks_values_of_a_short_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While a client with a short key is open, log records keep its word, not its value."""
    caplog.set_level(logging.DEBUG)
    unregister = LOG_FILTER.register(SHORT_KEY)
    try:
        logger = logging.getLogger("wmspanel_async")
        logger.warning("GET /v1/data_slices failed: the key is wrong")
        logger.warning("echoed %s", "GET /v1/data_slices?client_id=c&api_key=wrong HTTP/1.1")
        logger.warning("echoed key 'wrong'")
    finally:
        unregister()
    assert [record.getMessage() for record in caplog.records] == [
        "GET /v1/data_slices failed: the key is wrong",
        f"echoed GET /v1/data_slices?client_id=c&api_key={REDACTED} HTTP/1.1",
        f"echoed key '{REDACTED}'",
    ]
