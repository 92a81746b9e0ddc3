"""The model registry against small contract-compliant SavedModels: newest wins, refusals, pinning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fraudscore.model import LoadedModel
from scorer.metrics import ScorerMetrics
from scorer.registry import MAX_LOAD_ATTEMPTS, ModelRegistry, UnknownVersion
from tests.support import copy_version
from tests.unit.scorer.fake_model import build_fake_model


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("template") / "fake"
    base.mkdir()
    build_fake_model(base, 1)
    return base


@pytest.fixture
def base(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "fake"))


def test_loads_newest_and_swaps_to_a_newer_version(base: Path) -> None:
    metrics = ScorerMetrics()
    registry = ModelRegistry(base, metrics)
    assert registry.current is None and registry.poll() == 1
    assert registry.poll() is None  # nothing new
    old = registry.get()
    copy_version(base, 1, 2)
    assert registry.poll() == 2
    assert registry.get().version == 2 and registry.get(1) is old and registry.loaded_versions == [1, 2]
    assert metrics.reloads._value.get() == 2 and metrics.reload_failures._value.get() == 0


def test_broken_versions_are_refused_and_the_old_one_keeps_serving(base: Path) -> None:
    metrics = ScorerMetrics()
    registry = ModelRegistry(base, metrics)
    registry.poll()
    copy_version(base, 1, 2)
    (base / "2" / "saved_model.pb").write_bytes(b"garbage")
    copy_version(base, 1, 3, version=7)  # card disagrees with its directory
    assert registry.poll() is None
    assert registry.get().version == 1
    assert set(registry.refused) == {2, 3}
    assert "cannot load SavedModel" in registry.refused[2]
    assert "model card says version 7, directory is 3" in registry.refused[3]
    assert metrics.reload_failures._value.get() == 2
    assert registry.poll() is None and metrics.reload_failures._value.get() == 2  # counted once per version


def test_model_whose_features_the_schema_lacks_is_refused(base: Path) -> None:
    registry = ModelRegistry(base, ScorerMetrics())
    registry.poll()
    copy_version(base, 1, 2)
    card_path = base / "2" / "model_card.json"
    card = json.loads(card_path.read_text())
    card["features"] = [*card["features"][:-1], "Velocity"]
    card_path.write_text(json.dumps(card))
    assert registry.poll() is None and "Velocity" in registry.refused[2]


def test_falls_back_to_an_older_version_at_start_up(base: Path) -> None:
    copy_version(base, 1, 2)
    (base / "2" / "saved_model.pb").write_bytes(b"garbage")
    registry = ModelRegistry(base, ScorerMetrics())
    assert registry.poll() == 1 and list(registry.refused) == [2]


def test_unknown_and_evicted_versions(base: Path) -> None:
    registry = ModelRegistry(base, ScorerMetrics(), keep=2)
    with pytest.raises(UnknownVersion, match="no model loaded"):
        registry.get()
    registry.poll()
    copy_version(base, 1, 2)
    registry.poll()
    copy_version(base, 1, 3)
    registry.poll()
    assert registry.loaded_versions == [2, 3]
    with pytest.raises(UnknownVersion, match=r"version 1 is not loaded \(loaded: \[2, 3\]\)"):
        registry.get(1)


def test_a_version_seen_half_written_is_loaded_once_complete(base: Path) -> None:
    metrics = ScorerMetrics()
    registry = ModelRegistry(base, metrics)
    registry.poll()
    # Copied in by hand, not atomically: the card is there, the SavedModel only half written so far.
    half = copy_version(base, 1, 2)
    whole = (half / "saved_model.pb").read_bytes()
    (half / "saved_model.pb").write_bytes(whole[: len(whole) // 2])
    assert registry.poll() is None and registry.get().version == 1
    assert registry.refused[2].endswith(f"(attempt 1 of {MAX_LOAD_ATTEMPTS}, tried again at the next poll)")
    (half / "saved_model.pb").write_bytes(whole)  # the copy completes
    assert registry.poll() == 2 and registry.get().version == 2
    assert registry.refused == {} and metrics.reload_failures._value.get() == 1


def test_a_version_that_keeps_failing_is_given_up_after_bounded_attempts(base: Path) -> None:
    loads: list[Path] = []

    def loader(path: Path) -> LoadedModel:
        loads.append(path)
        return LoadedModel(path)

    metrics = ScorerMetrics()
    registry = ModelRegistry(base, metrics, loader=loader)
    registry.poll()
    copy_version(base, 1, 2)
    (base / "2" / "saved_model.pb").write_bytes(b"garbage")
    for _ in range(MAX_LOAD_ATTEMPTS + 3):
        assert registry.poll() is None
    assert [p.name for p in loads] == ["1"] + ["2"] * MAX_LOAD_ATTEMPTS
    assert "cannot load SavedModel" in registry.refused[2]
    assert registry.refused[2].endswith(f"(gave up after {MAX_LOAD_ATTEMPTS} attempts)")
    assert metrics.reload_failures._value.get() == 1 and registry.get().version == 1
