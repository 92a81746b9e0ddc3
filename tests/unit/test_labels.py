"""LabelSet (fraudscore.labels) and reading labels / the traffic sample (cases.labels) with a fake store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from cases.labels import MISSING_FEATURES, NO_RAW, NO_RECORD, read_labels, read_sample
from cases.records import Case, Decision
from fraudscore.labels import LabelError, LabelSet
from stream.rules import CARD_BURST, TX_ANOMALY

T0 = datetime(2026, 5, 1, tzinfo=UTC)
FEATURES = ("V1", "V2", "Amount")


def case(tx: str, raw: tuple[float, ...] = (1.0, 2.0, 3.0), names: tuple[str, ...] = FEATURES) -> Case:
    return Case(
        tx, "card", "m", T0, 3.0, 0.9, 0.5, 1, (TX_ANOMALY,), raw_features=raw, feature_names=names
    )  # fmt: skip


def decided(verdict: str, minutes: int) -> Decision:
    return Decision(verdict, "", "ann", T0 + timedelta(minutes=minutes))


class FakeStore:
    def __init__(
        self, labelled: list[tuple[Case | None, tuple[Decision, ...]]], sample: tuple[dict[str, Any], ...] = ()
    ):
        self._labelled, self._sample = labelled, sample

    def labelled(self) -> Any:
        return iter(self._labelled)

    def sample_records(self, since: datetime | None) -> Any:
        return iter(self._sample)


def test_latest_label_wins_and_conflicts_are_counted() -> None:
    store: Any = FakeStore(
        [
            (case("t1"), (decided("legit", 5), decided("fraud", 1))),  # changed mind: legit counts
            (case("t2"), (decided("fraud", 2),)),
            # columns in another order than the model's: reordered by name
            (case("t3", (30.0, 10.0, 20.0), ("Amount", "V1", "V2")), (decided("fraud", 3),)),
        ]
    )
    labels = read_labels(store, FEATURES)
    assert labels.transaction_ids == ("t1", "t2", "t3")
    assert labels.labels.tolist() == [0, 1, 1] and labels.conflicting == 1
    assert labels.raw[2].tolist() == [10.0, 20.0, 30.0]
    assert labels.labelled_at[0] == int((T0 + timedelta(minutes=5)).timestamp() * 1000)
    assert labels.reasons == ((TX_ANOMALY,),) * 3


def test_since_selects_by_the_latest_label() -> None:
    store: Any = FakeStore(
        [(case("t1"), (decided("fraud", 10), decided("legit", 0))), (case("t2"), (decided("legit", 1),))]
    )
    labels = read_labels(store, FEATURES, since=T0 + timedelta(minutes=5))
    assert labels.transaction_ids == ("t1",) and labels.labels.tolist() == [1]


def test_unusable_cases_are_counted_never_silently_dropped() -> None:
    store: Any = FakeStore(
        [
            (case("old", raw=(), names=()), (decided("fraud", 1),)),  # written before raw features were kept
            (None, (decided("legit", 1),)),  # a decision on a row without a case record
            (case("other", (1.0,), ("V9",)), (decided("legit", 1),)),
            (case("ok"), (decided("fraud", 1),)),
        ]
    )
    labels = read_labels(store, FEATURES)
    assert labels.transaction_ids == ("ok",)
    assert labels.skipped == {NO_RAW: 1, NO_RECORD: 1, MISSING_FEATURES: 1}
    assert labels.summary()["skipped"] == labels.skipped


def test_fingerprint_is_order_independent_and_label_sensitive() -> None:
    def make(ids: tuple[str, ...], labels: list[int]) -> LabelSet:
        n = len(ids)
        return LabelSet(
            ids, FEATURES, np.zeros((n, 3), np.float32), np.asarray(labels, np.int8),
            np.arange(n, dtype=np.int64) * 1000, ((CARD_BURST,),) * n,
        )  # fmt: skip

    a = make(("a", "b"), [1, 0])
    assert a.fingerprint() == make(("b", "a"), [0, 1]).fingerprint()
    assert a.fingerprint() != make(("a", "b"), [1, 1]).fingerprint()
    summary = a.summary()
    assert summary["count"] == 2 and summary["frauds"] == 1 and summary["legit"] == 1
    assert summary["first_labelled_at"] == "1970-01-01T00:00:00+00:00"
    assert summary["last_labelled_at"] == "1970-01-01T00:00:01+00:00"
    assert a.where(np.array([False, True])).transaction_ids == ("b",)
    with pytest.raises(LabelError, match="one row per transaction"):
        make(("a", "a"), [1, 0])
    with pytest.raises(LabelError, match="labels: 1"):
        make(("a",), [2])


def sample_row(tx: str, rate: float = 0.01, names: tuple[str, ...] = FEATURES) -> dict[str, Any]:
    return {"transaction_id": tx, "feature_names": list(names), "raw_features": [1.0, 2.0, 3.0], "sampling_rate": rate}


def test_read_sample_excludes_labelled_and_refuses_mixed_rates() -> None:
    raw, rate = read_sample(FakeStore([], (sample_row("a"), sample_row("b"))), FEATURES, exclude={"b"})  # type: ignore[arg-type]
    assert raw.shape == (1, 3) and raw.dtype == np.float32 and rate == 0.01
    empty, zero = read_sample(FakeStore([]), FEATURES)  # type: ignore[arg-type]
    assert empty.shape == (0, 3) and zero == 0.0
    with pytest.raises(LabelError, match=r"mixes sampling rates 0\.01, 0\.1"):
        read_sample(FakeStore([], (sample_row("a"), sample_row("b", 0.1))), FEATURES)  # type: ignore[arg-type]
    with pytest.raises(LabelError, match="lacks model features"):
        read_sample(FakeStore([], (sample_row("a", names=("x", "y", "z")),)), FEATURES)  # type: ignore[arg-type]
