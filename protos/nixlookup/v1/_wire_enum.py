"""`WireEnum`: the base of every enum of the wire contract (`nixlookup.v1.enums`, generated)."""

from __future__ import annotations

from enum import IntEnum
from typing import Self

__all__ = ["WireEnum"]


class WireEnum(IntEnum):
    """An enum of the wire contract, with one command-line spelling and one way to read it back."""

    @property
    def slug(self) -> str:
        """Lower-case name with ``-`` (``opt-out``, ``market-research``): CLI values, file names, logs."""
        return self.name.lower().replace("_", "-")

    @classmethod
    def parse(cls, value: Self | int | str) -> Self:
        """A member from a member, its value, its name or its slug (case and ``-``/``_`` insensitive)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            name = value.strip().upper().replace("-", "_")
            try:
                return cls[name]
            except KeyError:
                known = ", ".join(member.slug for member in cls)
                noun = cls.__name__.lower()
                raise ValueError(f"unknown {noun} {value!r}; use one of {known}") from None
        return cls(value)
