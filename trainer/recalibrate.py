"""``fraudscore calibrate``: the threshold from analysts' labels (and the traffic sample); ``--apply`` writes it.

    fraudscore calibrate --model-base models/creditcard                       # report only
    fraudscore calibrate --model-base M --since 30d --target-precision 0.8 --apply
    fraudscore calibrate --model-base M --budget 0.5% --apply

Reads the labelled cases from Bigtable (:func:`cases.labels.read_labels`: the latest label per
transaction wins), **rescores** their raw transactions with the newest model version (cases may come from
older versions), and reports precision at the current threshold, overall and per reason code, with a
Wilson interval (:mod:`trainer.precision`). Then it proposes a threshold:

- ``--target-precision P``: the lowest threshold at or above the current one whose labelled precision's
  lower confidence bound reaches P. Labels exist only for flagged cases, i.e. above the threshold in use
  when they were made, so a threshold below the current one cannot be assessed from labels and is never
  proposed.
- ``--budget q%``: the threshold above which a share q of the durable traffic sample
  (:mod:`stream.sampling`) scores, rescored the same way; the alert-rate estimate comes with its interval.

``--apply`` writes a new version (:func:`trainer.derive.derive_version`: same weights and transform, the new
threshold; the card's ``calibration`` records the label set's count, time range and fingerprint, the
estimate and the policy), which the scorer and the stream pick up by hot reload. Refusals, one line each
and no version written: no usable labels, a label set without frauds (target precision), too few labels
for ``--min-labels`` or an interval wider than ``--max-interval-width`` at ``--confidence``, no threshold
reaching the target, no (or too small a) traffic sample (budget).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fraudscore.config import add_resource_arguments
from fraudscore.labels import LabelError, LabelSet
from trainer.config import TrainError
from trainer.precision import Estimate, precision_above, threshold_for_budget, threshold_for_precision

if TYPE_CHECKING:
    from fraudscore.model import LoadedModel

DEFAULT_CONFIDENCE = 0.95
# 30 labels all confirmed give a 95% Wilson interval of [0.89, 1.0]; 30 at 80% give [0.63, 0.91] (width 0.28).
DEFAULT_MIN_LABELS = 30
DEFAULT_MAX_INTERVAL_WIDTH = 0.3
# A budget threshold needs this many sampled rows above it (relative error of the alert rate ~ 1/sqrt(10)).
MIN_SAMPLE_ALERTS = 10


class CalibrationRefused(TrainError):
    """The labels or the sample cannot support the requested threshold; nothing was written."""


@dataclass(frozen=True)
class Settings:
    target_precision: float | None = None
    budget: float | None = None  # a share of traffic (0.005 for 0.5%)
    confidence: float = DEFAULT_CONFIDENCE
    min_labels: int = DEFAULT_MIN_LABELS
    max_interval_width: float = DEFAULT_MAX_INTERVAL_WIDTH

    def __post_init__(self) -> None:
        if self.target_precision is not None and not 0.0 < self.target_precision < 1.0:
            raise TrainError(f"--target-precision {self.target_precision:g}: must be in (0, 1)")
        if self.budget is not None and not 0.0 < self.budget < 1.0:
            raise TrainError(f"--budget {self.budget:.4%}: must be in (0%, 100%)")
        if not 0.5 <= self.confidence < 1.0:
            raise TrainError(f"--confidence {self.confidence:g}: must be in [0.5, 1)")
        if self.min_labels < 1:
            raise TrainError(f"--min-labels {self.min_labels}: must be at least 1")
        if not 0.0 < self.max_interval_width <= 1.0:
            raise TrainError(f"--max-interval-width {self.max_interval_width:g}: must be in (0, 1]")

    @property
    def policy(self) -> str | None:
        if self.target_precision is not None:
            return "target_precision"
        return "budget" if self.budget is not None else None


@dataclass
class Calibration:
    """What ``calibrate`` found: the report, and either a proposed threshold or the reason there is none."""

    report: dict[str, Any]
    threshold: float | None = None
    refusal: str | None = None
    card: dict[str, Any] = field(default_factory=dict)  # the card's ``calibration`` for --apply


def _scores(model: LoadedModel, raw: np.ndarray) -> np.ndarray:
    """The thresholded score (the card's ``threshold.score``) of raw rows, rescored with ``model``."""
    if len(raw) == 0:
        return np.zeros(0, dtype=np.float32)
    scores = model.score(raw)
    if model.card.threshold_score == "fraud_probability":
        if scores.fraud_probability is None:
            raise TrainError(f"model version {model.version} thresholds fraud_probability but does not output it")
        return np.asarray(scores.fraud_probability)
    return np.asarray(scores.reconstruction_error)


def _row(group: str, estimate: Estimate) -> dict[str, Any]:
    return {"group": group, **estimate.to_json_dict()}


def calibrate(
    model: LoadedModel,
    labels: LabelSet,
    sample: tuple[np.ndarray, float],
    settings: Settings,
) -> Calibration:
    """Rescores the labels (and the sample), reports precision, proposes a threshold or says why not."""
    conf = settings.confidence
    current = model.threshold
    scores = _scores(model, labels.raw)
    sample_raw, sampling_rate = sample
    sample_scores = _scores(model, sample_raw)
    flags = labels.labels.astype(np.int64)
    rows = [_row(f"score > threshold {current:.6g}", precision_above(scores, flags, current, conf))]
    for reason in sorted({r for reasons in labels.reasons for r in reasons}):
        mask = np.array([reason in reasons for reasons in labels.reasons], dtype=bool)
        rows.append(_row(f"reason {reason}", Estimate.of(int(flags[mask].sum()), int(mask.sum()), conf)))
    rows.append(_row("all labelled cases", Estimate.of(int(flags.sum()), len(flags), conf)))
    report: dict[str, Any] = {
        "model": {"name": model.card.name, "version": model.version, "threshold": current},
        "threshold_score": model.card.threshold_score,
        "confidence": conf,
        "labels": labels.summary(),
        "below_current_threshold": int((scores <= current).sum()),
        "precision": rows,
        "sample": {"rows": len(sample_scores), "sampling_rate": sampling_rate},
    }
    if len(sample_scores):
        report["sample"]["alert_rate_at_current"] = Estimate.of(
            int((sample_scores > current).sum()), len(sample_scores), conf
        ).to_json_dict()
    result = Calibration(report)
    policy = settings.policy
    if policy is None:
        if not len(labels):
            result.refusal = _no_labels(labels)
        return result
    if policy == "target_precision":
        _for_precision(result, scores, flags, labels, current, settings)
    else:
        _for_budget(result, scores, flags, sample_scores, sampling_rate, current, settings)
    if result.threshold is not None:
        result.report["proposal"] = {"policy": policy, "threshold": result.threshold, **result.card}
        result.card = {
            "policy": policy,
            "target_precision": settings.target_precision,
            "budget": settings.budget,
            "confidence": conf,
            "labels": labels.summary(),
            "source_version": model.version,
            "source_threshold": current,
            "threshold_score": model.card.threshold_score,
            "calibrated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **result.card,
        }
    return result


def _no_labels(labels: LabelSet) -> str:
    skipped = ", ".join(f"{n} {why}" for why, n in labels.skipped.items())
    return (
        "no usable labelled cases"
        + (f" ({skipped})" if skipped else "")
        + ": label cases with `fraudscore cases label`"
    )


def _for_precision(
    result: Calibration, scores: np.ndarray, flags: np.ndarray, labels: LabelSet, current: float, s: Settings
) -> None:
    assert s.target_precision is not None
    if not len(labels):
        result.refusal = _no_labels(labels)
        return
    if labels.frauds == 0:
        result.refusal = (
            f"the label set has no frauds ({labels.legit} legit): no threshold can be shown to reach precision "
            f"{s.target_precision:g}"
        )
        return
    above = int((scores > current).sum())
    if above < s.min_labels:
        result.refusal = (
            f"too few labels: {above} labelled case(s) score above the current threshold {current:.6g}; "
            f"--min-labels {s.min_labels} are needed for a {s.confidence:.0%} interval"
        )
        return
    found = threshold_for_precision(scores, flags, current, s.target_precision, s.confidence, s.min_labels)
    if found is None:
        best = precision_above(scores, flags, current, s.confidence)
        result.refusal = (
            f"no threshold at or above the current one ({current:.6g}) has a {s.confidence:.0%} lower bound of "
            f"precision >= {s.target_precision:g} with >= {s.min_labels} labels (at the current one: "
            f"{best.successes}/{best.n}, interval [{best.low:.3f}, {best.high:.3f}]); label more cases"
        )
        return
    threshold, estimate = found
    if estimate.width > s.max_interval_width:
        result.refusal = (
            f"too few labels: {estimate.n} labelled case(s) above threshold {threshold:.6g} give a "
            f"{s.confidence:.0%} interval [{estimate.low:.3f}, {estimate.high:.3f}] (width {estimate.width:.3f} > "
            f"--max-interval-width {s.max_interval_width:g})"
        )
        return
    result.threshold = threshold
    result.card = {"precision": estimate.to_json_dict()}


def _for_budget(
    result: Calibration,
    scores: np.ndarray,
    flags: np.ndarray,
    sample_scores: np.ndarray,
    sampling_rate: float,
    current: float,
    s: Settings,
) -> None:
    assert s.budget is not None
    n = len(sample_scores)
    needed = int(np.ceil(MIN_SAMPLE_ALERTS / s.budget))
    if n == 0:
        result.refusal = "no traffic sample: a --budget needs the stream's sample of all traffic (--sample-rate > 0)"
        return
    if n < needed:
        result.refusal = (
            f"the traffic sample has {n} row(s): a {s.budget:.4g} budget ({s.budget:.2%}) needs at least {needed} "
            f"to put {MIN_SAMPLE_ALERTS} sampled transactions above the threshold"
        )
        return
    threshold = threshold_for_budget(sample_scores, s.budget)
    rate = Estimate.of(int((sample_scores > threshold).sum()), n, s.confidence)
    result.threshold = threshold
    result.card = {"alert_rate": rate.to_json_dict(), "sample_rows": n, "sampling_rate": sampling_rate}
    # Labels cover only what was flagged, above the current threshold: below it nothing is labelled.
    assessable = threshold >= current and bool((scores > threshold).any())
    estimate = precision_above(scores, flags, threshold, s.confidence) if assessable else None
    result.card["precision"] = estimate.to_json_dict() if estimate else None


# --- the command ------------------------------------------------------------------------------------------


def _budget(text: str) -> float:
    """``0.5%`` (or ``0.5``) -> 0.005: the budget is always in percent of traffic."""
    value = text.strip().removesuffix("%")
    try:
        return float(value) / 100.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a percentage of traffic, e.g. 0.5%") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-base", required=True, type=Path, help="model base directory; its newest version is calibrated"
    )
    parser.add_argument(
        "--since",
        help="labels given at or after this time (the latest label of each transaction counts), and sampled "
        "traffic with event time at or after it: a duration back from now (30d, 12h) or ISO 8601; default all",
    )
    policy = parser.add_mutually_exclusive_group()
    policy.add_argument(
        "--target-precision",
        type=float,
        metavar="P",
        help="propose the lowest threshold at or above the current one whose labelled precision's lower "
        "confidence bound is at least P (labels exist only above the current threshold: lower is never proposed)",
    )
    policy.add_argument(
        "--budget",
        type=_budget,
        metavar="Q%",
        help="propose the threshold above which Q percent of traffic scores, from the stream's durable traffic "
        "sample rescored with the current model (e.g. 0.5%%)",
    )
    parser.add_argument(
        "--confidence",
        type=float,
        default=DEFAULT_CONFIDENCE,
        help="confidence level of the Wilson intervals (default %(default)s)",
    )
    parser.add_argument(
        "--min-labels",
        type=int,
        default=DEFAULT_MIN_LABELS,
        help="refuse a precision-based threshold with fewer labelled cases above it (default %(default)s)",
    )
    parser.add_argument(
        "--max-interval-width",
        type=float,
        default=DEFAULT_MAX_INTERVAL_WIDTH,
        help="refuse a precision-based threshold whose precision interval is wider than this (default %(default)s)",
    )
    parser.add_argument(
        "--apply",
        action="store_true",
        help="write the proposed threshold as a new model version (same weights and transform; the card records "
        "the label set and the estimate); the scorer and the stream hot-reload it",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    add_resource_arguments(parser)


def main(args: argparse.Namespace) -> int:
    try:
        settings = Settings(
            target_precision=args.target_precision,
            budget=args.budget,
            confidence=args.confidence,
            min_labels=args.min_labels,
            max_interval_width=args.max_interval_width,
        )
        if args.apply and settings.policy is None:
            raise TrainError("--apply needs --target-precision or --budget: there is no threshold to write")
        result = _run(args, settings)
    except (TrainError, LabelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from google.api_core import exceptions as gexc

        from cases.cli import UsageError
        from fraudscore.model import ModelError

        if isinstance(exc, (ModelError, UsageError, gexc.GoogleAPIError)):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise
    print(json.dumps(result.report, indent=2) if args.json else format_report(result))
    if result.refusal is not None:
        print(f"error: {result.refusal}; no version written", file=sys.stderr)
        return 1
    if args.apply and result.threshold is not None:
        from trainer.derive import derive_version

        model = result.report["model"]
        try:
            version = derive_version(
                args.model_base,
                model["version"],
                threshold=result.threshold,
                card_updates={
                    "calibration": result.card,
                    "threshold": {"policy": f"calibrate:{settings.policy}"},
                },
            )
        except TrainError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(
            f"wrote {model['name']} version {version}: threshold {result.threshold:.6g} (was {model['threshold']:.6g})"
        )
    return 0


def _run(args: argparse.Namespace, settings: Settings) -> Calibration:
    from cases.cli import parse_time
    from cases.labels import read_labels, read_sample
    from cases.store import CaseStore
    from fraudscore import model as fmodel
    from fraudscore.config import Resources

    loaded = fmodel.load(args.model_base)
    since = parse_time(args.since, datetime.now(UTC)) if args.since else None
    res = Resources.from_args(args)
    with CaseStore(res) as store:
        labels = read_labels(store, loaded.features, since)
        sample = read_sample(store, loaded.features, since)
    return calibrate(loaded, labels, sample, settings)


def format_report(result: Calibration) -> str:
    r = result.report
    labels = r["labels"]
    lines = [
        f"model {r['model']['name']} version {r['model']['version']}: {r['threshold_score']} > "
        f"{r['model']['threshold']:.6g}",
        f"labels: {labels['count']} ({labels['frauds']} fraud, {labels['legit']} legit), labelled "
        f"{labels['first_labelled_at'] or '-'} .. {labels['last_labelled_at'] or '-'}, fingerprint "
        f"{labels['fingerprint'][:12]}; rescored with this version, {r['below_current_threshold']} now at or "
        "below its threshold",
    ]
    if labels["conflicting"]:
        lines.append(f"  {labels['conflicting']} transaction(s) had conflicting labels: the latest counts")
    for why, n in labels["skipped"].items():
        lines.append(f"  skipped {n} labelled case(s): {why}")
    header = ("GROUP", "LABELLED", "FRAUDS", "PRECISION", f"{r['confidence']:.0%} INTERVAL")
    table = [
        (
            row["group"],
            str(row["n"]),
            str(row["successes"]),
            f"{row['value']:.3f}" if row["value"] is not None else "-",
            f"[{row['low']:.3f}, {row['high']:.3f}]" if row["n"] else "-",
        )
        for row in r["precision"]
    ]
    widths = [max(len(t[i]) for t in (header, *table)) for i in range(len(header))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(t, widths, strict=True)).rstrip() for t in (header, *table)]
    sample = r["sample"]
    if sample["rows"]:
        rate = sample["alert_rate_at_current"]
        lines.append(
            f"traffic sample: {sample['rows']} rows (rate {sample['sampling_rate']:g}); alert rate at the current "
            f"threshold {rate['value']:.3%} [{rate['low']:.3%}, {rate['high']:.3%}]"
        )
    else:
        lines.append("traffic sample: none")
    if "proposal" in r:
        p = r["proposal"]
        text = f"proposed threshold {p['threshold']:.6g} ({p['policy']})"
        if p.get("precision"):
            e = p["precision"]
            text += f": precision {e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}] on {e['n']} labelled"
        elif "precision" in p:
            text += ": precision not assessable from labels (below the current threshold, or none labelled above it)"
        if "alert_rate" in p:
            e = p["alert_rate"]
            text += f"; alert rate {e['value']:.3%} [{e['low']:.3%}, {e['high']:.3%}] of {e['n']} sampled"
        lines.append(text)
    return "\n".join(lines)
