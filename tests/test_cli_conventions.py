"""One flag name per concept across `nixlookup`, `nixlookup-server` and `nixlookup-bench` (issue 13,
"Conventions"): the consistent names are the ones --help shows, and the first spellings still work."""

from __future__ import annotations

import contextlib
import io

import pytest

from nixlookup.bench.cli import build_parser as bench_parser
from nixlookup.client.cli import build_parser as client_parser


def _help(parser_args: list[str], *, bench: bool = False) -> str:
    parser = bench_parser() if bench else client_parser()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        parser.parse_args([*parser_args, "--help"])
    return out.getvalue()


@pytest.mark.parametrize(
    ("command", "shown", "hidden"),
    [
        (["check"], ["--tls-ca", "--tls-cert", "--tls-key", "--target"], ["--ca ", "--cert ", "--key "]),
        (["health"], ["--target"], ["--server"]),
        (["lists", "add"], ["--batch-size"], ["--chunk"]),
        (["admin", "apply-delta"], ["--batch-size"], ["--chunk"]),
    ],
)
def test_client_help_shows_the_consistent_names(
    command: list[str], shown: list[str], hidden: list[str]
) -> None:
    """--help lists the names shared with the server (--tls-*) and the other commands (--target,
    --batch-size), not the old spellings."""
    text = _help(command)
    for name in shown:
        assert name in text, name
    for name in hidden:
        assert name not in text, name


@pytest.mark.parametrize(
    ("new", "old", "dest", "value"),
    [
        (["check", "--tls-ca", "ca.pem", "1"], ["check", "--ca", "ca.pem", "1"], "ca", "ca.pem"),
        (["check", "--tls-cert", "c.pem", "1"], ["check", "--cert", "c.pem", "1"], "cert", "c.pem"),
        (["check", "--tls-key", "k.pem", "1"], ["check", "--key", "k.pem", "1"], "key", "k.pem"),
        (["health", "--target", "h:1"], ["health", "--server", "h:1"], "health_server", "h:1"),
        (["lists", "add", "--caller", "a", "--list-kind", "opt-out", "--batch-size", "7", "1"],
         ["lists", "add", "--caller", "a", "--list-kind", "opt-out", "--chunk", "7", "1"], "chunk", 7),
    ],
)  # fmt: skip
def test_old_client_spellings_still_work(new: list[str], old: list[str], dest: str, value: object) -> None:
    """Each renamed flag's first spelling is a hidden alias storing the same value."""
    parser = client_parser()
    assert getattr(parser.parse_args(new), dest) == value
    assert getattr(parser.parse_args(old), dest) == value


def test_bench_output_is_output_with_out_as_an_alias() -> None:
    """`nixlookup-bench ... -o/--output DIR` (as `nixlookup wash -o`), `--out` still accepted, hidden."""
    assert "--output" in _help(["core"], bench=True)
    assert "--out " not in _help(["core"], bench=True)
    parser = bench_parser()
    for flag in ("-o", "--output", "--out"):
        assert str(parser.parse_args(["core", flag, "results"]).out) == "results"
