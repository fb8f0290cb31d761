"""The API key check every protocol shares: HTTP's `Authorization` header and gRPC's `authorization` metadata."""

from __future__ import annotations

import hmac

from .errors import ErrorKind, ServerError


def check_bearer(header: str | bytes | None, key: str | None, *, where: str) -> None:
    """Raise UNAUTHORIZED unless `key` is unset or `header` is `Bearer <key>`.

    `where` names the header in the error (e.g. "'Authorization: Bearer <key>'"). Header bytes that are not
    UTF-8 (surrogate escapes in aiohttp's str, or raw bytes) are compared as bytes and never fail the check
    itself.
    """
    if not key:
        return
    if isinstance(header, bytes):
        header = header.decode("utf-8", "surrogateescape")
    scheme, _, token = (header or "").partition(" ")
    given = token.strip().encode("utf-8", "surrogateescape")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given, key.encode()):
        raise ServerError(ErrorKind.UNAUTHORIZED, f"a valid API key is required: {where}")
