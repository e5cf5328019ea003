from __future__ import annotations

import json
from typing import Any

import pytest
from support import sample_payload

from wmspanel_async import APIError, DataSlice, GeoEntry, InvalidResponseError, RealtimeStats
from wmspanel_async._converter import make_wire_converter, parse_data_slices, parse_realtime


def body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def realtime_body(**realtime_data: Any) -> bytes:
    return body({"status": "Ok", "realtime_data": realtime_data})


def test_sample_payloads_parse_with_extra_keys_forbidden() -> None:
    """The vendor's samples map onto our models field for field (strict: catches drift)."""
    strict = make_wire_converter(forbid_extra_keys=True)
    assert parse_data_slices(body(sample_payload("data_slices")), strict) == [
        DataSlice(id="53e03c9978a6fc8596000001", name="Full data slice"),
        DataSlice(id="53e03ca678a6fc8599000001", name="DS2"),
    ]
    assert parse_realtime(body(sample_payload("realtime_data")), strict) == RealtimeStats(
        connected=1, bandwidth=267784, geo=(GeoEntry(country="BR", connected=1),)
    )


def test_unknown_fields_are_ignored() -> None:
    """New fields in the API's answers do not break parsing."""
    payload = sample_payload("data_slices")
    payload["data_slices"][0]["owner"] = {"name": "x"}
    payload["generated"] = 1
    assert parse_data_slices(body(payload))[0].name == "Full data slice"


def test_missing_geo_means_no_countries() -> None:
    """An answer without geo (no viewers) parses to an empty tuple."""
    assert parse_realtime(realtime_body(connected=0, bandwidth=0)).geo == ()


def test_integral_floats_are_integers() -> None:
    """1.0 is accepted as 1: some encoders write large counters that way."""
    stats = parse_realtime(realtime_body(connected=2.0, bandwidth=1e6, geo=[["US", 2.0]]))
    assert (stats.connected, stats.bandwidth, stats.geo[0].connected) == (2, 1_000_000, 2)


@pytest.mark.parametrize(
    ("realtime_data", "field", "reason"),
    [
        ({"bandwidth": 1}, "realtime_data.connected", "required field missing"),
        ({"connected": "5", "bandwidth": 1}, "realtime_data.connected", "expected an integer"),
        ({"connected": True, "bandwidth": 1}, "realtime_data.connected", "expected an integer"),
        ({"connected": 1.5, "bandwidth": 1}, "realtime_data.connected", "expected an integer"),
        ({"connected": 1, "bandwidth": None}, "realtime_data.bandwidth", "expected an integer"),
        (
            {"connected": 1, "bandwidth": 1, "geo": [["US", 1], ["BR"]]},
            "realtime_data.geo[1]",
            "expected a [country, connected] pair",
        ),
        (
            {"connected": 1, "bandwidth": 1, "geo": [[7, 1]]},
            "realtime_data.geo[0]",
            "expected a string",
        ),
        ({"connected": 1, "bandwidth": 1, "geo": ""}, "realtime_data.geo", "expected a list"),
        ({"connected": 1, "bandwidth": 1, "geo": {}}, "realtime_data.geo", "expected a list"),
        ({"connected": 1, "bandwidth": 1, "geo": "US"}, "realtime_data.geo", "expected a list"),
        ({"connected": 1, "bandwidth": 1, "geo": None}, "realtime_data.geo", "expected a list"),
    ],
)
def test_bad_fields_name_their_path(realtime_data: Any, field: str, reason: str) -> None:
    """A missing or mistyped field raises InvalidResponseError naming the field path."""
    with pytest.raises(InvalidResponseError) as caught:
        parse_realtime(realtime_body(**realtime_data))
    assert caught.value.field == field
    assert field in str(caught.value)
    assert reason in str(caught.value)


def test_missing_envelope_member_is_named() -> None:
    """An "Ok" answer without its payload names the missing member."""
    with pytest.raises(InvalidResponseError, match="data_slices: required field missing"):
        parse_data_slices(body({"status": "Ok"}))


def test_slice_list_entry_path() -> None:
    """A bad slice in the list is pointed at by index."""
    with pytest.raises(InvalidResponseError) as caught:
        parse_data_slices(body({"status": "Ok", "data_slices": [{"id": "a", "name": "b"}, {}]}))
    assert caught.value.field == "data_slices[1].id"


