"""What a pulled message owes before it is acknowledged, derived from the durable sinks the job was built with.

Each durable sink is a :class:`DurableSink` and declares (:meth:`DurableSink.releases`) the acknowledgement
*parts* it releases, each for the records that owe it::

    DeliverCases        card              every scored transaction (its card step's cases, if any, are durable)
                        tx-anomaly-case   the transactions with a TX_ANOMALY case (stream.rules.has_transaction_case)
    WriteSample         sample            the sampled transactions (the same hash its filter uses)
    PublishDeadLetters  dead-letter       every dead letter

:class:`AckPlan` is the union of the declarations of the sinks a pipeline was built with. Where a record
first holds its message's ack ids (the scorer's event-time step for scored transactions, the dead letters'
flatten for dead letters), upstream of every sink, :meth:`AckPlan.owe` tells the tracker the named parts it
owes (:meth:`stream.ingest.AckTracker.owe`); each sink releases its own part by name once its effect is
durable (a part nobody declared is never owed, so it cannot hold a message; one released before it was owed
is an error). :func:`check_sinks` walks the built pipeline: every transform whose output nothing consumes
(a sink) must be one of the plan's sinks, so a sink added without a declaration fails the build.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam

from stream import ingest

# The parts' names: what a Release marker or a sink's release says it releases.
CARD = "card"
TX_ANOMALY_CASE = "tx-anomaly-case"
SAMPLE = "sample"
DEAD_LETTER = "dead-letter"


def every(record: Any) -> bool:
    return True


@dataclass(frozen=True)
class Part:
    """One acknowledgement part: released by the sink that declares it, owed by the ``record`` type's
    instances for which ``owed_if`` holds (a module-level function or a partial: the plan is pickled)."""

    name: str
    record: type
    owed_if: Callable[[Any], bool] = every


class DurableSink(beam.PTransform):  # type: ignore[misc]
    """A step whose effect leaves the pipeline (Bigtable rows, Pub/Sub messages): it says which parts it releases."""

    def releases(self) -> tuple[Part, ...]:
        raise NotImplementedError(f"{type(self).__name__} declares no acknowledgement parts")


_NOTHING: tuple[frozenset[str], tuple[tuple[str, Callable[[Any], bool]], ...]] = (frozenset(), ())


class UndeclaredSink(ValueError):
    """A sink of the built pipeline is not one of the sinks the acknowledgement plan was derived from."""


@dataclass(frozen=True)
class AckPlan:
    """The parts the job's sinks release; what each record owes."""

    parts: tuple[Part, ...]
    sinks: tuple[DurableSink, ...] = ()
    _by_type: dict[type, tuple[frozenset[str], tuple[tuple[str, Callable[[Any], bool]], ...]]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # Per record type: the parts every such record owes, and the conditional ones (owed() runs per message).
        by_type: dict[type, tuple[set[str], list[tuple[str, Callable[[Any], bool]]]]] = {}
        for p in self.parts:
            always, conditional = by_type.setdefault(p.record, (set(), []))
            if p.owed_if is every:
                always.add(p.name)
            else:
                conditional.append((p.name, p.owed_if))
        index = {t: (frozenset(a), tuple(c)) for t, (a, c) in by_type.items()}
        object.__setattr__(self, "_by_type", index)

    @classmethod
    def of(cls, sinks: Iterable[DurableSink]) -> AckPlan:
        sinks = tuple(sinks)
        for sink in sinks:
            if not isinstance(sink, DurableSink):
                raise UndeclaredSink(f"{type(sink).__name__} is a sink that declares no acknowledgement parts")
        parts = tuple(p for s in sinks for p in s.releases())
        names = [p.name for p in parts]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"acknowledgement part(s) {', '.join(repeated)} declared by more than one sink")
        return cls(parts, sinks)

    def owed(self, record: Any) -> frozenset[str]:
        """The names of the parts ``record``'s message owes (declared for its exact type)."""
        always, conditional = self._by_type.get(type(record), _NOTHING)
        extra = [name for name, owed_if in conditional if owed_if(record)]
        return always.union(extra) if extra else always

    def owe(self, record: Any) -> Any:
        """Tells the tracker what ``record``'s messages owe (no-op without ack ids); returns ``record``."""
        if record.ack_ids:
            ingest.owe(record.ack_ids, self.owed(record))
        return record

    def __getstate__(self) -> dict[str, Any]:
        # Steps carry the plan to workers: the parts are enough there (the sinks are only for check_sinks).
        return {"parts": self.parts, "sinks": ()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "parts", state["parts"])
        object.__setattr__(self, "sinks", state["sinks"])
        self.__post_init__()


def sinks_of(pipeline: beam.Pipeline) -> list[tuple[str, beam.PTransform]]:
    """(full label, transform) of each sink of ``pipeline``, in order: for every step whose outputs no other
    step consumes, the nearest enclosing :class:`DurableSink`, or else (an undeclared sink) its outermost
    enclosing step."""
    consumed: set[int] = set()
    leaves: list[Any] = []

    class _Visitor(beam.pipeline.PipelineVisitor):  # type: ignore[misc]
        def visit_transform(self, applied: Any) -> None:
            self._note(applied)
            leaves.append(applied)

        def enter_composite_transform(self, applied: Any) -> None:
            self._note(applied)

        def _note(self, applied: Any) -> None:
            consumed.update(id(p) for p in applied.main_inputs.values())
            consumed.update(id(s.pvalue) for s in applied.side_inputs)

    pipeline.visit(_Visitor())
    found: dict[int, tuple[str, beam.PTransform]] = {}
    for leaf in leaves:
        if any(id(o) in consumed for o in leaf.outputs.values()):
            continue
        node, outermost = leaf, leaf
        while node.parent is not None and not isinstance(node.transform, DurableSink):
            outermost, node = node, node.parent
        sink = node if node.parent is not None else outermost  # the root's parent is None
        found.setdefault(id(sink.transform), (sink.full_label, sink.transform))
    return list(found.values())


def check_sinks(pipeline: beam.Pipeline, plan: AckPlan) -> None:
    """Raises :class:`UndeclaredSink` naming each sink of ``pipeline`` that ``plan`` was not derived from."""
    known = {id(s) for s in plan.sinks}
    problems = []
    for label, transform in sinks_of(pipeline):
        if not isinstance(transform, DurableSink):
            problems.append(f"{label} ({type(transform).__name__}) is a sink that declares no acknowledgement parts")
        elif id(transform) not in known:
            problems.append(f"{label} ({type(transform).__name__}) is not among the sinks the plan was derived from")
    if problems:
        raise UndeclaredSink("; ".join(problems) + ": see docs/architecture.md, 'A sink'")
