"""The small FastAPI apps of the well-known "FastAPI + sentence-transformers" articles, plus a plain ORT app.

Each module is one design, started as `python -m benchmarks.apps.<design> --model PATH --port P`, and
serves `POST /v1/embeddings` (OpenAI shape) and `GET /health`.
"""
