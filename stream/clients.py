"""Clients kept once per worker process, shared by every DoFn instance that needs them.

Runners re-create DoFns per bundle (the DirectRunner does for every bundle of <= 10
messages), and a new Pub/Sub or Bigtable client each time costs a gRPC channel and
threads. ``apache_beam.utils.shared.Shared`` would keep only weak references, so the
client could be collected and re-made between bundles; the clients here live as long
as the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_LOCK = threading.Lock()
_CLIENTS: dict[str, Any] = {}


def per_process(tag: str, factory: Callable[[], T]) -> T:
    """The client made by ``factory`` for ``tag``, made on first use in this process (thread-safe)."""
    with _LOCK:
        if tag not in _CLIENTS:
            _CLIENTS[tag] = factory()
        return _CLIENTS[tag]  # type: ignore[no-any-return]
