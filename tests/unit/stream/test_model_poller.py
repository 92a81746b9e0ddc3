"""The stream's model poller follows the shared version policy (fraudscore/versions.py): a version seen
half-written loads once complete, one that keeps failing is given up after bounded attempts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fraudscore.artifact import CARD_FILE, SAVED_MODEL_FILE
from fraudscore.versions import MAX_LOAD_ATTEMPTS
from stream import inference


def publish(base: Path, version: int, content: str) -> None:
    (base / str(version)).mkdir(parents=True, exist_ok=True)
    (base / str(version) / SAVED_MODEL_FILE).write_text(content)
    (base / str(version) / CARD_FILE).write_text("{}")


def model(version: int) -> Any:
    return SimpleNamespace(version=version, threshold=0.5, card=SimpleNamespace(name="fake"))


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []

    def load_version(uri: str) -> Any:
        version = int(Path(uri).name)
        calls.append(version)
        if (Path(uri) / SAVED_MODEL_FILE).read_text() != "ok":
            raise ValueError("cannot load SavedModel")
        return model(version)

    monkeypatch.setattr(inference, "load_version", load_version)
    return calls


def test_a_version_seen_half_written_is_loaded_once_complete(tmp_path: Path, loads: list[int]) -> None:
    publish(tmp_path, 1, "ok")
    poller = inference._VersionPoller(str(tmp_path))
    first = model(1)
    publish(tmp_path, 2, "half")
    assert poller.current(first, 0.0, lambda: 1.0) is first
    publish(tmp_path, 2, "ok")
    assert poller.current(first, 0.0, lambda: 2.0).version == 2
    assert loads == [2, 2]


def test_a_broken_version_is_given_up_after_bounded_attempts(tmp_path: Path, loads: list[int]) -> None:
    publish(tmp_path, 1, "ok")
    publish(tmp_path, 2, "garbage")
    poller = inference._VersionPoller(str(tmp_path))
    first = model(1)
    for t in range(MAX_LOAD_ATTEMPTS + 3):
        assert poller.current(first, 1.0, lambda t=t: float(t)) is first
    assert loads == [2] * MAX_LOAD_ATTEMPTS
