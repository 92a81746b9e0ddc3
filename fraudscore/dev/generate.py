"""Synthetic card transactions that behave like the real ones, in the Kaggle creditcard.csv schema.

Kaggle's creditcard.csv cannot be downloaded here, so this module makes a
stand-in with the same columns (Time, V1..V28, Amount, Class) plus the
card_id and merchant_id the streaming job windows on. Its distribution is
calibrated on the shipped real sample (:data:`SAMPLE`, 14,380 rows of the
ULB / Worldline data, 43 frauds): different seeds are different draws of one
distribution, so one can train on seed 0 and test on seed 1.

How the data is made, and why:

* **Normal V1..V28** are drawn from the real normals' per-feature marginals:
  each feature is its empirical quantile function, read at a standard-normal
  score (linear between 81 knots evenly spaced in score, the outer knots being
  the sample's min and max; beyond them the tail continues with the slope from
  score 3 to the last knot, so a 284,807-row file reaches a little past the
  sample's extremes, as a bigger real file would).
* The scores of one row are a **t copula with identity correlation**:
  independent Gaussians times one random scale per row. So the features are
  uncorrelated and full rank, like the real V's (PCA components of the
  confidential features), but not independent: a row extreme in one feature is
  often extreme in several, as in the real normals (5.3% of them have >= 3 of
  28 features outside their central 98%, against 1.6% if independent). The
  copula's degrees of freedom (7.2) are fitted to that: the variance across
  rows of the number of such extreme features. This is what makes Isolation
  Forest stumble on real data (independent features would make it look far
  better than PCA; on the real sample it is far worse). The sample's own V
  correlations, up to 0.50 between V12 and V14, come from its time mix (two
  thirds of it is the first four hours; its uniform part over both days has a
  median |r| of 0.02, and the full file is exactly uncorrelated by construction).
* **Amount** is its own empirical quantile function read at a score that
  joins the same copula: its correlation with each V's score is the real one
  (V2 -0.48, V5 -0.34, V6 0.20, V20 0.18, ...), and each card has a spending
  habit (:data:`CARD_AMOUNT_SHARE` of the score's variance). The real
  raw-Amount correlation with V7 (0.39) lives only in a few huge amounts and is
  not reproduced.
* **Frauds** are the real frauds, jittered: each burst picks one real fraud as
  its pattern, and each of its transactions is that fraud's V1..V28 plus
  Gaussian noise of :data:`FRAUD_JITTER` times each feature's normal standard
  deviation, and its amount times a log-normal factor (many real fraud amounts
  are 1.00 test charges). So the shifts (V14, V12, V17, V10 down; V11, V4 up;
  ...) and their co-occurrence are the real ones. Frauds arrive in bursts of
  1-6 transactions on one card within 10 minutes.
* Time spans two days with a day/night intensity cycle; card and merchant ids
  are skewed (a few busy cards and merchants): the per-card rules need them,
  and the real sample has none.

The calibration (quantile knots, the copula's degrees of freedom, Amount's
correlations, the real fraud rows) lives in ``generate_calibration.json`` beside this module, written by
``python scripts/calibrate_generator.py`` from :data:`SAMPLE` with
:func:`calibrate`; a unit test checks that the file is exactly what
:func:`calibrate` computes from the sample, so the sample stays the one source
of truth. Why a file and not the sample at generation time (which would take
~50 ms): the generator must work where the sample is not, e.g. an installed
package or the Docker image, which copies only the Python packages (the
file is package data, declared in pyproject.toml).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from fraudscore import features

if TYPE_CHECKING:  # pandas is imported where used: `fraudscore --help` stays fast
    import pandas as pd

DEFAULT_ROWS = 284_807
DEFAULT_FRAUD_RATE = 0.00172
DURATION_S = 172_800  # two days, like the Kaggle file
BURST_WINDOW_S = 600
# Relative day/night swing of the transaction rate; frauds follow the clock
# less, so they are relatively more frequent at night, as in the real file.
DAY_NIGHT_SWING = 0.75
FRAUD_DAY_NIGHT_SWING = 0.3
MAX_CARDS = 5_000
MAX_MERCHANTS = 1_000
V_DECIMALS = 6  # V values keep 6 decimals: short text, exact round trip through CSV

# The real sample the generator is calibrated on (relative to the repository root) and the calibration file.
SAMPLE = Path("samples/creditcard-real-dev.csv.gz")
CALIBRATION_FILE = Path(__file__).with_name("generate_calibration.json")
SCORE_KNOTS = 81  # quantile knots per feature, evenly spaced in standard-normal score
TAIL_SCORE = 3.0  # beyond the outer knots the tail continues with the slope from this score on
SIGNIFICANT_DIGITS = 7  # of the numbers in the calibration file
EXTREME_SHARE = 0.02  # a feature is "extreme" in a row outside its central 98%
MAX_TAIL_DOF = 1_000.0  # t copula degrees of freedom at which the copula counts as Gaussian

# Share of Amount's score variance that is the card's spending habit.
CARD_AMOUNT_SHARE = 0.15
# Frauds: per-feature Gaussian jitter around the real fraud they copy, in units of
# the feature's normal standard deviation, and the log-normal sigma of their amount.
# Two transactions of a burst are then 0.35 apart (RMS over the V's); each real
# fraud's nearest other real fraud is at median 0.5, and 8 of 43 have an exact twin.
FRAUD_JITTER = 0.25
FRAUD_AMOUNT_JITTER = 0.1

BURST_SIZES = np.arange(1, 7)
BURST_SIZE_P = np.array([0.35, 0.25, 0.15, 0.12, 0.08, 0.05])

_COLUMNS = features.MODEL_FEATURES  # one generated column per row of the feature table
_N_V = len(features.PCA_FEATURES)


# ---- calibration -------------------------------------------------------------


def _round(values: Any) -> list[float]:
    return [float(f"{v:.{SIGNIFICANT_DIGITS}g}") for v in np.asarray(values, dtype=np.float64)]


def _normal_scores(x: np.ndarray) -> np.ndarray:
    """Standard-normal scores of the (average) ranks."""
    from scipy.special import ndtri
    from scipy.stats import rankdata

    return np.asarray(ndtri((rankdata(x) - 0.5) / len(x)))


def _extremes_per_row_variance(dof: float, dims: int) -> float:
    """Variance of the number of a row's ``dims`` features outside their central 98% under a ``dof`` t copula.

    Given the row's shared scale W, each feature is outside independently with
    probability p(W), so the count is Binomial(dims, p(W)) mixed over W
    (integrated on 4,000 quantiles of the chi-square that makes W).
    """
    from scipy.special import chdtri, ndtr, stdtrit

    cut = stdtrit(dof, 1.0 - EXTREME_SHARE / 2)
    chi2 = chdtri(dof, (np.arange(4_000) + 0.5) / 4_000)  # upper quantiles; the order does not matter
    p = 2.0 * ndtr(-cut * np.sqrt(chi2 / dof))
    return float(dims * np.mean(p * (1 - p)) + dims**2 * np.var(p))


def _tail_dof(v: np.ndarray) -> float:
    """Degrees of freedom of the t copula whose rows have the real ones' co-occurrence of extremes.

    Real normals are uncorrelated but not independent: a row extreme in one
    feature is often extreme in several (huge amounts, unusual merchants). The
    statistic is the variance, across rows, of the number of features outside
    their central 98% (0.55 if independent); a t copula with identity
    correlation keeps the features uncorrelated and matches it with one number.
    """
    from scipy.optimize import brentq
    from scipy.special import ndtri

    scores = np.column_stack([_normal_scores(column) for column in v.T])
    target = float((np.abs(scores) > ndtri(1.0 - EXTREME_SHARE / 2)).sum(axis=1).var())
    dims = v.shape[1]
    if target <= _extremes_per_row_variance(MAX_TAIL_DOF, dims):
        return MAX_TAIL_DOF
    return float(brentq(lambda dof: _extremes_per_row_variance(dof, dims) - target, 1.0, MAX_TAIL_DOF, xtol=1e-6))


def calibrate(frame: pd.DataFrame, *, source: str = str(SAMPLE), sha256: str = "") -> dict[str, Any]:
    """The generator's calibration from a real labelled frame (Kaggle columns), as JSON-ready numbers."""
    from scipy.special import ndtr, ndtri

    is_fraud = frame[features.LABEL].to_numpy() == 1
    normals, frauds = frame.loc[~is_fraud], frame.loc[is_fraud]
    n = len(normals)
    end = float(ndtri(1.0 - 0.5 / n))  # the score of the largest of n values (Hazen plotting position)
    scores = np.linspace(-end, end, SCORE_KNOTS)
    probabilities = ndtr(scores)
    quantiles = {c: _round(np.quantile(normals[c].to_numpy(), probabilities, method="hazen")) for c in _COLUMNS}
    amount_score = _normal_scores(normals[features.AMOUNT].to_numpy())
    amount_corr = {
        v: _round([np.corrcoef(amount_score, _normal_scores(normals[v].to_numpy()))[0, 1]])[0]
        for v in features.PCA_FEATURES
    }
    return {
        "tail_dof": _round([_tail_dof(normals[list(features.PCA_FEATURES)].to_numpy())])[0],
        "source": source,
        "sha256": sha256,
        "normals": n,
        "frauds": len(frauds),
        "scores": _round(scores),
        "quantiles": quantiles,
        "normal_std": {v: _round([normals[v].std()])[0] for v in features.PCA_FEATURES},
        "amount_score_correlation": amount_corr,
        "fraud_rows": {c: _round(frauds[c].to_numpy()) for c in _COLUMNS},
    }


