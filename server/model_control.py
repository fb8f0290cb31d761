"""Explicit model load / unload (Triton's model control), the same for HTTP and gRPC.

A reload or unload retires the replaced instance's statistics into the metrics first, so counters keep
counting across it (what the old instance still finishes is counted too). The registry work is shielded:
a client that goes away does not stop a load halfway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from .errors import ServerError, invalid
from .state import CONFIG, METRICS, REGISTRY


# `app` is the root application's state: the application itself (gRPC) or a request's `config_dict` (HTTP).
def check_enabled(app: Mapping[Any, Any]) -> None:
    if not app[CONFIG].model_control:
        raise invalid("explicit model load / unload is not allowed: the server runs with --model-control false")


def _retire_serving(app: Mapping[Any, Any], name: str) -> None:
    try:
        old = app[REGISTRY].get(name)
    except ServerError:
        return
    app[METRICS].retire(old.stats)  # its counters live on in the new instance's


async def load(app: Mapping[Any, Any], name: str) -> None:
    """Load `name`, or reload it (the new instance takes over once warm)."""
    check_enabled(app)
    _retire_serving(app, name)
    await asyncio.shield(app[REGISTRY].load(name))


async def unload(app: Mapping[Any, Any], name: str) -> None:
    """Unload `name`; its requests in flight finish first (the registry's drain)."""
    check_enabled(app)
    _retire_serving(app, name)
    await asyncio.shield(app[REGISTRY].unload(name))
