"""What an HTTP status we do not accept means, as the error that says what to do about it."""

from __future__ import annotations

import httpx

from ._exceptions import APIStatusError, AuthenticationError, RateLimitError, ServerError


def status_error(
    path: str,
    status_code: int,
    reason: str,
    *,
    client_id: str,
    retry_after: float | None,
    location: str | None,
) -> APIStatusError:
    """Return the error for an answer to ``GET path`` with a status other than 2xx.

    Args:
        path: The API path asked for, for the message.
        status_code: The answer's HTTP status.
        reason: Its reason phrase, which may quote anything the server chose.
        client_id: The account's client id, for the message of a 401 or 403.
        retry_after: Seconds the answer's ``Retry-After`` asks for, or ``None``.
        location: The answer's ``Location`` if it is a redirect, else ``None``.
    """
    reason = f"{reason:.100}"
    if status_code in (401, 403):
        msg = (
            f"the API refused the credentials of client_id {client_id!r} ({status_code}): "
            "either client_id or api_key is wrong, or this machine's IP address is not on "
            "the account's API whitelist in WMSPanel"
        )
        return AuthenticationError(msg, status_code=status_code)
    if status_code == 429:
        wait = f" and asks to wait {retry_after:g} s" if retry_after is not None else ""
        msg = f"GET {path}: the API is rate limiting this account (429){wait}; poll less often"
        return RateLimitError(msg, status_code=status_code, retry_after=retry_after)
    if status_code >= 500:
        msg = f"GET {path}: the API failed on its side ({status_code} {reason})"
        return ServerError(msg, status_code=status_code, retry_after=retry_after)
    if location is not None:
        try:
            target = repr(str(httpx.URL(location).copy_with(query=None)))
        except httpx.InvalidURL:
            target = "an address that is not a valid URL"
        msg = (
            f"GET {path} was redirected ({status_code}) to {target}; redirects are not "
            "followed because they would carry the API key elsewhere: set base_url to the "
            "address that answers"
        )
        return APIStatusError(msg, status_code=status_code)
    msg = f"GET {path}: the API answered {status_code} {reason}"
    return APIStatusError(msg, status_code=status_code, retry_after=retry_after)
