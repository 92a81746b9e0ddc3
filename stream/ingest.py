"""At-least-once ingest for runners that acknowledge Pub/Sub messages as they read them.

Beam's Python DirectRunner reads Pub/Sub by pulling 10 messages and acknowledging them at once, so
whatever was pulled and not yet written dies with the process. :class:`PullTransactions` keeps
``ReadFromPubSub`` but swaps the DirectRunner's read for its subscription (:func:`_pulling_read`, installed
by :func:`fraudscore.internals.install_local_runner`)::

    ReadFromPubSub (DirectRunner evaluator: pull up to 1,000 messages, no acknowledgement)
      -> ParseTransactions -> ... -> the sinks, which acknowledge (AckTracker.release)

Each pulled message carries its ack id in the reserved attribute :data:`ACK_ATTRIBUTE` (removed by
the parser) and then in its record's ``ack_ids`` (``DeadLetter``, ``ScoredTransaction``; across
RunInference, which cannot carry extras, through :meth:`AckTracker.carry` / :meth:`AckTracker.take`).
A message is held from its pull until the record made of it (a scored transaction, a dead letter) is
told which named *parts* it owes (:meth:`AckTracker.owe`, from the parts the job's durable sinks declare:
:mod:`stream.ack_parts`), and acknowledged once each of those parts has been released by its sink after
that sink made its effect durable (:meth:`AckTracker.release`).

While a message is in flight its ack deadline is pushed out every :data:`EXTEND_EVERY_S` seconds to
:data:`DEADLINE_S`; if the process dies, Pub/Sub redelivers it within :data:`DEADLINE_S`.

Why not PeriodicImpulse and a pulling DoFn: the DirectRunner then picks the FnApiRunner, which runs a
streaming pipeline stage by stage (nothing after the first stateful step ever runs), and the
BundleBasedDirectRunner refuses PeriodicImpulse ("not replaced as expected"). So ReadFromPubSub stays and
only its DirectRunner evaluator's read is swapped, for the subscriptions registered by PullTransactions.

The tracker is process-wide memory: right for the DirectRunner (one process). Dataflow keeps
``ReadFromPubSub``, which acknowledges after its own durable checkpoint, and no record carries ack ids
there, so every release is a no-op.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable
from datetime import UTC
from typing import Any

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.utils.timestamp import Timestamp

from fraudscore import internals

_LOG = logging.getLogger(__name__)

ACK_ATTRIBUTE = "fraudscore-ack-id"  # reserved: set by the puller, removed by the parser
PULL_BATCH = 1_000  # messages per pull (Pub/Sub's maximum)
PULL_INTERVAL_S = 0.05  # the puller's pause when nothing may be pulled (in-flight cap, stopping)
IDLE_PULL_S = 0.02  # the puller's pause after an empty pull
# The runner's read hands out a bundle once it holds READ_MIN_BATCH messages or its oldest has waited
# READ_LINGER_S: the DirectRunner pays a per-bundle cost at every step (a DoFn set up per bundle,
# a scheduling pass of its monitor), which at 500 tx/s in bundles of a few messages was most of the job.
READ_MIN_BATCH = 500
READ_LINGER_S = 0.1
READ_WAIT_S = 0.05  # how long the read may wait for that when the runner has nothing else to do
MAX_IN_FLIGHT = 10_000  # stop pulling while this many messages are unacknowledged (flow control)
DEADLINE_S = 20  # ack deadline while in flight: how soon Pub/Sub redelivers after a crash
EXTEND_EVERY_S = 5.0
ACK_EVERY_S = 0.1  # released messages are acknowledged in batches this often
_ACK_CHUNK = 1_000


class ReleasedTooEarly(RuntimeError):
    """A sink released a part of a message before the message was told what it owes."""


class AckTracker:
    """The ack ids in flight in this process, their outstanding parts, and their deadlines."""

    def __init__(self, subscription: str, subscriber: Any = None) -> None:
        self.subscription = subscription
        self._subscriber = subscriber
        self._lock = threading.Lock()
        # ack id -> the names of the parts it still owes; None while held (pulled, not yet told what it owes).
        self._parts: dict[str, set[str] | None] = {}
        self._carried: dict[str, list[str]] = {}
        self._done: list[str] = []  # released, acknowledgement not yet sent
        self._flush_lock = threading.Lock()
        self._stopping = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._pulled: deque[tuple[float, Any]] = deque()  # (when pulled, message) not yet handed to the runner
        self._arrived = threading.Condition(threading.Lock())
        self._puller: threading.Thread | None = None
        self.acknowledged = 0
        self._extender = threading.Thread(target=self._extend_deadlines, name="ack-deadlines", daemon=True)
        self._extender.start()
        self._acker = threading.Thread(target=self._acknowledge_released, name="acks", daemon=True)
        self._acker.start()

    @property
    def subscriber(self) -> Any:
        if self._subscriber is None:
            from google.cloud import pubsub_v1  # type: ignore[attr-defined]

            self._subscriber = pubsub_v1.SubscriberClient()
        return self._subscriber

    # --- the puller's side ---

    def pull(self, max_messages: int) -> list[Any]:
        """Up to ``max_messages`` received messages, each held until it is told what it owes (:meth:`owe`)."""
        if self._stopping.is_set():
            return []
        with self._lock:
            room = MAX_IN_FLIGHT - len(self._parts) - len(self._done)
        if room <= 0:
            return []
        response = self.subscriber.pull(
            request={
                "subscription": self.subscription,
                "max_messages": min(max_messages, room),
                "return_immediately": True,
            },
            timeout=30,
        )
        received = list(_raw(response).received_messages)
        if not received:
            return []
        ack_ids = [m.ack_id for m in received]
        with self._lock:
            for ack_id in ack_ids:
                self._parts.setdefault(ack_id, None)
        self._modify(ack_ids, DEADLINE_S)
        return received

    def start_puller(self) -> None:
        """Pulls on a thread of its own from now on (idempotent), for :meth:`take_pulled`."""
        with self._lock:
            if self._puller is not None:
                return
            self._puller = threading.Thread(target=self._pull_ahead, name="pubsub-pull", daemon=True)
        self._puller.start()

    def take_pulled(
        self, max_messages: int, min_messages: int = 1, linger_s: float = 0.0, wait_s: float = 0.0
    ) -> list[Any]:
        """Up to ``max_messages`` messages the puller has pulled, once there are ``min_messages`` or the oldest
        has waited ``linger_s``; waits at most ``wait_s`` for that, else returns none.

        Messages pulled before :meth:`stop_pulling` are still handed out: they are in flight, and
        finishing them is what a graceful stop waits for.
        """
        deadline = time.monotonic() + wait_s
        with self._arrived:
            while True:
                now = time.monotonic()
                if self._pulled and (len(self._pulled) >= min_messages or now - self._pulled[0][0] >= linger_s):
                    n = min(max_messages, len(self._pulled))
                    return [self._pulled.popleft()[1] for _ in range(n)]
                if now >= deadline:
                    return []
                ripe = self._pulled[0][0] + linger_s if self._pulled else deadline
                self._arrived.wait(min(deadline, ripe) - now)

    def _pull_ahead(self) -> None:
        # The Pub/Sub round trips and the deadline updates run here, off the runner's single worker
        # thread: a pull there (and its pause when the subscription was empty) held up every bundle.
        while True:
            with self._arrived:
                backlog = len(self._pulled)
            received = self.pull(PULL_BATCH) if backlog < PULL_BATCH else []
            if received:
                at = time.monotonic()
                with self._arrived:
                    self._pulled.extend((at, m) for m in received)
                    self._arrived.notify_all()
            else:
                time.sleep(PULL_INTERVAL_S if backlog or self.stopping else IDLE_PULL_S)

    # --- the pipeline's side ---

    def carry(self, transaction_id: str, ack_id: str) -> None:
        """Hands a transaction's ack id across RunInference (the parser's side)."""
        with self._lock:
            self._carried.setdefault(transaction_id, []).append(ack_id)

    def take(self, transaction_id: str) -> tuple[str, ...]:
        """The ack ids carried for a transaction (the scorer's side; a duplicate in flight gets none)."""
        with self._lock:
            return tuple(self._carried.pop(transaction_id, ()))

    def owe(self, ack_ids: Iterable[str], parts: Iterable[str]) -> None:
        """What these held messages owe before they are acknowledged (none: acknowledged at once).

        Once per message: a message told already keeps what it was told (its parts may be released).
        """
        owed = set(parts)
        with self._lock:
            for ack_id in ack_ids:
                if ack_id not in self._parts or self._parts[ack_id] is not None:
                    continue
                if owed:
                    self._parts[ack_id] = set(owed)
                else:
                    del self._parts[ack_id]
                    self._done.append(ack_id)
            flush_now = len(self._done) >= _ACK_CHUNK
        if flush_now:
            self.flush()

    def release(self, part: str, ack_ids: Iterable[str]) -> None:
        """Part ``part`` of each message is durable; the messages with no part left are acknowledged.

        A part is released once (again: no effect); an ack id this process does not hold (acknowledged
        already, pulled before a restart) is skipped. Releasing a held message, one not yet told what it
        owes, is a wiring error (the part would not be counted): it raises :class:`ReleasedTooEarly`.
        Acknowledgements go out in batches (every ACK_EVERY_S, or at once past _ACK_CHUNK), not one
        call per release: a crash before the batch leaves, at most, a redelivery of durable messages.
        """
        early = []
        with self._lock:
            for ack_id in ack_ids:
                if ack_id not in self._parts:
                    continue
                left = self._parts[ack_id]
                if left is None:
                    early.append(ack_id)
                    continue
                left.discard(part)
                if not left:
                    del self._parts[ack_id]
                    self._done.append(ack_id)
            flush_now = len(self._done) >= _ACK_CHUNK
        if flush_now:
            self.flush()
        if early:
            raise ReleasedTooEarly(
                f"part {part!r} released for {len(early)} message(s) not yet told what they owe (first {early[0]}):"
                " records must pass AckPlan.owe before any sink"
            )

    def flush(self) -> None:
        """Acknowledges every released message now."""
        with self._flush_lock:
            with self._lock:
                done, self._done = self._done, []
            for i in range(0, len(done), _ACK_CHUNK):
                self._call(
                    self.subscriber.acknowledge,
                    {"subscription": self.subscription, "ack_ids": done[i : i + _ACK_CHUNK]},
                )
            with self._lock:
                self.acknowledged += len(done)
                self._idle.notify_all()

    def in_flight(self) -> int:
        """Messages pulled and not yet acknowledged."""
        with self._lock:
            return len(self._parts) + len(self._done)

    # --- stopping ---

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop_pulling(self) -> None:
        self._stopping.set()

    def wait_idle(self, timeout: float) -> bool:
        """After :meth:`stop_pulling`: waits until everything pulled is acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._parts or self._done:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.5))
        return True

    # --- background: acknowledgements and deadlines ---

    def _acknowledge_released(self) -> None:
        while True:
            time.sleep(ACK_EVERY_S)
            self.flush()

    def _extend_deadlines(self) -> None:
        while True:
            time.sleep(EXTEND_EVERY_S)
            with self._lock:
                ack_ids = list(self._parts)
            if ack_ids:
                self._modify(ack_ids, DEADLINE_S)

    def _modify(self, ack_ids: list[str], seconds: int) -> None:
        for i in range(0, len(ack_ids), _ACK_CHUNK):
            chunk = ack_ids[i : i + _ACK_CHUNK]
            request = {"subscription": self.subscription, "ack_ids": chunk, "ack_deadline_seconds": seconds}
            self._call(self.subscriber.modify_ack_deadline, request)

    @staticmethod
    def _call(method: Any, request: dict[str, Any]) -> None:
        try:
            method(request=request, timeout=30)
        except Exception as exc:  # an expired ack id: Pub/Sub redelivers, the sinks are idempotent
            _LOG.warning("Pub/Sub %s failed: %s", getattr(method, "__name__", "call"), exc)


_TRACKER: AckTracker | None = None
_TRACKER_LOCK = threading.Lock()


def tracker_for(subscription: str) -> AckTracker:
    """This process's tracker (one subscription per job)."""
    global _TRACKER
    with _TRACKER_LOCK:
        if _TRACKER is None or _TRACKER.subscription != subscription:
            _TRACKER = AckTracker(subscription)
        return _TRACKER


def current() -> AckTracker | None:
    """The process's tracker, if this process pulls (None on Dataflow and in replay)."""
    return _TRACKER


def release(part: str, ack_ids: Iterable[str]) -> None:
    """Releases part ``part`` of each message (no-op without ack ids or tracker)."""
    ids = tuple(ack_ids)
    if ids and _TRACKER is not None:
        _TRACKER.release(part, ids)


def owe(ack_ids: Iterable[str], parts: Iterable[str]) -> None:
    """What these messages owe (no-op without ack ids or tracker): :meth:`AckTracker.owe`."""
    ids = tuple(ack_ids)
    if ids and _TRACKER is not None:
        _TRACKER.owe(ids, parts)


def carry(transaction_id: str, ack_id: str) -> None:
    if _TRACKER is not None:
        _TRACKER.carry(transaction_id, ack_id)


def take(transaction_id: str) -> tuple[str, ...]:
    return _TRACKER.take(transaction_id) if _TRACKER is not None else ()


_PULLED: set[str] = set()  # subscriptions this process reads through the tracker


def _pulling_read(self: Any, timestamp_attribute: str | None) -> list[tuple[Timestamp, PubsubMessage]]:
    """``_PubSubReadEvaluator._read_from_pubsub`` for a pulled subscription: no acknowledgement here.

    Whatever the tracker's puller thread has pulled, up to PULL_BATCH messages per call (Beam pulls 10),
    each carrying its ack id in ACK_ATTRIBUTE and timestamped with its publish time like Beam's (the
    parser re-stamps valid ones with event time).
    """
    if self._sub_name not in _PULLED:
        return internals.original("pubsub-read-pulled")(self, timestamp_attribute)  # type: ignore[no-any-return]
    tracker = tracker_for(self._sub_name)
    tracker.start_puller()
    out = []
    # The runner calls again as soon as this returns: wait (so an idle job does not spin) only when the
    # runner's one worker thread has nothing else queued, since waiting here holds up every step.
    wait_s = 0.0 if _runner_has_other_work() else READ_WAIT_S
    for m in tracker.take_pulled(PULL_BATCH, READ_MIN_BATCH, READ_LINGER_S, wait_s):
        # Plain protobuf fields, not the client's proto-plus wrappers (~10 us a message less).
        raw = m.message
        attributes = dict(raw.attributes)
        attributes[ACK_ATTRIBUTE] = m.ack_id
        message = PubsubMessage(raw.data, attributes, raw.message_id or None)
        published = raw.publish_time
        message.publish_time = published.ToDatetime(tzinfo=UTC)
        out.append((Timestamp(seconds=published.seconds, micros=published.nanos // 1000), message))
    return out


_RUNNER_QUEUES: weakref.WeakSet[Any] = weakref.WeakSet()  # the DirectRunner executors' task queues


_MONITOR_TASK = "monitor"  # the name of the DirectRunner's monitor task (read "executor-monitor-task-name")


def _runner_has_other_work() -> bool:
    """Whether a DirectRunner task other than its monitor (which re-queues itself) waits for the worker."""
    for queue in list(_RUNNER_QUEUES):
        if any(getattr(task, "name", None) != _MONITOR_TASK for task in list(queue.queue)):
            return True
    return False


def _registering_init(self: Any, num_workers: int) -> None:
    """``_ExecutorService.__init__`` that registers the executor's task queue for :func:`_runner_has_other_work`."""
    internals.original("executor-queue-registry")(self, num_workers)
    _RUNNER_QUEUES.add(self.queue)


def _raw(response: Any) -> Any:
    """The plain protobuf message behind a proto-plus response (anything else passes through)."""
    to_pb = getattr(type(response), "pb", None)
    return to_pb(response) if to_pb is not None else response


class PullTransactions(beam.PTransform):  # type: ignore[misc]
    """PBegin -> PCollection[PubsubMessage], each unacknowledged until the sinks release it (DirectRunner)."""

    def __init__(self, subscription_path: str) -> None:
        super().__init__()
        self._subscription = subscription_path

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        # Only a registration: the DirectRunner's read is replaced by fraudscore.internals.install_local_runner,
        # which the job calls explicitly (stream.pipeline.run_with); building patches nothing.
        _PULLED.add(self._subscription)
        return pbegin | "ReadFromPubSub" >> beam.io.ReadFromPubSub(
            subscription=self._subscription, with_attributes=True
        )
