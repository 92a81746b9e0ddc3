"""Every reach of this project into private internals of Apache Beam and the Google client libraries, in one
list, each checked against the code it was written for.

Two kinds:

- a **patch** (:data:`PATCHES`) replaces a private function or method. The replacements live next to the code
  they serve (:mod:`stream.direct_runner`, :mod:`stream.ingest`); they are installed here, and only by
  :func:`install_local_runner`, which the stream job calls on its local path (``--ingest=pull``, the
  DirectRunner) before it builds the pipeline. Importing a module or building a pipeline patches nothing.
- a **read** (:data:`READS`) relies on a private field or a private value without replacing anything: the
  DirectRunner's monitor task found by its name, the subscription the Pub/Sub read evaluator keeps, the
  Bigtable client's lazily built gRPC clients.

Each entry names what it expects: the installed version of the distribution it reaches into (from
``importlib.metadata``), the target's presence, its ``inspect.signature`` and a fingerprint of its source
(so a changed body is caught, not only a renamed one). :func:`check` compares all of them and raises one
:class:`InternalsChanged` whose message has one line per entry that differs, naming the entry and what
differs; nothing falls back silently. After an upgrade: read the new target, adapt the replacement, then
update the entry (``python -m fraudscore.internals`` prints the current versions, signatures and
fingerprints).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import threading
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from fraudscore import collector

_BEAM = ("apache-beam", "2.77.0")
_BIGTABLE = ("google-cloud-bigtable", "2.50.2")


@dataclass(frozen=True)
class Internal:
    """One private target: ``module`` + ``attribute`` (dotted inside the module), what it must look like, and,
    for a patch, the replacement installed in its place (``"module:function"``)."""

    name: str
    distribution: str
    version: str
    module: str
    attribute: str
    signature: str
    source_sha256: str  # first 16 hex digits of sha256 over the target's source
    why: str
    replacement: str | None = None

    @property
    def target(self) -> str:
        return f"{self.module}.{self.attribute}"


PATCHES: tuple[Internal, ...] = (
    Internal(
        "timer-scan-index",
        *_BEAM,
        "apache_beam.runners.direct.watermark_manager",
        "_TransformWatermarks.extract_transform_timers",
        "(self)",
        "897adb07f063798e",
        "the monitor's timer scan asks only keys whose timers are due (stream.direct_runner)",
        "stream.direct_runner:_indexed_extract_transform_timers",
    ),
    Internal(
        "monitor-reads-between-timers",
        *_BEAM,
        "apache_beam.runners.direct.executor",
        "_ExecutorServiceParallelExecutor._MonitorTask._add_work_if_necessary",
        "(self, timers_fired)",
        "9899e67c4b7b57e5",
        "the monitor schedules the read in a cycle where timers fired too, between slices (stream.direct_runner)",
        "stream.direct_runner:_read_between_timers",
    ),
    Internal(
        "monitor-shutdown-check",
        *_BEAM,
        "apache_beam.runners.direct.executor",
        "_ExecutorServiceParallelExecutor._MonitorTask._should_shutdown",
        "(self)",
        "d495932bcc1cbe61",
        "the monitor's idle shutdown check, which schedules nothing, is handed no timers (stream.direct_runner)",
        "stream.direct_runner:_shutdown_check_fires_nothing",
    ),
    Internal(
        "watermark-held-by-timers",
        *_BEAM,
        "apache_beam.runners.direct.watermark_manager",
        "_TransformWatermarks.refresh",
        "(self)",
        "26eb55d6b94c522a",
        "a step's output watermark waits for its earliest timer, as in Beam's model (stream.direct_runner)",
        "stream.direct_runner:_refresh_holding_timers",
    ),
    Internal(
        "keyed-states-tracked",
        *_BEAM,
        "apache_beam.runners.direct.evaluation_context",
        "EvaluationContext._initialize_keyed_states",
        "(self, root_transforms, value_to_consumers)",
        "2bd79425fff62c51",
        "each step's keyed states note which keys changed, for the timer index (stream.direct_runner)",
        "stream.direct_runner:_tracked_keyed_states",
    ),
    Internal(
        "keyed-state-checkout",
        *_BEAM,
        "apache_beam.runners.direct.evaluation_context",
        "DirectStepContext.get_keyed_state",
        "(self, key)",
        "ec5a64913f589522",
        "a bundle checks a key's state out once, rebuilt from its packing (stream.direct_runner)",
        "stream.direct_runner:_checkout_keyed_state",
    ),
    Internal(
        "dofn-specs-per-class",
        *_BEAM,
        "apache_beam.transforms.userstate",
        "get_dofn_specs",
        "(dofn)",
        "eeb36145d3115aa0",
        "a DoFn's state and timer specs computed once per class, not per bundle (stream.direct_runner)",
        "stream.direct_runner:_specs_per_class",
    ),
    Internal(
        "dofn-specs-per-class-evaluator",
        *_BEAM,
        "apache_beam.runners.direct.transform_evaluator",
        "get_dofn_specs",
        "(dofn)",
        "eeb36145d3115aa0",
        "the same, where the evaluators imported get_dofn_specs by name (stream.direct_runner)",
        "stream.direct_runner:_specs_per_class",
    ),
    Internal(
        "state-copy-shallow-timers",
        *_BEAM,
        "apache_beam.transforms.trigger",
        "InMemoryUnmergedState.copy",
        "(self)",
        "ee2487c6676bf0d0",
        "a key's state copied without deepcopy of its immutable timers (stream.direct_runner)",
        "stream.direct_runner:_copy_state",
    ),
    Internal(
        "pubsub-read-pulled",
        *_BEAM,
        "apache_beam.runners.direct.transform_evaluator",
        "_PubSubReadEvaluator._read_from_pubsub",
        "(self, timestamp_attribute)",
        "88f18895e47e8a7f",
        "the read hands out what the tracker pulled, unacknowledged until the sinks release it (stream.ingest)",
        "stream.ingest:_pulling_read",
    ),
    Internal(
        "executor-queue-registry",
        *_BEAM,
        "apache_beam.runners.direct.executor",
        "_ExecutorService.__init__",
        "(self, num_workers)",
        "d830ab76bdad2adb",
        "the runner's task queues are registered so the read waits only when the worker is idle (stream.ingest)",
        "stream.ingest:_registering_init",
    ),
)

READS: tuple[Internal, ...] = (
    Internal(
        "pubsub-read-subscription-field",
        *_BEAM,
        "apache_beam.runners.direct.transform_evaluator",
        "_PubSubReadEvaluator.__init__",
        "(self, evaluation_context, applied_ptransform, input_committed_bundle, side_inputs)",
        "9b5ea2fec7506478",
        "the pulled read reads the evaluator's self._sub_name, set here (stream.ingest)",
    ),
    Internal(
        "executor-monitor-task-name",
        *_BEAM,
        "apache_beam.runners.direct.executor",
        "_ExecutorServiceParallelExecutor._MonitorTask.name",
        "(self)",
        "6f8240a598575112",
        "the monitor task is told from real work by its name 'monitor' (stream.ingest._runner_has_other_work)",
    ),
    Internal(
        "bigtable-lazy-data-client",
        *_BIGTABLE,
        "google.cloud.bigtable.client",
        "Client._veneer_data_client",
        "(self)",
        "b4723d4a09eb1665",
        "close_bigtable_client closes the data client only if built, read from Client._table_data_client",
    ),
    Internal(
        "bigtable-lazy-admin-client",
        *_BIGTABLE,
        "google.cloud.bigtable.client",
        "Client.table_admin_client",
        "(self)",
        "d307c147a0ae93f1",
        "close_bigtable_client closes the admin client only if built, read from Client._table_admin_client",
    ),
)

_BY_NAME = {i.name: i for i in PATCHES + READS}


class InternalsChanged(RuntimeError):
    """A private target is not the code its patch or read was written for (one line per differing entry)."""


_MISSING = object()


def _owner_and_name(internal: Internal) -> tuple[Any, str]:
    owner: Any = importlib.import_module(internal.module)
    *path, name = internal.attribute.split(".")
    for part in path:
        owner = getattr(owner, part, _MISSING)
        if owner is _MISSING:
            return _MISSING, name
    return owner, name


def _function(obj: Any) -> Any:
    return obj.fget if isinstance(obj, property) else obj


def fingerprint(obj: Any) -> str:
    """First 16 hex digits of sha256 over the source of a function (or of a property's getter)."""
    return hashlib.sha256(inspect.getsource(_function(obj)).encode()).hexdigest()[:16]


def parameters(function: Any) -> str:
    """A function's parameters as written, without annotations (the source fingerprint covers those)."""
    sig = inspect.signature(function)
    empty = inspect.Parameter.empty
    bare = [p.replace(annotation=empty) for p in sig.parameters.values()]
    return str(sig.replace(parameters=bare, return_annotation=empty))


def target_of(internal: Internal) -> Any:
    """The original target (the one replaced, once installed); _MISSING if it is not there."""
    if internal.name in _ORIGINALS:
        return _ORIGINALS[internal.name]
    owner, name = _owner_and_name(internal)
    if owner is _MISSING:
        return _MISSING
    # The owner's own namespace: a method that moved to a base class is a change too; a class's dict keeps
    # a property as itself and a function unbound.
    return vars(owner).get(name, _MISSING)


def difference(internal: Internal) -> str | None:
    """One line naming the entry and what differs from what it expects; None when it matches."""
    head = f"{'patch' if internal.replacement else 'read'} {internal.name!r} ({internal.target})"
    try:
        found_version = metadata.version(internal.distribution)
    except metadata.PackageNotFoundError:
        return f"{head}: {internal.distribution} is not installed (written for {internal.version})"
    if found_version != internal.version:
        return f"{head}: {internal.distribution} is {found_version}, written for {internal.version}"
    target = target_of(internal)
    if target is _MISSING:
        return f"{head}: the target is missing in {internal.distribution} {found_version}"
    function = _function(target)
    if isinstance(function, staticmethod | classmethod):
        function = function.__func__
    if not callable(function):
        return f"{head}: the target is a {type(target).__name__}, not a function"
    signature = parameters(function)
    if signature != internal.signature:
        return f"{head}: signature is {signature}, written for {internal.signature}"
    try:
        source = fingerprint(function)
    except (OSError, TypeError):
        return f"{head}: its source cannot be read (written for sha256 {internal.source_sha256})"
    if source != internal.source_sha256:
        return f"{head}: source changed (sha256 {source}, written for {internal.source_sha256})"
    return None


def check(internals: tuple[Internal, ...] = PATCHES + READS) -> None:
    """Raises :class:`InternalsChanged` if any entry differs from what it expects."""
    lines = [line for line in map(difference, internals) if line is not None]
    if lines:
        raise InternalsChanged("\n".join(lines))


@functools.cache
def require(name: str) -> None:
    """Checks one entry, once per process: for reads made outside the local runner path."""
    check((_BY_NAME[name],))


def original(name: str) -> Any:
    """What patch ``name`` replaced, for a replacement that hands some calls to it."""
    return _ORIGINALS[name]


def installed() -> tuple[str, ...]:
    """The patches installed in this process."""
    return tuple(_ORIGINALS)


_ORIGINALS: dict[str, Any] = {}
_INSTALL_LOCK = threading.Lock()


def _replacement(internal: Internal) -> Any:
    assert internal.replacement is not None
    module, function = internal.replacement.split(":")
    return getattr(importlib.import_module(module), function)


def install_local_runner() -> None:
    """The stream job's local path (pulled ingest on the DirectRunner), from now on, in this process
    (idempotent):

    1. checks every entry of :data:`PATCHES` and :data:`READS` (:func:`check`): raises before anything is
       patched if one differs;
    2. installs every patch (the originals are kept for :func:`original`);
    3. sizes the collector's young generation (:func:`fraudscore.collector.size_young_generation`).
    """
    with _INSTALL_LOCK:
        if _ORIGINALS:
            return
        check()
        for patch in PATCHES:
            owner, name = _owner_and_name(patch)
            replacement = _replacement(patch)
            _ORIGINALS[patch.name] = vars(owner)[name]
            setattr(owner, name, replacement)
        collector.size_young_generation()


def _describe() -> None:
    for internal in PATCHES + READS:
        target = target_of(internal)
        found = "missing" if target is _MISSING else f"{parameters(_function(target))} {fingerprint(target)}"
        print(f"{internal.name}: {metadata.version(internal.distribution)} {internal.target} {found}")


if __name__ == "__main__":
    _describe()
