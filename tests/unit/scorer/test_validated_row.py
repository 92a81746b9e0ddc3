"""schema.validated_row (the Score path's one-transaction check and row): exactly validate + feature_matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fraudscore import features, schema
from fraudscore.features import MAX_ABS_V, MAX_AMOUNT
from fraudscore.schema import InvalidTransaction
from fraudscore.v1.transaction_pb2 import Transaction

NAMES = features.MODEL_FEATURES
SHUFFLED = tuple(reversed(NAMES))


def tx(v: list[float] | None = None, amount: float | None = 12.5, **fields: str) -> Transaction:
    t = Transaction(
        transaction_id=fields.get("transaction_id", "t-1"),
        card_id=fields.get("card_id", "c-1"),
        v=[0.1 * i - 1.3 for i in range(28)] if v is None else v,
    )
    if amount is not None:
        t.amount = amount
    if fields.get("no_time") is None:
        t.event_time.FromSeconds(1_700_000_000)
    return t


def reference(t: Transaction, names: tuple[str, ...]) -> np.ndarray | tuple[str, str]:
    try:
        schema.validate(t)
    except InvalidTransaction as exc:
        return exc.field, exc.reason
    return schema.feature_matrix([t], names)[0]


def fast(t: Transaction, names: tuple[str, ...]) -> np.ndarray | tuple[str, str]:
    try:
        return schema.validated_row(t, names)
    except InvalidTransaction as exc:
        return exc.field, exc.reason


def base_v() -> list[float]:
    return [0.1 * i - 1.3 for i in range(28)]


def with_v(i: int, value: float) -> list[float]:
    v = base_v()
    v[i] = value
    return v


CASES = [
    tx(),
    tx(amount=0.0),
    tx(amount=-0.0),
    tx(amount=MAX_AMOUNT),
    tx(amount=math.nextafter(MAX_AMOUNT, math.inf)),
    tx(amount=-0.01),
    tx(amount=math.nan),
    tx(amount=math.inf),
    tx(amount=None),
    tx(v=with_v(3, MAX_ABS_V)),  # each |V| within the bound though their sum is not: still valid
    tx(v=[MAX_ABS_V / 2] * 28),
    tx(v=with_v(5, -MAX_ABS_V * 1.5)),
    tx(v=with_v(0, math.nan)),
    tx(v=with_v(27, -math.inf)),
    tx(v=[1e308] * 28),  # the sum overflows to inf; every value is still checked
    tx(v=base_v()[:27]),
    tx(v=[]),
    tx(transaction_id=""),
    tx(card_id=""),
    tx(no_time="1"),
    tx(v=with_v(2, 1e-30), amount=1 / 3),  # float32 rounding as feature_matrix's
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("names", [NAMES, SHUFFLED, ("Amount", "V7")])
def test_same_row_or_error_as_validate_and_feature_matrix(case: int, names: tuple[str, ...]) -> None:
    want, got = reference(CASES[case], names), fast(CASES[case], names)
    if isinstance(want, tuple):
        assert got == want
    else:
        assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (len(names),)
        assert got.tobytes() == want.tobytes()


def test_random_transactions_agree() -> None:
    rng = np.random.default_rng(7)
    for _ in range(300):
        v = (rng.normal(0, 1, 28) * 10.0 ** rng.integers(-3, 8, 28)).tolist()
        t = tx(v=v, amount=float(rng.normal(100, 300)))
        want, got = reference(t, SHUFFLED), fast(t, SHUFFLED)
        assert (got == want) if isinstance(want, tuple) else got.tobytes() == want.tobytes()


def test_unknown_model_feature_named() -> None:
    with pytest.raises(InvalidTransaction, match="Nope: model feature not present"):
        schema.validated_row(tx(), ("V1", "Nope"))
