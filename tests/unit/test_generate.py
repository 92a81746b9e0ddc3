"""Tests for the synthetic transaction generator (fraudscore/dev/generate.py)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudscore import cli, features, schema
from fraudscore.dev.generate import (
    BURST_WINDOW_S,
    CALIBRATION_FILE,
    DURATION_S,
    SAMPLE,
    calibrate_file,
    generate_frame,
    write_csv,
)

COLUMNS = [*features.KAGGLE_COLUMNS, *features.GENERATED_EXTRA_COLUMNS]
ROOT = Path(__file__).resolve().parents[2]
V = list(features.PCA_FEATURES)


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


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    return pd.read_csv(ROOT / SAMPLE)


@pytest.fixture(scope="module")
def large() -> pd.DataFrame:
    """Enough normals (~60k) and frauds (300, ~120 bursts) for the statistics to be tight."""
    return generate_frame(60_000, fraud_rate=0.005, seed=0)


def _normals(df: pd.DataFrame) -> pd.DataFrame:
    return df[df[features.LABEL] == 0]


def _frauds(df: pd.DataFrame) -> pd.DataFrame:
    return df[df[features.LABEL] == 1]


def test_calibration_file_is_what_the_sample_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    # One source of truth: the committed file is exactly scripts/calibrate_generator.py's output.
    monkeypatch.chdir(ROOT)
    assert json.loads(CALIBRATION_FILE.read_text()) == calibrate_file()


def test_normal_marginals_match_the_real_normals(large: pd.DataFrame, real: pd.DataFrame) -> None:
    from scipy.stats import ks_2samp

    gen, ref = _normals(large), _normals(real)
    ks = {c: ks_2samp(gen[c], ref[c]).statistic for c in [*V, features.AMOUNT]}
    # Bound: two random halves of the real normals (7,168 rows each) are up to 0.027 apart in
    # KS (Amount; 0.018 for the V's), and sampling alone between 57k generated and 14k real rows
    # gives ~0.015 at most over 29 features. Measured: V's 0.003-0.009, Amount 0.025 (real
    # amounts sit on price points, 1.00, 9.99, which the interpolated quantile function spreads).
    # For scale, the first and second halves of the real sample in time differ by 0.04-0.18.
    assert max(ks.values()) <= 0.03, ks
    assert np.mean([ks[c] for c in V]) <= 0.01, ks
    assert np.allclose(gen[V].std(), ref[V].std(), rtol=0.1)
    assert abs(gen[features.AMOUNT].median() / ref[features.AMOUNT].median() - 1) < 0.1
    assert gen[features.AMOUNT].min() >= 0


def test_v_features_are_uncorrelated(large: pd.DataFrame) -> None:
    corr = np.corrcoef(_normals(large)[V].to_numpy(), rowvar=False)
    off = np.abs(corr[np.triu_indices(len(V), 1)])
    # The real V's are PCA components: exactly uncorrelated over the full file. (This sample's
    # normals reach 0.50, V12-V14, from its time mix: its first 4 hours are 2/3 of it; its uniform
    # part over both days has median |r| 0.024.) Measured here: max 0.038, median 0.006;
    # the standard error of one r over 57k rows is ~0.004, heavy tails make it noisier.
    assert off.max() < 0.08, off.max()
    assert np.median(off) < 0.015


def test_extremes_co_occur_in_a_row_as_in_the_real_normals(large: pd.DataFrame, real: pd.DataFrame) -> None:
    from scipy.special import ndtri
    from scipy.stats import rankdata

    def rows_with_three_extremes(df: pd.DataFrame) -> float:
        v = _normals(df)[V].to_numpy()
        scores = ndtri((np.apply_along_axis(rankdata, 0, v) - 0.5) / len(v))
        return float(((np.abs(scores) > ndtri(0.99)).sum(axis=1) >= 3).mean())

    # Real: 5.3% of normal rows have >= 3 of 28 features outside their central 98%; independent
    # features would give 1.6%. The t copula's one parameter is fitted to the count's variance.
    gen, ref = rows_with_three_extremes(large), rows_with_three_extremes(real)
    assert 0.7 * ref < gen < 1.4 * ref, (gen, ref)


def test_amount_follows_the_same_features_as_the_real_one(large: pd.DataFrame, real: pd.DataFrame) -> None:
    def corr(df: pd.DataFrame, name: str) -> float:
        normal = _normals(df)
        return float(np.corrcoef(normal[name], np.log1p(normal[features.AMOUNT]))[0, 1])

    # Real: V2 -0.44, V5 -0.29, V6 0.16, V20 0.13. (The raw-Amount correlation with V7, 0.39 in
    # the real sample, lives in a few huge amounts: the copula does not reproduce it.)
    for name in ("V2", "V5", "V6", "V20"):
        assert abs(corr(large, name) - corr(real, name)) < 0.08, name


def test_frauds_are_shifted_where_real_frauds_are(large: pd.DataFrame, real: pd.DataFrame) -> None:
    def shift(df: pd.DataFrame, name: str) -> float:
        normal, fraud = _normals(df)[name], _frauds(df)[name]
        return float((fraud.mean() - normal.mean()) / normal.std())

    # The real frauds' most discriminating features (mean shift in normal stds: V14 -8.8, V12 -6.0,
    # V17 -5.9, V10 -5.4, V3 -4.9, V11 +4.4, V16 -4.2, V4 +3.4). The generated frauds copy real
    # ones per burst, so the shift varies with which ones were drawn: within a factor 1.6.
    for name in ("V14", "V12", "V17", "V10", "V3", "V11", "V16", "V4"):
        gen, ref = shift(large, name), shift(real, name)
        assert np.sign(gen) == np.sign(ref) and abs(ref) / 1.6 < abs(gen) < abs(ref) * 1.6, (name, gen, ref)
    # Many small test charges among fraud amounts (real: 3/4 of them are at most 1.00).
    assert (_frauds(large)[features.AMOUNT] < 3).mean() > 0.5


def _baselines(df: pd.DataFrame) -> dict[str, float]:
    """Test PR-AUC of PCA reconstruction error (components chosen on validation) and Isolation Forest.

    The trainer's split (trainer/split.py): time order, normals 60/20/20, frauds 50/50
    validation/test; min-max scaling (log1p Amount) fitted on the training normals, no clipping.
    """
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import average_precision_score

    ordered = df.sort_values(features.TIME, kind="mergesort")
    normal, fraud = _normals(ordered), _frauds(ordered)
    a, b, f = round(len(normal) * 0.6), round(len(normal) * 0.8), round(len(fraud) * 0.5)
    parts = [
        normal.iloc[:a],
        pd.concat([normal.iloc[a:b], fraud.iloc[:f]]),
        pd.concat([normal.iloc[b:], fraud.iloc[f:]]),
    ]
    x_train, x_val, x_test = (np.column_stack([p[V], np.log1p(p[features.AMOUNT])]) for p in parts)
    y_val, y_test = (p[features.LABEL].to_numpy() for p in parts[1:])
    low, span = x_train.min(axis=0), np.ptp(x_train, axis=0)
    x_train, x_val, x_test = ((x - low) / span for x in (x_train, x_val, x_test))

    best = (-1.0, 0.0)  # (validation, test) PR-AUC of the component count best on validation
    for k in (5, 10, 15, 20, 25):
        pca = PCA(n_components=k, random_state=0).fit(x_train)

        def error(x: np.ndarray, pca: PCA = pca) -> np.ndarray:
            return np.mean(np.square(pca.inverse_transform(pca.transform(x)) - x), axis=1)

        best = max(best, (average_precision_score(y_val, error(x_val)), average_precision_score(y_test, error(x_test))))
    forest = [
        average_precision_score(y_test, -IsolationForest(random_state=s).fit(x_train).score_samples(x_test))
        for s in range(3)
    ]
    return {"pca": best[1], "isolation_forest": float(np.mean(forest))}


def test_baselines_rank_the_same_on_generated_and_real_data(real: pd.DataFrame) -> None:
    # Measured test PR-AUC, real sample (21 test frauds): PCA (25 components chosen) 0.855,
    # Isolation Forest 0.40 (0.33-0.48 over 3 seeds); PCA also wins on shuffled time orders
    # (0.81-0.92 vs 0.33-0.43), so the order is the data's, not its time drift's. Generated
    # (30k rows, 75 test frauds), seeds 0-4: PCA 0.95 / 0.87 / 0.80 / 0.83 / 0.90, Isolation
    # Forest 0.83 / 0.62 / 0.72 / 0.52 / 0.74. With independent features Isolation Forest would
    # tie or win (seed 0: 0.98-1.0 vs PCA 0.98): what it stumbles on, in real data and here, is
    # the co-occurrence of extremes in normal rows.
    on_real = _baselines(real)
    on_generated = _baselines(generate_frame(30_000, fraud_rate=0.005, seed=0))
    assert on_real["pca"] > on_real["isolation_forest"], on_real
    assert on_generated["pca"] > on_generated["isolation_forest"], on_generated


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