def calibrate_file(path: Path = SAMPLE) -> dict[str, Any]:
    import pandas as pd

    data = path.read_bytes()
    frame = pd.read_csv(path)
    return calibrate(frame, source=path.as_posix(), sha256=hashlib.sha256(data).hexdigest())


def write_calibration(calibration: dict[str, Any], path: Path = CALIBRATION_FILE) -> None:
    """One key per line, one feature's numbers per line: a readable, diffable file."""
    lines = []
    for key, value in calibration.items():
        if isinstance(value, dict):
            inner = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
            lines.append(f"  {json.dumps(key)}: {{\n{inner}\n  }}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n")


@dataclass(frozen=True)
class _Calibration:
    scores: np.ndarray  # (knots,)
    quantiles: np.ndarray  # (knots, 29): V1..V28, Amount
    tail_slopes: np.ndarray  # (2, 29): below the first knot, above the last
    normal_std: np.ndarray  # (28,)
    amount_loadings: np.ndarray  # (28,) Amount score on the independent V scores
    fraud_rows: np.ndarray  # (real frauds, 29)
    tail_dof: float  # of the t copula of the normals' scores


@lru_cache(maxsize=1)
def _calibration() -> _Calibration:
    raw = json.loads(CALIBRATION_FILE.read_text())
    scores = np.array(raw["scores"])
    quantiles = np.column_stack([raw["quantiles"][c] for c in _COLUMNS])
    k = int(np.searchsorted(scores, TAIL_SCORE))
    low = (quantiles[-k - 1] - quantiles[0]) / (scores[-k - 1] - scores[0])
    high = (quantiles[-1] - quantiles[k]) / (scores[-1] - scores[k])
    loadings = np.array([raw["amount_score_correlation"][v] for v in features.PCA_FEATURES])
    if loadings @ loadings + CARD_AMOUNT_SHARE >= 1.0:
        raise ValueError(f"{CALIBRATION_FILE}: Amount's correlations leave no room for its own noise")
    return _Calibration(
        scores=scores,
        quantiles=quantiles,
        tail_slopes=np.vstack([low, high]),
        normal_std=np.array([raw["normal_std"][v] for v in features.PCA_FEATURES]),
        amount_loadings=loadings,
        fraud_rows=np.column_stack([raw["fraud_rows"][c] for c in _COLUMNS]),
        tail_dof=float(raw["tail_dof"]),
    )


