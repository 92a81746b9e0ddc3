"""Synthetic card transactions in the Kaggle creditcard.csv schema.

Kaggle's creditcard.csv cannot be downloaded here, so this module makes a
stand-in with the same columns (Time, V1..V28, Amount, Class) plus the
card_id and merchant_id the streaming job windows on.

How the data is made, and why:

* A fixed "world" (seeded by :data:`WORLD_SEED`, independent of the caller's
  seed) holds everything that defines the distribution: a random nonlinear
  map from a low-dimensional latent space to 28 dimensions, the PCA rotation
  that decorrelates its output, and the fraud pattern. Different seeds are
  therefore different samples of one distribution: train on seed 0, test on
  seed 1.
* Normal V1..V28 are ``tanh``-MLP images of a heavy-tailed (Student-t) latent
  plus heavy-tailed noise, rotated onto their principal axes and scaled to the
  per-feature standard deviations of the real file. Like real PCA components
  they are centred and uncorrelated, but the trailing components are nonlinear
  functions of the leading ones: PCA with few components cannot reconstruct
  them, a small autoencoder can.
* Frauds are normal draws shifted along the directions in which real frauds
  differ most (V14, V12, V10, V17, V4, V11, V3, ...), with a strength that
  varies per burst and per transaction, so weak frauds overlap the normals.
  They arrive in bursts of 1-6 transactions on one card within 10 minutes.
* Amount is log-normal (median ~22, mean ~88) and correlated with V7, V20
  (positively) and V2 (negatively) as in the real data; fraud amounts mix
  small "test" charges with typical and large ones.
* Time spans two days with a day/night intensity cycle.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from fraudscore import features

if TYPE_CHECKING:  # pandas is imported where used: `fraudscore --help` stays fast
    import pandas as pd

DEFAULT_ROWS = 284_807
DEFAULT_FRAUD_RATE = 0.00172
WORLD_SEED = 20_130_901
DURATION_S = 172_800  # two days, like the Kaggle file
BURST_WINDOW_S = 600
# Relative day/night swing of the transaction rate; frauds follow the clock
# less, so they are relatively more frequent at night, as in the real file.
DAY_NIGHT_SWING = 0.75
FRAUD_DAY_NIGHT_SWING = 0.3
MAX_CARDS = 5_000
MAX_MERCHANTS = 1_000
V_DECIMALS = 6  # V values keep 6 decimals: short text, exact round trip through CSV

# Standard deviations of V1..V28 in Kaggle's creditcard.csv (its describe() table).
KAGGLE_V_STD = np.array(
    [
        1.958696, 1.651309, 1.516255, 1.415869, 1.380247, 1.332271, 1.237094, 1.194353, 1.098632, 1.088850,
        1.020713, 0.999201, 0.995274, 0.958596, 0.915316, 0.876253, 0.849337, 0.838176, 0.814041, 0.770925,
        0.734524, 0.725702, 0.624460, 0.605647, 0.521278, 0.482227, 0.403632, 0.330083,
    ]
)  # fmt: skip

# Direction of the fraud shift in units of each feature's std: the features
# whose means differ most between real frauds and normals, with their signs.
FRAUD_PATTERN: dict[str, float] = {
    "V14": -1.0, "V12": -0.9, "V10": -0.85, "V17": -0.9, "V4": 0.85, "V11": 0.8, "V3": -0.75,
    "V16": -0.6, "V7": -0.5, "V2": 0.4, "V1": -0.35, "V9": -0.4, "V18": -0.35, "V5": -0.3,
}  # fmt: skip

# Fraud shift strength per burst ~ Gamma(shape, scale): on average 7.5 stds
# along FRAUD_PATTERN (real frauds' V14 mean is ~7 stds below the normals'),
# with a long weak side that hides among the heavy-tailed normals.
FRAUD_STRENGTH_SHAPE = 2.5
FRAUD_STRENGTH_SCALE = 3.0

# Amount: log-normal-like with the real file's median 22 and mean 88. A pure
# log-normal would need sigma = sqrt(2 ln 4) = 1.67; the V-driven part of
# log(Amount) has lighter shoulders than a Gaussian, so sigma is set a little
# higher (measured: mean 87, quartiles 6 and 69 vs the real 5.6 and 77).
MAX_AMOUNT = 25_691.16  # the real file's largest amount
AMOUNT_LOG_MEDIAN = float(np.log(22.0))
AMOUNT_LOG_SIGMA = 1.8
# On top of that, each card has a spending habit: a log-amount offset.
CARD_AMOUNT_SIGMA = 0.4
# Weights of the standardized V7, V20, V2 in log(Amount).
AMOUNT_LOADINGS: dict[str, float] = {"V7": 0.45, "V20": 0.40, "V2": -0.60}

BURST_SIZES = np.arange(1, 7)
BURST_SIZE_P = np.array([0.35, 0.25, 0.15, 0.12, 0.08, 0.05])

_LATENT_DIM = 6
_LATENT_DF = 4.0
_TAIL_WEIGHT = 0.5
_NOISE = 0.08  # std of the off-manifold noise in raw units (the manifold spans ~0.7)
_HIDDEN = 48
_N_V = len(features.PCA_FEATURES)


@dataclass(frozen=True)
class _World:
    """Everything that defines the distribution; the same for every seed."""

    w1: np.ndarray  # latent -> hidden
    b1: np.ndarray
    w2: np.ndarray  # hidden -> 28
    noise: float
    w3: np.ndarray  # latent -> 28 through softplus: the one-sided, heavy-tailed part
    mean: np.ndarray  # of the raw 28-d output, on a reference sample
    rotation: np.ndarray  # principal axes, by decreasing variance
    scale: np.ndarray  # KAGGLE_V_STD / std along each axis
    fraud_direction: np.ndarray  # in V units
    amount_centre: float = 0.0  # median and std of _amount_signal on the reference sample
    amount_spread: float = 1.0


@lru_cache(maxsize=1)
def _world() -> _World:
    rng = np.random.default_rng(WORLD_SEED)
    # Large input weights make tanh saturate: the manifold is strongly curved.
    w1 = rng.normal(0.0, 1.5, size=(_LATENT_DIM, _HIDDEN))
    b1 = rng.normal(0.0, 0.8, size=_HIDDEN)
    w2 = rng.normal(0.0, 1.0 / np.sqrt(_HIDDEN), size=(_HIDDEN, _N_V))
    w3 = rng.normal(0.0, _TAIL_WEIGHT / np.sqrt(_LATENT_DIM), size=(_LATENT_DIM, _N_V))
    partial = _World(w1, b1, w2, _NOISE, w3, np.zeros(_N_V), np.eye(_N_V), np.ones(_N_V), np.zeros(_N_V))
    raw = _raw_normals(rng, 50_000, partial)
    mean = raw.mean(axis=0)
    eigval, eigvec = np.linalg.eigh(np.cov(raw - mean, rowvar=False))
    order = np.argsort(eigval)[::-1]
    rotation = eigvec[:, order]
    # Fix each axis' sign so the skew is negative, as for most real V's.
    projected = (raw - mean) @ rotation
    rotation = rotation * np.where(((projected - projected.mean(0)) ** 3).mean(0) > 0, -1.0, 1.0)
    scale = KAGGLE_V_STD / np.sqrt(eigval[order])
    direction = np.zeros(_N_V)
    for name, weight in FRAUD_PATTERN.items():
        i = features.PCA_FEATURES.index(name)
        direction[i] = weight * KAGGLE_V_STD[i]
    world = _World(w1, b1, w2, partial.noise, w3, mean, rotation, scale, direction)
    signal = _amount_signal(((raw - mean) @ rotation) * scale)
    return replace(world, amount_centre=float(np.median(signal)), amount_spread=float(signal.std()))


def _raw_normals(rng: np.random.Generator, n: int, world: _World) -> np.ndarray:
    """Points on the curved manifold plus noise, before rotation and scaling."""
    latent = rng.standard_t(_LATENT_DF, size=(n, _LATENT_DIM)) * np.sqrt((_LATENT_DF - 2) / _LATENT_DF)
    out = np.tanh(latent @ world.w1 + world.b1) @ world.w2
    # tanh saturates; softplus of the heavy-tailed latent grows without bound on
    # one side, which gives the V's heavy tails and skew while keeping every
    # normal row a function of its latent (on the manifold).
    out += np.logaddexp(0.0, 1.5 * latent) @ world.w3
    out += world.noise * rng.standard_t(4.0, size=(n, _N_V)) * np.sqrt(0.5)
    return out


def _normals(rng: np.random.Generator, n: int, world: _World) -> np.ndarray:
    """V1..V28 of normal transactions: centred, uncorrelated, real stds."""
    return ((_raw_normals(rng, n, world) - world.mean) @ world.rotation) * world.scale


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


def _amount_signal(v: np.ndarray) -> np.ndarray:
    """The part of log(Amount) that V7, V20 and V2 explain (V's clipped at 4 stds)."""
    signal = np.zeros(len(v))
    for name, loading in AMOUNT_LOADINGS.items():
        i = features.PCA_FEATURES.index(name)
        signal += loading * np.clip(v[:, i] / KAGGLE_V_STD[i], -4, 4)
    return signal


def _amounts(rng: np.random.Generator, v: np.ndarray, card_offset: np.ndarray, world: _World) -> np.ndarray:
    """Log-normal amounts of normal transactions, correlated with V7, V20, V2.

    The V signal is centred and scaled on the world's reference sample so that
    the loadings are the share of log(Amount)'s spread it carries, and the
    median stays ~22 whatever the V's tails look like.
    """
    explained = np.sqrt(sum(w * w for w in AMOUNT_LOADINGS.values()))
    z = (_amount_signal(v) - world.amount_centre) / world.amount_spread * explained
    z += np.sqrt(1.0 - explained**2) * rng.standard_normal(len(v))
    return np.exp(AMOUNT_LOG_MEDIAN + AMOUNT_LOG_SIGMA * z + card_offset).clip(max=MAX_AMOUNT)


def _fraud_amounts(rng: np.random.Generator, n: int) -> np.ndarray:
    """Many small test charges, some typical and some large purchases."""
    kind = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    small = rng.uniform(0.0, 3.0, size=n)
    typical = np.exp(rng.normal(np.log(30.0), 1.0, size=n))
    large = np.exp(rng.normal(np.log(400.0), 0.7, size=n))
    return np.choose(kind, [small, typical, large])


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
    world = _world()
    rng = np.random.default_rng(seed)
    n_fraud = round(rows * fraud_rate)
    n_normal = rows - n_fraud

    card_weights = _skewed_weights(rng, n_cards, 1.0)
    card_offset = rng.normal(0.0, CARD_AMOUNT_SIGMA, size=n_cards)  # spending habit
    merchant_weights = _skewed_weights(rng, n_merchants, 1.2)

    # Normal transactions.
    v = _normals(rng, n_normal, world)
    card = rng.choice(n_cards, size=n_normal, p=card_weights)
    amount = _amounts(rng, v, card_offset[card], world)
    t = _times(rng, n_normal)

    # Frauds, in bursts on one card within BURST_WINDOW_S.
    sizes = _burst_sizes(rng, n_fraud)
    burst = np.repeat(np.arange(len(sizes)), sizes)
    burst_card = rng.integers(0, n_cards, size=len(sizes))
    burst_start = _times(rng, len(sizes), FRAUD_DAY_NIGHT_SWING)
    offsets = rng.uniform(0, BURST_WINDOW_S, size=n_fraud)
    offsets[np.cumsum(sizes) - sizes] = 0.0  # each burst starts at its start time
    fraud_t = np.floor(np.minimum(burst_start[burst] + offsets, DURATION_S - 1))
    # Strength varies per burst (the fraudster's pattern) and per transaction;
    # weak ones sit inside the normal cloud. Frauds are also more dispersed
    # than normals (x1.3), as in the real file.
    burst_strength = rng.gamma(FRAUD_STRENGTH_SHAPE, FRAUD_STRENGTH_SCALE, size=len(sizes))
    strength = burst_strength[burst] * np.exp(rng.normal(0.0, 0.25, size=n_fraud))
    pattern_jitter = np.exp(rng.normal(0.0, 0.35, size=(len(sizes), _N_V)))[burst]
    fraud_v = _normals(rng, n_fraud, world) * 1.3 + strength[:, None] * world.fraud_direction * pattern_jitter
    fraud_amount = _fraud_amounts(rng, n_fraud)

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
