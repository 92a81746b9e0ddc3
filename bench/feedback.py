"""Does learning from analysts' labels catch more frauds at the same alert budget? A simulation on real rows.

``python -m bench.feedback`` replays the shipped real sample (``samples/creditcard-real-dev.csv.gz``) as a
stream of simulated days, once per seed:

1. The autoencoder (``fraudscore train`` with its defaults, trainer.pipeline.run) is trained on the normals
   of the first ``AE_SHARE`` of the rows in time order, given without the label column as production's
   traffic would be: the design's validation-time choices then follow the trainer's no-label rules (PCA
   axes for the kept variance, unweighted errors), and its threshold is the budget's on its validation split.
   The trainer splits those rows 60/20/20 itself (trainer.split); nothing after them ever trains it. The
   frauds among them (2) are unused: the loop starts with no labels.
2. The later rows are cut, in time order, into ``DAYS`` days of equal row count. Each day the current
   ranker scores the day's rows; the top k = ceil(budget x rows) are alerted (a fixed analyst capacity)
   and labelled with their true class; a uniform random ``SAMPLE_RATE`` sample of the other rows is kept
   unlabelled, as the stream's durable sample, and taken as legit (a fraud in it is mislabelled, as it
   would be in production) with weight 1/rate, alerts weigh 1: the inverse of each row's selection
   probability, which is how the selection bias of alert-only labels is undone.
3. After each day the loop refits the second stage (trainer.second_stage) on all labels so far, once they
   hold at least ``MIN_FRAUDS`` frauds, ranks the next day by ``fraud_probability``, and recalibrates the
   alert threshold at the budget (``fraudscore calibrate --budget``'s rule) on the days so far rescored by
   the new ranker. The fit sees only ``DayLabels`` of days before the one being scored (``run_loop`` asserts it).

Arms, all on the same rows: ``unsupervised`` (the autoencoder alone, threshold fixed at training),
``recalibrated`` (the autoencoder, threshold recalibrated daily: the same top-k as unsupervised), and one
``loop`` arm per second-stage design (``selected``: the family trainer.second_stage chooses by time-ordered
cross-validation, as ``fraudscore train --labels`` does; or one family, e.g. ``logistic``, ``gbdt``).

``--curve`` runs :mod:`bench.label_curve` instead: test PR-AUC by the number of labelled frauds.
Per day and in total: frauds caught and precision at the budget (top-k), and the alerts and frauds caught
above each arm's deployed threshold.

Cross-validated variant (``leave_one_day_out``): the frauds are few and bunched (most in the first days), so
the time-ordered loop's total hangs on which day comes first. For each day d the second stage is fitted on
the labels the unsupervised model's alerts and the sample would have produced on every OTHER day (not
time-honest: later days count, but never day d) and ranks day d. It estimates what the loop gains once it
has labels, on all frauds instead of the few left after the first days; the design is chosen by it.

Results (per seed, per day, mean and sd over seeds, the design comparison) go to
``bench/results/feedback.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.quality import RESULTS, ROOT, SAMPLE, SEEDS

AE_SHARE = 0.35  # first 35 % of the rows (Time < 3,140 s): 5,033 rows, 2 frauds; the rest (41 frauds) are days
DAYS = 8  # ~1,168 rows a day; frauds per day 12, 14, 0, 10, 0, 1, 2, 2
# 1 % of a day's rows (12 alerts a simulated day), about twice the later rows' fraud rate (0.47 %): at 0.5 %
# (6 a day) the unsupervised model's alerts are all frauds on the three fraud-heavy days, so both rankings hit
# the cap there and only 5 frauds could tell them apart (that run: bench/results/feedback-budget-0.5.json).
BUDGET_PERCENT = 1.0
SAMPLE_RATE = 0.01  # the stream's durable sample of unflagged traffic
# The loop's second-stage designs: "selected" is what ``fraudscore train --labels`` ships (trainer.second_stage's
# time-ordered CV choice among its families), the others one family each.
DESIGNS: tuple[str, ...] = ("selected", "logistic", "gbdt")

Ranker = Callable[[np.ndarray], np.ndarray]  # stream row indices -> scores (higher = more suspicious)


@dataclass(frozen=True)
class Stream:
    """The simulated days' rows in time order, scored once by the (fixed) autoencoder."""

    raw: np.ndarray  # [n, F] float32, card order
    feature_errors: np.ndarray  # [n, F]
    reconstruction_error: np.ndarray  # [n]
    labels: np.ndarray  # [n] true class, seen only through analysts' labels of alerted rows

    def unsupervised(self, rows: np.ndarray) -> np.ndarray:
        return self.reconstruction_error[rows]

    def errors(self, rows: np.ndarray) -> Any:
        """The autoencoder's outputs for ``rows``, as the second stage reads them."""
        from trainer.second_stage import Errors

        return Errors(self.feature_errors[rows], self.reconstruction_error[rows])


