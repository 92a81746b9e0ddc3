"""The garbage collector's policy: long-lived objects frozen after a model load, and thawed by the next."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from fraudscore import collector


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


@pytest.fixture(autouse=True)
def _thawed_after() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_what_lives_on_is_frozen_and_full_collections_skip_it() -> None:
    kept = _Node()
    frozen = collector.freeze_long_lived()
    assert frozen > 0 and gc.get_freeze_count() > 0
    assert not any(o is kept for o in gc.get_objects())  # out of every generation the collector walks
    gc.collect()
    assert kept.me is kept


def test_the_next_freeze_collects_what_became_garbage_while_frozen() -> None:
    # A replaced model's objects were frozen with it; the next load must still free their cycles.
    old_model = _Node()
    gone = weakref.ref(old_model)
    collector.freeze_long_lived()
    del old_model
    gc.collect()
    assert gone() is not None  # frozen: a plain full collection does not see it
    collector.freeze_long_lived()
    assert gone() is None


def test_the_young_generation_is_sized_for_a_bundle_unless_the_process_chose_its_own() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(*collector.PYTHON_GC_THRESHOLDS)
        collector.size_young_generation()
        assert gc.get_threshold() == collector.GC_THRESHOLDS
        gc.set_threshold(2_000, 5, 5)
        collector.size_young_generation()
        assert gc.get_threshold() == (2_000, 5, 5)
    finally:
        gc.set_threshold(*before)
