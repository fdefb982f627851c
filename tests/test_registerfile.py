"""Register files: every supported shape loads, bad lines are counted and masked, too many are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nixlookup.server.errors import RegisterFileError
from nixlookup.server.index import Index
from nixlookup.server.store import generate_register, load_register_file, write_snapshot, write_text_register
from nixlookup.server.store._registerfile import detect_format

STOCKHOLM = 46812345678
MOBILE = 46701234567


def test_text_in_many_written_forms(tmp_path: Path) -> None:
    """Comments, blank lines, CRLF, a BOM and every common form normalise to the same keys."""
    path = tmp_path / "register.txt"
    path.write_bytes(
        b"\xef\xbb\xbf# NIX register export\r\n"
        b"070-123 45 67\r\n"
        b"\r\n"
        b"+46 (0)70-123 45 67   # the same number again\n"
        b"08-123 456 78\n"
        b"   \n"
        b"0046 8 123 456 78\n"
    )
    loaded = load_register_file(path)
    assert loaded.format == "text"
    assert sorted(set(loaded.keys.tolist())) == [MOBILE, STOCKHOLM]
    assert loaded.lines == 4
    assert loaded.bad_lines == 0


def test_bad_lines_are_counted_with_line_numbers_and_masked(tmp_path: Path) -> None:
    """Bad lines are reported by line number, masked, and do not fail a load under the allowed share."""
    good = [f"070{n:07d}" for n in range(1_000)]
    lines = [*good[:500], "not a number", "0701234567890123", *good[500:]]
    path = tmp_path / "register.txt"
    path.write_text("\n".join(lines) + "\n")
    loaded = load_register_file(path, max_bad_share=0.01)
    assert loaded.bad_lines == 2
    assert loaded.keys.size == 1_000
    assert [line for line, _ in loaded.bad_samples] == [501, 502]
    assert all("0701234567890123" not in text for _, text in loaded.bad_samples)


def test_too_many_bad_lines_are_refused(tmp_path: Path) -> None:
    """Past the allowed share the load is refused with counts and (masked) samples."""
    path = tmp_path / "register.txt"
    path.write_text("0701234567\nhello\nworld\n0701234568\n")
    with pytest.raises(RegisterFileError, match=r"2 of 4 lines .* line 2"):
        load_register_file(path, max_bad_share=0.05)


def test_overlong_line_is_a_bad_line_not_a_memory_blowup(tmp_path: Path) -> None:
    """A megabyte-long line is one bad line."""
    path = tmp_path / "register.txt"
    path.write_bytes(b"0701234567\n" * 200 + b"7" * 1_000_000 + b"\n")
    loaded = load_register_file(path)
    assert loaded.bad_lines == 1
    assert "longer than 64 bytes" in loaded.bad_samples[0][1]


def test_csv_named_column_semicolons_and_dates(tmp_path: Path) -> None:
    """CSV: a named column, sniffed delimiter, an optional end-date column; bad dates are bad lines."""
    path = tmp_path / "relationships.csv"
    path.write_text(
        "\ufeffname;Phone;ended\n"
        '"Andersson; Anna";070-123 45 67;2026-01-31\n'
        "Berg;08-123 456 78;\n"
        "Cederholm;070-765 43 21;yesterday\n"
    )
    assert detect_format(path) == "csv"
    loaded = load_register_file(path, column="phone", until_column="ended", max_bad_share=0.5)
    assert loaded.keys.tolist() == [MOBILE, STOCKHOLM]
    assert loaded.until_days is not None
    assert loaded.until_days.tolist() == [20484, 0]
    assert loaded.bad_lines == 1
    assert "not YYYY-MM-DD" in loaded.bad_samples[0][1]


def test_csv_missing_column_names_the_columns(tmp_path: Path) -> None:
    """Asking for a column that is not there says which columns there are."""
    path = tmp_path / "list.csv"
    path.write_text("name,number\nA,0701234567\n")
    with pytest.raises(RegisterFileError, match="columns are: name, number"):
        load_register_file(path, column="phone")


def test_snapshot_is_recognised_by_content(tmp_path: Path) -> None:
    """A snapshot loads as a snapshot whatever its name."""
    index = Index.build(generate_register(2_000, seed=1), version="s1", source="t")
    path = tmp_path / "register.dat"
    write_snapshot(path, index)
    loaded = load_register_file(path)
    assert loaded.format == "snapshot"
    assert loaded.snapshot is not None
    assert np.array_equal(loaded.keys, index.sorted_keys())


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """A path that does not exist is refused by name."""
    with pytest.raises(RegisterFileError, match="does not exist"):
        load_register_file(tmp_path / "nope.txt")


def test_synthetic_text_round_trip(tmp_path: Path) -> None:
    """A generated register written as national-form text loads back to exactly the same keys."""
    keys = generate_register(20_000, seed=2)
    path = tmp_path / "register.txt"
    write_text_register(path, keys, national=True)
    loaded = load_register_file(path, max_bad_share=0.0)
    assert np.array_equal(np.sort(loaded.keys), keys)


def test_fast_path_handles_crlf_blank_lines_and_no_final_newline(tmp_path: Path) -> None:
    """Without comments the buffer-level reader runs: CRLF, blank lines and a missing last newline."""
    path = tmp_path / "register.txt"
    path.write_bytes(b"0701234567\r\n\r\n08-123 456 78\r\n  \r\n46701234568")
    loaded = load_register_file(path)
    assert loaded.keys.tolist() == [MOBILE, STOCKHOLM, MOBILE + 1]
    assert (loaded.lines, loaded.bad_lines) == (3, 0)


def test_empty_file_loads_as_empty(tmp_path: Path) -> None:
    """An empty file is an empty list (the store decides whether an empty register is acceptable)."""
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    loaded = load_register_file(path)
    assert loaded.keys.size == 0
    assert loaded.lines == 0