@dataclass(frozen=True)
class DayLabels:
    """What one day left for learning: alerted rows with their true class, sampled rows taken as legit."""

    day: int
    rows: np.ndarray  # stream indices
    labels: np.ndarray  # int8
    weights: np.ndarray  # 1 for alerts, 1/rate for sampled rows


Fitter = Callable[[Stream, Sequence[DayLabels]], Ranker | None]  # None: cannot fit (yet); keep the ranker


def plan_days(n_rows: int, days: int) -> list[np.ndarray]:
    """Contiguous, equal-count (+-1) chunks of ``range(n_rows)``, in time order."""
    if days < 1 or n_rows < days:
        raise ValueError(f"cannot cut {n_rows} rows into {days} days")
    return [chunk for chunk in np.array_split(np.arange(n_rows), days)]


def alert_count(rows: int, budget_percent: float) -> int:
    return max(1, math.ceil(rows * budget_percent / 100.0))


def top_k(rows: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """The k rows with the highest scores (ties: earlier rows first)."""
    return rows[np.argsort(-scores, kind="stable")[:k]]


def day_labels(
    stream: Stream, day: int, rows: np.ndarray, alerted: np.ndarray, sample_rate: float, rng: np.random.Generator
) -> DayLabels:
    rest = np.setdiff1d(rows, alerted)
    sampled = rest[rng.random(len(rest)) < sample_rate]
    return DayLabels(
        day=day,
        rows=np.concatenate([alerted, sampled]),
        labels=np.concatenate([stream.labels[alerted], np.zeros(len(sampled))]).astype(np.int8),
        weights=np.concatenate([np.ones(len(alerted)), np.full(len(sampled), 1.0 / sample_rate)]),
    )


def recalibrated(ranker: Ranker, seen: np.ndarray, budget_percent: float) -> float:
    """``fraudscore calibrate --budget``'s threshold (trainer.precision) on the rows seen so far, scored by ``ranker``.

    The command takes it on the durable traffic sample and refuses below 10 sampled rows above it; here the
    1 % sample would hold ~12 rows a day, so the simulation uses every row of the days so far.
    """
    from trainer.precision import threshold_for_budget

    return threshold_for_budget(ranker(seen), budget_percent / 100.0)


def run_loop(
    stream: Stream,
    plan: Sequence[np.ndarray],
    fitter: Fitter | None,
    *,
    threshold: float,
    budget_percent: float,
    sample_rate: float,
    rng: np.random.Generator,
    recalibrate: bool = True,
) -> list[dict[str, Any]]:
    """The day-by-day loop (see the module docstring); ``fitter=None``: the autoencoder alone."""
    ranker: Ranker = stream.unsupervised
    ranked_by = "reconstruction_error"
    known: list[DayLabels] = []
    out = []
    for day, rows in enumerate(plan):
        assert all(k.day < day for k in known), "a fit would see the day being scored"
        scores = ranker(rows)
        k = alert_count(len(rows), budget_percent)
        alerted = top_k(rows, scores, k)
        deployed = rows[scores > threshold]
        caught = int(stream.labels[alerted].sum())
        out.append(
            {
                "day": day + 1,
                "rows": len(rows),
                "frauds": int(stream.labels[rows].sum()),
                "ranked_by": ranked_by,
                "labelled_frauds_before": int(sum(k.labels.sum() for k in known)),
                "alerts": k,
                "caught": caught,
                "precision": caught / k,
                "deployed": {
                    "threshold": float(threshold),
                    "alerts": len(deployed),
                    "caught": int(stream.labels[deployed].sum()),
                },
            }
        )
        known.append(day_labels(stream, day, rows, alerted, sample_rate, rng))
        if fitter is not None:
            fitted = fitter(stream, known)
            if fitted is not None:
                ranker, ranked_by = fitted, "fraud_probability"
        if recalibrate:
            threshold = recalibrated(ranker, np.concatenate(plan[: day + 1]), budget_percent)
    return out


def leave_one_day_out(
    stream: Stream, plan: Sequence[np.ndarray], labelled: Sequence[DayLabels], fitter: Fitter, budget_percent: float
) -> list[dict[str, Any]]:
    """Each day ranked by a second stage fitted on every other day's labels (see the module docstring)."""
    out = []
    for day, rows in enumerate(plan):
        others = [k for k in labelled if k.day != day]
        assert not any(np.isin(k.rows, rows).any() for k in others), "a fit would see the day being scored"
        ranker = fitter(stream, others) or stream.unsupervised
        alerted = top_k(rows, ranker(rows), alert_count(len(rows), budget_percent))
        out.append(
            {"day": day + 1, "frauds": int(stream.labels[rows].sum()), "caught": int(stream.labels[alerted].sum())}
        )
    return out


def stage_fitter(design: str, seed: int) -> Fitter:
    """Fits trainer.second_stage (``design``: "selected" or one family) on the labels so far; None while it
    refuses (e.g. too few frauds)."""
    from trainer import second_stage

    family = None if design == "selected" else design

    def fit(stream: Stream, known: Sequence[DayLabels]) -> Ranker | None:
        rows = np.concatenate([k.rows for k in known])
        try:
            stage = second_stage.fit(
                stream.raw[rows],
                stream.errors(rows),
                np.concatenate([k.labels for k in known]),
                order=rows.astype(np.float64),  # stream rows are in time order
                seed=seed,
                sample_weight=np.concatenate([k.weights for k in known]),
                family=family,
            )
        except second_stage.SecondStageError:
            return None
        return lambda idx: second_stage.predict(stage, stream.raw[idx], stream.errors(idx))

    return fit


def train_autoencoder(data: Path, seed: int, work: Path, budget: float) -> tuple[Stream, float, dict[str, Any]]:
    """Trains the default design on the early normals; scores the later rows through the exported model."""
    from dataclasses import replace

    from fraudscore import features
    from fraudscore.model import load
    from trainer import data as data_mod
    from trainer.config import ThresholdPolicy, TrainConfig
    from trainer.pipeline import run

    frame = data_mod.load_csv(data).frame.sort_values(features.TIME, kind="mergesort").reset_index(drop=True)
    cut = round(len(frame) * AE_SHARE)
    early, later = frame.iloc[:cut], frame.iloc[cut:]
    csv = work / f"early-normals-{seed}.csv"
    early.loc[early[features.LABEL] == 0].drop(columns=[features.LABEL]).to_csv(csv, index=False)
    # Unlabelled training data (as production's would be): the design's two validation-time choices resolve by
    # the trainer's no-label rules (PCA axes for the kept variance, unweighted errors; trainer.pipeline).
    config = TrainConfig(data=csv, model_base=work / f"models-{seed}" / "creditcard", seed=seed, verbose=False)
    config = replace(
        config,
        baselines=False,
        plots=False,
        threshold_policy=ThresholdPolicy("budget", budget),
    )
    result = run(config)
    model = load(config.model_base, result.version)
    raw = later[list(model.features)].to_numpy(np.float32)
    scored = model.score(raw)
    stream = Stream(
        raw=raw,
        feature_errors=np.asarray(scored.feature_errors, np.float32),
        reconstruction_error=np.asarray(scored.reconstruction_error, np.float32),
        labels=later[features.LABEL].to_numpy().astype(np.int8),
    )
    info = {
        "design": result.card["training"]["design"],
        "trained_on_rows": int((early[features.LABEL] == 0).sum()),
        "early_frauds_unused": int(early[features.LABEL].sum()),
    }
    return stream, model.threshold, info


def one_seed(data: Path, seed: int, work: Path, budget: float, designs: Sequence[str]) -> dict[str, Any]:
    from trainer.evaluate import ranking

    stream, threshold, ae_info = train_autoencoder(data, seed, work, budget)
    plan = plan_days(len(stream.labels), DAYS)

    def loop(fitter: Fitter | None, recalibrate: bool = True) -> list[dict[str, Any]]:
        rng = np.random.default_rng(seed)  # same sample draws for every arm of a seed
        return run_loop(
            stream,
            plan,
            fitter,
            threshold=threshold,
            budget_percent=budget,
            sample_rate=SAMPLE_RATE,
            rng=rng,
            recalibrate=recalibrate,
        )

    arms: dict[str, list[dict[str, Any]]] = {
        "unsupervised": loop(None, recalibrate=False),
        "recalibrated": loop(None),
    }
    # The labels the unsupervised model's alerts and the sample leave, per day: the leave-one-day-out fits' data.
    rng = np.random.default_rng(seed)
    labelled = []
    for day, rows in enumerate(plan):
        alerted = top_k(rows, stream.unsupervised(rows), alert_count(len(rows), budget))
        labelled.append(day_labels(stream, day, rows, alerted, SAMPLE_RATE, rng))
    cross_validated: dict[str, list[dict[str, Any]]] = {}
    for name in designs:
        start = time.perf_counter()
        fitter = stage_fitter(name, seed)
        arms[f"loop: {name}"] = loop(fitter)
        cross_validated[name] = leave_one_day_out(stream, plan, labelled, fitter, budget)
        print(
            f"[feedback] seed {seed} {name}: loop caught {sum(d['caught'] for d in arms[f'loop: {name}'])}, "
            f"left-out days caught {sum(d['caught'] for d in cross_validated[name])} "
            f"({time.perf_counter() - start:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    return {
        "seed": seed,
        "autoencoder": {**ae_info, "threshold": threshold, **ranking(stream.reconstruction_error, stream.labels)},
        "arms": arms,
        "leave_one_day_out": cross_validated,
    }


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    arms = per_seed[0]["arms"]
    days = len(arms["unsupervised"])
    half = days // 2
    out: dict[str, Any] = {"arms": {}, "leave_one_day_out": {}}
    for arm in arms:
        runs = [s["arms"][arm] for s in per_seed]
        caught = [sum(d["caught"] for d in r) for r in runs]
        alerts = sum(d["alerts"] for d in runs[0])
        out["arms"][arm] = {
            "caught": _stats(caught),
            "precision": _stats([c / alerts for c in caught]),
            "caught_second_half": _stats([sum(d["caught"] for d in r[half:]) for r in runs]),
            "caught_last_day": _stats([r[-1]["caught"] for r in runs]),
            "alerts": alerts,
            "caught_minus_unsupervised": _stats(
                [c - sum(d["caught"] for d in s["arms"]["unsupervised"]) for c, s in zip(caught, per_seed, strict=True)]
            ),
            "deployed_alerts": _stats([sum(d["deployed"]["alerts"] for d in r) for r in runs]),
            "deployed_caught": _stats([sum(d["deployed"]["caught"] for d in r) for r in runs]),
            "per_day_caught": [_stats([r[i]["caught"] for r in runs]) for i in range(days)],
        }
    unsup = [sum(d["caught"] for d in s["arms"]["unsupervised"]) for s in per_seed]
    for name in per_seed[0]["leave_one_day_out"]:
        caught = [sum(d["caught"] for d in s["leave_one_day_out"][name]) for s in per_seed]
        out["leave_one_day_out"][name] = {
            "caught": _stats(caught),
            "caught_minus_unsupervised": _stats([c - u for c, u in zip(caught, unsup, strict=True)]),
            "per_day_caught": [
                _stats([s["leave_one_day_out"][name][i]["caught"] for s in per_seed]) for i in range(days)
            ],
        }
    return out


def table(result: dict[str, Any]) -> str:
    s = result["summary"]
    frauds = sum(d["frauds"] for d in result["per_seed"][0]["arms"]["unsupervised"])
    days = result["per_seed"][0]["arms"]["unsupervised"]

    def ms(x: dict[str, float], fmt: str = ".1f") -> str:
        return f"{x['mean']:{fmt}} ± {x['sd']:{fmt}}"

    per_day = " | ".join(f"day {d['day']} ({d['frauds']})" for d in days)
    lines = [
        f"| ranking | caught of {frauds} (top-k) | precision | vs unsupervised | {per_day} | left-one-day-out caught |",
        "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in days) + " | ---: |",
    ]
    for arm, a in s["arms"].items():
        design = arm.removeprefix("loop: ")
        cv = s["leave_one_day_out"].get(design)
        cells = " | ".join(f"{d['mean']:.1f}" for d in a["per_day_caught"])
        lines.append(
            f"| {arm} | {ms(a['caught'])} | {ms(a['precision'], '.2f')} | {ms(a['caught_minus_unsupervised'], '+.1f')} "
            f"| {cells} | {ms(cv['caught']) if cv else '–'} |"
        )
    return "\n".join(lines)


def choose(summary: dict[str, Any]) -> dict[str, Any]:
    """The design with the most left-out-day frauds caught (ties: the fewer parameters, listed first)."""
    cv = summary["leave_one_day_out"]
    best = max(cv, key=lambda k: cv[k]["caught"]["mean"])  # max keeps the first of equal keys
    unsup = summary["arms"]["unsupervised"]["caught"]["mean"]
    loop = summary["arms"][f"loop: {best}"]["caught"]["mean"]
    return {
        "design": best,
        "by": "leave-one-day-out frauds caught at the budget, mean over seeds (ties: the simpler design)",
        "loop_beats_unsupervised_time_ordered": loop > unsup,
        "loop_minus_unsupervised_time_ordered": loop - unsup,
        "left_out_days_minus_unsupervised": cv[best]["caught_minus_unsupervised"]["mean"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.feedback", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SAMPLE, help="labelled CSV (default: the shipped real sample)")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="comma-separated seeds (at least 3)")
    parser.add_argument("--budget", type=float, default=BUDGET_PERCENT, help="alert budget, percent of a day's rows")
    parser.add_argument(
        "--designs", default=",".join(DESIGNS), help="second-stage designs: selected, or trainer.second_stage families"
    )
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default: bench/results/feedback.json)")
    parser.add_argument(
        "--curve",
        action="store_true",
        help="the label-efficiency curve instead (bench.label_curve): test PR-AUC by labelled frauds",
    )
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.curve:
        from bench import label_curve

        return label_curve.main(args.data, seeds, args.out or RESULTS / "label-curve.json")
    args.out = args.out or RESULTS / "feedback.json"
    designs = args.designs.split(",")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-feedback-") as tmp:
        per_seed = [one_seed(args.data, seed, Path(tmp), args.budget, designs) for seed in seeds]
    summary = summarise(per_seed)
    from trainer.second_stage import EPOCHS, L2, MIN_FRAUDS

    result = {
        "data": str(args.data.relative_to(ROOT) if args.data.is_relative_to(ROOT) else args.data),
        "design": {
            "autoencoder": f"trainer defaults on the normals of the first {AE_SHARE:.0%} of rows (time order), "
            "without the label column",
            "days": DAYS,
            "day_cut": "the later rows in time order, equal row counts",
            "alert_budget_percent": args.budget,
            "alerts_per_day": [d["alerts"] for d in per_seed[0]["arms"]["unsupervised"]],
            "sample_rate": SAMPLE_RATE,
            "sample_weight": "alerts 1, sampled unflagged rows 1/rate (taken as legit)",
            "min_frauds": MIN_FRAUDS,
            "second_stage": {"l2": L2, "epochs": EPOCHS},
            "designs": designs,
            "ranking_after_fit": "fraud_probability alone",
            "recalibration": "trainer.precision.threshold_for_budget on every row of the days so far, rescored by "
            "the current ranker (the 1 % sample would hold ~12 rows a day)",
        },
        "seeds": seeds,
        "seconds": time.perf_counter() - start,
        "summary": summary,
        "choice": choose(summary),
        "per_seed": per_seed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(json.dumps(result["choice"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
