"""A lean keep-alive HTTP/1.1 client for the load generator: prebuilt request bytes, only the parsing a reply needs.

The generator shares the machine's cores with the server it measures, so every microsecond it spends per
request is taken from the contender: this client costs a fraction of aiohttp's per request.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class HttpError(Exception):
    """The connection broke or the reply could not be parsed."""


def post_request(url: str, body: bytes, content_type: str = "application/json") -> bytes:
    """The whole request, headers and body, ready to write on a keep-alive connection."""
    parts = urlsplit(url)
    head = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _Reply:
    """Incremental parse of one response: status line, headers, then a Content-Length or chunked body."""

    def __init__(self) -> None:
        self.status = 0
        self.keep_alive = True
        self._length: int | None = None
        self._chunked = False
        self._head_done = False

    def feed(self, buffer: bytearray) -> bytes | None:
        """The body once `buffer` holds the whole response (consumed from it), else None."""
        if not self._head_done:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return None
            self._read_head(bytes(buffer[:end]))
            del buffer[: end + 4]
        if self._chunked:
            return self._chunked_body(buffer)
        length = self._length or 0
        if len(buffer) < length:
            return None
        body = bytes(buffer[:length])
        del buffer[:length]
        return body

    def _read_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        try:
            self.status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError) as exc:
            raise HttpError(f"bad status line {lines[0]!r}") from exc
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                self._length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                self._chunked = True
            elif name == "connection" and value == "close":
                self.keep_alive = False
        self._head_done = True

    def _chunked_body(self, buffer: bytearray) -> bytes | None:
        body, position = bytearray(), 0
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
            start = line_end + 2
            if size == 0:
                if buffer[start : start + 2] == b"\r\n":
                    end = start + 2
                else:  # trailer fields, ended by an empty line
                    end = buffer.find(b"\r\n\r\n", start)
                    if end < 0:
                        return None
                    end += 4
                del buffer[:end]
                return bytes(body)
            if len(buffer) < start + size + 2:
                return None
            body += buffer[start : start + size]
            position = start + size + 2


class Connection(asyncio.Protocol):
    """One keep-alive connection that carries one request at a time."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._reply: _Reply | None = None
        self._waiter: asyncio.Future | None = None
        self.closed = False

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, parts.hostname, parts.port)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._reply is None or self._waiter is None or self._waiter.done():
            return
        try:
            body = self._reply.feed(self._buffer)
        except (HttpError, ValueError) as exc:
            self._waiter.set_exception(HttpError(str(exc)))
            self.close()
            return
        if body is not None:
            self._waiter.set_result((self._reply.status, body))
            if not self._reply.keep_alive:
                self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(HttpError(f"connection lost: {exc or 'closed by the server'}"))

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    async def send(self, request: bytes, timeout: float) -> tuple[int, bytes]:
        """Write a prebuilt request and wait for (status, body); HttpError if none comes within `timeout` s."""
        if self.closed or self._transport is None:
            raise HttpError("connection is closed")
        loop = asyncio.get_running_loop()
        self._reply = _Reply()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(timeout, self._time_out, waiter, timeout)
        self._transport.write(request)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._reply = self._waiter = None

    def _time_out(self, waiter: asyncio.Future, timeout: float) -> None:
        if not waiter.done():
            waiter.set_exception(HttpError(f"no reply within {timeout} s"))
            self.close()
