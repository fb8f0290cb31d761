"""`python -m server`: serve a Triton-style model repository."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from .app import create_app
from .config import parse_config
from .repository import RepositoryError
from .state import LIFECYCLE


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(config)
    try:
        web.run_app(
            app,
            host=config.host,
            port=config.port,
            shutdown_timeout=config.shutdown_grace_s,
            handler_cancellation=True,
            access_log=None,
            print=lambda text: logging.getLogger("server").info(text.strip()),
        )
    except RepositoryError as exc:
        logging.getLogger("server").critical("start-up failed: %s", exc)
        return 1
    except Exception as exc:
        logging.getLogger("server").critical("start-up failed: %s: %s", type(exc).__name__, exc)
        return 1
    return 1 if app[LIFECYCLE].fatal is not None else 0


if __name__ == "__main__":
    sys.exit(main())
