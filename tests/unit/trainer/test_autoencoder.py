"""The autoencoder's shapes and error arithmetic, without training."""

from __future__ import annotations

import numpy as np
import pytest

from trainer import autoencoder


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    rng = np.random.default_rng(0)
    # Correlated columns with one nearly constant direction, like the real V1..V28 + Amount.
    x = rng.normal(size=(2000, 6)) @ rng.normal(size=(6, 6))
    x[:, 5] = x[:, 0] - x[:, 1] + rng.normal(scale=1e-3, size=2000)
    return x.astype(np.float32)


def test_a_pca_started_autoencoder_reconstructs_like_pca_before_training(rows: np.ndarray) -> None:
    from sklearn.decomposition import PCA

    basis = autoencoder.pca_basis(rows, 4, seed=0)
    model = autoencoder.build(6, (8,), "tanh", 1e-3, "linear", basis)
    pca = PCA(n_components=4, random_state=0).fit(rows)
    expected = pca.inverse_transform(pca.transform(rows))
    got = model.predict(rows, verbose=0)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_the_pca_basis_never_takes_every_component(rows: np.ndarray) -> None:
    mean, axes = autoencoder.pca_basis(rows, 99, seed=0)
    assert mean.shape == (6,) and axes.shape == (5, 6)  # F-1: one direction always left to the error


def test_standardized_errors_divide_each_feature_by_its_training_mean(rows: np.ndarray) -> None:
    model = autoencoder.build(6, (3,), "tanh", 1e-3, "linear")
    weights = autoencoder.error_weights(model, rows, "standardized")
    assert weights is not None and weights.shape == (6,)
    squared = autoencoder.squared_errors(model, rows)
    np.testing.assert_allclose(weights, squared.mean(axis=0), rtol=1e-5)
    errors, terms = autoencoder.errors(model, rows, weights)
    np.testing.assert_allclose(terms.mean(axis=0), np.ones(6), rtol=1e-4)  # each feature weighs the same on normals
    np.testing.assert_allclose(errors, terms.mean(axis=1), rtol=1e-6)
    assert autoencoder.error_weights(model, rows, "none") is None


def test_a_perfectly_reconstructed_feature_does_not_divide_by_zero() -> None:
    rows = np.zeros((50, 3), np.float32)
    rows[:, 0] = np.linspace(0, 1, 50)
    model = autoencoder.build(3, (2,), "tanh", 1e-3, "linear")
    model.layers[-1].set_weights([np.zeros((2, 3), np.float32), np.zeros(3, np.float32)])  # outputs exactly 0
    weights = autoencoder.error_weights(model, rows, "standardized")
    assert weights is not None and np.all(np.isfinite(weights)) and np.all(weights > 0)
    errors, _ = autoencoder.errors(model, rows, weights)
    assert np.all(np.isfinite(errors))
