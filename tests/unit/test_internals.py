"""The guarded patches and reads of Beam's and the client libraries' internals (fraudscore.internals)."""

from __future__ import annotations

import importlib.util
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from fraudscore import internals
from fraudscore.internals import Internal, InternalsChanged

ROOT = Path(__file__).resolve().parents[2]
ENTRIES = internals.PATCHES + internals.READS


def _ids(entries: tuple[Internal, ...]) -> list[str]:
    return [e.name for e in entries]


@pytest.fixture
def live_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks read the live attributes, as before any installation (another test may have installed)."""
    for patch in internals.PATCHES:
        if patch.name in internals._ORIGINALS:
            monkeypatch.setattr(*internals._owner_and_name(patch), internals._ORIGINALS[patch.name])
    monkeypatch.setattr(internals, "_ORIGINALS", {})


def _owner(internal: Internal) -> tuple[Any, str]:
    owner, name = internals._owner_and_name(internal)
    assert owner is not internals._MISSING
    return owner, name


def _fake(internal: Internal, parameters: str, where: Path) -> Any:
    """A function with ``parameters`` and a body of its own (in a file, as a library's would be), a property
    where the target is one."""
    source = where / f"fake_{internal.name.replace('-', '_')}.py"
    source.write_text(f"def replaced{parameters}:\n    return 'another body'\n")
    spec = importlib.util.spec_from_file_location(source.stem, source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function = module.replaced
    return property(function) if isinstance(internals.target_of(internal), property) else function


def _one_error(internal: Internal) -> str:
    with pytest.raises(InternalsChanged) as raised:
        internals.check()
    lines = str(raised.value).splitlines()
    assert len(lines) == 1, lines
    assert f"{internal.name!r}" in lines[0] and internal.target in lines[0]
    return lines[0]


def test_every_entry_matches_the_installed_libraries() -> None:
    internals.check()  # raises if Beam or the Bigtable client moved under a patch or a read


@pytest.mark.usefixtures("live_targets")
@pytest.mark.parametrize("internal", ENTRIES, ids=_ids(ENTRIES))
def test_a_changed_signature_is_one_line_naming_the_entry(
    internal: Internal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    owner, name = _owner(internal)
    monkeypatch.setattr(owner, name, _fake(internal, internal.signature.replace(")", ", extra=None)"), tmp_path))
    line = _one_error(internal)
    assert "signature is" in line and "extra=None" in line and f"written for {internal.signature}" in line


@pytest.mark.usefixtures("live_targets")
@pytest.mark.parametrize("internal", ENTRIES, ids=_ids(ENTRIES))
def test_a_changed_body_is_one_line_naming_the_entry(
    internal: Internal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    owner, name = _owner(internal)
    monkeypatch.setattr(owner, name, _fake(internal, internal.signature, tmp_path))
    assert "source changed" in _one_error(internal)


@pytest.mark.usefixtures("live_targets")
@pytest.mark.parametrize("internal", ENTRIES, ids=_ids(ENTRIES))
def test_a_missing_target_is_one_line_naming_the_entry(internal: Internal, monkeypatch: pytest.MonkeyPatch) -> None:
    owner, name = _owner(internal)
    monkeypatch.delattr(owner, name)
    assert "the target is missing" in _one_error(internal)  # an inherited one (object.__init__) does not count


@pytest.mark.parametrize("distribution", sorted({e.distribution for e in ENTRIES}))
def test_another_version_is_one_line_per_entry_of_it(distribution: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = internals.metadata.version
    monkeypatch.setattr(internals.metadata, "version", lambda name: "99.0.0" if name == distribution else real(name))
    with pytest.raises(InternalsChanged) as raised:
        internals.check()
    lines = str(raised.value).splitlines()
    of_it = [e for e in ENTRIES if e.distribution == distribution]
    assert len(lines) == len(of_it)
    for entry, line in zip(of_it, lines, strict=True):
        assert f"{entry.name!r}" in line and f"{distribution} is 99.0.0, written for {entry.version}" in line


@pytest.mark.usefixtures("live_targets")
def test_a_mismatch_patches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    targets = {p.name: inspect.getattr_static(*_owner(p)) for p in internals.PATCHES}
    monkeypatch.setattr(internals.metadata, "version", lambda name: "99.0.0")
    with pytest.raises(InternalsChanged):
        internals.install_local_runner()
    assert internals.installed() == ()
    assert {p.name: inspect.getattr_static(*_owner(p)) for p in internals.PATCHES} == targets


@pytest.mark.usefixtures("live_targets")
def test_the_stream_job_stops_at_start_with_the_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream import pipeline

    monkeypatch.setattr(pipeline, "latest_version_uri", lambda base: f"{base}/1")
    monkeypatch.setattr(internals.metadata, "version", lambda name: "99.0.0")
    with pytest.raises(SystemExit) as stopped:
        pipeline.run_with(pipeline.StreamConfig(model_base="m", ingest="pull"), ["--runner=DirectRunner"])
    lines = str(stopped.value.code).splitlines()
    assert lines[0] == "the local runner's patches do not fit the installed libraries:"
    assert len(lines) == 1 + len(ENTRIES) and "patch 'timer-scan-index'" in lines[1]
    assert internals.installed() == ()


def test_the_monitor_task_is_found_by_the_name_its_read_expects() -> None:
    from apache_beam.runners.direct.executor import _ExecutorServiceParallelExecutor

    from stream import ingest

    assert _ExecutorServiceParallelExecutor._MonitorTask.name.fget(None) == ingest._MONITOR_TASK


def test_installing_replaces_every_target_and_keeps_the_original() -> None:
    internals.install_local_runner()
    for patch in internals.PATCHES:
        owner, name = _owner(patch)
        assert inspect.getattr_static(owner, name) is internals._replacement(patch), patch.name
        assert internals.original(patch.name) is not internals._replacement(patch)
    assert set(internals.installed()) == {p.name for p in internals.PATCHES}


_BUILD_ONLY = textwrap.dedent(
    """
    import gc, inspect
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    from fraudscore import internals
    from stream.pipeline import StreamConfig, build

    def targets():
        return {p.name: inspect.getattr_static(*internals._owner_and_name(p)) for p in internals.PATCHES}

    before, thresholds = targets(), gc.get_threshold()
    options = PipelineOptions(["--project=fraud-local"])
    options.view_as(StandardOptions).streaming = True
    build(beam.Pipeline(options=options), StreamConfig(model_base="/nonexistent", ingest="pull"))
    assert internals.installed() == (), internals.installed()
    assert targets() == before
    assert gc.get_threshold() == thresholds
    print("untouched")
    """
)


def test_building_the_pulled_streaming_job_patches_nothing() -> None:
    """A fresh process (this one may have installed the patches): building the local job's pipeline leaves
    Beam's targets and the collector's thresholds as they were; only install_local_runner changes them."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _BUILD_ONLY], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "untouched" in done.stdout, done.stderr[-3000:]
