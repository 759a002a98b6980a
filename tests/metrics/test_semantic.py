"""Semantic score: descriptor retrieval and cosine similarity on hand-built cases."""

import numpy as np
import pytest

from tfrestore.metrics import retrieval_accuracy, semantic_features, semantic_similarity


def _onehots(n, dim=8):
    return np.eye(n, dim, dtype=np.float32)


def test_identical_descriptors_retrieve_themselves():
    f = _onehots(5)
    assert retrieval_accuracy(f, f) == 1.0
    np.testing.assert_allclose(semantic_similarity(f, f), np.ones(5))


def test_shuffled_restorations_score_lower():
    f = _onehots(4)
    perm = f[[1, 0, 3, 2]]  # every restored image looks like another clean one
    assert retrieval_accuracy(f, perm) == 0.0
    np.testing.assert_allclose(semantic_similarity(f, perm), np.zeros(4))
    half = f.copy()
    half[2], half[3] = 0.8 * f[3] + 0.6 * f[2], 0.8 * f[2] + 0.6 * f[3]
    assert retrieval_accuracy(f, half) == 0.5
    assert retrieval_accuracy(f, half, k=2) == 1.0  # the wrong ones rank their own 2nd
    np.testing.assert_allclose(semantic_similarity(f, half), [1.0, 1.0, 0.6, 0.6], rtol=1e-6)


def test_ties_count_against_the_query():
    f = np.ones((3, 4), np.float32) / 2.0  # every descriptor equal
    assert retrieval_accuracy(f, f) == 0.0
    assert retrieval_accuracy(f, f, k=3) == 1.0


def test_images_path_with_random_backbone():
    rng = np.random.default_rng(0)
    clean = [rng.uniform(size=(64, 80, 3)).astype("float32") for _ in range(4)]
    f = semantic_features(clean, weights=None)
    assert f.shape == (4, 256)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, rtol=1e-5)
    assert retrieval_accuracy(clean, clean, weights=None) == 1.0
    shuffled = [clean[i] for i in (1, 2, 3, 0)]
    assert semantic_similarity(clean, clean, weights=None) == pytest.approx(np.ones(4), abs=1e-5)
    assert np.mean(semantic_similarity(clean, shuffled, weights=None)) < 1.0 - 1e-4


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="same number"):
        retrieval_accuracy(_onehots(3), _onehots(4))
    with pytest.raises(ValueError, match="`k`"):
        retrieval_accuracy(_onehots(3), _onehots(3), k=4)
    with pytest.raises(ValueError, match="smaller than"):
        semantic_features([np.zeros((8, 8, 3), np.float32)], weights=None)
