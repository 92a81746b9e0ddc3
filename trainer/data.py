"""Reading a transactions CSV for training: Kaggle's creditcard.csv or the generator's output.

The file may be plain, gzip-compressed (``.csv.gz``) or Kaggle's ``.zip``
download (see :mod:`fraudscore.csvfiles`); its fingerprint is the hash of the
file as given.

Columns are taken by header name, in any order; extra columns are ignored.
A row that cannot be used (wrong number of fields, a value that is not a
number, a non-finite value, a Class other than 0/1) is dropped and counted;
if more than ``max_bad_fraction`` of the rows are bad, the file is refused.
Class is optional: without it the trainer works label-free.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fraudscore import csvfiles, features
from trainer.config import DataError

if TYPE_CHECKING:
    import pandas as pd

ROW_SHAPE = "<row shape>"  # reason key for rows with the wrong number of fields
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class LoadedData:
    """The usable rows (Time and model features float, Class int8 if present) and what was dropped."""

    frame: pd.DataFrame
    has_labels: bool
    path: Path
    sha256: str
    rows_read: int
    bad_rows: int
    bad_by_column: dict[str, int] = field(default_factory=dict)
    bad_examples: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "rows_read": self.rows_read,
            "rows_used": len(self.frame),
            "bad_rows": self.bad_rows,
            "bad_by_column": self.bad_by_column,
            "bad_examples": list(self.bad_examples),
            "has_labels": self.has_labels,
        }


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_header(path: Path) -> list[str]:
    try:
        with csvfiles.open_text(path) as f:
            header = next(csv.reader(f), None)
    except csvfiles.CsvFileError as exc:
        raise DataError(str(exc)) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: the header is not UTF-8 text; expected a CSV file") from None
    if not header:
        raise DataError(f"{path}: empty file; expected a CSV with a header row")
    return [name.strip() for name in header]


def load_csv(
    path: Path, model_features: Sequence[str] = features.MODEL_FEATURES, max_bad_fraction: float = 0.01
) -> LoadedData:
    """Reads ``path``; raises :class:`DataError` for missing columns or too many bad rows."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    header = read_header(path)
    required = [features.TIME, *model_features]
    missing = [name for name in required if name not in header]
    if missing:
        raise DataError(
            f"{path}: missing required column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(the file has: {', '.join(header[:40])}{' ...' if len(header) > 40 else ''})"
        )
    has_labels = features.LABEL in header
    wanted = required + ([features.LABEL] if has_labels else [])

    shape_errors: list[str] = []

    def on_invalid_row(row: Any) -> str:
        if len(shape_errors) < MAX_EXAMPLES:
            shape_errors.append(f"line {row.number}: {row.actual_columns} fields, expected {row.expected_columns}")
        else:
            shape_errors.append("")
        return "skip"

    parse = pacsv.ParseOptions(invalid_row_handler=on_invalid_row)
    read = pacsv.ReadOptions(block_size=16 << 20)

    def read_table(column_type: pa.DataType) -> pa.Table:
        convert = pacsv.ConvertOptions(include_columns=wanted, column_types=dict.fromkeys(wanted, column_type))
        try:
            with csvfiles.open_binary(path) as f:
                return pacsv.read_csv(f, read_options=read, parse_options=parse, convert_options=convert)
        except csvfiles.CsvFileError as exc:
            raise DataError(str(exc)) from None
        except OSError as exc:
            raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None

    try:
        # Fast path: every wanted column parses as a number (or is empty -> null).
        frame = read_table(pa.float64()).to_pandas()
    except pa.ArrowInvalid:
        # Some value is not a number: read text and coerce, so such rows are dropped and counted, not fatal.
        import pandas as pd

        shape_errors.clear()
        frame = read_table(pa.string()).to_pandas()
        for name in wanted:
            frame[name] = pd.to_numeric(frame[name].str.strip(), errors="coerce")
    frame = frame[wanted]
    with np.errstate(over="ignore"):  # what the model sees; 1e300 becomes inf here, then counts as bad
        for name in model_features:
            frame[name] = frame[name].astype(np.float32)

    bad = np.zeros(len(frame), dtype=bool)
    by_column: Counter[str] = Counter()
    examples = [e for e in shape_errors if e]
    for name in wanted:
        values = frame[name].to_numpy()
        col_bad = ~np.isfinite(values)
        if name == features.LABEL:
            col_bad |= ~np.isin(values, (0.0, 1.0))
        if col_bad.any():
            by_column[name] = int(col_bad.sum())
            for i in np.flatnonzero(col_bad & ~bad)[: max(0, MAX_EXAMPLES - len(examples))]:
                # +2: one for the header line, one because lines count from 1 (exact when no row was skipped)
                examples.append(f"row {int(i) + 2}: {name} is {frame[name].iloc[i]!r}")
            bad |= col_bad
    if shape_errors:
        by_column[ROW_SHAPE] = len(shape_errors)
    rows_read = len(frame) + len(shape_errors)
    n_bad = int(bad.sum()) + len(shape_errors)
    if rows_read == 0:
        raise DataError(f"{path}: no data rows after the header")
    if n_bad > max_bad_fraction * rows_read:
        raise DataError(
            f"{path}: {n_bad} of {rows_read} rows are bad ({n_bad / rows_read:.2%} > limit "
            f"{max_bad_fraction:.2%}, see --max-bad-fraction); by column: {dict(by_column)}; e.g. {examples[:3]}"
        )
    frame = frame.loc[~bad].reset_index(drop=True)
    if has_labels:
        frame[features.LABEL] = frame[features.LABEL].astype(np.int8)
    return LoadedData(
        frame=frame,
        has_labels=has_labels,
        path=path,
        sha256=file_sha256(path),
        rows_read=rows_read,
        bad_rows=n_bad,
        bad_by_column=dict(by_column),
        bad_examples=tuple(examples),
    )
