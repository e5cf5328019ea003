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

A secret is every spelling of it: upper and lower case alike (hex keys are case-insensitive
to a reader), percent-encoded, JSON-escaped (the converter blanks the texts it quotes after
decoding them, before it cuts them short), cut short, inside an exception's arguments. A key
as long as a real one (32 hex digits) is blanked wherever its text appears, and so is any
run of :data:`PIECE_LENGTH` or more of its characters (half a key cut off by a server, or
by a quote). A short one (a placeholder such as ``wrong``) is blanked where it stands as a
value (after ``api_key=``, in quotes, between URL delimiters, or as the whole text), never as
a word of a message: "either client_id or api_key is wrong" stays readable.

The secrets of a client are its key and what its ``base_url`` holds: the password of its
userinfo, and any ``api_key`` in its query (see :func:`url_secrets`).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator

#: What a redacted key is replaced with.
REDACTED = "<redacted>"

_API_KEY_VALUE = re.compile(r"(api_key=)[^&\s\"'#]+", re.IGNORECASE)
_API_KEY_VALUE_BYTES = re.compile(_API_KEY_VALUE.pattern.encode(), re.IGNORECASE)

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

#: Of a key at least :data:`WORD_PROOF_LENGTH` long, any run of this many characters or more
#: is blanked too: a key cut short by a server or a quote is still most of a key.
PIECE_LENGTH = 12

#: What may stand right before a value: a quote, or a URL delimiter (``:`` before a
#: userinfo password).
_BEFORE_VALUE = r"(?<=[\"'=/?&#:])"
#: What may stand right after a value: the end of the text, a quote, a URL delimiter or a
#: space (``GET /v1/x?api_key=k HTTP/1.1``), or the ``@`` after a userinfo password.
_AFTER_VALUE = r"(?=\Z|[\"'&#/?;@\s])"


