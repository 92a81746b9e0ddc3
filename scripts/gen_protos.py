"""Generates fraudscore/v1/*_pb2*.py from protos/; ``--check`` fails if they are stale.

Run by ``make protos`` (and by ``make test`` with ``--check``) so that the
checked-in generated code always matches the .proto files.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = Path("fraudscore/v1")


def generate(out_dir: Path) -> list[Path]:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed: {' '.join(args)}")
    return sorted((out_dir / PACKAGE_DIR).glob("*_pb2*.py*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check that generated code is up to date")
    args = parser.parse_args()
    target = ROOT / PACKAGE_DIR
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp))
        stale = []
        for path in generated:
            dest = target / path.name
            if not dest.exists() or not filecmp.cmp(path, dest, shallow=False):
                stale.append(dest.relative_to(ROOT))
                if not args.check:
                    dest.write_bytes(path.read_bytes())
    if args.check and stale:
        print(f"generated code is stale, run `make protos`: {', '.join(map(str, stale))}", file=sys.stderr)
        return 1
    (target / "__init__.py").touch()
    if stale:
        print(f"generated {', '.join(map(str, stale))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
