"""The second stage in a training run: ``fraudscore train --labels FILE`` or ``--labels-from-cases``.

Labels are read and checked first (:func:`read`), before the autoencoder is trained, so bad labels cost
nothing: no frauds, fewer than ``trainer.second_stage.MIN_FRAUDS``, no legit rows, or labelled cases that
cannot be used (unknown transactions, cases without their raw features) each stop the run with one line
and nothing is exported.

After training, the autoencoder is exported as usual but into a private model base (never published),
and :func:`attach` (1) scores the labelled rows with that exported SavedModel (its per-feature errors are
the classifier's input, exactly what the signature will feed it), (2) fits ``trainer.second_stage`` (its family
chosen by time-ordered cross-validation on these labelled rows only, unless ``--second-stage`` names one) and
(3) writes ONE new version into the real model base with :func:`trainer.derive.derive`: the same
SavedModel wrapped with the classifier, so the one place a classifier enters a signature is
``trainer.derive`` (``calibrate --apply`` and the trainer share it) and the scorer and the stream never
see a version without the stage this run was asked for.

Which score the threshold applies to (``--threshold-score``):

- ``reconstruction_error`` (default): the autoencoder's threshold, chosen as without labels; the
  classifier is fitted on every labelled row and ``fraud_probability`` is an extra output.
- ``fraud_probability``: the labelled rows are split in time order per class (the later
  ``VALIDATION_SHARE`` of the frauds and of the legit rows held out, as ``trainer.split`` holds out later
  transactions); the classifier is fitted on the earlier part and the threshold chosen on the held-out
  part's probabilities by ``--threshold-policy`` with ``trainer.calibrate`` (the same policy machinery).

Selection bias: analysts label what was flagged, so labelled legit rows are "flagged, then cleared", not
ordinary traffic. With ``--labels-from-cases`` the stream's durable traffic sample (a uniform hash sample
of ALL scored transactions, ``stream.sampling``) is added as presumed-legit rows, each weighted
1/sampling rate (the inverse of its selection probability; labelled rows weigh 1), minus the
transactions that have a label (the label wins). Frauds hidden in the sample are counted as legit: at
real fraud rates (~0.2 %) that bias is small and is stated in the card. A ``--labels`` file is taken
as it is (all rows weigh 1).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fraudscore import features as feature_names
from fraudscore.labels import FRAUD, LabelError, LabelSet
from trainer.config import ThresholdPolicy, TrainConfig, TrainError

log = logging.getLogger(__name__)

VALIDATION_SHARE = 0.3
FRAUD_PROBABILITY = "fraud_probability"


class LabelsRefused(TrainError):
    """Labels that cannot train a second stage; nothing was exported."""


@dataclass(frozen=True)
class TrainingLabels:
    """The labelled rows, the presumed-legit traffic sample (cases only) and what the card says about both."""

    labels: LabelSet
    order: np.ndarray  # float64 [n]: time key of each labelled row (the held-out part is the later one)
    sample: np.ndarray  # float32 [m, F] traffic-sample rows, presumed legit; [0, F] without
    sample_rate: float  # its sampling rate (0.0 without)
    source: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {
            **self.source,
            **self.labels.summary(),
            "traffic_sample": {"rows": len(self.sample), "sampling_rate": self.sample_rate, "weight": _weight(self)},
        }


def read(config: TrainConfig) -> TrainingLabels | None:
    """The run's labels (None without ``--labels``/``--labels-from-cases``), checked; LabelsRefused otherwise."""
    if config.labels_file is not None:
        found = _from_file(config.labels_file, config)
    elif config.labels_from_cases:
        found = _from_cases(config)
    else:
        return None
    _check(found, config)
    log.info(
        "labels: %d rows (%d frauds, %d legit) from %s%s",
        len(found.labels),
        found.labels.frauds,
        found.labels.legit,
        found.source["from"],
        f", traffic sample {len(found.sample)} rows at rate {found.sample_rate:g}" if len(found.sample) else "",
    )
    return found


