"""fraudscore/native_logs.py: which stderr lines TensorFlow's level hides, and the level the CLI sets."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fraudscore import native_logs
from fraudscore.native_logs import LEVEL_VAR, configure, hidden

CUDART = b"I0000 00:00:1796609884.283903   12865 cudart_stub.cc:31] Could not find cuda drivers on your machine\n"
CUINIT = b"E0000 00:00:1796609501.387487    2362 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n"
NOT_INITIALIZED = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
OURS = b"2026-12-07 02:18:22,055 INFO scorer.server: listening on 127.0.0.1:50051\n"


@pytest.mark.parametrize(
    ("line", "hidden_at"),
    [
        (CUDART, {1, 2, 3}),
        (CUINIT, {3}),
        (NOT_INITIALIZED, {1, 2, 3}),
        (OURS, set()),
        (b"W1207 02:18:22.055000 7 a.cc:1] x\n", {2, 3}),
    ],
)
def test_a_line_is_hidden_as_tensorflow_would_at_that_level(line: bytes, hidden_at: set[int]) -> None:
    assert {level for level in range(4) if hidden(line, level)} == hidden_at


def test_the_filter_takes_lines_written_to_the_file_descriptor_and_only_within_its_block() -> None:
    code = (
        "import os\nfrom fraudscore.native_logs import filtered_stderr\n"
        f"with filtered_stderr(3):\n os.write(2, {CUDART!r} + {CUINIT!r})\n os.write(2, b'kept\\n')\n"
        f"os.write(2, {CUDART!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=True)
    assert done.stderr == b"kept\n" + CUDART


def test_quiet_by_default_keeps_a_level_the_user_set_and_verbose_shows_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))  # configure() adds its import hook there
    env: dict[str, str] = {}
    configure(False, env)
    assert env[LEVEL_VAR] == "3"
    assert sum(isinstance(finder, native_logs._FilteredImport) for finder in sys.meta_path) == 1
    env = {LEVEL_VAR: "1"}
    configure(False, env)
    assert env[LEVEL_VAR] == "1"
    configure(True, env)
    assert env[LEVEL_VAR] == "0"
