"""The floor for a lone request: a minimal aiohttp server that runs ONNX Runtime directly in its handler.

One session with the server's session options and every CPU as intra-op threads (the server's default layout),
no queue, no batching, no thread hop: tokenize, run, answer with orjson. Serves `POST /v1/embeddings` and
`GET /health`; it blocks its event loop while the model runs, which only a lone client can afford.
"""

from __future__ import annotations

import aiohttp.web
import orjson

from benchmarks.apps.common import parse_args
from benchmarks.onnx_model import OnnxEncoder, create_session, load_tokenizer


def create_app(model_path: str, tokenizer_path: str, max_seq_length: int) -> aiohttp.web.Application:
    from server.session import available_cpus, session_options

    session = create_session(model_path, session_options(available_cpus()))
    encoder = OnnxEncoder(session, load_tokenizer(tokenizer_path, max_seq_length))

    async def embeddings(request: aiohttp.web.Request) -> aiohttp.web.Response:
        body = orjson.loads(await request.read())
        texts = [body["input"]] if isinstance(body["input"], str) else list(body["input"])
        vectors = encoder.encode(texts)
        data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
        payload = {"object": "list", "model": body.get("model", ""), "data": data, "usage": {}}
        return aiohttp.web.Response(body=orjson.dumps(payload), content_type="application/json")

    async def health(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(body=b'{"status":"ok"}', content_type="application/json")

    app = aiohttp.web.Application()
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/health", health)
    return app


if __name__ == "__main__":
    args = parse_args()
    app = create_app(args.model, args.tokenizer, args.max_seq_length)
    aiohttp.web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)
