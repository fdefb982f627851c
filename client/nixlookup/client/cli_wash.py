"""`nixlookup wash`: a call list in, the same list with the answers out, a summary and a proof record.

    nixlookup wash calls.csv -o calls.washed.csv [--caller acme] [--purpose sales] [--encoding cp1252]
    nixlookup wash - -o - --format jsonl < calls.csv > washed.jsonl     (standard input / output)

The work is `nixlookup.client.wash.wash`; this module turns its options into a call, shows progress with
tqdm (rows, bytes, rate and ETA) on a terminal, prints the summary (to standard error when the washed list
goes to standard output) and writes the proof record (`OUT.proof.json`, or ``--proof PATH``; none for
standard output unless ``--proof`` names one). ``--fail-on-blocked`` exits 3 when any row is BLOCKED.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from nixlookup.client._cli_common import (
    EXIT_BLOCKED,
    EXIT_OK,
    SYNTHETIC_NOTE,
    add_caller_purpose,
    client_of,
    describe_lists,
    target_of,
)
from nixlookup.client._files import STDIO
from nixlookup.client.defaults import DEFAULT_BATCH_SIZE
from nixlookup.client.proof import FileDigest, ProofCollector, proof_path_for, write_proof
from nixlookup.client.wash import OUTPUT_FORMATS, ProgressCallback, WashError, WashSummary, wash

__all__ = ["add_wash_parser", "summary_line"]


def summary_line(summary: WashSummary) -> str:
    """The one-line account of a wash the command prints."""
    versions = ", ".join(
        version
        + (
            " (SYNTHETIC: made-up numbers, not the NIX register)"
            if version in summary.synthetic_versions
            else ""
        )
        for version in summary.register_versions
    )
    return (
        f"washed {summary.rows:,} rows in {summary.elapsed_seconds:.2f} s "
        f"({summary.rows_per_second:,.0f} rows/s): {summary.blocked:,} blocked, {summary.invalid:,} invalid, "
        f"{summary.allowed:,} allowed, {summary.mobile_flagged:,} of them mobile without relationship "
        f"(Swedma/Kontakta: existing customers only); register version {versions or '-'}; "
        f"lists: {describe_lists(summary.caller, summary.lists_used)}; "
        f"{summary.encoding.label} {summary.output_format}; output {summary.output_path}"
    )


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[ProgressCallback | None]:
    """A tqdm bar over the input's bytes (rows, rate, ETA); over rows when the size is unknown (stdin)."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bars: list[Any] = []

    def show(rows: int, done_bytes: int, total_bytes: int) -> None:
        if not bars:
            bars.append(
                tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc="washing")
                if total_bytes
                else tqdm(unit=" rows", unit_scale=True, desc="washing")
            )
        bar = bars[0]
        bar.update((done_bytes if total_bytes else rows) - bar.n)
        bar.set_postfix_str(f"{rows:,} rows", refresh=False)

    try:
        yield show
    finally:
        for bar in bars:
            bar.close()


def _digest(path: Path, sha256: str, size: int, encoding: str) -> FileDigest:
    where = STDIO if str(path) == STDIO else str(path.resolve())
    return FileDigest(path=where, sha256=sha256, bytes=size, encoding=encoding)


def _run_wash(args: argparse.Namespace) -> int:
    to_stdout = str(args.output) == STDIO
    report: TextIO = sys.stderr if to_stdout else sys.stdout
    if str(args.input) != STDIO and not args.input.is_file():
        raise WashError(f"{args.input} does not exist or is not a file")
    proof_path = args.proof or (None if to_stdout else proof_path_for(args.output))
    collector = ProofCollector(caller=args.caller, purpose=int(args.purpose), server=target_of(args))
    client = client_of(args)
    with client, _progress_bar(sys.stderr.isatty() and not args.no_progress) as progress:
        summary = wash(
            client,
            args.input,
            args.output,
            column=args.column,
            caller=args.caller,
            purpose=args.purpose,
            delimiter=args.delimiter,
            encoding=args.encoding,
            output_format=args.format,
            batch_size=args.batch_size,
            observers=() if args.no_proof or proof_path is None else (collector.observe,),
            progress=progress,
        )
    if summary.encoding.notice:
        print(f"nixlookup wash: note: {summary.encoding.notice}", file=sys.stderr)
    if summary.synthetic_versions:
        print(f"nixlookup wash: {SYNTHETIC_NOTE}", file=sys.stderr)
    print(summary_line(summary), file=report)
    if not args.no_proof and proof_path is not None:
        record = collector.record(
            input_file=_digest(summary.input_path, summary.input_sha256, summary.input_bytes,
                               summary.encoding.label),
            output_file=_digest(summary.output_path, summary.output_sha256, summary.output_bytes,
                                summary.encoding.label if args.format == "csv" else "utf-8"),
            synthetic_versions=summary.synthetic_versions,
            finished_at=summary.finished_at,
        )  # fmt: skip
        print(f"proof record {write_proof(record, proof_path)}", file=report)
    elif not args.no_proof:
        print("nixlookup wash: no proof record for standard output; pass --proof PATH", file=sys.stderr)
    return EXIT_BLOCKED if summary.blocked and args.fail_on_blocked else EXIT_OK


def add_wash_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `wash` to the `nixlookup` subcommands."""
    washer = commands.add_parser("wash", parents=[common], help="wash a CSV call list of any size")
    washer.add_argument("input", type=Path, metavar="INPUT.csv", help="CSV with a header row; - for stdin")
    washer.add_argument(
        "--output", "-o", type=Path, required=True, metavar="OUT", help="washed list; - for stdout"
    )
    washer.add_argument("--column", default="phone", help="column holding the numbers (default: phone)")
    washer.add_argument("--delimiter", help="field separator (default: sniffed from the file)")
    washer.add_argument(
        "--encoding",
        help="the input's encoding (default: a BOM's, else UTF-8, else cp1252 with a notice); the CSV "
        "output is written in it too",
    )
    washer.add_argument("--format", choices=OUTPUT_FORMATS, default="csv", help="output: csv or JSON lines")
    washer.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="numbers per batch (server max 100000)"
    )
    washer.add_argument(
        "--proof", type=Path, metavar="PATH", help="proof record path (default: OUT.proof.json)"
    )
    washer.add_argument("--no-proof", action="store_true", help="write no proof record")
    washer.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    washer.add_argument("--fail-on-blocked", action="store_true", help="exit 3 when any row is BLOCKED")
    add_caller_purpose(washer)
    washer.set_defaults(func=_run_wash)
