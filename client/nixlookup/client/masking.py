"""Mask phone numbers for messages and logs: every digit but the last two becomes ``*``.

The client cannot use the server's `numbering.mask_number` (it never imports the server), so it keeps
this tiny copy with the same output: ``mask_number("070-123 45 67") == "********67"``.
"""

from __future__ import annotations

__all__ = ["mask_number"]


def mask_number(value: str | int) -> str:
    """The digits of `value` with all but the last two replaced by ``*`` (``"?"`` when it has none)."""
    digits = [c for c in str(value) if c.isdigit()]
    if not digits:
        return "?"
    return "*" * max(len(digits) - 2, 0) + "".join(digits[-2:])
