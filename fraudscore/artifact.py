"""The model artifact's fixed names and the shape of its scores: the layer below ``model``, ``fastpath`` and
``versions`` (numpy only, so each of them can import it).

``fraudscore/model.py`` documents the contract these names belong to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CARD_FILE = "model_card.json"
SAVED_MODEL_FILE = "saved_model.pb"
SIGNATURE = "serving_default"
OUTPUTS = ("reconstruction_error", "feature_errors", "is_anomaly", "out_of_range_count")
# How far a row lies outside the training normals' range (float32 [None], in p1-p99 widths; trainer.envelope).
ENVELOPE_DISTANCE = "envelope_distance"
# Outputs only some versions have: ``fraud_probability`` (float32 [None]) when the card has a ``second_stage``;
# ``envelope_distance`` in every version trained since the envelope rule (older versions lack it).
OPTIONAL_OUTPUTS = ("fraud_probability", ENVELOPE_DISTANCE)
# The scores ``is_anomaly`` may threshold (card key ``threshold.score``); the first is the default.
THRESHOLD_SCORES = ("reconstruction_error", "fraud_probability")


@dataclass(frozen=True)
class Scores:
    reconstruction_error: np.ndarray
    feature_errors: np.ndarray
    is_anomaly: np.ndarray
    out_of_range_count: np.ndarray
    fraud_probability: np.ndarray | None = None  # float32 [n]; None when the version has no second stage
    envelope_distance: np.ndarray | None = None  # float32 [n]; None in versions older than the envelope rule
    # float32 [n, F]: the drop of the row's reconstruction error when that feature alone is set to the training
    # normals' median (occlusion, >= 0); None unless asked for (LoadedModel.score(explain=True)).
    contributions: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.reconstruction_error.shape[0])