def _from_file(path: Path, config: TrainConfig) -> TrainingLabels:
    from trainer.data import load_csv

    loaded = load_csv(path, config.features, config.max_bad_fraction)  # DataError names the file and the reason
    if not loaded.has_labels:
        raise LabelsRefused(f"--labels {path}: no {feature_names.LABEL} column: a labels file needs 0/1 labels")
    frame = loaded.frame
    stamp = int(os.stat(path).st_mtime * 1000)
    labels = LabelSet(
        transaction_ids=tuple(f"{path.name}:{i}" for i in range(len(frame))),
        features=tuple(config.features),
        raw=frame[list(config.features)].to_numpy(np.float32),
        labels=frame[feature_names.LABEL].to_numpy(np.int8),
        labelled_at=np.full(len(frame), stamp, np.int64),
        reasons=((),) * len(frame),
        skipped={"bad rows": loaded.bad_rows} if loaded.bad_rows else {},
    )
    source = {"from": "file", "path": str(path), "sha256": loaded.sha256}
    empty = np.zeros((0, len(config.features)), np.float32)
    return TrainingLabels(labels, frame[feature_names.TIME].to_numpy(np.float64), empty, 0.0, source)


def _from_cases(config: TrainConfig) -> TrainingLabels:
    from cases.labels import read_labels, read_sample  # Bigtable's client only when cases are read
    from cases.store import CaseStore
    from fraudscore.config import Resources

    res = Resources.from_env().at(config.cases_project, config.cases_instance)
    try:
        with CaseStore(res) as store:
            labels = read_labels(store, config.features, config.labels_since)
            sample, rate = read_sample(store, config.features, config.labels_since, exclude=labels.transaction_ids)
    except LabelError as exc:
        raise LabelsRefused(f"--labels-from-cases: {exc}") from None
    except Exception as exc:  # the Bigtable client raises many types; one line with the reason
        raise LabelsRefused(f"--labels-from-cases: cannot read cases from {res.bigtable_location}: {exc}") from None
    source = {
        "from": "cases",
        "bigtable": res.bigtable_location,
        "since": config.labels_since.isoformat() if config.labels_since else None,
        "latest_label_wins": True,
    }
    return TrainingLabels(labels, labels.labelled_at.astype(np.float64), sample, rate, source)


def _check(found: TrainingLabels, config: TrainConfig) -> None:
    from trainer.second_stage import MIN_FRAUDS

    labels, where = found.labels, _where(found)
    unusable = {k: v for k, v in labels.skipped.items() if v and k != "bad rows"}
    if unusable:
        listed = ", ".join(f"{n} {reason}" for reason, n in sorted(unusable.items()))
        raise LabelsRefused(
            f"{where}: labels for transactions that cannot be used ({listed}); "
            "narrow --labels-since past them or fix the cases"
        )
    if len(labels) == 0:
        raise LabelsRefused(f"{where}: no labelled transactions")
    if labels.frauds == 0:
        raise LabelsRefused(f"{where}: the label set has no frauds ({labels.legit} legit): nothing to learn fraud from")
    if labels.frauds < MIN_FRAUDS:
        raise LabelsRefused(f"{where}: only {labels.frauds} frauds labelled, at least {MIN_FRAUDS} needed")
    if labels.legit == 0 and len(found.sample) == 0:
        raise LabelsRefused(f"{where}: no legit rows (no labelled legit and no traffic sample)")
    if config.threshold_score == FRAUD_PROBABILITY:
        fit, held = _split(found)
        if int(labels.labels[fit].sum()) < MIN_FRAUDS or not labels.labels[held].any():
            raise LabelsRefused(
                f"{where}: --threshold-score fraud_probability holds out the later {VALIDATION_SHARE:.0%} of the "
                f"labels to calibrate on and needs {MIN_FRAUDS} frauds to fit plus 1 held out; "
                f"{labels.frauds} frauds labelled"
            )


def _where(found: TrainingLabels) -> str:
    return f"--labels {found.source['path']}" if found.source["from"] == "file" else "--labels-from-cases"


def _weight(found: TrainingLabels) -> float:
    return 1.0 / found.sample_rate if found.sample_rate > 0 else 0.0