@pytest.mark.parametrize(
    ("raw", "message", "field"),
    [
        (
            b"<html>Bad gateway</html>",
            "not JSON (Expecting value: line 1 column 1 (char 0); starts with '<html>Bad gateway",
            None,
        ),
        (b"", "not JSON", None),
        (b'{"status": "Ok", "realtime_data": {"connec', "not JSON", None),
        (b"[1, 2]", "a JSON list, expected an object", None),
        (b'{"realtime_data": {}}', "has no status field", "status"),
        (b'{"status": 1, "realtime_data": {}}', "a int status, expected a string", "status"),
    ],
)
def test_bodies_that_are_not_the_documented_json(
    raw: bytes, message: str, field: str | None
) -> None:
    """Non-JSON, non-objects and non-"Ok" statuses raise InvalidResponseError."""
    with pytest.raises(InvalidResponseError) as caught:
        parse_realtime(raw)
    assert message in str(caught.value)
    assert caught.value.field == field


def test_a_refusal_is_an_api_error_with_its_message() -> None:
    """A well-formed answer whose status is not "Ok" is APIError, carrying the API's message."""
    with pytest.raises(APIError) as caught:
        parse_realtime(b'{"status": "Error", "message": "no such slice"}')
    assert str(caught.value) == "the API answered status 'Error' instead of \"Ok\": no such slice"
    assert (caught.value.status, caught.value.api_message) == ("Error", "no such slice")


def test_only_a_textual_message_is_quoted() -> None:
    """A non-string "message" beside a bad status is left out of the error text."""
    with pytest.raises(APIError) as caught:
        parse_realtime(b'{"status": "Error", "message": 7}')
    assert str(caught.value) == "the API answered status 'Error' instead of \"Ok\""
    assert caught.value.api_message is None


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        ({"status": "Ok", "realtime_data": None}, "realtime_data", "expected an object"),
        ({"status": "Ok", "realtime_data": [1, 2]}, "realtime_data", "expected an object"),
        ({"status": "Ok", "realtime_data": "0"}, "realtime_data", "expected an object"),
    ],
)
def test_realtime_data_must_be_an_object(payload: Any, field: str, reason: str) -> None:
    """A null, list or string realtime_data is not an empty answer: it names the field."""
    with pytest.raises(InvalidResponseError) as caught:
        parse_realtime(body(payload))
    assert (caught.value.field, reason in str(caught.value)) == (field, True)


@pytest.mark.parametrize(
    ("data_slices", "field"),
    [
        ("", "data_slices"),
        ({}, "data_slices"),
        (None, "data_slices"),
        ("53e03c9978a6fc8596000001", "data_slices"),
        ([None], "data_slices[0]"),
        ([{"id": "a", "name": "b", "server_ids": "abc"}], "data_slices[0].server_ids"),
        ([{"id": "a", "name": "b", "server_ids": {}}], "data_slices[0].server_ids"),
    ],
)
def test_slice_lists_must_be_lists(data_slices: Any, field: str) -> None:
    """A string or object where the API documents a list is refused, naming the field."""
    with pytest.raises(InvalidResponseError) as caught:
        parse_data_slices(body({"status": "Ok", "data_slices": data_slices}))
    assert caught.value.field == field


@pytest.mark.parametrize("depth", [100_000, 1_000])
def test_deep_nesting_is_an_invalid_response(depth: int) -> None:
    """A body nested thousands of levels deep is an InvalidResponseError, not RecursionError."""
    nested = b"[" * depth + b"]" * depth
    for raw in (nested, b'{"status": "Ok", "realtime_data": {"geo": ' + nested + b"}}"):
        with pytest.raises(InvalidResponseError):
            parse_realtime(raw)


def test_mistyped_values_do_not_ride_along_in_the_chain() -> None:
    """What the server put in a mistyped field is quoted at most once, with no chained cause."""
    with pytest.raises(InvalidResponseError) as caught:
        parse_realtime(realtime_body(connected="echoed-secret", bandwidth=1))
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    assert str(caught.value).count("echoed-secret") == 1
