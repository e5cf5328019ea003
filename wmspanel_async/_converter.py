"""The one place that turns the API's JSON into models.

Unknown keys are ignored so that the API can grow without breaking us; anything missing or
mistyped becomes an ``InvalidResponseError`` naming the field path, never a raw cattrs,
``KeyError`` or ``TypeError``.

cattrs is imported, and the converter built, on the first answer parsed rather than on
``import wmspanel_async``: together they cost about 25 ms that an import need not pay.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ._exceptions import APIError, InvalidResponseError
from ._models import DataSlice, GeoEntry, RealtimeStats

if TYPE_CHECKING:
    import cattrs

_T = TypeVar("_T")


@attrs.frozen
class _DataSlicesAnswer:
    status: str
    data_slices: tuple[DataSlice, ...]


@attrs.frozen
class _RealtimeAnswer:
    status: str
    realtime_data: RealtimeStats


def _structure_int(value: Any, _: object = None) -> int:
    # bool is an int subclass, and an integral float is how some JSON encoders write
    # large counters; anything else is a type error, not something to coerce.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    msg = f"expected an integer, got {type(value).__name__} {value!r:.40}"
    raise TypeError(msg)


def _structure_str(value: Any, _: object = None) -> str:
    if isinstance(value, str):
        return value
    msg = f"expected a string, got {type(value).__name__} {value!r:.40}"
    raise TypeError(msg)


def _structure_geo_entry(value: Any, _: object) -> GeoEntry:
    if not isinstance(value, list | tuple) or len(value) != 2:
        msg = f"expected a [country, connected] pair, got {value!r:.40}"
        raise TypeError(msg)
    country, connected = value
    return GeoEntry(country=_structure_str(country), connected=_structure_int(connected))


def _require_json_type(converter: cattrs.Converter, model_type: Any, json_type: type) -> None:
    # cattrs turns any iterable into a tuple, so "" and {} would pass as empty lists, and
    # reads objects through `in`, so null fails with a puzzling message: check the JSON type.
    structure = converter.get_structure_hook(model_type)
    expected = "a list" if json_type is list else "an object"

    def structure_checked(value: Any, _: object) -> Any:
        if not isinstance(value, json_type):
            msg = f"expected {expected}, got {type(value).__name__} {value!r:.40}"
            raise TypeError(msg)
        return structure(value, model_type)

    converter.register_structure_hook_func(lambda type_: type_ == model_type, structure_checked)


def make_wire_converter(*, forbid_extra_keys: bool = False) -> cattrs.Converter:
    """Build the converter from wire JSON to models.

    Args:
        forbid_extra_keys: Reject unknown keys; only tests use this, to notice drift.
    """
    from cattrs.preconf.json import make_converter  # noqa: PLC0415 - see the docstring

    converter = make_converter(forbid_extra_keys=forbid_extra_keys, detailed_validation=True)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(GeoEntry, _structure_geo_entry)
    for sequence_type in (tuple[str, ...], tuple[GeoEntry, ...], tuple[DataSlice, ...]):
        _require_json_type(converter, sequence_type, list)
    for object_type in (DataSlice, RealtimeStats):
        _require_json_type(converter, object_type, dict)
    return converter


@functools.cache
def default_converter() -> cattrs.Converter:
    """Return the converter answers are parsed with, built on first use."""
    return make_wire_converter()


def _describe(exc: BaseException, _: type | None) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    return str(exc)


def _invalid_field(exc: Exception) -> InvalidResponseError:
    import cattrs  # noqa: PLC0415 - loaded already: the converter raised exc

    first = cattrs.transform_error(exc, path="$", format_exception=_describe)[0]
    description, _, path = first.rpartition(" @ ")
    field = path.removeprefix("$").removeprefix(".") or None
    msg = f"the API answered an unexpected value at {field or 'the top level'}: {description}"
    return InvalidResponseError(msg, field=field)


def _decode(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except RecursionError:
        reason = "nested too deeply"
    except ValueError as exc:
        reason = str(exc)
    else:
        reason = ""
    # Raised outside the except block: the decoder's error keeps the whole body, which must
    # not ride along in the exception chain.
    if reason:
        excerpt = body[:80].decode("utf-8", "replace")
        msg = f"the API answered something that is not JSON ({reason}; starts with {excerpt!r})"
        raise InvalidResponseError(msg)
    if not isinstance(payload, dict):
        msg = f"the API answered a JSON {type(payload).__name__}, expected an object"
        raise InvalidResponseError(msg)
    status = payload.get("status")
    if status == "Ok":
        return payload
    if not isinstance(status, str):
        msg = (
            "the API answer has no status field"
            if status is None
            else f"the API answered a {type(status).__name__} status, expected a string"
        )
        raise InvalidResponseError(msg, field="status")
    msg = f'the API answered status {status!r:.80} instead of "Ok"'
    explanation = payload.get("message")
    if isinstance(explanation, str) and explanation:
        msg += f": {explanation:.200}"
        raise APIError(msg, status=status, api_message=explanation)
    raise APIError(msg, status=status)


def _structure(
    payload: dict[str, Any], answer_type: type[_T], converter: cattrs.Converter | None
) -> _T:
    try:
        return (converter or default_converter()).structure(payload, answer_type)
    except Exception as exc:  # cattrs raises several types; all mean "not the documented shape"
        error = _invalid_field(exc)
    # Raised unchained: cattrs' errors quote the offending value, which may be anything the
    # server sent back, the key included; the message says all that is needed.
    raise error


def parse_data_slices(body: bytes, converter: cattrs.Converter | None = None) -> list[DataSlice]:
    """Turn the body of ``GET /v1/data_slices`` into data slices.

    Raises:
        InvalidResponseError: The body is not the documented JSON.
    """
    answer = _structure(_decode(body), _DataSlicesAnswer, converter)
    return list(answer.data_slices)


def parse_realtime(body: bytes, converter: cattrs.Converter | None = None) -> RealtimeStats:
    """Turn the body of ``GET /v1/realtime_data`` into realtime figures.

    Raises:
        InvalidResponseError: The body is not the documented JSON.
    """
    return _structure(_decode(body), _RealtimeAnswer, converter).realtime_data
