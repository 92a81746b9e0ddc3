"""The version policy of fraudscore/versions.py, with a stand-in loader (no TensorFlow): what counts as a
version, bounded retries of a failing one, and a newer version superseding."""

from __future__ import annotations

import glob
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fraudscore import versions
from fraudscore.artifact import CARD_FILE, SAVED_MODEL_FILE
from fraudscore.versions import MAX_LOAD_ATTEMPTS, VersionWatcher


def publish(base: Path, version: int, content: str = "ok", *, card: bool = True, saved_model: bool = True) -> Path:
    directory = base / str(version)
    directory.mkdir(parents=True, exist_ok=True)
    if saved_model:
        (directory / SAVED_MODEL_FILE).write_text(content)
    if card:
        (directory / CARD_FILE).write_text("{}")
    return directory


class Loader:
    """Loads a version whose saved_model.pb says "ok"; anything else fails, as a truncated SavedModel does."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, uri: str) -> int:
        version = int(Path(uri).name)
        self.calls.append(version)
        content = (Path(uri) / SAVED_MODEL_FILE).read_text()
        if content != "ok":
            raise ValueError(f"cannot load SavedModel: {content}")
        return version


def test_only_integer_directories_with_a_saved_model_and_a_card_are_versions(tmp_path: Path) -> None:
    publish(tmp_path, 1)
    publish(tmp_path, 2, card=False)
    publish(tmp_path, 3, saved_model=False)
    (tmp_path / ".tmp-4").mkdir()
    (tmp_path / ".tmp-4" / SAVED_MODEL_FILE).write_text("ok")
    (tmp_path / ".tmp-4" / CARD_FILE).write_text("{}")
    publish(tmp_path, 10)
    assert versions.list_versions(tmp_path) == [1, 10]
    assert versions.latest_version_uri(tmp_path) == str(tmp_path / "10")
    assert versions.list_versions(tmp_path / "missing") == [] and versions.latest_version(tmp_path / "missing") is None


def test_remote_bases_are_listed_through_beam_filesystems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from apache_beam.io.filesystems import FileSystems

    publish(tmp_path, 1)
    publish(tmp_path, 2, card=False)
    publish(tmp_path, 3)
    (tmp_path / ".tmp-4").mkdir()
    (tmp_path / ".tmp-4" / SAVED_MODEL_FILE).write_text("ok")
    patterns: list[str] = []

    def match(found: list[str]) -> list[Any]:
        (pattern,) = found
        patterns.append(pattern)
        local = pattern.replace("gs://bucket/models", str(tmp_path))
        paths = [p.replace(str(tmp_path), "gs://bucket/models") for p in glob.glob(local)]
        return [SimpleNamespace(metadata_list=[SimpleNamespace(path=p) for p in paths])]

    monkeypatch.setattr(FileSystems, "match", staticmethod(match))
    assert versions.list_versions("gs://bucket/models/") == [1, 3]
    assert versions.latest_version_uri("gs://bucket/models/") == "gs://bucket/models/3"
    assert sorted(patterns[:2]) == sorted(f"gs://bucket/models/*/{n}" for n in (CARD_FILE, SAVED_MODEL_FILE))


def test_a_half_written_version_is_not_a_version_until_complete_then_loads(tmp_path: Path) -> None:
    publish(tmp_path, 1)
    loader = Loader()
    watcher = VersionWatcher(tmp_path, loader)
    assert watcher.poll() == 1
    half = publish(tmp_path, 2, card=False)  # copied in by hand: the card has not arrived yet
    assert watcher.poll(1) is None and loader.calls == [1] and watcher.refused == {}
    (half / CARD_FILE).write_text("{}")
    assert watcher.poll(1) == 2 and watcher.refused == {}


def test_a_version_seen_truncated_is_retried_and_loads_once_complete(tmp_path: Path) -> None:
    publish(tmp_path, 1)
    refusals: list[tuple[int, str, int]] = []
    watcher = VersionWatcher(tmp_path, Loader(), on_refused=lambda *a: refusals.append(a))
    publish(tmp_path, 2, "trunc")
    assert watcher.poll(1) is None
    assert (
        watcher.refused[2]
        == f"cannot load SavedModel: trunc (attempt 1 of {MAX_LOAD_ATTEMPTS}, tried again at the next poll)"
    )
    publish(tmp_path, 2, "ok")  # the copy completes
    assert watcher.poll(1) == 2 and watcher.refused == {}
    assert refusals == [(2, "cannot load SavedModel: trunc", 1)]


def test_a_version_that_keeps_failing_is_given_up_after_bounded_attempts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    publish(tmp_path, 1)
    publish(tmp_path, 2, "garbage")
    loader = Loader()
    watcher = VersionWatcher(tmp_path, loader)
    with caplog.at_level(logging.WARNING, logger=versions.__name__):
        for _ in range(MAX_LOAD_ATTEMPTS + 3):
            assert watcher.poll(1) is None
    assert loader.calls == [2] * MAX_LOAD_ATTEMPTS
    assert watcher.refused[2].endswith(f"(gave up after {MAX_LOAD_ATTEMPTS} attempts)")
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.ERROR] + [logging.WARNING] * (MAX_LOAD_ATTEMPTS - 2) + [logging.ERROR]
    assert "gave up" in caplog.records[-1].getMessage()


def test_a_newer_version_supersedes_a_failing_one_and_an_older_one_is_a_fallback(tmp_path: Path) -> None:
    publish(tmp_path, 1)
    publish(tmp_path, 2, "garbage")
    loader = Loader()
    watcher = VersionWatcher(tmp_path, loader)
    assert watcher.poll() == 1  # at start-up: the newest that loads
    assert watcher.poll(1) is None
    publish(tmp_path, 3)
    publish(tmp_path, 4, "garbage")
    assert watcher.poll(1) == 3  # 4 refused, 3 loads
    assert loader.calls == [2, 1, 2, 4, 3]
    assert watcher.poll(3) is None and loader.calls[-1] == 4  # 2 is older than the one in use: never tried again
    assert set(watcher.refused) == {2, 4}
