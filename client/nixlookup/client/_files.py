"""Call-list files byte for byte: which encoding a file is in, its digest, and streams that hash as they go.

Theory of operation:
- `scan_input` reads a file once, before anything is washed, in 1 MiB chunks: its SHA-256 and size (what
  the proof record names: the input *as it was* before the wash) and its encoding. A byte-order mark
  decides (UTF-8, UTF-16 LE/BE). Without one, the file is decoded as UTF-8 and, when that fails, as
  cp1252 (what Excel's Swedish "CSV" export writes), with a notice saying so. `--encoding` forces a codec.
  A file that is valid in none of them is refused with `EncodingError` naming the line and byte.
- The wash then reads the same file through a `HashingReader`; a digest that differs from the scan's
  means the file changed while it was washed, and the wash is refused rather than proven.
- Standard input cannot be read twice: its encoding comes from a BOM in its first bytes, else
  `--encoding`, else UTF-8; a byte that does not decode is reported with its line as the wash reaches it.
- Output is written in the input's encoding, BOM included, through a `HashingWriter`, so the proof's
  output digest is of exactly the bytes written (to a file or to standard output).
"""

from __future__ import annotations

import codecs
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "STDIO",
    "EncodingError",
    "FileEncoding",
    "HashingReader",
    "HashingWriter",
    "ScannedInput",
    "encoding_of_stream",
    "line_of_offset",
    "scan_input",
]

STDIO = "-"
"""The path that means standard input (for INPUT) or standard output (for --output)."""
_CHUNK_BYTES = 1 << 20
_FALLBACK = "cp1252"
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_HEAD_BYTES = 64 * 1024


class EncodingError(ValueError):
    """A file cannot be decoded as asked; the message names the line, the byte and what to pass."""


@dataclass(frozen=True, slots=True)
class FileEncoding:
    """How a call list's bytes become text, and back."""

    codec: str  # a Python codec name: "utf-8", "cp1252", "utf-16-le", ...
    bom: bytes = b""  # written back before the output's first byte when the input had one
    notice: str = ""  # said to the user when the encoding was a fallback

    @property
    def label(self) -> str:
        return self.codec + (" with BOM" if self.bom else "")


@dataclass(frozen=True, slots=True)
class ScannedInput:
    """What one read of an input file found."""

    encoding: FileEncoding
    sha256: str
    size: int


def line_of_offset(data: bytes, offset: int, lines_before: int = 0) -> int:
    """The 1-based line holding byte `offset` of `data` (`lines_before` lines came before `data`)."""
    return lines_before + data.count(b"\n", 0, offset) + 1


def _bom_encoding(head: bytes) -> FileEncoding | None:
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return FileEncoding(codec, bom)
    return None


def _normalised(codec: str) -> str:
    try:
        return codecs.lookup(codec).name
    except LookupError:
        raise EncodingError(
            f"unknown encoding {codec!r} (--encoding): try utf-8, cp1252 or latin-1"
        ) from None


class _Validator:
    """Decodes chunks incrementally with one codec, remembering where the first bad byte was."""

    def __init__(self, codec: str) -> None:
        self.codec = codec
        self._decoder = codecs.getincrementaldecoder(codec)("strict")
        self.failure: str | None = None
        self._lines = 0

    def feed(self, chunk: bytes, final: bool = False) -> None:
        if self.failure is not None:
            return
        try:
            self._decoder.decode(chunk, final)
        except UnicodeDecodeError as error:
            line = line_of_offset(chunk, error.start, self._lines)
            self.failure = (
                f"line {line} is not valid {self.codec}: byte 0x{chunk[error.start]:02x} ({error.reason})"
                if error.start < len(chunk)
                else f"the file ends inside a {self.codec} character (line {line})"
            )
        self._lines += chunk.count(b"\n")


def scan_input(path: Path, requested: str | None) -> ScannedInput:
    """Digest `path` and find its encoding (see the module doc); `EncodingError` when it has none."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        head = handle.read(_HEAD_BYTES)
        found = _bom_encoding(head)
        if requested is not None:
            found = FileEncoding(_normalised(requested), found.bom if found else b"")
        candidates = [found.codec] if found is not None else ["utf-8", _FALLBACK]
        validators = [_Validator(codec) for codec in candidates]
        chunk = head[len(found.bom) :] if found is not None else head
        digest.update(head)
        size += len(head)
        while True:
            for validator in validators:
                validator.feed(chunk)
            chunk = handle.read(_CHUNK_BYTES)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
    for validator in validators:
        validator.feed(b"", final=True)
    for validator in validators:
        if validator.failure is None:
            if found is not None:
                return ScannedInput(found, digest.hexdigest(), size)
            notice = ""
            if validator.codec == _FALLBACK:
                notice = (
                    f"{path} is not UTF-8 ({validators[0].failure}); read as cp1252 (Windows-1252, what "
                    "Excel writes) and written back the same way; pass --encoding to choose another"
                )
            return ScannedInput(FileEncoding(validator.codec, notice=notice), digest.hexdigest(), size)
    reasons = "; ".join(f"{v.failure}" for v in validators)
    hint = "pass --encoding with the file's encoding" if requested else "pass --encoding (e.g. latin-1)"
    raise EncodingError(f"{path}: {reasons}; {hint}")


def encoding_of_stream(head: bytes, requested: str | None) -> FileEncoding:
    """The encoding of a stream that cannot be read twice: its BOM, else `requested`, else UTF-8."""
    found = _bom_encoding(head)
    if requested is not None:
        return FileEncoding(_normalised(requested), found.bom if found else b"")
    return found if found is not None else FileEncoding("utf-8")


class HashingReader(io.RawIOBase):
    """A read-only binary stream that hashes every byte read through it."""

    def __init__(self, raw: BinaryIO, *, skip: int = 0) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0
        if skip:  # a BOM already consumed by the caller still belongs to the file's digest
            self._account(raw.read(skip))

    def _account(self, data: bytes) -> None:
        self.sha256.update(data)
        self.size += len(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(buffer))
        count = len(data)
        buffer[:count] = data
        self._account(data)
        return count


class HashingWriter(io.RawIOBase):
    """A write-only binary stream that hashes every byte written through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        view = bytes(data)
        self._raw.write(view)
        self.sha256.update(view)
        self.size += len(view)
        return len(view)

    def flush(self) -> None:
        self._raw.flush()
