"""Reading training CSVs: columns by name, bad rows dropped and counted, clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudscore import features
from tests.unit.csv_forms import BAD_CASES, assert_one_line_naming, bad_archives, write_forms
from trainer.config import DataError
from trainer.data import ROW_SHAPE, load_csv

REAL_SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "creditcard-real-dev.csv.gz"


def frame(rows: int = 50, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {features.TIME: np.arange(rows, dtype=float)}
    for name in features.MODEL_FEATURES:
        data[name] = rng.normal(size=rows).round(4)
    data[features.LABEL] = (np.arange(rows) % 10 == 0).astype(int)
    return pd.DataFrame(data)


def test_columns_by_name_in_any_order_extras_ignored(tmp_path: Path) -> None:
    df = frame()
    shuffled = df[list(reversed(df.columns))].assign(card_id="c1", note="x")
    path = tmp_path / "t.csv"
    shuffled.to_csv(path, index=False)
    loaded = load_csv(path)
    assert list(loaded.frame.columns) == [features.TIME, *features.MODEL_FEATURES, features.LABEL]
    assert loaded.has_labels and loaded.bad_rows == 0 and loaded.rows_read == len(df)
    np.testing.assert_allclose(loaded.frame["V3"].to_numpy(), df["V3"].to_numpy(), rtol=1e-6)
    assert loaded.frame["V3"].dtype == np.float32
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_missing_columns_named_in_one_error(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    frame().drop(columns=["V3", "Amount", "Time"]).to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        load_csv(path)
    message = str(err.value)
    assert "missing required columns" in message
    for name in ("V3", "Amount", "Time"):
        assert name in message.split("(the file has")[0]


def test_label_free_file(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    frame().drop(columns=[features.LABEL]).to_csv(path, index=False)
    loaded = load_csv(path)
    assert not loaded.has_labels
    assert features.LABEL not in loaded.frame.columns


def test_bad_rows_dropped_and_counted(tmp_path: Path) -> None:
    df = frame(200).astype({"V2": object, "Amount": object, "Class": object})
    df.loc[3, "V2"] = "abc"  # not a number
    df.loc[5, "Amount"] = ""  # empty
    df.loc[7, "V2"] = "inf"  # non-finite
    df.loc[9, "Amount"] = "1e300"  # finite as float64, inf as the model's float32
    df.loc[11, "Class"] = 2  # not a label
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    with open(path, "a") as f:
        f.write("1,2,3\n")  # wrong number of fields
    loaded = load_csv(path, max_bad_fraction=0.05)
    assert loaded.rows_read == 201
    assert loaded.bad_rows == 6
    assert len(loaded.frame) == 195
    assert loaded.bad_by_column == {"V2": 2, "Amount": 2, "Class": 1, ROW_SHAPE: 1}
    assert np.isfinite(loaded.frame[list(features.MODEL_FEATURES)].to_numpy()).all()
    assert any("V2" in e for e in loaded.bad_examples)


def test_too_many_bad_rows_fail_with_the_count(tmp_path: Path) -> None:
    df = frame(100).astype({"V5": object})
    df.loc[:4, "V5"] = "n/a"
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"5 of 100 rows are bad") as err:
        load_csv(path, max_bad_fraction=0.01)
    assert "V5" in str(err.value)
    assert len(load_csv(path, max_bad_fraction=0.05).frame) == 95


def test_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        load_csv(tmp_path / "absent.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty file"):
        load_csv(empty)


def test_kaggle_quoting(tmp_path: Path) -> None:
    # Kaggle's creditcard.csv quotes the header names and the Class values ("0").
    df = frame(30)
    path = tmp_path / "creditcard.csv"
    lines = [",".join(f'"{c}"' for c in df.columns)]
    for row in df.itertuples(index=False):
        *values, label = row
        lines.append(",".join(repr(float(v)) for v in values) + f',"{label}"')
    path.write_text("\n".join(lines) + "\n")
    loaded = load_csv(path)
    assert loaded.bad_rows == 0 and len(loaded.frame) == 30
    assert loaded.frame[features.LABEL].tolist() == df[features.LABEL].tolist()


def test_csv_gz_and_zip_give_the_same_frame_and_hash_the_file_as_given(tmp_path: Path) -> None:
    plain = tmp_path / "t.csv"
    frame(80).to_csv(plain, index=False)
    forms = write_forms(plain)
    expected = load_csv(plain).frame
    for path in forms[1:]:
        loaded = load_csv(path)
        pd.testing.assert_frame_equal(loaded.frame, expected)
        assert loaded.has_labels and loaded.rows_read == 80
        assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("case", BAD_CASES)
def test_unreadable_archive_is_a_one_line_data_error(tmp_path: Path, case: str) -> None:
    path, reason = bad_archives(tmp_path, frame(20).to_csv(index=False).encode())[case]
    with pytest.raises(DataError) as err:
        load_csv(path)
    assert_one_line_naming(str(err.value), path, reason)


def test_shipped_real_sample_loads_from_gzip() -> None:
    loaded = load_csv(REAL_SAMPLE)
    assert (loaded.rows_read, len(loaded.frame), loaded.bad_rows) == (14_380, 14_380, 0)
    assert int(loaded.frame[features.LABEL].sum()) == 43
