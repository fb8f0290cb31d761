"""Request bodies sent with `Content-Encoding: gzip, deflate or br`, decoded with a bound on the decoded size.

The server decodes bodies itself (aiohttp's own decoding is off): a corrupt or cut stream is a clear 400,
and a small body that expands beyond --max-request-bytes stops expanding at the bound (413). No I/O.
"""

from __future__ import annotations

import zlib

from .errors import ErrorKind, ServerError, invalid

try:  # the `brotli` package is optional, as it is for aiohttp
    import brotli
except ImportError:  # pragma: no cover - depends on the installation
    brotli = None

ENCODINGS = ("gzip", "x-gzip", "deflate", "br", "identity")
# Codings a body may stack (`gzip, br`); each layer may expand to --max-request-bytes, so more would let a small
# body cost many passes over that much data.
MAX_LAYERS = 2


def layers(content_encoding: str) -> list[str]:
    """The codings of a Content-Encoding header, in the order they were applied (`identity` left out)."""
    return [e for e in (part.strip().lower() for part in content_encoding.split(",")) if e and e != "identity"]


def decode(body: bytes, content_encoding: str, max_bytes: int) -> bytes:
    """The decoded body; a stack of encodings (`gzip, br`, at most MAX_LAYERS) is undone last one first."""
    encodings = layers(content_encoding)
    if len(encodings) > MAX_LAYERS:
        raise invalid(f"Content-Encoding stacks {len(encodings)} codings; at most {MAX_LAYERS} are accepted")
    for encoding in reversed(encodings):
        body = _decode_one(body, encoding, max_bytes)
    return body


def _decode_one(body: bytes, encoding: str, max_bytes: int) -> bytes:
    if encoding == "identity":
        return body
    if encoding in ("gzip", "x-gzip"):
        return _zlib(body, zlib.MAX_WBITS | 16, encoding, max_bytes)
    if encoding == "deflate":  # RFC 9110's deflate is zlib-wrapped; some clients send it raw
        wrapped = body[:1] and (body[0] & 0x0F) == 8 and int.from_bytes(body[:2], "big") % 31 == 0
        return _zlib(body, zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS, encoding, max_bytes)
    if encoding == "br":
        if brotli is None:
            raise ServerError(ErrorKind.UNSUPPORTED, "Content-Encoding br needs the 'brotli' package on the server")
        return _brotli(body, max_bytes)
    raise ServerError(ErrorKind.UNSUPPORTED, f"Content-Encoding {encoding!r} is not supported; use one of "
                      f"{', '.join(ENCODINGS)}")


def _too_large(max_bytes: int) -> ServerError:
    return ServerError(ErrorKind.PAYLOAD_TOO_LARGE, f"the request body is larger than the server accepts "
                       f"(over {max_bytes} bytes once decoded)")


def _zlib(body: bytes, wbits: int, encoding: str, max_bytes: int) -> bytes:
    parts, size, data = [], 0, body
    while True:  # gzip allows several members one after another
        decompressor = zlib.decompressobj(wbits)
        try:
            part = decompressor.decompress(data, max_bytes + 1 - size)
        except zlib.error:
            raise invalid(f"the request body is not valid {encoding} data (Content-Encoding: {encoding})") from None
        size += len(part)
        parts.append(part)
        if size > max_bytes or decompressor.unconsumed_tail:
            raise _too_large(max_bytes)
        if not decompressor.eof:
            raise invalid(f"the request body's {encoding} data is cut short (Content-Encoding: {encoding})")
        data = decompressor.unused_data
        if wbits < 0 or not data.strip(b"\0"):
            return b"".join(parts)


def _brotli(body: bytes, max_bytes: int) -> bytes:
    decompressor = brotli.Decompressor()
    try:
        decoded = decompressor.process(body, output_buffer_limit=max_bytes + 1)
    except brotli.error:
        raise invalid("the request body is not valid br data (Content-Encoding: br)") from None
    if len(decoded) > max_bytes or not decompressor.can_accept_more_data():
        raise _too_large(max_bytes)
    if not decompressor.is_finished():
        raise invalid("the request body's br data is cut short (Content-Encoding: br)")
    return decoded
