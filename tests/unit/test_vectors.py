"""Dimensions and normalisation of answered vectors (server/vectors.py), as OpenAI and TEI use them."""

from __future__ import annotations

import numpy as np

from server.vectors import postprocess


def test_the_client_asks_for_normalisation_of_what_the_model_did_not():  # TEI `normalize`
    raw = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]], dtype=np.float32)
    assert np.allclose(postprocess(raw, dimensions=None, normalize=True, model_normalizes=False),
                       [[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    assert postprocess(raw, dimensions=None, normalize=False, model_normalizes=False) is raw


def test_unit_vectors_are_kept_and_renormalised_after_a_cut():
    unit = np.array([[0.6, 0.0, 0.8]], dtype=np.float32)
    assert postprocess(unit, dimensions=None, normalize=False, model_normalizes=True) is unit
    assert postprocess(unit, dimensions=3, normalize=True, model_normalizes=True) is unit
    reduced = postprocess(unit, dimensions=2, normalize=True, model_normalizes=True)
    assert reduced.shape == (1, 2) and np.allclose(reduced, [[1.0, 0.0]])
    raw_reduced = postprocess(unit, dimensions=2, normalize=False, model_normalizes=True)
    assert np.allclose(raw_reduced, [[0.6, 0.0]]) and raw_reduced.flags.c_contiguous


def test_openai_gives_what_the_model_gives():  # normalize = model_normalizes
    vectors = np.array([[3.0, 4.0, 12.0]], dtype=np.float32)
    np.testing.assert_allclose(postprocess(vectors, dimensions=2, normalize=True, model_normalizes=True),
                               [[0.6, 0.8]], rtol=1e-6)
    np.testing.assert_allclose(postprocess(vectors, dimensions=2, normalize=False, model_normalizes=False),
                               [[3.0, 4.0]])
    assert postprocess(vectors, dimensions=None, normalize=True, model_normalizes=True) is vectors
