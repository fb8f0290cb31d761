"""Design 2: `loop.run_in_executor` on a `ThreadPoolExecutor(max_workers=1)`."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

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
    executor = ThreadPoolExecutor(max_workers=1)
    add_health(app)

    @app.post("/v1/embeddings")
    async def embeddings(request: EmbeddingRequest) -> dict:
        vectors = await asyncio.get_running_loop().run_in_executor(executor, model.encode, request.texts())
        return embedding_response(request, vectors)

    return app


if __name__ == "__main__":
    args = parse_args()
    serve(create_app(args.model), args)
