"""The Python garbage collector's policy for the long-running processes (the stream job, the scorer).

Two costs, both measured in the job's process with ``gc.callbacks``:

- **Young collections too small for a bundle.** Python's collector runs a young collection every 700
  new objects, so a DirectRunner bundle's temporaries (tens of thousands of objects that live as long as
  the bundle) survived two of them and were promoted to the old generation, which then filled fast enough
  to trigger a full collection every 5-10 s. With a young generation of 50,000 objects they die young: in
  90 s at 1,000 tx/s one full collection instead of sixteen (:func:`size_young_generation`).
- **Full collections that walk what lives for ever.** A loaded TensorFlow model, Beam and the client
  libraries leave ~650,000 tracked objects that live as long as the process, and each full collection
  walked all of them again (hundreds of ms, every request or bundle waiting). Once a model is loaded they
  are moved out of the collector's sight (:func:`freeze_long_lived`); they are still freed by reference
  counting, and the next load thaws them first, so a replaced model's cycles are still collected.
"""

from __future__ import annotations

import gc
import threading

PYTHON_GC_THRESHOLDS = (700, 10, 10)
GC_THRESHOLDS = (50_000, 20, 10)

_FREEZE_LOCK = threading.Lock()


def size_young_generation() -> None:
    """GC_THRESHOLDS, unless the process chose thresholds of its own (anything but Python's defaults)."""
    if gc.get_threshold() == PYTHON_GC_THRESHOLDS:
        gc.set_threshold(*GC_THRESHOLDS)


def freeze_long_lived() -> int:
    """After a model load: collects everything (what was frozen before too, so a replaced model's cycles
    go) and freezes what is left, which full collections then skip. Returns how many objects are frozen."""
    with _FREEZE_LOCK:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        return gc.get_freeze_count()
