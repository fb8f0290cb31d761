"""Progress lines on stderr, and keeping third-party chatter out of them."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from collections.abc import Iterator

log = logging.getLogger("export")

_NOISY = ("", "optimum", "transformers", "sentence_transformers", "torch", "onnxruntime", "onnx")


@contextlib.contextmanager
def to_stderr(verbose: bool) -> Iterator[None]:
    """`export: ...` progress lines on stderr while the CLI runs; `verbose` lets library output through."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("export: %(message)s"))
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence warnings, stdout prints and library log records below ERROR during a library call."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    loggers = [logging.getLogger(name) for name in _NOISY]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