def _quantile(cal: _Calibration, column: int, z: np.ndarray) -> np.ndarray:
    """Feature ``column``'s empirical quantile function at standard-normal scores ``z``, tails extended."""
    s, q = cal.scores, cal.quantiles[:, column]
    out = np.interp(z, s, q)
    below, above = z < s[0], z > s[-1]
    out[below] = q[0] + (z[below] - s[0]) * cal.tail_slopes[0, column]
    out[above] = q[-1] + (z[above] - s[-1]) * cal.tail_slopes[1, column]
    return out


# ---- generation --------------------------------------------------------------


def _normals(rng: np.random.Generator, card_habit: np.ndarray, cal: _Calibration) -> tuple[np.ndarray, np.ndarray]:
    """V1..V28 and Amount of normal transactions; ``card_habit`` is each row's card score (standard normal).

    The scores are a t copula: independent Gaussians times one scale per row
    (so extremes co-occur in a row, as in the real data, while the features
    stay uncorrelated), mapped to standard-normal scores for the quantile functions.
    """
    from scipy.special import ndtri, stdtr

    n = len(card_habit)
    g = rng.standard_normal((n, _N_V))
    own = 1.0 - cal.amount_loadings @ cal.amount_loadings - CARD_AMOUNT_SHARE
    amount_g = g @ cal.amount_loadings + np.sqrt(CARD_AMOUNT_SHARE) * card_habit
    amount_g += np.sqrt(own) * rng.standard_normal(n)
    scale = np.sqrt(cal.tail_dof / rng.chisquare(cal.tail_dof, size=n))
    z = ndtri(stdtr(cal.tail_dof, np.column_stack([g, amount_g]) * scale[:, None]))
    v = np.column_stack([_quantile(cal, i, z[:, i]) for i in range(_N_V)])
    amount = _quantile(cal, _N_V, z[:, _N_V]).clip(min=0.0)
    return v, amount


