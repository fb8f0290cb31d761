"""`python -m tests.integration.faulty_server`: the real server, with sessions that fail on marker token ids.

Token id FAIL_ID in a batch makes that model run raise (a failed batch); DIE_ID kills the inference
thread outright; SLOW_ID holds the run until the file named by $FAULTY_GATE exists (at most 120 s), and while
it holds one, the file `held(gate)` exists, so a test can wait for the hold to begin. Clients reach them through
OpenAI's token-id input.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

import server.loading
from server.__main__ import main

FAIL_ID = 1
DIE_ID = 2
SLOW_ID = 3


def held(gate: Path) -> Path:
    """The marker file that exists while a SLOW_ID run waits for `gate`."""
    return gate.with_name(gate.name + ".held")


class ThreadKiller(BaseException):
    pass


class FaultySession:
    def __init__(self, inner) -> None:
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def run(self, output_names, feeds):
        ids = feeds["input_ids"]
        if np.any(ids == DIE_ID):
            raise ThreadKiller("injected thread death")
        if np.any(ids == SLOW_ID):
            gate, deadline = Path(os.environ.get("FAULTY_GATE", "/nonexistent")), time.monotonic() + 120
            if gate.parent.is_dir():
                held(gate).touch()
            while not gate.exists() and time.monotonic() < deadline:
                time.sleep(0.02)  # the gate is a file another process creates: polled, bounded by the deadline
            held(gate).unlink(missing_ok=True)
        if np.any(ids == FAIL_ID):
            raise RuntimeError("injected inference fault: secret internal detail")
        return self._inner.run(output_names, feeds)


_create_session = server.loading.create_session
server.loading.create_session = lambda spec: FaultySession(_create_session(spec))

if __name__ == "__main__":
    sys.exit(main())
