"""`python -m export`: sentence-transformers models → verified ONNX models in a Triton-style repository."""