def _frauds(rng: np.random.Generator, burst: np.ndarray, cal: _Calibration) -> tuple[np.ndarray, np.ndarray]:
    """V1..V28 and Amount of frauds: each burst copies one real fraud, each transaction jittered."""
    template = cal.fraud_rows[rng.integers(0, len(cal.fraud_rows), size=int(burst.max(initial=-1)) + 1)][burst]
    v = template[:, :_N_V] + FRAUD_JITTER * cal.normal_std * rng.standard_normal((len(burst), _N_V))
    amount = template[:, _N_V] * np.exp(FRAUD_AMOUNT_JITTER * rng.standard_normal(len(burst)))
    return v, amount


def _times(rng: np.random.Generator, n: int, swing: float = DAY_NIGHT_SWING) -> np.ndarray:
    """Whole seconds in [0, DURATION_S) from a day/night intensity cycle.

    Activity peaks around 14:00 and, with the default swing, is ~7x lower
    around 02:00 (Time 0 is midnight), like the real file's hourly counts.
    """
    grid = np.linspace(0.0, DURATION_S, 4_097)
    intensity = 1.0 + swing * np.cos(2 * np.pi * (grid - 14 * 3600) / 86_400)
    cdf = np.concatenate([[0.0], np.cumsum((intensity[1:] + intensity[:-1]) / 2)])
    cdf /= cdf[-1]
    return np.floor(np.interp(rng.random(n), cdf, grid)).clip(0, DURATION_S - 1)


def _skewed_weights(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    w = np.exp(rng.normal(0.0, sigma, size=n))
    return w / w.sum()


def _burst_sizes(rng: np.random.Generator, total: int) -> np.ndarray:
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    sizes = rng.choice(BURST_SIZES, size=total, p=BURST_SIZE_P)
    sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), total)) + 1]
    sizes[-1] -= sizes.sum() - total
    return sizes[sizes > 0]


