"""Design 3: a `ProcessPoolExecutor(max_workers=1)` whose initializer loads the model in the worker."""

from __future__ import annotations

import asyncio
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI

from benchmarks.apps.common import (
    EmbeddingRequest,
    add_health,
    embedding_response,
    load_sentence_transformer,
    parse_args,
    serve,
)

_model = None


def _load(model_path: str) -> None:
    global _model
    _model = load_sentence_transformer(model_path)


def _encode(texts: list[str]):
    return _model.encode(texts)


def create_app(model_path: str) -> FastAPI:
    pool: dict[str, ProcessPoolExecutor] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool["executor"] = ProcessPoolExecutor(max_workers=1, initializer=_load, initargs=(model_path,))
        await asyncio.get_running_loop().run_in_executor(pool["executor"], _encode, ["warm up"])
        yield
        pool["executor"].shutdown()

    app = FastAPI(lifespan=lifespan)
    add_health(app)

    @app.post("/v1/embeddings")
    async def embeddings(request: EmbeddingRequest) -> dict:
        vectors = await asyncio.get_running_loop().run_in_executor(pool["executor"], _encode, request.texts())
        return embedding_response(request, vectors)

    return app


if __name__ == "__main__":
    args = parse_args()
    serve(create_app(args.model), args)
