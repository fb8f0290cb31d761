"""Run the application: listen with a connection cap, serve until SIGTERM or SIGINT, then drain in one grace period.

Shutdown order: the first signal turns readiness 503 at once while the listener stays open, so load balancers
see the server leave before anything closes; requests in flight (and any that still arrive) are served until
none is left or `--shutdown-grace-s` has passed; then the listener and the connections close and the models
stop, within what is left of the same grace period. HTTP requests and gRPC calls are one count
(`Lifecycle.in_flight`), so this one drain waits for both; the gRPC server stops after it (grpc_server.py). Further signals are logged and change nothing: accepted
work is never cut short by an impatient second SIGTERM (SIGKILL still ends the process at once).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
from collections.abc import Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .config import ServerConfig
from .state import LIFECYCLE, Lifecycle

log = logging.getLogger(__name__)

# Seconds a connection may keep sending a body nobody reads before it is closed (aiohttp's default is 10).
LINGERING_S = 1.0
# File descriptors kept for model files, executors and the listener when the connection cap is derived.
RESERVED_FDS = 128
_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 32\r\nConnection: close\r\n\r\ntoo many connections; retry later")


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError) as exc:
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, hard, exc)
    return soft


def connection_cap(configured: int, open_files: int) -> int:
    """The connection cap: the configured one, lowered so that connections cannot use up the open-files limit."""
    if open_files == resource.RLIM_INFINITY or open_files <= 0:
        return configured
    return max(1, min(configured, open_files - RESERVED_FDS))


class _Refused(asyncio.Protocol):
    """A connection beyond the cap: answered 503 and closed without reading it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(_REFUSAL)  # type: ignore[attr-defined]
        transport.close()


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted from its creation to its loss, with a deadline for each
    request's headers: from the first byte that arrives while the connection is idle, `header_timeout_s` to
    complete the request line and headers, or the connection closes. aiohttp has no such deadline: only its
    keep-alive timer (--keep-alive-timeout-s; an hour by aiohttp's default) ends a connection that trickles bytes.
    aiohttp counts the requests it has parsed (`_request_count`) and, while it waits for the next one, holds a
    pending `_waiter`: the deadline closes a connection still waiting whose count did not move."""

    def __init__(self, inner: asyncio.Protocol, on_lost: Callable[[], None], header_timeout_s: float) -> None:
        self._inner = inner
        self._on_lost = on_lost
        self._header_timeout_s = header_timeout_s
        self._transport: asyncio.BaseTransport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_count = -1  # aiohttp's parsed-request count when the deadline was set

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)
        parsed = getattr(self._inner, "_request_count", None)
        if parsed is None or not self._idle() or (self._deadline is not None and parsed == self._deadline_count):
            return
        if self._deadline is not None:  # set for a request that has been parsed since: this one gets its own
            self._deadline.cancel()
        self._deadline_count = parsed
        self._deadline = asyncio.get_running_loop().call_later(self._header_timeout_s, self._headers_due)

    def _idle(self) -> bool:
        """aiohttp waits for the next request (its own keep-alive test): none parsed and queued, none handled."""
        waiter = getattr(self._inner, "_waiter", None)
        return waiter is not None and not waiter.done()

    def _headers_due(self) -> None:
        self._deadline = None
        if (self._transport is not None and self._idle()
                and getattr(self._inner, "_request_count", None) == self._deadline_count):
            log.debug("closing a connection whose request headers did not arrive within %gs", self._header_timeout_s)
            self._transport.close()

    def eof_received(self) -> bool | None:
        """The client's EOF closes the connection (aiohttp's choice, kept): a client that leaves and one that only
        half-closes look the same here, and closing is what cancels the work of a client that left."""
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._on_lost()
        self._inner.connection_lost(exc)


class CappedProtocolFactory:
    """aiohttp's protocol factory, refusing connections once `cap` of them are open.

    Connections are counted from the moment they are accepted (several can be accepted in one loop iteration,
    before aiohttp registers any of them).
    """

    def __init__(self, server: web.Server, cap: int, header_timeout_s: float) -> None:
        self._server = server
        self.cap = cap
        self.header_timeout_s = header_timeout_s
        self.open = 0
        self.refused = 0

    def __call__(self) -> asyncio.Protocol:
        if self.open >= self.cap:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning("connection cap of %d reached: refused %d connection(s) so far", self.cap, self.refused)
            return _Refused()
        self.open += 1
        return _Counted(self._server(), self._lost, self.header_timeout_s)

    def _lost(self) -> None:
        self.open -= 1


def _install_signal_handlers(loop: asyncio.AbstractEventLoop, lifecycle: Lifecycle, stop: asyncio.Event,
                             grace_s: float) -> None:
    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("%s received again: already draining, requests in flight keep the rest of the grace "
                        "period (SIGKILL ends the process at once)", name)
            return
        lifecycle.draining = True
        lifecycle.drain_deadline = loop.time() + grace_s
        log.info("%s: readiness is 503; serving requests in flight for at most %.1fs, then stopping", name, grace_s)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


class _UnparsableRequests(logging.Filter):
    """aiohttp logs a request it cannot parse (bad framing, a NUL in a header, a header line too long) as an
    error with a traceback that quotes the raw bytes, an `Authorization` header's key included: one warning line
    naming the kind of error instead. The client got aiohttp's 400 and the connection closed."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "unparsable HTTP request from %s (%s): answered 400", (peer, type(error).__name__)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_UNPARSABLE = _UnparsableRequests()


async def serve(app: web.Application, config: ServerConfig) -> None:
    """Load the models, serve until a signal, drain. Raises what start-up raises (e.g. RepositoryError)."""
    logging.getLogger("aiohttp.server").addFilter(_UNPARSABLE)
    loop = asyncio.get_running_loop()
    lifecycle = app[LIFECYCLE]
    stop = asyncio.Event()
    _install_signal_handlers(loop, lifecycle, stop, config.shutdown_grace_s)
    cap = connection_cap(config.max_connections, raise_open_files_limit())
    runner = web.AppRunner(app, handle_signals=False, access_log=None, handler_cancellation=True,
                           lingering_time=LINGERING_S, shutdown_timeout=0.1,
                           keepalive_timeout=config.keep_alive_timeout_s)
    await runner.setup()  # cleanup_ctx loads every start-up model
    try:
        assert runner.server is not None
        listener = await loop.create_server(CappedProtocolFactory(runner.server, cap, config.header_timeout_s),
                                            config.host, config.port,
                                            backlog=min(cap, 4096), reuse_address=True)
        log.info("listening on http://%s:%d (at most %d connections)", config.host, config.port, cap)
        await stop.wait()
        await _drain(runner, listener, lifecycle, loop)
    finally:
        await runner.cleanup()  # on_shutdown, then the models stop (app.py bounds it by the drain deadline)


async def _drain(runner: web.AppRunner, listener: asyncio.AbstractServer, lifecycle: Lifecycle,
                 loop: asyncio.AbstractEventLoop) -> None:
    remaining = lifecycle.remaining_s(loop.time()) or 0.0
    if await lifecycle.wait_idle(remaining):
        log.info("every request in flight is answered")
    else:
        log.warning("the grace period ended with %d request(s) in flight; closing their connections",
                    lifecycle.in_flight)
    listener.close()
    assert runner.server is not None
    # aiohttp waits up to the timeout for handlers, then as long again after cancelling them: keep it short.
    await runner.server.shutdown(max(0.05, min(1.0, lifecycle.remaining_s(loop.time()) or 0.0)))