def default_cards(rows: int) -> int:
    """A few thousand cards for the full-size file, ~40 transactions each."""
    return int(min(MAX_CARDS, max(1, rows // 40)))


def default_merchants(rows: int) -> int:
    return int(min(MAX_MERCHANTS, max(1, rows // 200)))


def generate_frame(
    rows: int,
    fraud_rate: float = DEFAULT_FRAUD_RATE,
    seed: int = 0,
    *,
    cards: int | None = None,
    merchants: int | None = None,
) -> pd.DataFrame:
    """Synthetic transactions sorted by Time, columns Kaggle's plus card_id, merchant_id.

    Exactly ``round(rows * fraud_rate)`` rows are frauds (Class 1). The same
    arguments always give the same frame.
    """
    import pandas as pd

    _check(rows, fraud_rate, cards, merchants)
    n_cards = default_cards(rows) if cards is None else cards
    n_merchants = default_merchants(rows) if merchants is None else merchants
    cal = _calibration()
    rng = np.random.default_rng(seed)
    n_fraud = round(rows * fraud_rate)
    n_normal = rows - n_fraud

    card_weights = _skewed_weights(rng, n_cards, 1.0)
    card_habit = rng.standard_normal(n_cards)  # spending habit, as a score
    merchant_weights = _skewed_weights(rng, n_merchants, 1.2)

    # Normal transactions.
    card = rng.choice(n_cards, size=n_normal, p=card_weights)
    v, amount = _normals(rng, card_habit[card], cal)
    t = _times(rng, n_normal)

    # Frauds, in bursts on one card within BURST_WINDOW_S.
    sizes = _burst_sizes(rng, n_fraud)
    burst = np.repeat(np.arange(len(sizes)), sizes)
    burst_card = rng.integers(0, n_cards, size=len(sizes))
    burst_start = _times(rng, len(sizes), FRAUD_DAY_NIGHT_SWING)
    offsets = rng.uniform(0, BURST_WINDOW_S, size=n_fraud)
    offsets[np.cumsum(sizes) - sizes] = 0.0  # each burst starts at its start time
    fraud_t = np.floor(np.minimum(burst_start[burst] + offsets, DURATION_S - 1))
    fraud_v, fraud_amount = _frauds(rng, burst, cal)

    columns: dict[str, np.ndarray] = {features.TIME: np.concatenate([t, fraud_t])}
    all_v = np.round(np.concatenate([v, fraud_v]), V_DECIMALS)
    for i, name in enumerate(features.PCA_FEATURES):
        columns[name] = all_v[:, i]
    columns[features.AMOUNT] = np.round(np.concatenate([amount, fraud_amount]), 2)
    columns[features.LABEL] = np.concatenate([np.zeros(n_normal, np.int64), np.ones(n_fraud, np.int64)])
    card_names = np.array([f"card-{i:06d}" for i in range(n_cards)], dtype=object)
    merchant_names = np.array([f"m-{i:04d}" for i in range(n_merchants)], dtype=object)
    columns[features.CARD_ID] = card_names[np.concatenate([card, burst_card[burst]])]
    columns[features.MERCHANT_ID] = merchant_names[rng.choice(n_merchants, size=rows, p=merchant_weights)]
    frame = pd.DataFrame(columns)
    # Sort by Time with random tie-breaks, so row order within a second says nothing about Class.
    order = np.lexsort((rng.random(rows), frame[features.TIME].to_numpy()))
    return frame.iloc[order].reset_index(drop=True)


def _check(rows: int, fraud_rate: float, cards: int | None, merchants: int | None) -> None:
    if rows <= 0:
        raise ValueError(f"rows: must be > 0, got {rows}")
    if not 0.0 <= fraud_rate < 0.5:
        raise ValueError(f"fraud_rate: must be in [0, 0.5), got {fraud_rate}")
    if cards is not None and cards <= 0:
        raise ValueError(f"cards: must be > 0, got {cards}")
    if merchants is not None and merchants <= 0:
        raise ValueError(f"merchants: must be > 0, got {merchants}")


def write_csv(
    frame: pd.DataFrame, path: str | Path | IO[bytes], *, chunk_rows: int = 50_000, progress: bool = False
) -> None:
    """Writes ``frame`` as CSV with a header, every float in its shortest exact form.

    ``path`` may be a file name or a binary file object (e.g. ``sys.stdout.buffer``).
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from tqdm import tqdm

    options = pacsv.WriteOptions(include_header=True, quoting_style="needed")
    first = pa.Table.from_pandas(frame.iloc[:0], preserve_index=False)
    with _open_binary(path) as sink, pacsv.CSVWriter(sink, first.schema, write_options=options) as writer:
        bar = tqdm(total=len(frame), unit="rows", desc="write", disable=not progress, file=sys.stderr)
        for start in range(0, len(frame), chunk_rows):
            chunk = frame.iloc[start : start + chunk_rows]
            writer.write_table(pa.Table.from_pandas(chunk, schema=first.schema, preserve_index=False))
            bar.update(len(chunk))
        bar.close()


@contextmanager
def _open_binary(path: str | Path | IO[bytes]) -> Iterator[IO[bytes]]:
    if isinstance(path, (str, Path)):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            yield f
    else:
        yield path


# ---- CLI -------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rows", type=int, default=DEFAULT_ROWS, help=f"number of transactions (default {DEFAULT_ROWS:,})"
    )
    parser.add_argument(
        "--fraud-rate",
        type=float,
        default=DEFAULT_FRAUD_RATE,
        help=f"share of frauds, in [0, 0.5) (default {DEFAULT_FRAUD_RATE}, as in the Kaggle file)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same file")
    parser.add_argument("--cards", type=int, default=None, help="number of cards (default rows/40, at most 5,000)")
    parser.add_argument(
        "--merchants", type=int, default=None, help="number of merchants (default rows/200, at most 1,000)"
    )
    parser.add_argument("--out", required=True, help="output CSV path, or - for standard output")


def main(args: argparse.Namespace) -> int:
    try:
        _check(args.rows, args.fraud_rate, args.cards, args.merchants)
    except ValueError as exc:
        print(f"fraudscore generate: error: --{str(exc).replace('_', '-')}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    frame = generate_frame(args.rows, args.fraud_rate, args.seed, cards=args.cards, merchants=args.merchants)
    to_stdout = args.out == "-"
    try:
        write_csv(frame, sys.stdout.buffer if to_stdout else args.out, progress=True)
    except OSError as exc:
        print(f"fraudscore generate: error: --out: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    summary = (
        f"wrote {len(frame):,} rows, {int(frame[features.LABEL].sum()):,} frauds, "
        f"{frame[features.CARD_ID].nunique():,} cards in {seconds:.1f} s to {args.out}"
    )
    print(summary, file=sys.stderr if to_stdout else sys.stdout)
    return 0
