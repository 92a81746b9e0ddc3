"""The training normals' envelope: distance outside the range in p1-p99 widths, numpy and TensorFlow alike."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.envelope import Envelope, distance_tf


def _train() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.column_stack([rng.normal(0, 1, 5_000), rng.standard_t(2, 5_000), np.full(5_000, 3.0)])


def test_inside_the_training_range_is_zero_and_beyond_it_grows_linearly_in_any_direction() -> None:
    x = _train()
    env = Envelope.fit(x, limit=1.0)
    assert np.all(env.distance(x) == 0)  # every training row is inside its own range
    for feature in (0, 1):
        for sign, edge in ((1, env.hi), (-1, env.lo)):
            row = np.median(x, axis=0, keepdims=True).repeat(3, axis=0)
            row[:, feature] = edge[feature] + sign * np.array([0.5, 2.0, 10.0]) * env.width[feature]
            np.testing.assert_allclose(env.distance(row), [0.5, 2.0, 10.0], rtol=1e-5)
            assert env.flags(row).tolist() == [False, True, True]


def test_the_width_is_robust_to_outliers_and_a_constant_feature_does_not_divide_by_zero() -> None:
    x = _train()
    env = Envelope.fit(x)
    # Student-t(2) has a huge min-max range; its p1-p99 width is far smaller, so a far value counts for more.
    assert env.width[1] < (env.hi[1] - env.lo[1]) / 3
    assert env.width[2] == 1.0  # constant: width falls back to 1
    row = np.array([[0.0, 0.0, 5.0]])
    assert env.distance(row)[0] == pytest.approx(2.0)


def test_tensorflow_distance_equals_numpy() -> None:
    import tensorflow as tf

    x = _train()
    env = Envelope.fit(x)
    rows = (np.random.default_rng(1).normal(0, 30, (200, 3))).astype(np.float32)
    got = distance_tf(tf.constant(rows), tf.constant(env.lo), tf.constant(env.hi), tf.constant(env.width)).numpy()
    np.testing.assert_allclose(got, env.distance(rows), rtol=1e-6)


def test_bad_input_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="positive number of widths"):
        Envelope.fit(_train(), limit=0)
    with pytest.raises(ValueError, match="training rows"):
        Envelope.fit(np.zeros((0, 3)))


def test_card_entry_reports_the_validation_flag_rate() -> None:
    x = _train()
    env = Envelope.fit(x[:4_000])
    card = env.to_card(x[4_000:])
    assert card["limit_widths"] == 1.0
    assert card["validation_flag_rate"] == pytest.approx(float(np.mean(env.flags(x[4_000:]))))


def test_excess_adds_up_over_features() -> None:
    """Several features a little outside (a row unlike any seen) count together; drift of one alone does not."""
    x = _train()
    env = Envelope.fit(x)
    row = np.median(x, axis=0, keepdims=True)
    row[0, 0] = env.hi[0] + 0.4 * env.width[0]
    row[0, 1] = env.lo[1] - 0.4 * env.width[1]
    assert env.distance(row)[0] == pytest.approx(0.8, rel=1e-5)


def test_the_limit_chosen_on_validation_normals_keeps_to_the_budget() -> None:
    x = _train()
    env = Envelope.fit(x[:2_000])
    validation = x[2_000:]
    chosen = env.with_limit_for(validation, budget_percent=1.0)
    assert np.mean(chosen.flags(validation)) <= 0.01
    assert chosen.limit >= 0.5  # never below the floor, however quiet validation is
    assert chosen.lo is env.lo  # only the limit changes
    with pytest.raises(ValueError, match="percentage"):
        env.with_limit_for(validation, budget_percent=100)


def test_a_zero_budget_flags_no_validation_normal() -> None:
    """Budget 0: the limit is the validation normals' largest distance, so the rule flags none of them (and
    the floor still holds)."""
    x = _train()
    env = Envelope.fit(x[:2_000])
    validation = x[2_000:]
    validation[0] = env.hi + 5 * env.width  # a normal far outside in every feature
    chosen = env.with_limit_for(validation, budget_percent=0)
    assert not chosen.flags(validation).any()
    assert chosen.limit == pytest.approx(float(env.distance(validation).max()))
    assert env.with_limit_for(validation, budget_percent=1.0).limit < chosen.limit
