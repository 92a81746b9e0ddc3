"""Features by name and the raw file schema: the one place that names them.

:data:`FEATURES` is the feature table: each model input's name (CSV column, model card,
ScoreColumns ``feature_names``), the ``Transaction`` field that carries it (and its position in a
repeated field) and its magnitude bound. :mod:`fraudscore.schema` builds its feature tables, value
checks and CSV reading from it; the trainer builds its tf.Transform feature spec from
:data:`MODEL_FEATURES` and writes the list into the model card. Online services (scorer, stream)
take the feature list from the model artifact they load, so a model trained on another feature
set is still served correctly.

A new feature is a field in ``protos/fraudscore/v1/transaction.proto``, a row here and a column
in the generator (:mod:`fraudscore.dev.generate`).
"""

from __future__ import annotations

from dataclasses import dataclass

# Magnitude bounds: a value beyond them is a producer bug, not a transaction, and is rejected naming the field
# (it would otherwise be clipped by the model and scored). V1..V28 are PCA components of standardised data:
# |V| stays under ~120 in the real Kaggle file, so 1e6 leaves four orders of magnitude. Amount is in the card's
# currency (the real file's largest is 25,691.16); 1e9 leaves room for any currency. Inclusive bounds.
MAX_ABS_V = 1e6
MAX_AMOUNT = 1e9

PCA_FEATURES: tuple[str, ...] = tuple(f"V{i}" for i in range(1, 29))
AMOUNT = "Amount"
TIME = "Time"
LABEL = "Class"
CARD_ID = "card_id"
MERCHANT_ID = "merchant_id"
TRANSACTION_ID = "transaction_id"


@dataclass(frozen=True)
class Feature:
    """One model input and where a ``Transaction`` carries it."""

    name: str
    proto_field: str  # the Transaction field: a scalar (``amount``) or a repeated one (``v``) at ``index``
    index: int | None = None
    max_abs: float = MAX_ABS_V  # inclusive magnitude bound
    non_negative: bool = False


# The feature table, in the order the autoencoder sees its inputs (the model card's order for models trained here).
FEATURES: tuple[Feature, ...] = (
    *(Feature(name, "v", i) for i, name in enumerate(PCA_FEATURES)),
    Feature(AMOUNT, "amount", max_abs=MAX_AMOUNT, non_negative=True),
)
BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}

# Model inputs, in the order the autoencoder sees them.
MODEL_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES)

# Columns of Kaggle's creditcard.csv, in its order.
KAGGLE_COLUMNS: tuple[str, ...] = (TIME, *MODEL_FEATURES, LABEL)

# Columns a CSV must have to be scored or trained on (Class is optional).
REQUIRED_COLUMNS: tuple[str, ...] = (TIME, *MODEL_FEATURES)

# Extra columns the generator writes after the Kaggle ones.
GENERATED_EXTRA_COLUMNS: tuple[str, ...] = (CARD_ID, MERCHANT_ID)
