"""The fast path: the exported SavedModel compiled to LiteRT at load time, checked against TensorFlow.

Calling the SavedModel's signature costs ~1-1.5 ms of TensorFlow dispatch per call whatever the
batch size, most of a one-transaction request. At load time :func:`prepare` converts that very
signature (tf.Transform layer inside; nothing re-implemented: the converter reads the loaded graph
and its variables) with ``tf.lite.TFLiteConverter`` into a LiteRT flatbuffer, wrapped so it takes
one ``[n, F]`` float32 matrix instead of F column tensors, and runs it with ``ai_edge_litert``'s
interpreter: ~10 µs for one row, and faster than TensorFlow at every batch size measured here
(1 to 64,000 rows; README "Benchmarks"), so there is no size above which TensorFlow is used.

Before it is used, the fast path scores :func:`check_rows` (built from the card's training range,
with out-of-range and absurd values) both ways, as one batch and row by row; it is refused, and the
model scores with TensorFlow, if any reconstruction error differs by more than ``RTOL`` (relative),
any feature error by more than ``RTOL`` of its row's error, or any anomaly flag (away from the
threshold) or out-of-range count differs, and also if conversion fails. The outcome is a
:class:`FastPath` (``LoadedModel.fast_path``): logged, shown by GetModelInfo and the scorer's
``fraudscore_model_fast_path`` gauge. ``FRAUDSCORE_FAST_PATH=off`` turns it off.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fraudscore.artifact import OPTIONAL_OUTPUTS, OUTPUTS

log = logging.getLogger(__name__)

ENV = "FRAUDSCORE_FAST_PATH"  # "off" (or 0/false/no) scores with TensorFlow only
RTOL = 1e-5
# Rows per interpreter call: bounds the interpreter's buffers; larger inputs are scored in chunks.
CHUNK_ROWS = 4096
LITERT = "litert"
TENSORFLOW = "tensorflow"

# A compiled fast path: raw rows [n, F] float32 -> the signature's outputs as numpy arrays.
Runner = Callable[[np.ndarray], Mapping[str, np.ndarray]]
# Builds a runner from the loaded SavedModel (module, serving signature, feature names in card order).
Compiler = Callable[[Any, Any, Sequence[str]], Runner]


@dataclass(frozen=True)
class FastPath:
    """What a loaded model scores with, and why."""

    runtime: str  # LITERT or TENSORFLOW
    detail: str  # one line: the check's outcome, or why the fast path was refused
    max_relative_diff: float | None = None  # reconstruction errors, fast path vs TensorFlow, on the check rows
    check_rows: int = 0
    compile_seconds: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.runtime == LITERT


def enabled_by_env() -> bool:
    return os.environ.get(ENV, "on").strip().lower() not in ("off", "0", "false", "no")


def output_names(fn: Any) -> tuple[str, ...]:
    """The outputs a serving signature has: OUTPUTS, then whichever OPTIONAL_OUTPUTS it carries."""
    present = fn.structured_outputs
    return (*OUTPUTS, *(name for name in OPTIONAL_OUTPUTS if name in present))


def matrix_function(fn: Any, features: Sequence[str]) -> Any:
    """The serving signature as a concrete function of one ``[None, F]`` matrix (columns in card order)."""
    import tensorflow as tf

    names = tuple(features)
    outputs = output_names(fn)

    @tf.function(input_signature=[tf.TensorSpec([None, len(names)], tf.float32, name="rows")])
    def rows_to_scores(rows: tf.Tensor) -> dict[str, tf.Tensor]:
        columns = tf.unstack(rows, num=len(names), axis=1)
        out = fn(**dict(zip(names, columns, strict=True)))
        return {name: out[name] for name in outputs}

    return rows_to_scores.get_concrete_function()


def convert_litert(module: Any, fn: Any, features: Sequence[str]) -> bytes:
    """The LiteRT flatbuffer of the serving signature (built-in ops only)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions([matrix_function(fn, features)], module)
    blob: bytes = converter.convert()
    return blob


