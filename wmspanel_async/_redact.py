"""Keeping the API key out of every text: messages, exception chains and log records.

The client hands its requests straight to the transport, so httpx's client, its log line and
its error texts never see the key.
A server can still send it back (an echoed request line in a reason phrase or a header, a
quoted URL in a body), so every text that may hold an answer's words goes through these:

- :class:`Redactor` blanks one client's key in our messages and in every exception of a
  chain (``__cause__`` and ``__context__`` included), before anything is raised or logged;
- :data:`LOG_FILTER` blanks every live client's key, and any ``api_key=`` value, in the
  records of httpx's, httpcore's, aiohttp's, asyncio's and our own loggers, traceback text
  included.

A key as long as a real one (32 hex digits) is blanked wherever its text appears. A short
one (a placeholder such as ``wrong``) is blanked where it stands as a value (after
``api_key=``, in quotes, between URL delimiters, or as the whole text), never as a word of
a message: "either client_id or api_key is wrong" stays readable.
"""

from __future__ import annotations

import collections
import logging
import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator

#: What a redacted key is replaced with.
REDACTED = "<redacted>"

_API_KEY_VALUE = re.compile(r"(api_key=)[^&\s\"'#]+")
_API_KEY_VALUE_BYTES = re.compile(_API_KEY_VALUE.pattern.encode())

#: The loggers that may quote what a server sent, or an error whose text holds a URL; a
#: filter only sees records logged directly on its logger, so each one is named, not just the
#: parents. aiohttp's client logs on two (errors while closing, exceptions in its stream
#: callbacks, with their tracebacks), and reports unclosed sessions and failed tasks
#: through asyncio's.
FILTERED_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "aiohttp.client",
    "aiohttp.internal",
    "asyncio",
    "wmspanel_async",
    "wmspanel_async.poller",
)


#: A key at least this long is blanked wherever its text appears: no word of a message is
#: that long. WMSPanel's keys are 32 hex digits.
WORD_PROOF_LENGTH = 16

#: What may stand right before a value: a quote, or a URL delimiter.
_BEFORE_VALUE = r"(?<=[\"'=/?&#])"
#: What may stand right after a value: the end of the text, a quote, a URL delimiter or a
#: space (``GET /v1/x?api_key=k HTTP/1.1``).
_AFTER_VALUE = r"(?=\Z|[\"'&#/?;\s])"


def _forms(secret: str) -> tuple[str, ...]:
    """Return the texts ``secret`` may appear as: itself and its percent-encodings."""
    forms = dict.fromkeys(
        (secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret))
    )
    return tuple(form for form in forms if form)


def _pattern(forms: Iterable[str]) -> re.Pattern[str] | None:
    """Return the pattern that finds a key's ``forms`` where they must be blanked.

    A key as long as a real one is blanked wherever it appears, even glued to other text
    (``api_key%3D<key>`` in a quoted URL). A shorter one could be a word of the message
    itself (a key ``wrong`` in "client_id or api_key is wrong"), so it is blanked only
    where it stands as a value: the whole text, in quotes, or between URL delimiters.
    """
    ordered = sorted(forms, key=len, reverse=True)  # a key containing another is blanked whole
    long = [re.escape(form) for form in ordered if len(form) >= WORD_PROOF_LENGTH]
    short = [re.escape(form) for form in ordered if len(form) < WORD_PROOF_LENGTH]
    alternatives = []
    if long:
        alternatives.append("|".join(long))
    if short:
        either = "|".join(short)
        alternatives.append(rf"\A(?:{either})\Z|{_BEFORE_VALUE}(?:{either}){_AFTER_VALUE}")
    return re.compile("|".join(alternatives)) if alternatives else None


def _blank(text: str, pattern: re.Pattern[str] | None) -> str:
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return _API_KEY_VALUE.sub(rf"\g<1>{REDACTED}", text)


def exception_chain(error: BaseException) -> Iterator[BaseException]:
    """Yield ``error`` and every exception chained to it (causes and contexts), once each."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [current.__cause__, current.__context__]


def rewrite_texts(error: BaseException, rewrite: Callable[[str], str]) -> None:
    """Rewrite the string arguments and attributes of ``error`` and of its whole chain."""
    for current in exception_chain(error):
        current.args = tuple(rewrite(arg) if isinstance(arg, str) else arg for arg in current.args)
        for name, value in vars(current).items():
            if isinstance(value, str):
                setattr(current, name, rewrite(value))


class Redactor:
    """Blanks one API key in texts and exceptions.

    Args:
        secret: The API key.
    """

    __slots__ = ("_byte_forms", "_byte_pattern", "_pattern")

    def __init__(self, secret: str) -> None:
        forms = _forms(secret)
        self._pattern = _pattern(forms)
        self._byte_forms = (*(form.encode() for form in forms), b"api_key=")
        self._byte_pattern = re.compile(self._pattern.pattern.encode()) if self._pattern else None

    def __repr__(self) -> str:
        return "<Redactor>"

    def __call__(self, text: str) -> str:
        """Return ``text`` with the key (and any ``api_key=`` value) blanked."""
        return _blank(text, self._pattern)

    def blank_bytes(self, data: bytes) -> bytes:
        """Return ``data`` (an answer's body) with the key blanked, before any part is quoted.

        Quoting cuts texts short, and a key cut in half is no longer found: what a server
        sends back is blanked whole, on the way in.
        """
        if not any(form in data for form in self._byte_forms):
            return data  # the usual case, at the cost of a few substring searches
        if self._byte_pattern is not None:
            data = self._byte_pattern.sub(REDACTED.encode(), data)
        return _API_KEY_VALUE_BYTES.sub(rb"\g<1>" + REDACTED.encode(), data)

    def scrub(self, error: BaseException) -> None:
        """Blank the key in the texts of ``error`` and of its whole chain.

        The texts are the string arguments (what ``str()`` shows) and string attributes
        (such as ``APIError.api_message``).
        """
        rewrite_texts(error, self)


class _SecretsLogFilter(logging.Filter):
    """Blanks the keys of live clients in log records; never drops a record."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: collections.Counter[str] = collections.Counter()
        self._pattern: re.Pattern[str] | None = None
        self._installed = False

    def register(self, secret: str) -> Callable[[], None]:
        """Start blanking ``secret``; return the function that stops it (call it once)."""
        if not self._installed:
            for name in FILTERED_LOGGERS:
                logging.getLogger(name).addFilter(self)
            self._installed = True
        self._secrets[secret] += 1
        self._refresh()

        def unregister() -> None:
            self._secrets[secret] -= 1
            if self._secrets[secret] <= 0:
                del self._secrets[secret]
            self._refresh()

        return unregister

    def _refresh(self) -> None:
        self._pattern = _pattern({form for secret in self._secrets for form in _forms(secret)})

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` without keys, its traceback text included."""
        message = record.getMessage()
        redacted = _blank(message, self._pattern)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _blank(record.exc_text, self._pattern)
        return True


#: The one filter on the loggers in :data:`FILTERED_LOGGERS`; clients register their keys.
LOG_FILTER = _SecretsLogFilter()
