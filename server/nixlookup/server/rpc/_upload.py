"""Receiving an `Admin/Upload`: the file's bytes, streamed into ``<data-dir>/uploads/`` within a limit.

Theory of operation:
- The first `UploadRequest` carries the reload options (`ReloadRequest`: list, format, column, ...); the
  caller authorises the call on it before a byte is written, so nobody can fill the disk with an upload
  they may not make.
- Chunks are appended to a private temporary file (mode 0600) in ``<data-dir>/uploads/`` (the data
  directory's file system: no copy through a RAM-backed /tmp). Past `max_bytes` the call fails with
  RESOURCE_EXHAUSTED naming ``--max-upload-bytes``, and the partial file is removed.
- The file is then reloaded exactly like a path given to `Admin/Reload` (the same validation), and removed
  whatever happens. Leftovers of a crash are removed when the Admin service starts (one writer per data
  directory, so nobody else's upload is in flight).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nixlookup.server.errors import InvalidArgumentError, ResourceExhaustedError
from nixlookup.v1 import lookup_pb2

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "UPLOADS_DIR_NAME", "ReceivedUpload", "UploadInbox"]

DEFAULT_MAX_UPLOAD_BYTES = 1 << 30
"""1 GiB: the NIX register as text is ~40 MB at 3 million numbers; a company's relationship CSV with
end dates rarely passes a few hundred MB. Raise it (--max-upload-bytes) for US-scale registers."""
UPLOADS_DIR_NAME = "uploads"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class ReceivedUpload:
    """An upload written to disk: its options, the file, how many bytes, and the name it was sent as."""

    options: lookup_pb2.ReloadRequest
    path: Path
    size: int
    name: str


class UploadInbox:
    """Where uploads are received, and their size limit."""

    def __init__(self, data_dir: Path, *, max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> None:
        self.directory = data_dir / UPLOADS_DIR_NAME
        self.max_bytes = max_bytes
        self.directory.mkdir(mode=0o700, exist_ok=True)
        for leftover in self.directory.iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink()

    @staticmethod
    def first(requests: Iterator[lookup_pb2.UploadRequest]) -> lookup_pb2.UploadRequest:
        """The first message, which must carry the reload options."""
        first = next(requests, None)
        if first is None or not first.HasField("reload"):
            raise InvalidArgumentError(
                "Upload's first message must carry `reload` (the list and the reload options)"
            )
        return first

    def receive(
        self, first: lookup_pb2.UploadRequest, rest: Iterator[lookup_pb2.UploadRequest]
    ) -> ReceivedUpload:
        """Write the upload's bytes to a new file, within `max_bytes`; the caller removes it (`discard`)."""
        name = Path(first.reload.path).name or "upload"
        safe = _UNSAFE.sub("_", name)[-80:]
        path = self.directory / f"{secrets.token_hex(8)}-{safe}"
        size = 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                for message in _chain(first, rest):
                    size += len(message.data)
                    if size > self.max_bytes:
                        raise ResourceExhaustedError(
                            f"the upload is larger than --max-upload-bytes ({self.max_bytes} bytes); "
                            "raise the server's limit or send a snapshot (smaller than text)"
                        )
                    handle.write(message.data)
        except BaseException:
            self.discard(path)
            raise
        if size == 0:
            self.discard(path)
            raise InvalidArgumentError("the upload carried no bytes: send the file's content in `data`")
        return ReceivedUpload(options=first.reload, path=path, size=size, name=name)

    @staticmethod
    def discard(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _chain(
    first: lookup_pb2.UploadRequest, rest: Iterator[lookup_pb2.UploadRequest]
) -> Iterator[lookup_pb2.UploadRequest]:
    yield first
    yield from rest
