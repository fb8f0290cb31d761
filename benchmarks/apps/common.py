"""What every small app shares: the OpenAI request/response shape, the health route and the CLI."""

from __future__ import annotations

import argparse
import base64
from collections.abc import Sequence
from typing import Literal

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel


class EmbeddingRequest(BaseModel):
    model: str = ""
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


def embedding_response(request: EmbeddingRequest, vectors: np.ndarray, tokens: int = 0) -> dict:
    return {
        "object": "list",
        "model": request.model,
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode(vector, request.encoding_format)}
            for i, vector in enumerate(vectors)
        ],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encode(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector.tolist()


def add_health(app: FastAPI) -> None:
    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--model", required=True, help="model directory (sentence-transformers) or model.onnx"
    )
    parser.add_argument("--tokenizer", default=None, help="tokenizer.json (ONNX apps)")
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    return parser.parse_args(argv)


def serve(app: FastAPI, args: argparse.Namespace) -> None:
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


def load_sentence_transformer(path: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu", local_files_only=True)
