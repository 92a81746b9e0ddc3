"""fraudscore.csvfiles: one CSV opened alike whether plain, .csv.gz or Kaggle's .zip; unreadable archives refused."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import pytest

from fraudscore import csvfiles
from tests.unit.csv_forms import BAD_CASES, assert_one_line_naming, bad_archives, write_forms

TEXT = "Time,V1,Amount,Class\n0,0.5,1.25,0\n1,-0.5,9.99,1\n"


def test_every_form_gives_the_same_bytes_and_text(tmp_path: Path) -> None:
    plain = tmp_path / "t.csv"
    plain.write_text(TEXT)
    for path in write_forms(plain):
        with csvfiles.open_binary(path) as f:
            assert f.read() == TEXT.encode(), path
        with csvfiles.open_text(path) as text:
            assert text.read() == TEXT, path


def test_already_open_streams_are_decompressed_by_name() -> None:
    assert csvfiles.open_binary("x.csv.gz", io.BytesIO(gzip.compress(b"a,b\n"))).read() == b"a,b\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("dir/only.csv", "a,b\n")
    buffer.seek(0)
    assert csvfiles.open_text("gs://bucket/x.zip", buffer).read() == "a,b\n"
    raw = io.BytesIO(b"a,b\n")
    assert csvfiles.open_binary("x.csv", raw) is raw


def test_zip_member_choice(tmp_path: Path) -> None:
    path = tmp_path / "download.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("other.csv", "x\n")
        archive.writestr("data/creditcard.csv", TEXT)
        archive.writestr("__MACOSX/data/._creditcard.csv", "resource fork")
    with csvfiles.open_text(path) as text:
        assert text.read() == TEXT


@pytest.mark.parametrize("case", BAD_CASES)
def test_unreadable_archives_are_one_line_errors(tmp_path: Path, case: str) -> None:
    path, reason = bad_archives(tmp_path)[case]
    with pytest.raises(csvfiles.CsvFileError) as err, csvfiles.open_binary(path) as f:
        f.read()
    assert_one_line_naming(str(err.value), path, reason)


def test_missing_file_stays_an_os_error(tmp_path: Path) -> None:
    for name in ("missing.csv", "missing.csv.gz", "missing.zip"):
        with pytest.raises(FileNotFoundError):
            csvfiles.open_binary(tmp_path / name)


def test_names() -> None:
    assert [csvfiles.stem(p) for p in ("a/creditcard.csv", "creditcard.csv.gz", "gs://b/creditcard.zip", "x.txt")] == [
        "creditcard",
        "creditcard",
        "creditcard",
        "x",
    ]
    assert all(csvfiles.is_csv_name(p) for p in ("x.csv", "data/*.CSV.GZ", "creditcard.zip"))
    assert not any(csvfiles.is_csv_name(p) for p in ("x.jsonl", "x.jsonl.gz"))
