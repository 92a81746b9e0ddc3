"""Publisher: pacing on a fake clock, Time -> event-time mapping, row rejection, file checks."""

from __future__ import annotations

import argparse
import csv
import itertools
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fraudscore import features
from fraudscore.dev.publish import (
    Pacer,
    PublishError,
    ReadStats,
    _publish_paced,
    count_rows,
    open_csv,
    parse_rate,
    publish_transactions,
    read_transactions,
)
from fraudscore.schema import parse_json
from tests.unit.csv_forms import BAD_CASES, assert_one_line_naming, bad_archives, write_forms

ANCHOR = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


class FakeClock:
    """A monotonic clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


class FakePublisher:
    """Records publish calls; every future resolves at once (or fails for chosen ids)."""

    def __init__(self, fail_ids: set[str] | None = None, clock: FakeClock | None = None) -> None:
        self.calls: list[tuple[str, bytes, dict[str, str], float]] = []
        self.fail_ids = fail_ids or set()
        self.clock = clock

    def publish(self, topic: str, data: bytes, **attrs: str) -> Future[str]:
        self.calls.append((topic, data, attrs, self.clock() if self.clock else 0.0))
        future: Future[str] = Future()
        if attrs["transaction_id"] in self.fail_ids:
            future.set_exception(RuntimeError("broker said no"))
        else:
            future.set_result(str(len(self.calls)))
        return future


def row(time_s: float, amount: str = "12.5", **extra: str) -> dict[str, str | None]:
    values: dict[str, str | None] = {features.TIME: str(time_s), features.AMOUNT: amount, features.LABEL: "0"}
    values.update({name: str(0.1 * i) for i, name in enumerate(features.PCA_FEATURES)})
    values.update(extra)
    return values


def test_pacer_caps_rate_on_fake_clock() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(21):
        pacer.wait()
        sent.append(clock.now)
    # 21 sends at 10/s: the last one goes out 2 s after the first, never earlier.
    assert sent[-1] - sent[0] == pytest.approx(2.0)
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) == pytest.approx(0.1)


def test_pacer_waits_for_due_times_and_rate_caps_them() -> None:
    clock = FakeClock()
    pacer = Pacer(2.0, clock=clock, sleep=clock.sleep)
    sent = []
    for due in (0.0, 5.0, 5.0, 5.0, 9.0):
        pacer.wait(due)
        sent.append(clock.now - 100.0)
    # Due times hold; the three due at 5 s are spread by the 2/s cap.
    assert sent == pytest.approx([0.0, 5.0, 5.5, 6.0, 9.0])


def test_pacer_catch_up_burst_is_bounded() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock, sleep=clock.sleep, max_lag=1.0)
    pacer.wait()
    clock.now += 30.0  # the sender stalled for 30 s (e.g. broker flow control)
    sleeps_before = len(clock.sleeps)
    for _ in range(5):
        pacer.wait()
    # After a long stall the schedule restarts from now instead of bursting 300 messages unpaced.
    assert len(clock.sleeps) - sleeps_before == 4


def test_parse_rate() -> None:
    assert parse_rate("100/s") == 100.0
    assert parse_rate("250") == 250.0
    assert parse_rate("6000/min") == pytest.approx(100.0)
    for bad in ("fast", "10/week", "0/s", "-5"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_rate(bad)


def test_time_mapping_anchors_and_compresses() -> None:
    rows = [row(1000.0), row(1010.0), row(1100.0)]
    stats = ReadStats()
    out = list(read_transactions(rows, anchor=ANCHOR, speedup=10.0, id_prefix="f", stats=stats))
    assert [offset for _, offset in out] == pytest.approx([0.0, 1.0, 10.0])
    assert [tx.event_time.ToDatetime(tzinfo=UTC) for tx, _ in out] == [
        ANCHOR,
        ANCHOR + timedelta(seconds=1),
        ANCHOR + timedelta(seconds=10),
    ]
    assert [tx.transaction_id for tx, _ in out] == ["f-1", "f-2", "f-3"]
    assert all(tx.card_id for tx, _ in out)  # assigned where the file has none


def test_rejected_rows_counted_by_field_and_skipped() -> None:
    rows = [row(0.0), row(1.0, amount="abc"), row(2.0, V3="nan"), row(3.0, amount="-4"), row(4.0)]
    stats = ReadStats()
    out = list(read_transactions(rows, anchor=ANCHOR, speedup=1.0, id_prefix="f", stats=stats))
    assert [tx.transaction_id for tx, _ in out] == ["f-1", "f-5"]
    assert stats.rows == 5
    assert stats.rejected == {"Amount": 2, "V3": 1}


def test_file_card_ids_are_kept() -> None:
    out = list(
        read_transactions(
            [row(0.0, card_id="card-9", merchant_id="m-2")],
            anchor=ANCHOR,
            speedup=1.0,
            id_prefix="f",
            stats=ReadStats(),
        )
    )
    assert (out[0][0].card_id, out[0][0].merchant_id) == ("card-9", "m-2")


def test_publish_sends_json_with_attributes_at_rate() -> None:
    clock = FakeClock()
    publisher = FakePublisher(clock=clock)
    items = read_transactions(
        [row(float(i)) for i in range(6)], anchor=ANCHOR, speedup=1.0, id_prefix="f", stats=ReadStats()
    )
    outcomes = _publish_paced(publisher, "projects/p/topics/t", items, Pacer(1000.0, clock=clock, sleep=clock.sleep))
    assert outcomes.ok == 6 and outcomes.failed == 0
    # Live replay: one message per file second, so the 6 rows take 5 s on the clock.
    assert publisher.calls[-1][3] - publisher.calls[0][3] == pytest.approx(5.0)
    for topic, data, attrs, _ in publisher.calls:
        tx = parse_json(data)
        assert topic == "projects/p/topics/t"
        assert attrs == {
            "transaction_id": tx.transaction_id,
            "card_id": tx.card_id,
            "event_time": tx.event_time.ToJsonString(),
        }


def test_publish_transactions_counts_only_accepted() -> None:
    items = read_transactions(
        [row(float(i)) for i in range(5)], anchor=ANCHOR, speedup=1.0, id_prefix="f", stats=ReadStats()
    )
    publisher = FakePublisher(fail_ids={"f-2", "f-4"})
    assert publish_transactions(publisher, "projects/p/topics/t", (tx for tx, _ in items), rate=10_000.0) == 3
    assert len(publisher.calls) == 5


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_open_csv_rejects_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(PublishError, match="no such file"):
        open_csv(tmp_path / "missing.csv")
    short = _write(tmp_path / "short.csv", ["Time", *features.PCA_FEATURES[:-1]], [])
    with pytest.raises(PublishError, match=r"missing columns V28, Amount"):
        open_csv(short)
    binary = tmp_path / "data.csv"
    binary.write_bytes(b"\x1f\x8b\x08\x00\xff\xfe\x00\x01" * 50)
    with pytest.raises(PublishError, match="not a readable CSV file"):
        open_csv(binary)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(PublishError, match="empty file"):
        open_csv(empty)


def test_open_csv_accepts_columns_in_any_order(tmp_path: Path) -> None:
    header = [features.AMOUNT, *reversed(features.PCA_FEATURES), features.TIME]
    path = _write(tmp_path / "ok.csv", header, [["1.0", *["0"] * 28, "7"]])
    handle, reader = open_csv(path)
    try:
        rows: list[Any] = list(reader)
    finally:
        handle.close()
    out = list(read_transactions(rows, anchor=ANCHOR, speedup=1.0, id_prefix="x", stats=ReadStats()))
    assert out[0][0].amount == 1.0


def _replayed(path: Path) -> list[tuple[str, float]]:
    handle, reader = open_csv(path)
    try:
        items = read_transactions(reader, anchor=ANCHOR, speedup=1.0, id_prefix="x", stats=ReadStats())
        return [(tx.SerializeToString().hex(), offset) for tx, offset in items]
    finally:
        handle.close()


def _kaggle_rows(n: int) -> list[list[str]]:
    return [
        [str(i * 1.5), *[f"{(i * j) % 7 - 3.25:g}" for j in range(28)], f"{i % 50}.5", str(int(i % 9 == 0))]
        for i in range(n)
    ]


def test_csv_gz_and_zip_replay_the_same_transactions(tmp_path: Path) -> None:
    header = [features.TIME, *features.PCA_FEATURES, features.AMOUNT, "Class"]
    plain = _write(tmp_path / "t.csv", header, _kaggle_rows(30))
    expected = _replayed(plain)
    assert len(expected) == 30
    for path in write_forms(plain)[1:]:
        assert _replayed(path) == expected, path
        assert count_rows(path) == 30


@pytest.mark.parametrize("case", BAD_CASES)
def test_unreadable_archive_is_a_one_line_publish_error(tmp_path: Path, case: str) -> None:
    path, reason = bad_archives(tmp_path)[case]
    with pytest.raises(PublishError) as err:
        open_csv(path)
    assert_one_line_naming(str(err.value), path, reason)


def test_damage_part_way_through_a_gzip_is_a_publish_error(tmp_path: Path) -> None:
    header = [features.TIME, *features.PCA_FEATURES, features.AMOUNT]
    plain = _write(tmp_path / "big.csv", header, [row[:-1] for row in _kaggle_rows(20_000)])
    gz = write_forms(plain)[1]
    gz.write_bytes(gz.read_bytes()[: gz.stat().st_size // 2])
    with pytest.raises(PublishError, match=r"big\.csv\.gz: not a readable gzip file .* \(after row \d+\)"):
        _replayed(gz)
