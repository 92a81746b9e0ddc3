"""``fraudscore score --csv``: .csv, .csv.gz and Kaggle's .zip give the same transactions; bad archives, one line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from fraudscore import features
from scorer import client
from tests.unit.csv_forms import BAD_CASES, assert_one_line_naming, bad_archives, write_forms


def _write_csv(path: Path, rows: int) -> Path:
    header = [features.TIME, *features.PCA_FEATURES, features.AMOUNT, features.LABEL]
    lines = [",".join(header)]
    lines += [",".join([str(t), *[f"{(t + j) % 6 - 2.5:g}" for j in range(28)], f"{t}.5", "0"]) for t in range(rows)]
    lines.append(",".join(["99", *["x"] * 28, "1", "0"]))  # a bad row is reported, not fatal
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_gz_and_zip_give_the_same_transactions(tmp_path: Path) -> None:
    plain = _write_csv(tmp_path / "t.csv", 12)
    expected = [x if isinstance(x, str) else x.SerializeToString() for x in client._csv_transactions(plain, None)]
    assert len(expected) == 13 and isinstance(expected[-1], str) and expected[-1].startswith("row 13:")
    for path in write_forms(plain)[1:]:
        got = [x if isinstance(x, str) else x.SerializeToString() for x in client._csv_transactions(path, None)]
        assert got == expected, path


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_archive_one_line_exit_1(tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    path, reason = bad_archives(tmp_path)[case]
    parser = argparse.ArgumentParser()
    client.add_arguments(parser)
    # The file is read before any call, so no server is needed to see the error.
    assert client.main(parser.parse_args(["--target", "127.0.0.1:1", "--csv", str(path)])) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("fraudscore score: ")
    assert_one_line_naming(err.removeprefix("fraudscore score: ").rstrip("\n"), path, reason)
