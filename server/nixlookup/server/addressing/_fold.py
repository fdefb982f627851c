"""Fold written Swedish text to the lower-case ASCII-ish form names and streets are compared in.

Theory of operation
-------------------
People write the same name with and without diacritics (``Åström``, ``Astrom``), in any case, composed or
decomposed (``ö`` as one code point or ``o`` + U+0308), in full-width or ligature forms from odd
keyboards. Matching must see through all of that, and loosening here only ever blocks more, so
`fold_text`:

1. lower-cases and NFKD-decomposes the text (full-width, ligatures and compatibility forms become their
   plain letters; ``Å`` becomes ``a`` + a combining ring);
2. drops combining marks and apostrophes (``Åström`` -> ``astrom``, ``O'Neil`` -> ``oneil``) and maps the
   letters that do not decompose to their Swedish twins (``æ`` -> ``a`` like ``ä``, ``ø`` -> ``o`` like
   ``ö``, ``ß`` -> ``ss``, ``ł`` -> ``l``, ...);
3. maps every other character that is not a letter or an ASCII digit to a space, except those a caller
   keeps (``keep``: names keep ``,-.``, streets also ``/`` and ``:``); letters of other scripts (Greek,
   Cyrillic, ...) are case-folded and kept.

Speed: most texts are ASCII, or ASCII plus combining marks after step 1 (every Swedish letter), and take
a path of C-level calls (``bytes.translate``) costing well under a microsecond; other texts go
character by character through the same rules (tests/test_addressing_normalise.py checks the two agree).
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from typing import Final

__all__ = ["fold_text"]

_SPECIAL: Final = {"æ": "a", "ø": "o", "œ": "o", "ß": "ss", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}
_ASCII_APOSTROPHES: Final = b"'`"
_APOSTROPHES: Final = frozenset("'`´’‘ʼ")
_BEYOND_ASCII_AND_MARKS: Final = re.compile(r"[^\x00-\x7f\u0300-\u036f]")


@cache
def _ascii_table(keep: str) -> bytes:
    """bytes.translate table: letters lower-cased, digits and `keep` kept, everything else a space."""
    table = bytearray(b" " * 256)
    for code in range(128):
        char = chr(code)
        if char.isalnum() or char in keep:
            table[code] = ord(char.lower())
    return bytes(table)


def fold_text(text: str, keep: str = "") -> str:
    """`text` lower-cased without diacritics; punctuation outside `keep` becomes spaces (see module doc)."""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text.lower())
        if _BEYOND_ASCII_AND_MARKS.search(text) is not None:
            return _fold_char_by_char(text, keep)
    # ASCII plus combining marks: "ignore" drops exactly the marks
    return text.encode("ascii", "ignore").translate(_ascii_table(keep), _ASCII_APOSTROPHES).decode("ascii")


def _fold_char_by_char(decomposed: str, keep: str) -> str:
    table = _ascii_table(keep)
    folded: list[str] = []
    for char in decomposed:
        if char.isascii():
            if char not in "'`":
                folded.append(chr(table[ord(char)]))
        elif unicodedata.combining(char) or char in _APOSTROPHES:
            continue
        elif char in _SPECIAL:
            folded.append(_SPECIAL[char])
        else:
            folded.append(char.casefold() if char.isalpha() else " ")
    return "".join(folded)
