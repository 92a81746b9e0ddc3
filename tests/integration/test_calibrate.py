"""Issue 13's done-when, on the emulators: replay -> cases (with raw features) and the traffic sample ->
``fraudscore cases label`` -> ``fraudscore calibrate --apply`` -> a running ``fraudscore serve`` serves the
new version with the new threshold; and the bad inputs (no labels, no frauds, an unknown transaction,
conflicting labels: the latest wins, too few labels), each refused with no version written.

The stream is the real bounded replay (``stream.pipeline.run_with``) into a Bigtable instance of this test's
own (the emulator accepts any instance name), so ``cases`` and ``calibrate`` see only its labels through
``--instance``.
"""

from __future__ import annotations

import csv
import itertools
import json
import shutil
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import grpc
import numpy as np
import pytest

from cases.records import Case
from cases.store import CaseStore
from fraudscore.cli import main as cli_main
from fraudscore.config import Resources
from fraudscore.resources import create_resources
from fraudscore.v1 import scorer_pb2 as pb
from fraudscore.v1 import scorer_pb2_grpc
from fraudscore.versions import latest_version
from stream.rules import TX_ANOMALY
from tests.integration.scorer_support import start_serve, wait_for

pytestmark = pytest.mark.integration

ROWS = 3000
SAMPLE_RATE = 0.2
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RELAXED = ("--min-labels", "10", "--max-interval-width", "0.6")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _replay_csv(train_csv: Path, target: Path) -> dict[str, int]:
    """The first ROWS rows with transaction ids ``cal-<i>``; returns each id's true class."""
    truth: dict[str, int] = {}
    with train_csv.open(newline="") as src, target.open("w", newline="") as dst:
        reader = csv.DictReader(src)
        assert reader.fieldnames is not None
        writer = csv.DictWriter(dst, [*reader.fieldnames, "transaction_id"])
        writer.writeheader()
        for i, row in enumerate(itertools.islice(reader, ROWS)):
            row["transaction_id"] = f"cal-{i}"
            truth[row["transaction_id"]] = int(row["Class"])
            writer.writerow(row)
    return truth


def _model_info(target: str) -> pb.ModelInfo:
    with grpc.insecure_channel(target) as channel:
        info: pb.ModelInfo = scorer_pb2_grpc.FraudScorerStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
        return info