class _Interpreter:
    """One LiteRT interpreter of the flatbuffer's one signature, called tensor by tensor.

    The signature runner resizes and reallocates its input tensor on every call, ~2 µs of a ~8 µs one-row
    call; here that happens only when the row count differs from the previous call's. Nothing else may
    hold the interpreter: it refuses to resize while another object references its internals, so the
    signature runner that names the tensors is dropped at once.
    """

    def __init__(self, interpreter: Any) -> None:
        self._interpreter = interpreter
        runner = interpreter.get_signature_runner()
        self._input = runner.get_input_details()["rows"]["index"]
        self._outputs = [(name, detail["index"]) for name, detail in runner.get_output_details().items()]
        del runner
        self._rows = -1

    def __call__(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        interpreter = self._interpreter
        if len(rows) != self._rows:
            interpreter.resize_tensor_input(self._input, rows.shape, strict=False)
            interpreter.allocate_tensors()
            self._rows = len(rows)
        interpreter.set_tensor(self._input, rows)
        interpreter.invoke()
        return {name: interpreter.get_tensor(index) for name, index in self._outputs}


class LiteRunner:
    """Scores with LiteRT interpreters: one per concurrent caller (an interpreter is not thread-safe)."""

    def __init__(self, blob: bytes) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter
        self._blob = blob
        # list.pop and list.append are atomic under the GIL: a caller takes an interpreter no other caller holds.
        self._free: list[_Interpreter] = [self._new()]

    def _new(self) -> _Interpreter:
        return _Interpreter(self._interpreter(model_content=self._blob, num_threads=1))

    def __call__(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        try:
            interpreter = self._free.pop()
        except IndexError:
            interpreter = self._new()
        try:
            if len(rows) <= CHUNK_ROWS:
                return interpreter(rows)
            parts = [interpreter(rows[i : i + CHUNK_ROWS]) for i in range(0, len(rows), CHUNK_ROWS)]
            return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        finally:
            self._free.append(interpreter)


def compile_litert(module: Any, fn: Any, features: Sequence[str]) -> Runner:
    return LiteRunner(convert_litert(module, fn, features))


def check_rows(features: Sequence[str], statistics: Mapping[str, Any] | None, seed: int = 0) -> np.ndarray:
    """Raw rows exercising the whole transform: near the training range's ends and its middle, each feature alone
    below and above it, random rows around it, zeros and absurd magnitudes.

    The range per feature is the card's ``statistics`` (``raw_min``/``raw_max``, or ``min``/``max`` when
    the statistic is in raw space); a feature without one gets [-3, 3].
    """
    lo = np.full(len(features), -3.0)
    hi = np.full(len(features), 3.0)
    for i, name in enumerate(features):
        stat = (statistics or {}).get(name) or {}
        try:
            if "raw_min" in stat and "raw_max" in stat:
                lo[i], hi[i] = float(stat["raw_min"]), float(stat["raw_max"])
            elif stat.get("space", "raw") == "raw" and "min" in stat and "max" in stat:
                lo[i], hi[i] = float(stat["min"]), float(stat["max"])
        except (TypeError, ValueError):
            continue
    span = np.maximum(hi - lo, 1.0)
    mid = (lo + hi) / 2
    # Just inside the ends, not on them: a value exactly at the range's end after a log transform is
    # in or out of range by float rounding, which two runtimes may round differently (like the threshold).
    inside = span * 1e-3
    rows = [lo + inside, hi - inside, mid, lo - span, hi + span, np.zeros(len(features)), np.full(len(features), 1e6)]
    for i in range(len(features)):
        for value in (lo[i] - span[i] / 4, hi[i] + span[i] / 4):
            row = mid.copy()
            row[i] = value
            rows.append(row)
    rng = np.random.default_rng(seed)
    rows += list(rng.uniform(lo - span / 2, hi + span / 2, size=(64, len(features))))
    rows += list(mid + rng.normal(0.0, 1.0, size=(16, len(features))) * span / 8)
    return np.asarray(rows, dtype=np.float32)


def compare(
    fast: Mapping[str, np.ndarray],
    ref: Mapping[str, np.ndarray],
    threshold: float,
    threshold_score: str = OUTPUTS[0],
) -> tuple[str | None, float]:
    """(None, max relative difference) if the fast path's outputs agree with TensorFlow's, else (reason, ...).

    ``fraud_probability`` and ``envelope_distance``, when TensorFlow gives them, must agree to ``RTOL``
    (absolute up to 1, relative above);
    ``is_anomaly`` is compared on rows whose ``threshold_score`` is not within float tolerance of the threshold.
    """
    for name in (*OUTPUTS, *(n for n in OPTIONAL_OUTPUTS if n in ref)):
        if name not in fast:
            return f"fast path lacks output {name}", float("nan")
        got, want = np.asarray(fast[name]), np.asarray(ref[name])
        if got.shape != want.shape or got.dtype != want.dtype:
            return f"{name}: {got.dtype}{list(got.shape)}, TensorFlow gives {want.dtype}{list(want.shape)}", float(
                "nan"
            )
    got_e = fast["reconstruction_error"].astype(np.float64)
    want_e = np.asarray(ref["reconstruction_error"], np.float64)
    rel = np.abs(got_e - want_e) / np.maximum(np.abs(want_e), np.finfo(np.float32).tiny)
    worst = float(np.max(rel)) if len(rel) else 0.0
    if not np.all(np.isfinite(got_e) == np.isfinite(want_e)) or not worst <= RTOL:
        return f"reconstruction errors differ from TensorFlow's by up to {worst:.3g} (relative; limit {RTOL:g})", worst
    got_f = fast["feature_errors"].astype(np.float64)
    want_f = np.asarray(ref["feature_errors"], np.float64)
    off = np.abs(got_f - want_f) - RTOL * (np.abs(want_f) + np.abs(want_e)[:, None])
    if np.any(off > 0):
        return f"feature errors differ from TensorFlow's by up to {float(np.max(np.abs(got_f - want_f))):.3g}", worst
    if not np.array_equal(fast["out_of_range_count"], ref["out_of_range_count"]):
        return "out_of_range_count differs from TensorFlow's", worst
    for name in OPTIONAL_OUTPUTS:
        if name in ref:
            want_o = np.asarray(ref[name], np.float64)
            gap = np.abs(np.asarray(fast[name], np.float64) - want_o)
            # Absolute in [0, 1] (a probability), relative above 1 (an envelope distance of a 1e6 value).
            if not np.all(gap <= RTOL * np.maximum(1.0, np.abs(want_o))):
                return f"{name} differs from TensorFlow's by up to {float(np.max(gap)):.3g} (limit {RTOL:g})", worst
    # A row within float tolerance of the threshold may fall either side of it (a probability's is absolute).
    scored = np.asarray(ref[threshold_score], np.float64)
    settled = np.abs(scored - threshold) > (RTOL * abs(threshold) if threshold_score == OUTPUTS[0] else RTOL)
    if not np.array_equal(np.asarray(fast["is_anomaly"])[settled], np.asarray(ref["is_anomaly"])[settled]):
        return "is_anomaly differs from TensorFlow's", worst
    return None, worst


def prepare(
    module: Any,
    fn: Any,
    features: Sequence[str],
    *,
    threshold: float,
    threshold_score: str = OUTPUTS[0],
    statistics: Mapping[str, Any] | None,
    reference: Callable[[np.ndarray], Mapping[str, np.ndarray]],
    compiler: Compiler = compile_litert,
    label: str = "model",
) -> tuple[Runner | None, FastPath]:
    """Compiles and checks the fast path; returns (runner, outcome), the runner None if it is refused."""
    if not enabled_by_env():
        return None, FastPath(TENSORFLOW, f"fast path off ({ENV})")
    start = time.perf_counter()
    try:
        runner = compiler(module, fn, features)
    except Exception as exc:  # the converter and the interpreter raise many types
        return _refuse(label, f"conversion failed: {_one_line(exc)}")
    seconds = time.perf_counter() - start
    rows = check_rows(features, statistics)
    singles = rows[:16]
    try:
        fast = dict(runner(rows))
        fast_singles = [runner(singles[i : i + 1]) for i in range(len(singles))]
    except Exception as exc:
        return _refuse(label, f"fast path failed on the check rows: {_one_line(exc)}")
    ref = reference(rows)
    reason, worst = compare(fast, ref, threshold, threshold_score)
    for i, one in enumerate(fast_singles):
        if reason is not None:
            break
        reason, diff = compare(one, {k: np.asarray(v)[i : i + 1] for k, v in ref.items()}, threshold, threshold_score)
        worst = max(worst, diff)
    if reason is not None:
        return _refuse(label, reason, worst, len(rows))
    detail = (
        f"LiteRT; agrees with TensorFlow on {len(rows)} check rows "
        f"(max relative error difference {worst:.2g}); compiled in {seconds:.2f} s"
    )
    log.info("%s: fast path on: %s", label, detail)
    return runner, FastPath(LITERT, detail, worst, len(rows), seconds)


def _refuse(label: str, reason: str, worst: float | None = None, rows: int = 0) -> tuple[None, FastPath]:
    log.warning("%s: fast path refused, scoring with TensorFlow: %s", label, reason)
    return None, FastPath(TENSORFLOW, f"fast path refused: {reason}", worst, rows)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
