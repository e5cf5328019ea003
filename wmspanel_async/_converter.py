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
from collections.abc import Callable
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


#: Of a text the server sent, how much is blanked before a message quotes its start: what
#: a message quotes (80 characters at most), and room for a key that begins within it.
_QUOTED_WINDOW = 400


def _no_secrets(text: str) -> str:
    return text


def _blanked(value: Any, redact: Callable[[str], str]) -> Any:
    """Return the decoded JSON ``value`` with ``redact`` applied to every text in it."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_blanked(item, redact) for item in value]
    if isinstance(value, dict):
        return {redact(key): _blanked(item, redact) for key, item in value.items()}
    return value


def _unquoted(error: InvalidResponseError) -> InvalidResponseError:
    """Return ``error`` without its description, which quotes what the server sent."""
    msg = f"the API answered an unexpected value at {error.field or 'the top level'}"
    return InvalidResponseError(msg, field=error.field)


def _decode(body: bytes, redact: Callable[[str], str] = _no_secrets) -> dict[str, Any]:
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
        excerpt = redact(body[:_QUOTED_WINDOW].decode("utf-8", "replace"))[:80]
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
    # What the server said is blanked after JSON decoded it (a key escaped as \u0035...
    # is seen only now), and before it is cut short (a key cut in half is no longer found).
    status = redact(status)
    msg = f'the API answered status {status!r:.80} instead of "Ok"'
    explanation = payload.get("message")
    if isinstance(explanation, str) and explanation:
        explanation = redact(explanation)
        msg += f": {explanation:.200}"
        raise APIError(msg, status=status, api_message=explanation)
    raise APIError(msg, status=status)


def _structure(
    payload: dict[str, Any],
    answer_type: type[_T],
    converter: cattrs.Converter | None,
    redact: Callable[[str], str],
) -> _T:
    converter = converter or default_converter()
    try:
        return converter.structure(payload, answer_type)
    except Exception as exc:  # cattrs raises several types; all mean "not the documented shape"
        error = _invalid_field(exc)
    if redact is not _no_secrets:
        # The message quotes the offending value cut short, and a key cut short is no longer
        # found: it is quoted again from the answer with every text in it blanked whole.
        try:
            converter.structure(_blanked(payload, redact), answer_type)
        except RecursionError:
            error = _unquoted(error)
        except Exception as exc:
            error = _invalid_field(exc)
        else:  # blanked, it passes: the secret was the fault, and is not to be quoted
            error = _unquoted(error)
    # Raised unchained: cattrs' errors quote the offending value, which may be anything the
    # server sent back, the key included; the message says all that is needed.
    raise error


def parse_data_slices(
    body: bytes,
    converter: cattrs.Converter | None = None,
    *,
    redact: Callable[[str], str] = _no_secrets,
) -> list[DataSlice]:
    """Turn the body of ``GET /v1/data_slices`` into data slices.

    Args:
        body: The answer's body.
        converter: The converter to use instead of the default one (tests).
        redact: Blanks secrets in what the server said, before an error quotes it.

    Raises:
        APIError: The answer's status is not "Ok".
        InvalidResponseError: The body is not the documented JSON.
    """
    answer = _structure(_decode(body, redact), _DataSlicesAnswer, converter, redact)
    return list(answer.data_slices)


def parse_realtime(
    body: bytes,
    converter: cattrs.Converter | None = None,
    *,
    redact: Callable[[str], str] = _no_secrets,
) -> RealtimeStats:
    """Turn the body of ``GET /v1/realtime_data`` into realtime figures.

    Args:
        body: The answer's body.
        converter: The converter to use instead of the default one (tests).
        redact: Blanks secrets in what the server said, before an error quotes it.

    Raises:
        APIError: The answer's status is not "Ok".
        InvalidResponseError: The body is not the documented JSON.
    """
    return _structure(_decode(body, redact), _RealtimeAnswer, converter, redact).realtime_data
