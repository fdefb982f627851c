"""Logging for the server: structlog, JSON off a terminal, readable on one, never a full phone number.

Theory of operation:
- `configure_logging` sets structlog up once per process: JSON lines when stderr is not a terminal
  (containers, systemd, CI) and coloured key=value lines when it is; ``--log-format`` overrides the guess.
- Levels: one event per RPC at debug (cheap to leave in: the filtering logger turns a disabled ``debug``
  into a no-op method), one per stream batch summary, reload and lifecycle step at info.
- Phone numbers are personal data. The code never logs one on purpose (it logs counts, versions and
  `numbering.mask_number` output); `mask_digit_runs` is defence in depth: a processor that rewrites every
  run of 7 or more digits (single spaces or hyphens between them allowed, a leading ``+`` included) in any
  string value, and every integer of 10 or more digits, to stars and the last two digits. Keys whose
  values we generate ourselves and that legitimately carry long digit runs (timestamps, versions,
  checksums, paths) are exempt, so a version like ``20260101-...`` stays readable.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog

from nixlookup.v1.vocabulary import mask_number

__all__ = [
    "LOG_FORMATS",
    "LogFormat",
    "configure_logging",
    "get_logger",
    "mask_digit_runs",
    "mask_digits_in_text",
    "set_process_label",
]

LogFormat = Literal["auto", "json", "console"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "json", "console")

_DIGIT_RUN = re.compile(r"(?<!\d)(?!000\d{5}\.(?:snap|journal)\b)\+?\d(?:[ \-]?\d){6,}")
"""7+ digits, optionally separated by single spaces or hyphens: every way a phone number is written.
Except the data directory's own file names (``00000042.snap``, ``00000042.journal``: eight digits starting
with 000, which no phone number does), so recovery messages stay readable."""

_SMALLEST_MASKED_INT = 1_000_000_000
"""Integers of 10+ digits look like E.164 keys; counts (even a 250M-number register) stay below this."""

_EXEMPT_KEYS = frozenset(
    {
        "timestamp",
        "version",
        "register_version",
        "previous_version",
        "new_version",
        "checksum",
        "path",
        "source",
        "data_dir",
        "register",
        "listen",
        "target",
        "component",
    }
)
"""Keys whose values the server generates itself (never a phone number) and may hold long digit runs."""


def mask_digits_in_text(text: str) -> str:
    """Replace every phone-number-like digit run in `text` by stars and its last two digits."""

    return _DIGIT_RUN.sub(lambda match: mask_number(match.group(0)), text)


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_digits_in_text(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) >= _SMALLEST_MASKED_INT:
        return mask_number(value)
    if isinstance(value, list | tuple):
        return type(value)(_mask_value(item) for item in value)
    if isinstance(value, dict):
        return {key: _mask_value(item) for key, item in value.items()}
    return value


def mask_digit_runs(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask phone-number-like values in every non-exempt field (defence in depth)."""
    for key, value in event_dict.items():
        if key not in _EXEMPT_KEYS:
            event_dict[key] = _mask_value(value)
    return event_dict


_process_label: str | None = None


def set_process_label(label: str | None) -> None:
    """Every event of this process says ``process=label`` from now on (the processes of
    ``--processes N``: ``supervisor``, ``writer``, ``0``, ``1`` ...); a global, so threads' events too."""
    global _process_label  # noqa: PLW0603 - one label per process, set once after fork
    _process_label = label


def _add_process_label(_logger: Any, _method: str, event_dict: Any) -> Any:
    if _process_label is not None:
        event_dict.setdefault("process", _process_label)
    return event_dict


def configure_logging(
    level: str = "info", log_format: LogFormat = "auto", stream: TextIO | None = None
) -> None:
    """Configure structlog for this process; `level` is a logging level name (debug, info, warning ...)."""
    output = stream if stream is not None else sys.stderr
    numeric_level = logging.getLevelNamesMapping().get(level.upper())
    if numeric_level is None:
        raise ValueError(f"unknown log level {level!r}; use debug, info, warning or error")
    as_json = log_format == "json" or (log_format == "auto" and not output.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=output.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_process_label,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            mask_digit_runs,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=output),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A logger for `name` (shown as ``component=...``). Safe at import time: the returned proxy binds to
    the configuration lazily, on first use, so `configure_logging` may run later."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(component=name)
    return logger
