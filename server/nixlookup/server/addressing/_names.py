"""Swedish personal names -> the parts the name-address key is made of.

Theory of operation
-------------------
A name arrives as one field, written ``Anna Maria Svensson-Berg``, ``SVENSSON BERG, Anna``,
``A. M. Svensson Berg``, ``anna-maria  berg`` ... `normalise_name` folds it (`_fold.fold_text`: case,
diacritics, NFKC, punctuation) and splits it into words (whitespace, periods) and tokens (words split at
hyphens), given names first:

- with a comma, ``Efternamn, Förnamn``: surname words before the first comma, given words after it;
- without one, the last word is the surname and the words before it are given names. A double surname
  without a hyphen (``Anna Svensson Berg``) therefore reads as given names ``anna svensson`` and surname
  ``berg``; the key below only uses the first and the last token, so both readings give the same key.

What the key uses, and why (docs/addresses.md has the full argument):

- `NormalisedName.block_pair`: the initial of the first given name and the last surname token. An
  initial, not the name, so ``A. Berg``, ``Anna Berg`` and ``Anna-Karin Berg`` all match a registered
  Anna Berg; the cost is that an Anders Berg at the same address is blocked too (when in doubt, block).
- `NormalisedName.register_pairs`: every (initial of token i, token j) with i < j, capped at
  `MAX_NAME_TOKENS` tokens. A block list (the register, a company's "no more mail" list) stores all of
  them, so a company that knows ``Anna Maria Svensson Berg`` only as ``Maria Berg``, ``Anna Svensson`` or
  ``Berg, Anna`` still finds her. `block_pair` is always one of them.
- `NormalisedName.exempt_given`: the whole first given name (``anna``, ``anna-karin``), or ``""`` when it
  is only an initial. Lists that *allow* mail (consent, customer relationship) are keyed with it, so an
  exemption is never stretched from Anna to Anders: matching is loose where it blocks and strict where
  it exempts.

Problems: no words (``NO_NAME``), one word without a comma (``NO_SURNAME``: a surname alone would block
a whole household, a given name alone anyone), a comma with nothing after it (``NO_GIVEN_NAME``).
"""

from __future__ import annotations

from typing import Final, NamedTuple

from nixlookup.server.addressing._fold import fold_text
from nixlookup.server.addressing._problems import AddressProblem

__all__ = ["MAX_NAME_TOKENS", "NormalisedName", "normalise_name"]

# Longer names keep their first 3 tokens (given names) and their last MAX_NAME_TOKENS - 3 (surnames,
# which may be several words: "De la Cruz") for `register_pairs`, so a name costs at most 28 keys.
MAX_NAME_TOKENS: Final = 8
_KEPT_GIVEN_TOKENS: Final = 3
_NAME_KEEP: Final = ",-."  # what fold_text leaves for the parser: the order comma, hyphens, initials' periods


class NormalisedName(NamedTuple):
    """A name as the key sees it: folded tokens, given names first, and the first given name whole."""

    tokens: tuple[str, ...]
    exempt_given: str  # the first given name as one word ("anna-karin"); "" when it is only an initial

    @property
    def block_pair(self) -> tuple[str, str]:
        """(initial of the first given name, last surname token): what a checked row is looked up by."""
        return self.tokens[0][0], self.tokens[-1]

    @property
    def register_pairs(self) -> tuple[tuple[str, str], ...]:
        """Every (initial of token i, token j), i < j: what a block list stores for this person."""
        tokens = self.tokens
        if len(tokens) > MAX_NAME_TOKENS:
            tokens = tokens[:_KEPT_GIVEN_TOKENS] + tokens[_KEPT_GIVEN_TOKENS - MAX_NAME_TOKENS :]
        pairs = {
            (tokens[first][0], tokens[second])
            for first in range(len(tokens))
            for second in range(first + 1, len(tokens))
        }
        return tuple(sorted(pairs))


def _words(text: str) -> list[str]:
    return [stripped for word in text.replace(".", " ").split() if (stripped := word.strip("-"))]


def _tokens(words: list[str]) -> tuple[str, ...]:
    return tuple(part for word in words for part in word.split("-") if part)


def normalise_name(text: str, folded_words: dict[str, str] | None = None) -> NormalisedName | AddressProblem:
    """The normalised form of one written name, or why it cannot be keyed; never raises.

    Folding works word by word (it never joins or splits whitespace-separated words), so a batch passes
    a `folded_words` dict to fold each distinct word once; the answer is the same with or without it.
    """
    if folded_words is None:
        folded = [fold_text(word, keep=_NAME_KEEP) for word in text.split()]
    else:
        folded = []
        for word in text.split():
            done = folded_words.get(word)
            if done is None:
                done = folded_words[word] = fold_text(word, keep=_NAME_KEEP)
            folded.append(done)
    if all(folded) and "".join(folded).isalnum():  # the common case: plain words, given names first
        if len(folded) < 2:
            return AddressProblem.NO_SURNAME if folded else AddressProblem.NO_NAME
        return NormalisedName(tuple(folded), folded[0] if len(folded[0]) > 1 else "")
    return _normalise_folded(" ".join(folded))


def _normalise_folded(folded: str) -> NormalisedName | AddressProblem:
    surname_part, comma, given_part = folded.partition(",")
    surname_words = _words(surname_part)
    if comma and surname_words:
        given_words = _words(given_part.replace(",", " "))
        if not given_words:
            return AddressProblem.NO_GIVEN_NAME
        words = given_words + surname_words
    else:  # no comma, or nothing before it (", Anna Berg"): given names first
        words = _words(given_part.replace(",", " ")) if comma else surname_words
        if not words:
            return AddressProblem.NO_NAME
        if len(words) == 1:
            return AddressProblem.NO_SURNAME
    first_given = words[0]
    only_initials = all(len(part) == 1 for part in first_given.split("-") if part)
    return NormalisedName(_tokens(words), "" if only_initials else first_given)
