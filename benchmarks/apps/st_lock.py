"""Design 4: `asyncio.to_thread(model.encode)` guarded by an `asyncio.Lock`."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from benchmarks.apps.common import (
    EmbeddingRequest,
    add_health,
    embedding_response,
    load_sentence_transformer,
    parse_args,
    serve,
)


def create_app(model_path: str) -> FastAPI:
    app = FastAPI()
    model = load_sentence_transformer(model_path)
    lock = asyncio.Lock()
    add_health(app)

    @app.post("/v1/embeddings")
    async def embeddings(request: EmbeddingRequest) -> dict:
        async with lock:
            vectors = await asyncio.to_thread(model.encode, request.texts())
        return embedding_response(request, vectors)

    return app


if __name__ == "__main__":
    args = parse_args()
    serve(create_app(args.model), args)
