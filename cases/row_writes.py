"""Bigtable row writes as plain protobuf over the client's own gRPC channel: conditional ones a round at
once, and bulk ones.

Bigtable's only conditional write is per row (CheckAndMutateRow); there is no multi-row form. The
client library's ``ConditionalRow.commit`` makes one blocking call through two wrapper layers
(proto-plus messages, retry and routing wrappers): ~1 ms of this process's CPU per row here, which
made the per-case alert claim most of a replay's case cost. :class:`CheckAndMutate` sends the same
RPC as plain protobuf messages over the client's channel (so the same credentials and endpoint, the
emulator's or Cloud Bigtable's), as non-blocking calls whose replies are collected afterwards:
~0.1-0.2 ms of CPU per row, and one round trip of wall time for a whole batch. :class:`BulkWrite`
does the same for MutateRows (the library's ``Table.mutate_rows`` builds a proto-plus message per cell).
The channel is reached through public properties only (``Client.table_data_client.transport``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_CHECK_AND_MUTATE = "/google.bigtable.v2.Bigtable/CheckAndMutateRow"
_MUTATE_ROWS = "/google.bigtable.v2.Bigtable/MutateRows"
TIMEOUT_S = 30.0
# MutateRows entries that failed with these codes are sent again (the cells carry explicit timestamps,
# so a repeat writes the same cells): UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED.
_RETRYABLE = {14, 4, 10}
_ATTEMPTS = 3


def _pb() -> tuple[Any, Any, Any, Any]:
    from google.cloud.bigtable_v2.types import bigtable, data

    return (
        bigtable.CheckAndMutateRowRequest.pb(),
        bigtable.CheckAndMutateRowResponse.pb(),
        data.RowFilter.pb(),
        data.Mutation.pb(),
    )


def _channel(client: Any) -> Any:
    """The gRPC channel of a ``google.cloud.bigtable`` Client's data API (its credentials and endpoint), through
    public properties only (``Client.table_data_client``, the GAPIC client's ``transport``, its ``grpc_channel``)."""
    return client.table_data_client.transport.grpc_channel


def _routing(table_name: str) -> tuple[tuple[str, str], ...]:
    # The routing header the client library sends with every data call.
    return (("x-goog-request-params", f"table_name={table_name}"),)


def _set_cells(mutation: Any, cells: Sequence[SetCell]) -> list[Any]:
    set_cell = mutation.SetCell
    return [
        # Bigtable cell times are microseconds, kept to whole milliseconds.
        mutation(
            set_cell=set_cell(
                family_name=c.family,
                column_qualifier=c.column,
                value=c.value,
                timestamp_micros=c.timestamp_ms * 1000,
            )
        )
        for c in cells
    ]


@dataclass(frozen=True)
class SetCell:
    family: str
    column: bytes
    timestamp_ms: int
    value: bytes


def chain(*, family: str, column: bytes, latest_value: bytes | None = None) -> Any:
    """The row filter "cells of family:column" (and, given ``latest_value``, "whose newest cell is exactly it")."""
    _, _, row_filter, _ = _pb()
    filters = [row_filter(family_name_regex_filter=family), row_filter(column_qualifier_regex_filter=column)]
    if latest_value is not None:
        # Callers pass values made of [0-9a-f@] only, which are their own exact regular expression.
        filters += [row_filter(cells_per_column_limit_filter=1), row_filter(value_regex_filter=latest_value)]
    return row_filter(chain=row_filter.Chain(filters=filters))


class CheckAndMutate:
    """Conditional mutations on one table: "if the predicate matches nothing in the row, set these cells"."""

    def __init__(self, client: Any, table: Any) -> None:
        """``client``, ``table``: a ``google.cloud.bigtable`` Client (its channel is used) and one of its Tables."""
        request, response, _, mutation = _pb()
        self._request = request
        self._mutation = mutation
        self._name = table.name
        self._call = _channel(client).unary_unary(
            _CHECK_AND_MUTATE, request_serializer=request.SerializeToString, response_deserializer=response.FromString
        )
        self._metadata = _routing(self._name)

    def if_absent(self, rows: Sequence[tuple[bytes, Any, Sequence[SetCell]]]) -> list[bool]:
        """For each ``(row key, predicate, cells)``: sets the cells if the predicate matches no cell of the row.

        Returns, per row, whether the predicate matched (True: nothing was written).
        """
        return self._round(rows, on_match=False)

    def if_present(self, rows: Sequence[tuple[bytes, Any, Sequence[SetCell]]]) -> list[bool]:
        """For each ``(row key, predicate, cells)``: sets the cells if the predicate matches a cell of the row.

        Returns, per row, whether the predicate matched (True: the cells were written).
        """
        return self._round(rows, on_match=True)

    def _round(self, rows: Sequence[tuple[bytes, Any, Sequence[SetCell]]], *, on_match: bool) -> list[bool]:
        # Every request is sent before any reply is awaited: one round trip for the batch.
        futures = [
            self._call.future(self._build(key, predicate, cells, on_match), timeout=TIMEOUT_S, metadata=self._metadata)
            for key, predicate, cells in rows
        ]
        return [bool(f.result().predicate_matched) for f in futures]

    def _build(self, key: bytes, predicate: Any, cells: Sequence[SetCell], on_match: bool) -> Any:
        branch = "true_mutations" if on_match else "false_mutations"
        return self._request(
            table_name=self._name,
            row_key=key,
            predicate_filter=predicate,
            **{branch: _set_cells(self._mutation, cells)},
        )


class BulkWrite:
    """Unconditional writes of many rows of one table in one MutateRows call."""

    def __init__(self, client: Any, table: Any) -> None:
        from google.cloud.bigtable_v2.types import bigtable

        request, response = bigtable.MutateRowsRequest.pb(), bigtable.MutateRowsResponse.pb()
        self._request = request
        self._mutation = _pb()[3]
        self._name = table.name
        self._call = _channel(client).unary_stream(
            _MUTATE_ROWS, request_serializer=request.SerializeToString, response_deserializer=response.FromString
        )
        self._metadata = _routing(self._name)

    def write(self, rows: Sequence[tuple[bytes, Sequence[SetCell]]]) -> list[tuple[bytes, str]]:
        """Writes every row's cells; returns the rows that failed (key, reason), transient failures retried."""
        entry = self._request.Entry
        pending = list(range(len(rows)))
        failed: dict[int, tuple[int, str]] = {}
        for _ in range(_ATTEMPTS):
            request = self._request(
                table_name=self._name,
                entries=[entry(row_key=rows[i][0], mutations=_set_cells(self._mutation, rows[i][1])) for i in pending],
            )
            for response in self._call(request, timeout=TIMEOUT_S, metadata=self._metadata):
                for e in response.entries:
                    row = pending[e.index]
                    if e.status.code == 0:
                        failed.pop(row, None)
                    else:
                        failed[row] = (e.status.code, e.status.message)
            pending = [i for i, (code, _) in failed.items() if code in _RETRYABLE]
            if not pending:
                break
        return [(rows[i][0], f"code {code}: {message}") for i, (code, message) in sorted(failed.items())]
