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


def test_a_pca_coded_autoencoder_starts_as_pca_and_outputs_the_residual(rows: np.ndarray) -> None:
    from sklearn.decomposition import PCA

    basis = autoencoder.pca_basis(rows, 4, seed=0)
    model = autoencoder.build(6, (8,), "tanh", 1e-3, "linear", basis)
    assert autoencoder.outputs_residual(model)
    pca = PCA(n_components=4, random_state=0).fit(rows.astype(np.float64))
    expected = rows - pca.inverse_transform(pca.transform(rows.astype(np.float64)))
    got = model.predict(rows, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)
    # squared_errors predicts in batches of 8192, predict() in 32s: float32 sums may differ in the last bits.
    np.testing.assert_allclose(autoencoder.squared_errors(model, rows), np.square(got), rtol=1e-5, atol=1e-8)


def test_only_the_correction_of_a_pca_coded_autoencoder_is_trained(rows: np.ndarray) -> None:
    basis = autoencoder.pca_basis(rows, 4, seed=0)
    model = autoencoder.build(6, (8,), "tanh", 1e-3, "linear", basis)
    trained = {w.path.split("/")[0] for w in model.trainable_weights}
    assert trained == {"correction_0_8", "correction"}


def test_the_residual_of_a_pca_coded_autoencoder_is_precise_in_float32() -> None:
    """A minor-axis residual of 1e-5 on inputs near 0.5 keeps its digits (a reconstruction minus x would not)."""
    rng = np.random.default_rng(1)
    base = 0.5 + rng.normal(scale=0.03, size=(4000, 3))
    rows = np.column_stack([base, base.sum(axis=1) / 3 + rng.normal(scale=1e-5, size=4000)])
    basis = autoencoder.pca_basis(rows.astype(np.float32), 3, seed=0)
    model = autoencoder.build(4, (4,), "tanh", 1e-3, "linear", basis)
    got = model.predict(rows.astype(np.float32), verbose=0).astype(np.float64)
    mean, axes = basis[0].astype(np.float64), basis[1].astype(np.float64)
    centred = rows.astype(np.float32).astype(np.float64) - mean
    exact = centred - centred @ axes.T @ axes  # float64 reference with the same basis
    # float32 inputs near 0.5 carry 3e-8 of rounding: reconstructing and subtracting errs by that much on
    # every residual; the projection errs by about 1e-9, 1e-4 of a typical residual (1e-5).
    assert np.max(np.abs(got - exact)) < 5e-9


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


def test_pca_component_count_is_chosen_on_validation_or_by_variance_without_labels() -> None:
    from trainer.evaluate import PcaByComponents

    rng = np.random.default_rng(3)
    # Normals on a 2-dimensional plane in 5 dimensions (plus a little noise); frauds step off the plane.
    normals = rng.normal(size=(3000, 2)) @ rng.normal(size=(2, 5)) + rng.normal(scale=0.01, size=(3000, 5))
    frauds = rng.normal(size=(30, 5))
    x_val = np.vstack([normals[2000:], frauds]).astype(np.float32)
    y_val = np.r_[np.zeros(1000), np.ones(30)].astype(np.int8)
    pca = PcaByComponents(normals[:2000].astype(np.float32), seed=0)
    assert pca.best_components(x_val, y_val) == 2
    assert pca.best_components(x_val, None) == 2  # 99% of the variance lies in the plane


def test_auto_error_weighting_picks_what_ranks_validation_better(rows: np.ndarray) -> None:
    from trainer.pipeline import Fitter

    # A seeded model: with random initial weights the two weightings' top 2% were sometimes the same rows, a tie
    # that "none" wins, and the test failed about one run in a few.
    autoencoder.set_determinism(0)
    model = autoencoder.build(6, (3,), "tanh", 1e-3, "linear")
    fitter = Fitter.__new__(Fitter)  # only the validation labels matter here
    x_val = rows[:500]
    terms_none = autoencoder.squared_errors(model, x_val)
    # Label as fraud the rows that one weighting ranks first: each choice must win on its own labels.
    for weighting in ("none", "standardized"):
        weights = autoencoder.error_weights(model, rows, weighting)
        errors = (terms_none if weights is None else terms_none / weights).mean(axis=1)
        fitter.y_val = (errors >= np.quantile(errors, 0.98)).astype(np.int8)
        assert fitter.better_weighting(model, rows, x_val) == weighting
    fitter.y_val = None
    assert fitter.better_weighting(model, rows, x_val) == "none"
