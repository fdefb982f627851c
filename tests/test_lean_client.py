"""`pip install nixlookup` is the lean client: installed alone into a fresh venv, it checks numbers against
a real server without any server-only package (issue 13, "A lean client"), and its `nixlookup-server` says
in one line which extra it needs (exit 2) instead of an ImportError.

The wheel is built from a copy of the sources (setuptools' own backend, in a child process, so the work
tree gets no build/ or egg-info); a fresh venv gets it through pip's real dependency resolution (the main
venv's pip with ``--python``, ``--no-compile`` to skip byte-compiling numpy: the resolution is unchanged).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SERVER_ONLY_PACKAGES, RegisterFile, ServerFactory

pytestmark = pytest.mark.slow

_REPO = Path(__file__).resolve().parent.parent
_SOURCES = ("pyproject.toml", "README.md", "client", "protos", "server", "bench", "replica")
_LEAN_BYTES = 200 * 1024 * 1024
"""Ceiling on the client's site-packages (measured ~97 MB with .pyc files; the full install was 386 MB)."""


def _build_wheel(workdir: Path) -> Path:
    source = workdir / "src"
    for name in _SOURCES:
        origin = _REPO / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, source / name)
    dist = workdir / "dist"
    code = f"from setuptools import build_meta; print(build_meta.build_wheel({str(dist)!r}))"
    built = subprocess.run(
        [sys.executable, "-c", code], cwd=source, capture_output=True, text=True, timeout=120, check=True
    )
    return dist / built.stdout.strip().splitlines()[-1]


def _site_packages(venv: Path) -> Path:
    (found,) = (venv / "lib").glob("python3*/site-packages")
    return found


def _size(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def test_the_client_alone_installs_lean_and_checks_against_a_real_server(
    tmp_path: Path, server_factory: ServerFactory, small_register: RegisterFile
) -> None:
    """A fresh venv with `nixlookup` (no extras) holds no server-only package and runs `nixlookup check`."""
    wheel = _build_wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", str(python)]
    subprocess.run(
        [*pip, "install", "--quiet", "--no-compile", str(wheel)], check=True, timeout=300, capture_output=True
    )
    probe = "import importlib.util as u, json, sys; print(json.dumps([n for n in sys.argv[1:]"
    probe += " if u.find_spec(n)]))"
    present = subprocess.run(
        [str(python), "-c", probe, *SERVER_ONLY_PACKAGES],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(present.stdout) == []
    assert _size(_site_packages(venv)) < _LEAN_BYTES
    replica = subprocess.run(
        [str(python), "-c", "import nixlookup.replica"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "pip install 'nixlookup[replica]'" in replica.stderr  # the extra is named, not a bare import error

    server = server_factory(["--register", str(small_register.path)])
    member = int(small_register.keys[0])
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("NIXLOOKUP_", "PYTHON", "VIRTUAL_ENV"))
    }
    checked = subprocess.run(
        [venv / "bin" / "nixlookup", "--target", server.target, "check", "--json", f"+{member}",
         "08-123 456 78"],
        capture_output=True, text=True, timeout=60, env=environment, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    answers = [json.loads(line) for line in checked.stdout.splitlines()]
    assert [(a["verdict"], a["e164"]) for a in answers] == [("BLOCKED", member), ("ALLOWED", 46812345678)]

    no_server = subprocess.run(
        [venv / "bin" / "nixlookup-server", "serve", "--synthetic", "1000"],
        capture_output=True, text=True, timeout=60, env=environment, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert no_server.returncode == 2, no_server.stderr
    assert "Traceback" not in no_server.stderr
    assert "the server needs the [server] extra: pip install 'nixlookup[server]'" in no_server.stderr
