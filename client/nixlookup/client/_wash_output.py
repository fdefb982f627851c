"""The washed rows on their way out: the answer cells of a batch, written as CSV or as JSON lines.

- `answer_columns` turns one `BatchResult` into its appended cells, column by column, with table lookups
  (a batch has few distinct verdicts, reasons, line types and dates), never a per-number branch.
  `problem` says why an INVALID row is invalid (`TOO_SHORT`, `BAD_CHARACTER`, ...), empty otherwise.
- `CsvRows` writes the input's columns and the answers in the input's dialect; answer columns the input
  already has (a list washed before) are overwritten in place.
- `JsonRows` writes one JSON object per row (the input's columns by header name, then the answers, empty
  answers as null, `mobile_flag` as true/false/null); JSON lines are UTF-8 whatever the input's encoding.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from typing import TextIO

import numpy as np

from nixlookup.client.results import BatchResult, day_to_date
from nixlookup.v1.vocabulary import LineType, Problem, Reason, Verdict

__all__ = ["OUTPUT_COLUMNS", "OUTPUT_FORMATS", "CsvRows", "JsonRows", "RowWriter", "answer_columns"]

OUTPUT_COLUMNS = (
    "e164",
    "verdict",
    "reason",
    "problem",
    "line_type",
    "register_version",
    "valid_until",
    "mobile_flag",
)
OUTPUT_FORMATS = ("csv", "jsonl")

_VERDICT_NAMES = {int(v): v.name for v in Verdict}
_REASON_NAMES = {int(r): r.name for r in Reason}
_PROBLEM_NAMES = {int(p): ("" if p is Problem.OK else p.name) for p in Problem}  # empty for a valid number
_LINE_TYPE_NAMES = {int(t): ("" if t is LineType.UNSPECIFIED else t.name) for t in LineType}
_FLAG_NAMES = {0: "", 1: "no", 2: "yes"}  # invalid / valid, not flagged / valid, flagged


def _names(values: list[int], names: dict[int, str]) -> list[str]:
    return [names.get(value, str(value)) for value in values]


def answer_columns(batch: BatchResult) -> list[list[str]]:
    """The appended cells of a batch, column by column, in `OUTPUT_COLUMNS` order."""
    count = batch.count
    zeros = np.zeros(count, dtype=np.uint8)
    reasons = batch.reasons if batch.reasons is not None else zeros
    line_types = batch.line_types if batch.line_types is not None else zeros
    problems = batch.problems if batch.problems is not None else zeros
    days = batch.valid_until_days if batch.valid_until_days is not None else np.zeros(count, np.uint32)
    distinct_days, day_index = np.unique(days, return_inverse=True)
    day_texts = []
    for day in distinct_days.tolist():
        until = day_to_date(day)
        day_texts.append(until.isoformat() if until is not None else "")
    return [
        [f"+{key}" if key else "" for key in batch.e164.tolist()],
        _names(batch.verdicts().tolist(), _VERDICT_NAMES),
        _names(reasons.tolist(), _REASON_NAMES),
        _names(problems.tolist(), _PROBLEM_NAMES),
        _names(line_types.tolist(), _LINE_TYPE_NAMES),
        [batch.register_version] * count,
        [day_texts[index] for index in day_index.tolist()],
        _names(np.where(batch.invalid, 0, np.where(batch.mobile_flag, 2, 1)).tolist(), _FLAG_NAMES),
    ]


class RowWriter:
    """Writes a header once, then the rows of each answered batch, in order."""

    def __init__(self, sink: TextIO, header: Sequence[str]) -> None:
        self.sink = sink
        self.header = list(header)
        self.replaced = {name: self.header.index(name) for name in OUTPUT_COLUMNS if name in self.header}
        self.appended = [name for name in OUTPUT_COLUMNS if name not in self.replaced]

    def write_batch(self, rows: list[list[str]], batch: BatchResult) -> None:
        raise NotImplementedError


class CsvRows(RowWriter):
    """CSV in the input's dialect (see the module doc)."""

    def __init__(self, sink: TextIO, header: Sequence[str], dialect: type[csv.Dialect]) -> None:
        super().__init__(sink, header)
        self._writer = csv.writer(sink, dialect)
        self._writer.writerow([*self.header, *self.appended])

    def write_batch(self, rows: list[list[str]], batch: BatchResult) -> None:
        columns = answer_columns(batch)
        width = len(self.header)
        in_place = [
            (self.replaced[name], cells)
            for name, cells in zip(OUTPUT_COLUMNS, columns, strict=True)
            if name in self.replaced
        ]
        appended = [
            cells for name, cells in zip(OUTPUT_COLUMNS, columns, strict=True) if name not in self.replaced
        ]
        for position, row in enumerate(rows):
            if len(row) < width:
                row.extend([""] * (width - len(row)))
            for column, cells in in_place:
                row[column] = cells[position]
        for position, appended_cells in enumerate(zip(*appended, strict=True)):
            rows[position].extend(appended_cells)
        self._writer.writerows(rows)


class JsonRows(RowWriter):
    """One JSON object per row (see the module doc)."""

    def write_batch(self, rows: list[list[str]], batch: BatchResult) -> None:
        columns = answer_columns(batch)
        keys = [name for name in self.header if name not in OUTPUT_COLUMNS]
        positions = [self.header.index(name) for name in keys]
        flags = {"yes": True, "no": False, "": None}
        lines = []
        for position, row in enumerate(rows):
            record: dict[str, object] = {
                key: row[at] if at < len(row) else "" for key, at in zip(keys, positions, strict=True)
            }
            for name, cells in zip(OUTPUT_COLUMNS, columns, strict=True):
                cell = cells[position]
                record[name] = flags[cell] if name == "mobile_flag" else (cell or None)
            lines.append(json.dumps(record, ensure_ascii=False))
        self.sink.write("\n".join(lines) + "\n")
