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


@dataclass(frozen=True)
class Scores:
    reconstruction_error: np.ndarray
    feature_errors: np.ndarray
    is_anomaly: np.ndarray
    out_of_range_count: np.ndarray

    def __len__(self) -> int:
        return int(self.reconstruction_error.shape[0])
