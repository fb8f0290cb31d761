"""`python -m server`: serve a Triton-style model repository."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time

from .app import create_app
from .config import parse_config
from .repository import RepositoryError
from .serving import serve
from .state import LIFECYCLE

log = logging.getLogger("server")


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(config)
    try:
        asyncio.run(serve(app, config))
    except RepositoryError as exc:
        log.critical("start-up failed: %s", exc)
        return _exit(1, None)
    except Exception as exc:
        log.critical("start-up failed: %s: %s", type(exc).__name__, exc)
        return _exit(1, None)
    lifecycle = app[LIFECYCLE]
    deadline = None
    if lifecycle.drain_deadline is not None:  # loop time is time.monotonic()
        deadline = lifecycle.drain_deadline
    return _exit(1 if lifecycle.fatal is not None else 0, deadline)


def _exit(code: int, deadline: float | None) -> int:
    """Return `code`, unless a thread still runs once the deadline has passed: then end the process at once.

    Finalizing the interpreter under a thread that is inside ONNX Runtime aborts the process ("terminate called
    without an active exception", exit -6) when that thread next takes the GIL; os._exit skips finalization.
    """
    wait_until = (deadline if deadline is not None else time.monotonic()) + 1.0
    for thread in threading.enumerate():
        if thread is not threading.main_thread():
            thread.join(max(0.0, wait_until - time.monotonic()))
    running = [t.name for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    if running:
        log.warning("threads still running at exit: %s; ending the process without finalizing", ", ".join(running))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
