"""What is done to a model's vectors before they are answered: keep the first N values (Matryoshka-style
`dimensions`) and L2-normalise. Shared by the protocols and by chunking's window means. No I/O.

Two different questions, two names: `model_normalizes` says the model's output is already unit length (the
`normalize` parameter of its config.pbtxt); `normalize` says the client asked for unit-length vectors (TEI's
`normalize`; OpenAI asks for what the model gives, so it passes `model_normalizes`).
"""

from __future__ import annotations

import numpy as np

# The smallest norm divided by: a zero vector stays zero instead of becoming NaN.
MIN_NORM = 1e-12


def l2_normalized(vectors: np.ndarray) -> np.ndarray:
    """Each row (or a single vector) scaled to unit length."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, MIN_NORM)


def postprocess(vectors: np.ndarray, *, dimensions: int | None, normalize: bool, model_normalizes: bool
                ) -> np.ndarray:
    """Keep the first `dimensions` values of each row, then L2-normalise when `normalize` asks and the rows are
    not unit length already (the model normalises and nothing was cut). Unchanged vectors come back as they are."""
    if dimensions is not None and dimensions < vectors.shape[1]:
        vectors, model_normalizes = vectors[:, :dimensions], False
    elif not normalize or model_normalizes:
        return vectors
    if normalize and not model_normalizes:
        vectors = l2_normalized(vectors)
    return np.ascontiguousarray(vectors, dtype=np.float32)
