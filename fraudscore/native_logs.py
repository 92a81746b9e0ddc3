"""TensorFlow's C++ start-up lines: hidden by default, shown with ``fraudscore -v``. Set up once, by the CLI.

On a machine without a GPU every command that imports TensorFlow printed lines such as::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796609483.372113    2362 cudart_stub.cc:31] Could not find cuda drivers on your machine, ...
    E0000 00:00:1796609501.387487    2362 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ...

some of which read as errors. TensorFlow honours ``TF_CPP_MIN_LOG_LEVEL`` (0 all, 1 no INFO, 2 no WARNING, 3 no
ERROR) only once its libraries have loaded; the lines its libraries log while loading (abseil's, before anyone
called ``absl::InitializeLog``) go to stderr whatever the level. :func:`configure` therefore

- sets ``TF_CPP_MIN_LOG_LEVEL`` in the environment before TensorFlow is imported: 3 by default (a value the
  user set is kept), 0 with ``--verbose``; child processes inherit it (the demo's scorer and stream job);
- filters, with that same level, what the process writes to stderr while ``tensorflow`` is first imported
  (the one window in which those loading lines appear): any other line passes unchanged;
- keeps TensorFlow's and abseil's Python loggers to warnings unless verbose.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, MutableMapping, Sequence
from types import ModuleType
from typing import Any

LEVEL_VAR = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LEVEL = "3"
# Packages whose first import loads TensorFlow's libraries (tensorflow_transform, tfx_bsl... import tensorflow).
NATIVE_PACKAGES = ("tensorflow",)
PYTHON_LOGGERS = ("tensorflow", "absl")
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}
# abseil's line prefix: severity, MMDD hh:mm:ss.micros (before InitializeLog "0000 00:00:<epoch seconds>.micros"),
# thread id, file:line]
_ABSL_LINE = re.compile(rb"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\s\]]+:\d+\] ")
_NOT_INITIALIZED = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def configure(verbose: bool, environ: MutableMapping[str, str]) -> None:
    """Sets the level for this process and its children, and filters the lines TensorFlow logs while loading."""
    if verbose:
        environ[LEVEL_VAR] = "0"
    else:
        environ.setdefault(LEVEL_VAR, QUIET_LEVEL)
        for name in PYTHON_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    level = min_level(environ)
    if level > 0 and not any(isinstance(finder, _FilteredImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _FilteredImport(NATIVE_PACKAGES, level))


def min_level(environ: MutableMapping[str, str]) -> int:
    try:
        return max(0, min(3, int(environ.get(LEVEL_VAR, "0"))))
    except ValueError:
        return 0


def hidden(line: bytes, level: int) -> bool:
    """Whether TensorFlow would hide this stderr line at ``level`` had it applied the level yet."""
    if line.rstrip(b"\r\n") == _NOT_INITIALIZED:
        return level > 0
    match = _ABSL_LINE.match(line)
    return match is not None and _SEVERITY[match.group(1)] < level


@contextlib.contextmanager
def filtered_stderr(level: int) -> Iterator[None]:
    """Within the block, lines written to file descriptor 2 (by C++ code too) pass unless :func:`hidden`."""
    sys.stderr.flush()
    target = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:  # owns read_end and target: a child started meanwhile may keep the pipe open longer
        with os.fdopen(read_end, "rb") as pipe, os.fdopen(target, "wb", buffering=0) as out:
            for line in pipe:
                if not hidden(line, level):
                    out.write(line)

    original = os.dup(target)
    thread = threading.Thread(target=pump, name="native-log-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes our write end of the pipe: the pump reads to its end and stops
        os.close(original)
        thread.join(timeout=5.0)


class _FilteringLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, level: int) -> None:
        self._loader = loader
        self._level = level

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # The module keeps its own loader (reload, get_source); only this first execution is filtered.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        with filtered_stderr(self._level):
            self._loader.exec_module(module)


class _FilteredImport(importlib.abc.MetaPathFinder):
    """Finds the packages as usual, and executes their first import under :func:`filtered_stderr`."""

    def __init__(self, names: Sequence[str], level: int) -> None:
        self._names = frozenset(names)
        self._level = level

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._names:
            return None
        spec: Any = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _FilteringLoader(spec.loader, self._level)
        return spec  # type: ignore[no-any-return]


__all__ = ["LEVEL_VAR", "configure", "filtered_stderr", "hidden", "min_level"]
