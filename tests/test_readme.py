"""The README's quick start works as written: every `nixlookup` line of it and its Python snippet, run
against a real server on a synthetic register (what `make serve` starts), from a copy of the repository's
examples/ folder."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ServerFactory

_REPO = Path(__file__).resolve().parent.parent
_README = (_REPO / "README.md").read_text(encoding="utf-8")
_QUICK_START = _README[_README.index("## Quick start") : _README.index("## What an answer means")]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _QUICK_START, flags=re.DOTALL)


def test_the_quick_start_commands_and_snippet_work_as_written(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """Each `.venv/bin/nixlookup ...` line exits 0 (with the default target moved by NIXLOOKUP_TARGET,
    as a second terminal beside `make serve` would reach it); the Python snippet runs."""
    server = server_factory(["--synthetic-size", "20000"])
    shutil.copytree(_REPO / "examples", tmp_path / "examples")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NIXLOOKUP_")}
    environment["NIXLOOKUP_TARGET"] = server.target
    commands = [
        line for block in _blocks("sh") for line in block.splitlines() if line.startswith(".venv/bin/")
    ]
    assert len(commands) >= 5
    for line in commands:
        argv = shlex.split(line.split("#")[0])
        assert argv[0] == ".venv/bin/nixlookup", line
        done = subprocess.run(
            [sys.executable, "-m", "nixlookup.client.cli", *argv[1:]],
            capture_output=True, text=True, timeout=60, env=environment, cwd=tmp_path, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{line}\n{done.stderr}"
        assert "Traceback" not in done.stderr
    assert (tmp_path / "washed.csv").read_text(encoding="utf-8").count("\n") == 8  # header + 7 rows
    (snippet,) = _blocks("python")
    code = snippet.replace('"127.0.0.1:50051"', repr(server.target))
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split()[0] in ("ALLOWED", "BLOCKED")


@pytest.mark.parametrize("target", ["serve", "test", "bench"])
def test_the_make_targets_the_readme_names_exist(target: str) -> None:
    """`make serve`, `make test` and `make bench` are Makefile targets, and `bench` runs `core`."""
    makefile = (_REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE)
    if target == "bench":
        assert "nixlookup-bench core" in makefile.split("\nbench:")[1].split("\n\n")[0]