def _split(found: TrainingLabels) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, held out): per class, the later VALIDATION_SHARE of the rows (by time) held out."""
    y = found.labels.labels
    fit: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for cls in (FRAUD, 1 - FRAUD):
        idx = np.flatnonzero(y == cls)
        idx = idx[np.argsort(found.order[idx], kind="stable")]
        n_held = round(len(idx) * VALIDATION_SHARE)
        fit.append(idx[: len(idx) - n_held])
        held.append(idx[len(idx) - n_held :])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(held))


def _fit_order(labelled: np.ndarray, sampled: int) -> np.ndarray:
    """Time keys for the selection's time-ordered folds: the labelled rows' own; the traffic sample's rows carry
    none here, so they are spread evenly over the labelled rows' time range (each fold gets its share)."""
    if sampled == 0 or len(labelled) == 0:
        return labelled.astype(np.float64)
    spread = np.linspace(float(labelled.min()), float(labelled.max()), sampled)
    return np.concatenate([labelled.astype(np.float64), spread])


def attach(
    found: TrainingLabels, config: TrainConfig, source_dir: Path, policy: ThresholdPolicy
) -> tuple[int, Path, dict[str, Any]]:
    """Fits the second stage on the exported version in ``source_dir`` and writes the one new version."""
    from fraudscore.model import LoadedModel
    from trainer import calibrate, second_stage
    from trainer.derive import derive
    from trainer.evaluate import ranking

    exported = LoadedModel(source_dir)
    labels = found.labels
    staged = config.threshold_score == FRAUD_PROBABILITY
    fit_idx, held_idx = _split(found) if staged else (np.arange(len(labels)), np.zeros(0, np.intp))
    raw = np.concatenate([labels.raw[fit_idx], found.sample])
    y = np.concatenate([labels.labels[fit_idx], np.zeros(len(found.sample), np.int8)])
    given = labels.sample_weight[fit_idx] if labels.sample_weight is not None else np.ones(len(fit_idx))
    weight = np.concatenate([given, np.full(len(found.sample), _weight(found))])
    order = _fit_order(found.order[fit_idx], len(found.sample))
    try:
        stage = second_stage.fit(
            raw,
            exported.score(raw),
            y,
            order=order,
            seed=config.seed,
            sample_weight=weight,
            family=config.second_stage_family,
        )
    except second_stage.SecondStageError as exc:
        raise LabelsRefused(f"{_where(found)}: {exc}") from None
    info: dict[str, Any] = {
        **stage.info,
        "labels": found.summary(),
        "selection_bias": (
            "labelled legit rows are flagged-then-cleared cases; the traffic sample (all scored traffic, "
            "hash-sampled) adds presumed-legit rows weighted 1/sampling rate; unlabelled frauds in it count as legit"
            if found.source["from"] == "cases"
            else "the labels file is taken as given, every row weighing 1"
        ),
        "fitted_on": {"labelled_rows": len(fit_idx), "traffic_sample_rows": len(found.sample)},
    }
    stage.info = info
    updates: dict[str, Any] = {"trained_with_labels_at": datetime.now(UTC).isoformat(timespec="seconds")}
    threshold = None
    if staged:
        held = labels.raw[held_idx]
        p = second_stage.predict(stage, held, exported.score(held))
        chosen = calibrate.calibrate(p, labels.labels[held_idx], policy)
        threshold = chosen.value
        card = chosen.to_card()
        del card["value"]  # derive writes the value from the threshold variable it sets
        card.update(
            score=FRAUD_PROBABILITY,
            chosen_on=f"the later {VALIDATION_SHARE:.0%} of the labelled rows per class (held out from the fit)",
            rule="is_anomaly = fraud_probability > value",
        )
        updates["threshold"] = card
        info["held_out"] = {
            "rows": len(held_idx),
            "frauds": int(labels.labels[held_idx].sum()),
            **ranking(p, labels.labels[held_idx]),
        }
    version, version_dir, written = derive(
        source_dir,
        config.model_base,
        threshold=threshold,
        threshold_score=config.threshold_score,
        second_stage=stage,
        card_updates=updates,
        record_source=False,
    )
    return version, version_dir, written
