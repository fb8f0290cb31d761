"""What a user writes with ONNX: one ORT session (default options) run in the async handler, no batching."""

from __future__ import annotations

import onnxruntime as ort
from fastapi import FastAPI

from benchmarks.apps.common import EmbeddingRequest, add_health, embedding_response, parse_args, serve
from benchmarks.onnx_model import OnnxEncoder, load_tokenizer


def create_app(model_path: str, tokenizer_path: str, max_seq_length: int) -> FastAPI:
    app = FastAPI()
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    encoder = OnnxEncoder(session, load_tokenizer(tokenizer_path, max_seq_length))
    add_health(app)

    @app.post("/v1/embeddings")
    async def embeddings(request: EmbeddingRequest) -> dict:
        return embedding_response(request, encoder.encode(request.texts()))

    return app


if __name__ == "__main__":
    args = parse_args()
    serve(create_app(args.model, args.tokenizer, args.max_seq_length), args)
