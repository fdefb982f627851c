"""Phone numbers as written -> E.164 keys, validity and line type, per the Swedish numbering plan.

Theory of operation
-------------------
The key of everything in nixlookup is the E.164 number as an unsigned 64-bit integer:
``"+46 70-123 45 67"`` -> ``46701234567``. This module is the only place that turns text into keys.

* The reference is libphonenumber (``phonenumbers``) parsing with default region SE: a text is valid
  here iff ``phonenumbers.is_valid_number(phonenumbers.parse(text, "SE"))``, its key is that number's
  E.164 form and its line type follows ``phonenumbers.number_type`` (mobile, fixed, everything else
  OTHER; foreign numbers are always OTHER). The one deliberate difference: we accept only digits,
  separators and a leading ``+`` (libphonenumber also reads letters as keypad digits and ``ext.``
  extensions; a register or call list holding those is wrong, so they are BAD_CHARACTER here).
* The Swedish plan is not hand-copied: `_numbering_plan` expands libphonenumber's SE patterns into
  lookup tables at import (a few ms), so a metadata upgrade is a dependency bump.
* Two entry points agree exactly, item by item: `parse_number` (plain Python, ~2 us) for single
  requests, and `parse_numbers` (numpy, no per-number Python for Swedish numbers) for batches and
  register files. Likewise `classify_key` / `classify_keys` for keys that arrive already normalised
  (the packed ``e164_le`` path). Foreign numbers are rare and go through libphonenumber one by one.
* Nothing here raises for bad input: an invalid number is key 0 with a `Problem` whose `PROBLEM_TEXT`
  never contains the number. `mask_number` is how the rest of the server mentions a number in logs.

See ``docs/numbers.md`` for the accepted forms, the rules and measured speeds.
"""

from __future__ import annotations

from nixlookup.server.numbering._codes import (
    PROBLEM_TEXT,
    LineType,
    ParsedBatch,
    ParsedNumber,
    Problem,
)
from nixlookup.server.numbering._keys import classify_keys
from nixlookup.server.numbering._scalar import classify_key, parse_number
from nixlookup.server.numbering._vector import parse_numbers
from nixlookup.v1.vocabulary import mask_number

__all__ = [
    "PROBLEM_TEXT",
    "LineType",
    "ParsedBatch",
    "ParsedNumber",
    "Problem",
    "classify_key",
    "classify_keys",
    "mask_number",
    "parse_number",
    "parse_numbers",
]
