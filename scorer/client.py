"""``fraudscore score``: try a running scorer by hand.

    fraudscore score --json '{"transactionId": "t-1", "cardId": "c-1", ...}'
    fraudscore score --csv data/creditcard.csv --limit 20
    fraudscore score --csv data/creditcard.csv --columns

One line per transaction: score (and ``p_fraud``, the second stage's fraud
probability, when the model version has one), threshold, verdict, model version and the
features that account for most of the reconstruction error. CSV rows are
parsed by fraudscore.schema and sent with ScoreBatch (with ``--columns``: as one
float32 matrix per call with ScoreColumns, in the model's feature order from
GetModelInfo); a row that cannot be parsed is reported with its row number and
skipped, the rest are scored. The CSV may be plain, ``.csv.gz`` or Kaggle's
``.zip`` (:mod:`fraudscore.csvfiles`).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc

from fraudscore import csvfiles, schema
from fraudscore.v1 import scorer_pb2 as pb
from fraudscore.v1 import scorer_pb2_grpc
from fraudscore.v1.transaction_pb2 import Transaction
from scorer.auth import bearer_metadata
from scorer.config import TOKEN_ENV


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default="127.0.0.1:50051", help="scorer address (default %(default)s)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--json", help="one transaction in proto3 JSON form")
    source.add_argument(
        "--csv", type=Path, help="a CSV in the Kaggle creditcard.csv schema (.csv, .csv.gz or Kaggle's .zip)"
    )
    parser.add_argument("--limit", type=int, help="score at most this many CSV rows")
    parser.add_argument(
        "--batch-size", type=int, default=500, help="rows per ScoreBatch/ScoreColumns call (default %(default)s)"
    )
    parser.add_argument(
        "--columns",
        action="store_true",
        help="send CSV rows with ScoreColumns (one float32 matrix a call; top features for the flagged rows only)",
    )
    parser.add_argument("--model-version", type=int, default=0, help="pin a loaded model version (0: newest)")
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline per call in seconds")
    parser.add_argument("--token", help=f"bearer token (default: env {TOKEN_ENV})")
    parser.add_argument("--tls-ca", type=Path, help="PEM CA that signed the server certificate: use TLS")
    parser.add_argument("--tls-cert", type=Path, help="client certificate for mutual TLS (with --tls-key)")
    parser.add_argument("--tls-key", type=Path, help="client private key for mutual TLS")


def format_response(r: pb.ScoreResponse) -> str:
    top = ", ".join(f"{c.name} {c.share:.0%}" for c in r.top_features)
    verdict = "ANOMALY" if r.is_anomaly else "normal "
    # The second stage's probability, when the version has one (the threshold then may apply to it: GetModelInfo).
    probability = f"p_fraud={r.fraud_probability:<8.4f} " if r.HasField("fraud_probability") else ""
    return (
        f"{r.transaction_id:<14} error={r.reconstruction_error:<10.5g} {probability}threshold={r.threshold:<8.4g} "
        f"{verdict} "
        f"v{r.model_version} out_of_range={r.out_of_range_features} top: {top}"
    )


def explanation_lines(r: pb.ScoreResponse, tx: Transaction, info: pb.ModelInfo) -> list[str]:
    """Each top feature as its value against the training normals' range and its share of the score:
    ``  V14 = -9.31 (normals p1..p99 -2.6..1.9), 41% of the score``."""
    if info.version != r.model_version:  # ranges of another version would mislead: say less rather than wrong
        return [f"  {c.name}: {c.share:.0%} of the score" for c in r.top_features]
    ranges = {n.feature: n for n in info.normal_ranges}
    names = tuple(info.features)
    values = dict(zip(names, (float(v) for v in schema.feature_row(tx, names)), strict=True))
    lines = []
    for c in r.top_features:
        normal = ranges.get(c.name)
        where = f" (normals p1..p99 {normal.p01:.3g}..{normal.p99:.3g})" if normal else ""
        value = values.get(c.name)
        lines.append(f"  {c.name} = {value:.4g}{where}, {c.share:.0%} of the score" if value is not None else "")
    return [line for line in lines if line]


def _channel(args: argparse.Namespace) -> grpc.Channel:
    if args.tls_ca is None and args.tls_cert is None:
        return grpc.insecure_channel(args.target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=args.tls_ca.read_bytes() if args.tls_ca else None,
        private_key=args.tls_key.read_bytes() if args.tls_key else None,
        certificate_chain=args.tls_cert.read_bytes() if args.tls_cert else None,
    )
    return grpc.secure_channel(args.target, credentials)


def _csv_transactions(path: Path, limit: int | None) -> Iterator[Transaction | str]:
    """Transactions of the file, or an error line for a row that cannot be parsed."""
    with csvfiles.open_text(path) as f:
        for number, row in enumerate(itertools.islice(csv.DictReader(f), limit), start=1):
            try:
                yield schema.from_csv_row(row, row_number=number)
            except schema.InvalidTransaction as exc:
                yield f"row {number}: {exc}"


def main(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get(TOKEN_ENV)
    try:
        with _channel(args) as channel:
            stub = scorer_pb2_grpc.FraudScorerStub(channel)
            call = {"timeout": args.timeout, "metadata": bearer_metadata(token)}
            if args.json is not None:
                tx = schema.parse_json(args.json)
                response = stub.Score(pb.ScoreRequest(transaction=tx, model_version=args.model_version), **call)
                print(format_response(response))
                info = stub.GetModelInfo(pb.GetModelInfoRequest(), **call)
                for line in explanation_lines(response, tx, info):
                    print(line)
                return 0
            return _score_csv(stub, args, call)
    except schema.InvalidTransaction as exc:
        print(f"fraudscore score: invalid transaction: {exc}", file=sys.stderr)
    except grpc.RpcError as exc:
        print(f"fraudscore score: {exc.code().name}: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
    except csvfiles.CsvFileError as exc:
        print(f"fraudscore score: {exc}", file=sys.stderr)
    except UnicodeDecodeError as exc:
        print(f"fraudscore score: {args.csv}: not UTF-8 text ({exc.reason}); expected a CSV file", file=sys.stderr)
    except OSError as exc:
        print(f"fraudscore score: {exc}", file=sys.stderr)
    return 1


def _score_csv(stub: scorer_pb2_grpc.FraudScorerStub, args: argparse.Namespace, call: dict[str, object]) -> int:
    scored = anomalies = bad = 0
    items = _csv_transactions(args.csv, args.limit)
    send = _columns_sender(stub, args, call) if args.columns else _batch_sender(stub, args, call)
    while chunk := list(itertools.islice(items, args.batch_size)):
        for line in (item for item in chunk if isinstance(item, str)):
            print(line, file=sys.stderr)
        txs = [item for item in chunk if isinstance(item, Transaction)]
        bad += len(chunk) - len(txs)
        if not txs:
            continue
        for result in send(txs):
            if isinstance(result, pb.ScoreResponse):
                print(format_response(result))
                scored += 1
                anomalies += result.is_anomaly
            else:
                print(f"{result.transaction_id}: {result.field}: {result.reason}", file=sys.stderr)
                bad += 1
    print(f"scored {scored}, anomalies {anomalies}, rejected {bad}", file=sys.stderr)
    return 0 if bad == 0 else 1


Sender = Callable[[list[Transaction]], list[pb.ScoreResponse | pb.RowError]]


def _batch_sender(stub: scorer_pb2_grpc.FraudScorerStub, args: argparse.Namespace, call: dict[str, Any]) -> Sender:
    def send(txs: list[Transaction]) -> list[pb.ScoreResponse | pb.RowError]:
        reply = stub.ScoreBatch(pb.ScoreBatchRequest(transactions=txs, model_version=args.model_version), **call)
        return [r.score if r.HasField("score") else r.error for r in reply.results]

    return send


def _columns_sender(stub: scorer_pb2_grpc.FraudScorerStub, args: argparse.Namespace, call: dict[str, Any]) -> Sender:
    from scorer import columns  # numpy: only when asked for

    names = tuple(stub.GetModelInfo(pb.GetModelInfoRequest(), **call).features)

    def send(txs: list[Transaction]) -> list[pb.ScoreResponse | pb.RowError]:
        matrix = schema.feature_matrix(txs, names)
        request = columns.request_of([tx.transaction_id for tx in txs], names, matrix, args.model_version)
        return columns.responses(stub.ScoreColumns(request, **call))

    return send
