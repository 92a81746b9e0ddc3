"""One CSV written in each form the tools read (.csv, .csv.gz, Kaggle's .zip), and archives they must refuse."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

BAD_CASES = (
    "empty gzip",
    "empty zip",
    "not a gzip",
    "truncated gzip",
    "corrupt gzip",
    "not a zip",
    "zip without a CSV",
    "zip with two CSVs",
)


def write_forms(plain: Path) -> list[Path]:
    """``plain`` and the same bytes as ``<plain>.gz`` and as a zip holding ``creditcard.csv`` (and a readme)."""
    data = plain.read_bytes()
    gz = plain.with_name(plain.name + ".gz")
    gz.write_bytes(gzip.compress(data))
    zipped = plain.with_suffix(".zip")
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("creditcard.csv", data)
        archive.writestr("README.txt", "not a CSV")
    return [plain, gz, zipped]


def bad_archives(directory: Path, sample: bytes = b"Time,V1\n1,2\n" * 100) -> dict[str, tuple[Path, str]]:
    """Each of :data:`BAD_CASES` -> (its file in ``directory``, what its one-line error must say)."""
    cases: dict[str, tuple[bytes, str, str]] = {}
    compressed = gzip.compress(sample)
    cases["empty gzip"] = (b"", "empty.csv.gz", "empty file")
    cases["empty zip"] = (b"", "empty.zip", "empty file")
    cases["not a gzip"] = (sample, "plain.csv.gz", "not a readable gzip file")
    cases["truncated gzip"] = (compressed[:-12], "cut.csv.gz", "not a readable gzip file")
    crc = bytearray(compressed)
    crc[-8] ^= 0xFF  # the trailer's CRC-32 no longer matches the data
    cases["corrupt gzip"] = (bytes(crc), "crc.csv.gz", "not a readable gzip file")
    cases["not a zip"] = (sample, "plain.zip", "not a readable zip file")
    out = {name: (directory / file, reason) for name, (_, file, reason) in cases.items()}
    for data, file, _ in cases.values():
        (directory / file).write_bytes(data)
    no_csv = directory / "no-csv.zip"
    with zipfile.ZipFile(no_csv, "w") as archive:
        archive.writestr("README.txt", "nothing to read")
    out["zip without a CSV"] = (no_csv, "no .csv file")
    several = directory / "several.zip"
    with zipfile.ZipFile(several, "w") as archive:
        archive.writestr("a.csv", sample)
        archive.writestr("b.csv", sample)
    out["zip with two CSVs"] = (several, "2 .csv files")
    return out


def assert_one_line_naming(message: str, path: Path, reason: str) -> None:
    assert message.startswith(str(path)), message
    assert reason in message and "\n" not in message, message
