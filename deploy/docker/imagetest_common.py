"""What every part of `make image-test` shares: its two ways to stop, progress lines, checks."""

from __future__ import annotations

import time

SKIP = 77  # exit status: this machine cannot run the image test


class CannotRun(Exception):
    """This machine cannot run the image test (exit status 77)."""


class CheckFailed(Exception):
    """The image does not do what a user is promised (exit status 1)."""


_T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[image-test {time.monotonic() - _T0:7.1f}s] {message}", flush=True)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)
    say(f"ok: {message}")
