"""The generator check: an aiohttp app that answers a canned embedding at once, so the load generator's
own limit shows up as this contender's throughput."""

from __future__ import annotations

import orjson
from aiohttp import web

from benchmarks.apps.common import parse_args

DIMENSION = 384


def _canned(count: int, model: str) -> bytes:
    vector = [0.05] * DIMENSION
    data = [{"object": "embedding", "index": i, "embedding": vector} for i in range(count)]
    return orjson.dumps(
        {"object": "list", "model": model, "data": data, "usage": {"prompt_tokens": 0, "total_tokens": 0}}
    )


def create_app() -> web.Application:
    cache: dict[tuple[int, str], bytes] = {}

    async def embeddings(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        texts = body["input"]
        key = (1 if isinstance(texts, str) else len(texts), body.get("model", ""))
        if key not in cache:
            cache[key] = _canned(*key)
        return web.Response(body=cache[key], content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/health", health)
    return app


if __name__ == "__main__":
    args = parse_args()
    web.run_app(create_app(), host=args.host, port=args.port, access_log=None, print=None)
