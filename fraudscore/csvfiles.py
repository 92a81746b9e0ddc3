"""Opening a transactions CSV whatever its form: plain, gzip-compressed, or Kaggle's zip download.

Every tool that reads a transactions CSV (train, publish, score, the stream's
``--replay``) opens it here, so they all accept the same forms, told apart by
the file name:

* ``*.gz`` (e.g. ``creditcard.csv.gz``): decompressed with :mod:`gzip`;
* ``*.zip``: the archive's one ``.csv`` member, or its member named
  ``creditcard.csv`` if it holds several, read with :mod:`zipfile`;
* anything else: the file as it is.

An archive that cannot be read (an empty file, not a gzip or zip at all,
damaged data, a zip without exactly one CSV) raises :class:`CsvFileError`: one
line naming the file and the reason. Damage found part-way through (a truncated
gzip, a bad CRC) raises it from ``read``. Each tool turns it into its own
error type. A missing or unreadable file stays an :class:`OSError`.
"""

from __future__ import annotations

import gzip
import io
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO

KAGGLE_MEMBER = "creditcard.csv"
_BUFFER = 1 << 20

# What gzip and zipfile raise on damaged data (gzip.BadGzipFile is an OSError).
_DAMAGE = (OSError, EOFError, zlib.error, zipfile.BadZipFile)


class CsvFileError(ValueError):
    """The file cannot be read as a CSV: an unreadable archive, or one without exactly one CSV."""


def compression(name: str | Path) -> str:
    """``"gzip"``, ``"zip"`` or ``""`` (plain), from the file name."""
    lower = str(name).lower()
    if lower.endswith(".gz"):
        return "gzip"
    if lower.endswith(".zip"):
        return "zip"
    return ""


def is_csv_name(name: str | Path) -> bool:
    """Whether ``name`` (a path or glob pattern) is a CSV in one of the forms read here."""
    return str(name).lower().endswith((".csv", ".csv.gz", ".zip"))


def stem(path: str | Path) -> str:
    """The file name without its extensions: ``creditcard`` for ``creditcard.csv``, ``.csv.gz`` or ``.zip``."""
    name = PurePosixPath(str(path)).name
    if compression(name):
        name = name.rsplit(".", 1)[0]
    return PurePosixPath(name).stem


def open_binary(path: str | Path, raw: IO[bytes] | None = None) -> IO[bytes]:
    """The CSV's bytes, decompressed if ``path`` names an archive; the caller closes it.

    ``raw``: the file's bytes already opened (e.g. by Beam's file systems); it is
    only read, and stays the caller's to close. Without it ``path`` is opened.
    """
    kind = compression(path)
    if not kind:
        return raw if raw is not None else open(path, "rb")
    if _is_empty(path, raw):
        raise CsvFileError(f"{path}: empty file, not a {kind} archive")
    if kind == "gzip":
        inner: IO[bytes] | gzip.GzipFile = (
            gzip.GzipFile(fileobj=raw) if raw is not None else gzip.open(path, "rb")  # noqa: SIM115
        )
    else:
        inner = _zip_member(path, raw)
    stream = io.BufferedReader(_Checked(inner, f"{path}: not a readable {kind} file"), _BUFFER)
    try:
        if not stream.peek(1):  # reads the gzip header now, so a non-gzip file fails here, not mid-way
            raise CsvFileError(f"{path}: the {kind} archive holds no data")
    except BaseException:
        stream.close()
        raise
    return stream


def open_text(path: str | Path, raw: IO[bytes] | None = None) -> io.TextIOWrapper:
    """The CSV as UTF-8 text for :mod:`csv` (``newline=""``), decompressed as :func:`open_binary` does."""
    return io.TextIOWrapper(open_binary(path, raw), encoding="utf-8", newline="")


def _is_empty(path: str | Path, raw: IO[bytes] | None) -> bool:
    if raw is None:
        return Path(path).stat().st_size == 0
    if not raw.seekable():
        return False  # found out on the first read instead
    here = raw.tell()
    end = raw.seek(0, io.SEEK_END)
    raw.seek(here)
    return end == here


def _zip_member(path: str | Path, raw: IO[bytes] | None) -> IO[bytes]:
    try:
        archive = zipfile.ZipFile(raw if raw is not None else path)
    except zipfile.BadZipFile as exc:
        raise CsvFileError(f"{path}: not a readable zip file ({exc})") from None
    with archive:  # the open member keeps the underlying file open until it is closed itself
        members = [
            info
            for info in archive.infolist()
            if not info.is_dir() and info.filename.lower().endswith(".csv") and "__MACOSX/" not in info.filename
        ]
        kaggle = [info for info in members if PurePosixPath(info.filename).name.lower() == KAGGLE_MEMBER]
        if len(members) == 1:
            member = members[0]
        elif len(kaggle) == 1:
            member = kaggle[0]
        elif not members:
            names = ", ".join(archive.namelist()[:10]) or "nothing"
            raise CsvFileError(f"{path}: the zip holds no .csv file (it has: {names})")
        else:
            names = ", ".join(info.filename for info in members[:10])
            raise CsvFileError(
                f"{path}: the zip holds {len(members)} .csv files ({names}); expected one, or one named {KAGGLE_MEMBER}"
            )
        try:
            return archive.open(member)
        except NotImplementedError as exc:  # e.g. Deflate64, which zipfile cannot decompress
            raise CsvFileError(f"{path}: {member.filename}: {exc}; unzip it and pass the .csv") from None
        except RuntimeError as exc:  # encrypted
            raise CsvFileError(f"{path}: {member.filename}: {exc}; unzip it and pass the .csv") from None
        except zipfile.BadZipFile as exc:
            raise CsvFileError(f"{path}: not a readable zip file ({exc})") from None


class _Checked(io.RawIOBase):
    """Reads ``inner``, raising damaged-data errors as a :class:`CsvFileError` that starts with ``prefix``."""

    def __init__(self, inner: IO[bytes] | gzip.GzipFile, prefix: str) -> None:
        super().__init__()
        self._inner = inner
        self._prefix = prefix

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._inner.read(len(buffer))
        except _DAMAGE as exc:
            raise CsvFileError(f"{self._prefix} ({exc})") from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()
