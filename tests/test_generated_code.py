"""The committed protobuf/gRPC code and enums are exactly what `make proto` generates from lookup.proto."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
GENERATED = ROOT / "protos" / "nixlookup" / "v1"


def test_committed_code_matches_a_fresh_generation(tmp_path: Path) -> None:
    """Regenerating into a scratch directory gives byte-identical files: edit the .proto, run `make proto`."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "protoc-gen-mypy").exists():
        pytest.skip("mypy-protobuf's protoc-gen-mypy is not installed beside this Python (dev extras)")
    protos = sorted(str(path.relative_to(PROTO_ROOT)) for path in GENERATED.glob("*.proto"))
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            str(PROTO_ROOT),
            f"--python_out={tmp_path}",
            f"--mypy_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"--mypy_grpc_out={tmp_path}",
            *protos,
        ],
        cwd=PROTO_ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    fresh = sorted((tmp_path / "nixlookup" / "v1").glob("*_pb2*.py*"))
    assert fresh, "protoc generated nothing"
    committed = sorted(GENERATED.glob("*_pb2*.py*"))
    assert [path.name for path in fresh] == [path.name for path in committed]
    stale = [path.name for path in fresh if path.read_bytes() != (GENERATED / path.name).read_bytes()]
    assert not stale, f"stale generated code: {stale}; run `make proto` and commit the result"


def test_committed_enums_match_a_fresh_generation(tmp_path: Path) -> None:
    """`nixlookup.v1.enums` is what protos/generate_enums.py writes from the proto: edit the .proto, run
    `make proto`."""
    out = tmp_path / "enums.py"
    subprocess.run([sys.executable, str(PROTO_ROOT / "generate_enums.py"), str(out)], check=True)
    assert out.read_bytes() == (GENERATED / "enums.py").read_bytes(), "stale enums.py: run `make proto`"