def url_secrets(url: str) -> tuple[str, ...]:
    """Return the secrets a URL holds: its userinfo password, and any ``api_key`` values.

    A proxy's URL often carries credentials; they are blanked like the API key. Works on a
    URL that does not parse as well as it can (an invalid port, say), never raises.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:  # an invalid port or a bracket out of place: take what we can
        userinfo, at, _ = url.partition("://")[2].partition("/")[0].rpartition("@")
        password = userinfo.partition(":")[2] if at else None
        query = []
    found = [] if not password else [urllib.parse.unquote(password), password]
    found += [value for name, value in query if name.lower() == "api_key" and value]
    return tuple(dict.fromkeys(found))


#: The userinfo password of a URL: after the first ``:`` of the userinfo, up to its last ``@``.
_URL_PASSWORD = re.compile(r"\A([A-Za-z][A-Za-z0-9+.-]*://[^/?#:@]*:)[^/?#]*(@)")


def shown_url(url: str) -> str:
    """Return ``url`` as a message may quote it: no password, query or fragment.

    Works on a URL that does not parse as well, never raises.
    """
    url = url.partition("?")[0].partition("#")[0]
    return _URL_PASSWORD.sub(rf"\g<1>{REDACTED}\g<2>", url)


def _pieces(secret: str) -> str:
    """Return a pattern for every run of :data:`PIECE_LENGTH` characters or more of ``secret``.

    Each alternative is one run of :data:`PIECE_LENGTH` characters of it, taken on by any
    characters of the secret's own that follow (what is glued to a piece of a key goes with
    it): quick to build and to search, unlike one alternative for every longer run.
    """
    runs = {secret[start : start + PIECE_LENGTH] for start in range(len(secret) - PIECE_LENGTH + 1)}
    alphabet = "".join(sorted({re.escape(char) for char in secret}))
    return f"(?:{'|'.join(sorted(re.escape(run) for run in runs))})[{alphabet}]*"


def _forms(secret: str) -> tuple[str, ...]:
    """Return the texts ``secret`` may appear as: itself and its percent-encodings."""
    forms = dict.fromkeys(
        (secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret))
    )
    return tuple(form for form in forms if form)


def _pattern(forms: Iterable[str]) -> re.Pattern[str] | None:
    """Return the pattern that finds secrets' ``forms`` where they must be blanked, in any case.

    A key as long as a real one is blanked wherever it appears, even glued to other text
    (``api_key%3D<key>`` in a quoted URL), and so is any run of :data:`PIECE_LENGTH` of its
    characters. A shorter one could be a word of the message itself (a key ``wrong`` in
    "client_id or api_key is wrong"), so it is blanked only where it stands as a value: the
    whole text, in quotes, or between URL delimiters.
    """
    ordered = sorted(forms, key=len, reverse=True)  # a key containing another is blanked whole
    long = [form for form in ordered if len(form) >= WORD_PROOF_LENGTH]
    short = [re.escape(form) for form in ordered if len(form) < WORD_PROOF_LENGTH]
    alternatives = [re.escape(form) for form in long] + [_pieces(form) for form in long]
    if short:
        either = "|".join(short)
        alternatives.append(rf"\A(?:{either})\Z|{_BEFORE_VALUE}(?:{either}){_AFTER_VALUE}")
    return re.compile("|".join(alternatives), re.IGNORECASE) if alternatives else None


def _clues(forms: Iterable[str]) -> tuple[str, ...]:
    """Return lower-case texts, one of which is in any text a pattern would change.

    For a long form, its slices of half :data:`PIECE_LENGTH` at every multiple of that: any
    run of :data:`PIECE_LENGTH` characters holds one whole. A short form is its own clue.
    Searching for these is far cheaper than the pattern, and usually finds none.
    """
    step = PIECE_LENGTH // 2
    clues: dict[str, None] = {"api_key=": None}
    for form in forms:
        text = form.lower()
        if len(form) < WORD_PROOF_LENGTH:
            clues[text] = None
            continue
        for start in range(0, len(text) - step + 1, step):
            clues[text[start : start + step]] = None
        clues[text[-step:]] = None
    return tuple(clues)


def _byte_clues(form: str) -> tuple[bytes, ...]:
    """Return :func:`_clues` of ``form`` for bytes: its UTF-8, sliced and folded as bytes."""
    data = form.encode()
    step = PIECE_LENGTH // 2
    if len(form) < WORD_PROOF_LENGTH:
        return (b"api_key=", data.lower())
    slices = [data[start : start + step] for start in range(0, len(data) - step + 1, step)]
    return (b"api_key=", *(piece.lower() for piece in [*slices, data[-step:]]))


def _blank(text: str, pattern: re.Pattern[str] | None) -> str:
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return _API_KEY_VALUE.sub(rf"\g<1>{REDACTED}", text)


def exception_chain(error: BaseException) -> Iterator[BaseException]:
    """Yield ``error`` and every exception it leads to, once each.

    That is its cause and context, the members of an exception group, and exceptions held
    in its arguments (aiohttp keeps the ``OSError`` of a failed connection there).
    """
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [current.__cause__, current.__context__, *current.args]
        pending += getattr(current, "exceptions", None) or ()


def rewrite_texts(error: BaseException, rewrite: Callable[[str], str]) -> None:
    """Rewrite the string arguments and attributes of ``error`` and of its whole chain."""
    for current in exception_chain(error):
        current.args = tuple(rewrite(arg) if isinstance(arg, str) else arg for arg in current.args)
        for name, value in vars(current).items():
            if isinstance(value, str):
                setattr(current, name, rewrite(value))


#: Values an exception's arguments may hold that carry no text (or are cleaned on their own).
_PLAIN = (int, float, type(None), BaseException)


class Redactor:
    """Blanks an API key, and other secrets, in texts and exceptions.

    Args:
        secret: The API key.
        others: More secrets, such as a password in the base URL.
    """

    __slots__ = ("_byte_clues", "_byte_pattern", "_clues", "_pattern")

    def __init__(self, secret: str, *others: str) -> None:
        forms = {form: None for each in (secret, *others) for form in _forms(each)}
        self._pattern = _pattern(forms)
        self._clues = _clues(forms)
        # bytes.lower() and a bytes pattern fold ASCII letters only: clues to match.
        self._byte_clues = tuple(dict.fromkeys(b for f in forms for b in _byte_clues(f)))
        self._byte_pattern = (
            re.compile(self._pattern.pattern.encode(), re.IGNORECASE) if self._pattern else None
        )

    def __repr__(self) -> str:
        return "<Redactor>"

    def __call__(self, text: str) -> str:
        """Return ``text`` with the key (and any ``api_key=`` value) blanked."""
        lowered = text.lower()
        for clue in self._clues:  # a plain loop: any() with a generator costs a µs more
            if clue in lowered:
                return _blank(text, self._pattern)
        return text  # the usual case: a few substring searches instead of the pattern

    def blank_bytes(self, data: bytes) -> bytes:
        r"""Return ``data`` (an answer's body) with the key blanked, before any part is quoted.

        Quoting cuts texts short, and a key cut in half is no longer found: what a server
        sends back is blanked whole, on the way in. JSON escapes (``\u0035``) are not seen
        here: the texts quoted from a JSON answer are blanked again once decoded.
        """
        lowered = data.lower()
        for clue in self._byte_clues:  # a plain loop, as in __call__
            if clue in lowered:
                break
        else:
            return data  # the usual case, at the cost of a few substring searches
        if self._byte_pattern is not None:
            data = self._byte_pattern.sub(REDACTED.encode(), data)
        return _API_KEY_VALUE_BYTES.sub(rb"\g<1>" + REDACTED.encode(), data)

    def scrub(self, error: BaseException) -> None:
        """Blank the secrets in ``error`` and in every exception it leads to.

        Error reporters serialise exceptions' arguments and attributes, not only their
        texts, so all of them are cleaned: string arguments (what ``str()`` shows) and
        attributes (such as ``APIError.api_message``), byte strings (aiohttp's
        ``InvalidHeader`` keeps the header it refused as one), notes, and any other value
        whose ``repr`` shows a secret, which is replaced by that ``repr``, blanked.
        """
        for current in exception_chain(error):
            current.args = tuple(self._clean(arg) for arg in current.args)
            for name, value in list(getattr(current, "__dict__", {}).items()):
                cleaned = self._clean(value)
                if cleaned is not value:
                    with contextlib.suppress(AttributeError, TypeError):
                        setattr(current, name, cleaned)

    def _clean(self, value: object) -> object:
        """Return ``value`` without secrets: itself if it has none."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, bytes | bytearray):
            return self.blank_bytes(bytes(value))
        if isinstance(value, _PLAIN):  # an exception is cleaned on its own
            return value
        if isinstance(value, list | tuple) and all(isinstance(v, BaseException) for v in value):
            return value  # an exception group's members, each cleaned on its own
        try:
            shown = repr(value)
        except Exception:  # what cannot be shown cannot be checked either: not kept
            return f"<{type(value).__name__}>"
        blanked = self(shown)
        return value if blanked == shown else blanked


class _SecretsLogFilter(logging.Filter):
    """Blanks the keys of live clients in log records; never drops a record."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: collections.Counter[str] = collections.Counter()
        self._pattern: re.Pattern[str] | None = None
        self._installed = False

    def register(self, *secrets: str) -> Callable[[], None]:
        """Start blanking ``secrets``; return the function that stops it (call it once)."""
        secrets = tuple(dict.fromkeys(secrets))
        if not self._installed:
            for name in FILTERED_LOGGERS:
                logging.getLogger(name).addFilter(self)
            self._installed = True
        self._secrets.update(secrets)
        self._refresh()

        def unregister() -> None:
            self._secrets.subtract(secrets)
            for secret in secrets:
                if secret in self._secrets and self._secrets[secret] <= 0:
                    del self._secrets[secret]
            self._refresh()

        return unregister

    def _refresh(self) -> None:
        # A copy: the garbage collector may run a closed client's finalizer (unregister)
        # in the middle of reading the keys, and a dict may not change while it is read.
        secrets = tuple(self._secrets)
        self._pattern = _pattern({form for secret in secrets for form in _forms(secret)})

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
