"""The checked-in generated protobuf/gRPC code matches protos/ (scripts/gen_protos.py --check)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from fraudscore.v1 import scorer_pb2, transaction_pb2

ROOT = Path(__file__).resolve().parents[2]


def check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_generated_code_matches_the_protos() -> None:
    result = check(ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_check_detects_a_proto_changed_without_regenerating(tmp_path: Path) -> None:
    # On a copy, so the real tree is never touched: the check must fail once a .proto moves on.
    for part in ("scripts", "protos", "fraudscore/v1"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    assert check(tmp_path).returncode == 0
    proto = tmp_path / "protos/fraudscore/v1/transaction.proto"
    proto.write_text(
        proto.read_text().replace("optional int32 label = 7;", "optional int32 label = 7;\n  string note = 8;")
    )
    result = check(tmp_path)
    assert result.returncode == 1
    assert "transaction_pb2" in result.stderr and "make protos" in result.stderr


def test_generated_modules_describe_the_proto_files() -> None:
    # The import path and package the generated code was built with are the ones the services use.
    assert transaction_pb2.DESCRIPTOR.name == "fraudscore/v1/transaction.proto"
    assert transaction_pb2.DESCRIPTOR.package == "fraudscore.v1"
    assert "Transaction" in transaction_pb2.DESCRIPTOR.message_types_by_name
    assert scorer_pb2.DESCRIPTOR.package == "fraudscore.v1"
    assert scorer_pb2.DESCRIPTOR.services_by_name
