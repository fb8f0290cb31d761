"""Design 1: `model.encode()` called straight in the async handler (blocks the event loop)."""

from __future__ import annotations

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
    add_health(app)

    @app.post("/v1/embeddings")
    async def embeddings(request: EmbeddingRequest) -> dict:
        return embedding_response(request, model.encode(request.texts()))

    return app


if __name__ == "__main__":
    args = parse_args()
    serve(create_app(args.model), args)