def test_replay_label_calibrate_apply_and_the_scorer_serves_it(
    tmp_path: Path,
    train_csv: Path,
    trained_model_base: Path,
    unique_resources_factory: Callable[[str], Resources],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from stream.pipeline import StreamConfig, run_with

    base = tmp_path / "models"
    shutil.copytree(trained_model_base, base)
    instance = f"calib-{uuid.uuid4().hex[:8]}"
    # Topics of this test's own; the default table names (what `cases` and `calibrate` read) in its own instance.
    tables = Resources()
    res = replace(
        unique_resources_factory("calib"),
        bigtable_instance=instance,
        cases_table=tables.cases_table,
        cases_by_time_table=tables.cases_by_time_table,
        sample_table=tables.sample_table,
    )
    create_resources(res)
    truth = _replay_csv(train_csv, tmp_path / "replay.csv")
    config = StreamConfig(
        model_base=str(base), resources=res, replay=str(tmp_path / "replay.csv"), sample_rate=SAMPLE_RATE
    )
    assert str(run_with(config, ["--runner=DirectRunner"]).wait_until_finish()).endswith("DONE")

    store = CaseStore(res)
    try:
        from cases.labels import read_sample

        cases: list[Case] = list(store.flagged_transactions())  # the members of the cases, one row each
        sample, rate = read_sample(store, cases[0].feature_names)
    finally:
        store.close()
    # Cases keep the raw transaction; the sample is ~20% of all scored traffic.
    assert cases and all(c.has_raw_features for c in cases)
    assert rate == SAMPLE_RATE and 0.15 * ROWS < len(sample) < 0.25 * ROWS
    anomalies = sorted((c for c in cases if TX_ANOMALY in c.reasons), key=lambda c: c.reconstruction_error)
    assert len(anomalies) >= 20, f"{len(anomalies)} TX_ANOMALY cases: too few for this scenario"
    at = ("--instance", instance)
    calibrate = ("calibrate", "--model-base", str(base), *at)

    # No labels yet: refused, nothing written.
    code, _, err = run(capsys, *calibrate, "--target-precision", "0.7", *RELAXED, "--apply")
    assert code == 1 and "no usable labelled cases" in err and latest_version(base) == 1

    # A label for an unknown transaction is impossible.
    code, _, err = run(capsys, "cases", "label", "cal-nonexistent", "--fraud", *at)
    assert code == 1 and "no case or flagged transaction 'cal-nonexistent'" in err

    # Only legit labels: no frauds -> refused.
    low_half = anomalies[: len(anomalies) // 2]
    for case in low_half:
        assert run(capsys, "cases", "label", "--transaction", case.transaction_id, "--legit", *at)[0] == 0
    code, _, err = run(capsys, *calibrate, "--target-precision", "0.7", *RELAXED, "--apply")
    assert code == 1 and f"the label set has no frauds ({len(low_half)} legit)" in err
    assert latest_version(base) == 1

    # The analysts' verdicts: the upper half of the anomalies confirmed fraud, the lower half legit; one of the
    # upper half first labelled legit by mistake, then fraud (the latest wins); card-rule cases by their truth.
    high_half = anomalies[len(anomalies) // 2 :]
    assert run(capsys, "cases", "label", "--transaction", high_half[0].transaction_id, "--legit", *at)[0] == 0
    for case in high_half:
        assert run(capsys, "cases", "label", "--transaction", case.transaction_id, "--fraud", *at)[0] == 0
    card_cases = [c for c in cases if TX_ANOMALY not in c.reasons][:10]
    for case in card_cases:
        verdict = "--fraud" if truth[case.transaction_id] else "--legit"
        assert run(capsys, "cases", "label", "--transaction", case.transaction_id, verdict, *at)[0] == 0

    # Too few labels for the stated confidence: refused.
    code, _, err = run(capsys, *calibrate, "--target-precision", "0.7", "--min-labels", "1000", "--apply")
    assert code == 1 and "too few labels" in err and latest_version(base) == 1

    started: list[subprocess.Popen[str]] = []
    with (tmp_path / "serve.log").open("w") as log:
        try:
            _, target = start_serve(base, log, "--reload-interval", "0.2", started=started)
            before = _model_info(target)
            assert before.version == 1

            code, out, err = run(capsys, *calibrate, "--target-precision", "0.7", *RELAXED, "--json", "--apply")
            assert code == 0, err
            report = json.loads(out[: out.rindex("}") + 1])
            labels = report["labels"]
            assert labels["count"] == len(anomalies) + len(card_cases) and labels["conflicting"] == 1
            assert labels["frauds"] == len(high_half) + sum(truth[c.transaction_id] for c in card_cases)
            proposed = report["proposal"]["threshold"]
            # Half the flagged labels are false positives at the current threshold: the proposal is higher.
            assert proposed > before.threshold and report["proposal"]["precision"]["low"] >= 0.7
            assert "wrote" in out and latest_version(base) == 2
            wait_for(lambda: _model_info(target).version == 2, 30, "the scorer never loaded version 2")
            served = _model_info(target)
            assert served.threshold == pytest.approx(proposed, rel=1e-6)
            card = json.loads((base / "2" / "model_card.json").read_text())
            assert card["calibration"]["labels"]["fingerprint"] == labels["fingerprint"]
            assert card["threshold"]["policy"] == "calibrate:target_precision"

            # A budget from the traffic sample: 5% of the sampled traffic above the new threshold.
            code, out, err = run(capsys, *calibrate, "--budget", "5%", "--json", "--apply")
            assert code == 0, err
            budget = json.loads(out[: out.rindex("}") + 1])["proposal"]
            assert budget["alert_rate"]["n"] == len(sample)
            assert budget["alert_rate"]["successes"] == int(np.floor(0.05 * len(sample)))
            wait_for(lambda: _model_info(target).version == 3, 30, "the scorer never loaded version 3")
            assert _model_info(target).threshold == pytest.approx(budget["threshold"], rel=1e-6)
        finally:
            for proc in started:
                proc.terminate()
                proc.wait(timeout=30)
