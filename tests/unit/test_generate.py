"""Tests for the synthetic transaction generator (fraudscore/generate.py)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudscore import cli, features, schema
from fraudscore.generate import (
    BURST_WINDOW_S,
    DURATION_S,
    KAGGLE_V_STD,
    generate_frame,
    write_csv,
)

COLUMNS = [*features.KAGGLE_COLUMNS, *features.GENERATED_EXTRA_COLUMNS]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_frame(20_000, fraud_rate=0.02, seed=7)


def test_same_seed_gives_identical_frame() -> None:
    pd.testing.assert_frame_equal(generate_frame(3_000, seed=1), generate_frame(3_000, seed=1))


def test_different_seeds_differ() -> None:
    a, b = generate_frame(3_000, seed=1), generate_frame(3_000, seed=2)
    assert not np.allclose(a["V1"].to_numpy(), b["V1"].to_numpy())
    assert not a[features.CARD_ID].equals(b[features.CARD_ID])


def test_columns_are_kaggle_then_extras_in_order(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == COLUMNS
    assert frame[features.LABEL].isin([0, 1]).all()
    assert frame[features.CARD_ID].str.fullmatch(r"card-\d{6}").all()
    assert frame[features.MERCHANT_ID].str.fullmatch(r"m-\d{4}").all()


@pytest.mark.parametrize(("rows", "rate"), [(20_000, 0.02), (10_000, 0.00172), (5_000, 0.0), (1_000, 0.3)])
def test_fraud_rate_is_the_requested_one(rows: int, rate: float) -> None:
    labels = generate_frame(rows, fraud_rate=rate, seed=3)[features.LABEL]
    assert len(labels) == rows
    assert abs(labels.mean() - rate) <= 1.0 / rows


def test_time_is_sorted_whole_seconds_within_two_days(frame: pd.DataFrame) -> None:
    t = frame[features.TIME].to_numpy()
    assert np.all(np.diff(t) >= 0)
    assert t.min() >= 0 and t.max() < DURATION_S
    assert np.array_equal(t, np.floor(t))
    # Day/night cycle: the busiest hour of the day has several times the quietest one's traffic.
    per_hour = np.bincount((t % 86_400 // 3_600).astype(int), minlength=24)
    assert per_hour.max() > 3 * per_hour.min()


def test_frauds_come_in_bursts_on_one_card(frame: pd.DataFrame) -> None:
    frauds = frame[frame[features.LABEL] == 1]
    gaps = frauds.groupby(features.CARD_ID)[features.TIME].diff().dropna()
    # Many frauds follow another fraud of the same card within the burst window.
    assert (gaps <= BURST_WINDOW_S).sum() >= 0.3 * len(frauds)
    sizes = frauds.groupby(features.CARD_ID).size()
    assert sizes.max() >= 3


def test_cards_and_merchants_are_skewed_and_bounded() -> None:
    df = generate_frame(20_000, seed=5, cards=300, merchants=40)
    per_card = df[features.CARD_ID].value_counts()
    assert df[features.CARD_ID].nunique() <= 300
    assert df[features.MERCHANT_ID].nunique() <= 40
    assert per_card.iloc[0] > 4 * per_card.median()


def test_normal_features_resemble_the_real_ones(frame: pd.DataFrame) -> None:
    normal = frame[frame[features.LABEL] == 0]
    v = normal[list(features.PCA_FEATURES)].to_numpy()
    assert np.allclose(v.std(axis=0), KAGGLE_V_STD, rtol=0.15)
    assert np.all(np.abs(v.mean(axis=0)) < 0.1 * KAGGLE_V_STD)
    # Heavier tails than a Gaussian in most components.
    kurtosis = ((v - v.mean(0)) ** 4).mean(0) / v.var(0) ** 2 - 3
    assert (kurtosis > 0.5).sum() >= 12
    amount = normal[features.AMOUNT]
    assert 15 <= amount.median() <= 30
    assert 60 <= amount.mean() <= 120
    assert amount.min() >= 0
    assert np.corrcoef(normal["V2"], np.log1p(amount))[0, 1] < -0.3


def test_frauds_are_shifted_where_real_frauds_are(frame: pd.DataFrame) -> None:
    fraud = frame[frame[features.LABEL] == 1]
    normal = frame[frame[features.LABEL] == 0]
    for name, sign in [("V14", -1), ("V12", -1), ("V10", -1), ("V4", 1), ("V11", 1)]:
        shift = (fraud[name].median() - normal[name].median()) / normal[name].std()
        assert sign * shift > 3.0, (name, shift)
    # Many small test charges among fraud amounts.
    assert (fraud[features.AMOUNT] < 3).mean() > 0.25


def test_every_row_parses_after_write_csv(tmp_path: Path) -> None:
    df = generate_frame(2_000, fraud_rate=0.05, seed=11)
    path = tmp_path / "tx.csv"
    write_csv(df, path)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(df)
    for i, row in enumerate(rows):
        tx = schema.from_csv_row(row, row_number=i)
        assert tx.card_id == df[features.CARD_ID].iloc[i]
        assert tx.label == df[features.LABEL].iloc[i]
    back = pd.read_csv(path)
    assert list(back.columns) == COLUMNS
    floats = [features.TIME, *features.PCA_FEATURES, features.AMOUNT]
    # Round trip is exact in float64, so certainly in float32.
    assert np.array_equal(back[floats].to_numpy(), df[floats].to_numpy())


def test_write_csv_to_a_binary_stream() -> None:
    df = generate_frame(100, seed=2)
    sink = io.BytesIO()
    write_csv(df, sink, chunk_rows=30)
    lines = sink.getvalue().decode().splitlines()
    assert len(lines) == 101
    assert lines[0].replace('"', "").split(",") == COLUMNS


def test_cli_writes_a_file_and_reports_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gen.csv"
    rc = cli.main(["generate", "--rows", "1500", "--fraud-rate", "0.01", "--seed", "4", "--out", str(out)])
    assert rc == 0
    written = pd.read_csv(out)
    pd.testing.assert_frame_equal(written, generate_frame(1_500, 0.01, 4), check_dtype=False)
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "1,500 rows" in summary and "15 frauds" in summary and "cards" in summary


def test_cli_writes_to_stdout(capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    assert cli.main(["generate", "--rows", "50", "--out", "-"]) == 0
    captured = capfdbinary.readouterr()
    assert len(captured.out.decode().splitlines()) == 51
    assert b"50 rows" in captured.err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--rows", "0"], "--rows: must be > 0"),
        (["--rows", "-5"], "--rows: must be > 0"),
        (["--fraud-rate", "0.5"], "--fraud-rate: must be in [0, 0.5)"),
        (["--fraud-rate", "-0.1"], "--fraud-rate: must be in [0, 0.5)"),
        (["--cards", "0"], "--cards: must be > 0"),
    ],
)
def test_cli_rejects_bad_arguments(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never.csv"
    assert cli.main(["generate", *flags, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_generate_frame_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rows"):
        generate_frame(0)
    with pytest.raises(ValueError, match="fraud_rate"):
        generate_frame(10, fraud_rate=0.7)


def test_cli_creates_missing_directories_and_reports_unwritable_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nested = tmp_path / "data" / "gen.csv"
    assert cli.main(["generate", "--rows", "10", "--out", str(nested)]) == 0
    assert nested.exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["generate", "--rows", "10", "--out", str(blocker / "gen.csv")]) == 1
    assert "--out: cannot write" in capsys.readouterr().err
