"""Feature names and the raw file schema: the one place that names them.

The trainer reads these to build its tf.Transform feature spec and writes the
resulting list into the model card. Online services (scorer, stream) take the
feature list from the model artifact they load, never from this module, so a
model trained on another feature set is still served correctly.
"""

from __future__ import annotations

PCA_FEATURES: tuple[str, ...] = tuple(f"V{i}" for i in range(1, 29))
AMOUNT = "Amount"
TIME = "Time"
LABEL = "Class"
CARD_ID = "card_id"
MERCHANT_ID = "merchant_id"
TRANSACTION_ID = "transaction_id"

# Model inputs, in the order the autoencoder sees them.
MODEL_FEATURES: tuple[str, ...] = (*PCA_FEATURES, AMOUNT)

# Columns of Kaggle's creditcard.csv, in its order.
KAGGLE_COLUMNS: tuple[str, ...] = (TIME, *PCA_FEATURES, AMOUNT, LABEL)

# Columns a CSV must have to be scored or trained on (Class is optional).
REQUIRED_COLUMNS: tuple[str, ...] = (TIME, *PCA_FEATURES, AMOUNT)

# Extra columns the generator writes after the Kaggle ones.
GENERATED_EXTRA_COLUMNS: tuple[str, ...] = (CARD_ID, MERCHANT_ID)
