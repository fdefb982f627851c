"""The 64-bit name-address keys of NIX-Adresserat rows, one row or a batch at a time.

Theory of operation
-------------------
A row names a person by name, street and postcode (`AddressRow`; the postal town and ``c/o`` line are
carried but not keyed, see `_streets`). `normalise_row` reduces it to a `NormalisedAddressee`, or the
first `AddressProblem` in the order name, street, postcode. Each key is

    XXH64(le64(XXH64(name fields)) + le64(XXH64(street fields)) + le64(postcode), seed) | 2^63

with the fields of a part joined by U+001F (which folding never leaves in a field) and a seed per kind:

=============  ==============================================================  ==========================
kind           name fields / street fields                                      used by
=============  ==============================================================  ==========================
block          last surname token, initial of the first given name /            a checked row; block lists
               street name, house number                                        (register, "no more mail")
register       the block fields for every `NormalisedName.register_pairs`       what block lists store
               pair (the block key is one of them)
exempt         last surname token, whole first given name / street name,        consent and customer-
               house number, house letter (0 when the first given name is      relationship lists, and a
               only an initial)                                                 checked row against them
=============  ==============================================================  ==========================

Hashing the parts first lets a batch hash each distinct name and street text once and every row with a
vectorised XXH64 of its 24-byte record (`_xxh64`).

Loose where it blocks, strict where it exempts: the apartment, floor and ``c/o`` never count, the house
letter only counts for the exempt key (docs/addresses.md gives the reasons).

Key space. Every name-address key has bit 63 set (`NAME_ADDRESS_KEY_BIT`), so it is never 0 and never
equal to a personnummer key (``YYYYMMDDNNNC`` < 2^40): both kinds can share one index. The other 63 bits
are XXH64's (xxhash, SMHasher-clean, stable across platforms and versions by its specification). Two
different people share a key with probability 2^-63 per pair; over n keys the expected number of
colliding pairs is n^2 / 2^64: 5.4e-6 at 10M keys, 4.9e-5 at 30M (a 10M-person register stores about 3
register keys per person). A checked row falsely matches a 30M-key register with probability
30M / 2^63 = 3.3e-12. XXH64 is not cryptographic: someone who chose their own list entries could craft a
collision, which gains them nothing they could not do by writing the row they mean.

XXH64 rather than blake2b because it costs ~0.15 us per call against ~1.4 us measured here, and a batch
row needs none at all once its name and street texts were seen (budget: >= 300k rows/s end to end).

`name_address_keys` (rows -> block and exempt keys + problems) and `register_name_address_keys` (rows ->
all register keys with the row each came from) are the batch forms; they agree with the scalar functions
row for row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

import numpy as np
import xxhash
from numpy.typing import NDArray

from nixlookup.server.addressing._names import NormalisedName, normalise_name
from nixlookup.server.addressing._problems import AddressProblem
from nixlookup.server.addressing._streets import NormalisedStreet, normalise_postcode, normalise_street
from nixlookup.server.addressing._xxh64 import xxh64_of_three_words

__all__ = [
    "DEFAULT_CACHE_TEXTS",
    "NAME_ADDRESS_KEY_BIT",
    "AddressKeyCache",
    "AddressRow",
    "NameAddressBatch",
    "NormalisedAddressee",
    "RegisterKeyBatch",
    "block_key",
    "exempt_key",
    "name_address_keys",
    "normalise_row",
    "register_keys",
    "register_name_address_keys",
]

NAME_ADDRESS_KEY_BIT: Final = 1 << 63
"""Set in every name-address key: never 0, never a personnummer key (those are below 2^40)."""

# XXH64 seeds, one per key kind, so the same fields never give the same key in two kinds. Changing one
# changes every stored key of that kind: a new register format, not a tweak.
_BLOCK_SEED: Final = 0x4E49_5841_0000_0001  # "NIXA" + kind
_EXEMPT_SEED: Final = 0x4E49_5841_0000_0002
_FIELD_SEPARATOR: Final = "\x1f"
_KEY_BIT: Final = np.uint64(NAME_ADDRESS_KEY_BIT)
_NO_KEY: Final = np.uint64(0)


class AddressRow(NamedTuple):
    """One row as the register file and the check requests give it (CSV header names)."""

    name: str
    street: str
    postcode: str
    city: str = ""
    care_of: str = ""


class NormalisedAddressee(NamedTuple):
    """Who a row names, as the keys see it."""

    name: NormalisedName
    street: NormalisedStreet
    postcode: int


def normalise_row(row: AddressRow) -> NormalisedAddressee | AddressProblem:
    """The normalised person of one row, or the first problem (name, then street, then postcode)."""
    if not (row.name.strip() or row.street.strip() or row.postcode.strip()):
        return AddressProblem.EMPTY
    name = normalise_name(row.name)
    if isinstance(name, AddressProblem):
        return name
    street = normalise_street(row.street)
    if isinstance(street, AddressProblem):
        return street
    postcode = normalise_postcode(row.postcode)
    if isinstance(postcode, AddressProblem):
        return postcode
    return NormalisedAddressee(name, street, postcode)


def _part_hash(fields: tuple[str, ...], seed: int) -> int:
    return xxhash.xxh64_intdigest(_FIELD_SEPARATOR.join(fields).encode(), seed)


def _key(name_hash: int, street_hash: int, postcode: int, seed: int) -> int:
    record = (
        name_hash.to_bytes(8, "little") + street_hash.to_bytes(8, "little") + postcode.to_bytes(8, "little")
    )
    return xxhash.xxh64_intdigest(record, seed) | NAME_ADDRESS_KEY_BIT


def _block_street_hash(street: NormalisedStreet) -> int:
    return _part_hash((street.name, street.number), _BLOCK_SEED)


def block_key(person: NormalisedAddressee) -> int:
    """The key a checked row is looked up by in block lists (the register, "no more mail" lists)."""
    initial, surname = person.name.block_pair
    name_hash = _part_hash((surname, initial), _BLOCK_SEED)
    return _key(name_hash, _block_street_hash(person.street), person.postcode, _BLOCK_SEED)


def register_keys(person: NormalisedAddressee) -> tuple[int, ...]:
    """The keys a block list stores for a person: one per `NormalisedName.register_pairs` pair."""
    street_hash = _block_street_hash(person.street)
    return tuple(
        _key(_part_hash((surname, initial), _BLOCK_SEED), street_hash, person.postcode, _BLOCK_SEED)
        for initial, surname in person.name.register_pairs
    )


def exempt_key(person: NormalisedAddressee) -> int:
    """The key of consent and customer-relationship lists; 0 when the first given name is an initial."""
    if not person.name.exempt_given:
        return 0
    name_hash = _part_hash((person.name.tokens[-1], person.name.exempt_given), _EXEMPT_SEED)
    street = person.street
    street_hash = _part_hash((street.name, street.number, street.letter), _EXEMPT_SEED)
    return _key(name_hash, street_hash, person.postcode, _EXEMPT_SEED)


@dataclass(frozen=True, slots=True)
class NameAddressBatch:
    """Keys of checked rows, in input order; both keys 0 where `problems` (AddressProblem) is not 0."""

    block_keys: NDArray[np.uint64]
    exempt_keys: NDArray[np.uint64]  # also 0 for a valid row whose first given name is an initial
    problems: NDArray[np.uint8]

    def __len__(self) -> int:
        return len(self.problems)


@dataclass(frozen=True, slots=True)
class RegisterKeyBatch:
    """Keys a block list stores for its rows: `keys[i]` came from input row `rows[i]` (ascending)."""

    keys: NDArray[np.uint64]
    rows: NDArray[np.int64]
    problems: NDArray[np.uint8]  # one per input row; rows with a problem contribute no key


# --- batches ---------------------------------------------------------------------------------------------
#
# A batch gives each distinct name, street and postcode text an id (one dict look-up per row and column),
# normalises and part-hashes each distinct text once, and then works on whole columns: the row's problem
# is the first non-zero of its name, street and postcode problems, its keys the vectorised XXH64 of the
# gathered part hashes.


class _Column(NamedTuple):
    ids: NDArray[np.int64]  # per row: the id of its text
    texts: list[str]  # per id: the text


def _intern(texts: list[str]) -> _Column:
    index: dict[str, int] = {}
    ids = [index.setdefault(text, len(index)) for text in texts]
    return _Column(np.array(ids, dtype=np.int64), list(index))


_Table = tuple[NDArray[np.uint8], NDArray[np.uint64], NDArray[np.uint64]]  # problem, block, exempt per id


def _table(problems: list[int], block: list[int], exempt: list[int]) -> _Table:
    return (
        np.array(problems, dtype=np.uint8),
        np.array(block, dtype=np.uint64),
        np.array(exempt, dtype=np.uint64),
    )


_NameEntry = tuple[int, int, int, NormalisedName | None]  # problem, block part hash, exempt part hash, name
_StreetEntry = tuple[int, int, int]  # problem, block part hash, exempt part hash
DEFAULT_CACHE_TEXTS: Final = 1 << 18
"""`AddressKeyCache`: distinct texts per column before the column starts afresh (memory: see the class)."""


class AddressKeyCache:
    """The normalised parts of name and street texts seen in earlier batches, kept for later ones.

    A stream of 10k-row batches otherwise normalises "Storgatan 12" once per batch; with one cache per
    stream (or per process) it does so once. Each column starts afresh after `max_texts` distinct texts,
    so memory stays bounded: ~280 bytes per cached text measured (synthetic register, tracemalloc), so at
    most ~0.2 GB with the default for names, streets and folded words together. Results never depend on
    the cache (tests check batches with and without). Not thread-safe: one cache per thread or stream.
    """

    def __init__(self, max_texts: int = DEFAULT_CACHE_TEXTS) -> None:
        self.max_texts = max_texts
        self.names: dict[str, _NameEntry] = {}
        self.streets: dict[str, _StreetEntry] = {}
        self.folded_words: dict[str, str] = {}

    def trim(self) -> None:
        """Start a column afresh once it holds more than `max_texts` texts."""
        for table in (self.names, self.streets, self.folded_words):
            if len(table) > self.max_texts:
                table.clear()


def _name_entry(text: str, folded_words: dict[str, str]) -> _NameEntry:
    name = normalise_name(text, folded_words)
    if isinstance(name, AddressProblem):
        return int(name), 0, 0, None
    surname = name.tokens[-1]
    block = _part_hash((surname, name.tokens[0][0]), _BLOCK_SEED)
    exempt = _part_hash((surname, name.exempt_given), _EXEMPT_SEED) if name.exempt_given else 0
    return 0, block, exempt, name


def _street_entry(text: str) -> _StreetEntry:
    street = normalise_street(text)
    if isinstance(street, AddressProblem):
        return int(street), 0, 0
    return (
        0,
        _block_street_hash(street),
        _part_hash((street.name, street.number, street.letter), _EXEMPT_SEED),
    )


def _name_table(texts: list[str], cache: AddressKeyCache) -> tuple[_Table, list[NormalisedName | None]]:
    entries = cache.names
    found: list[_NameEntry] = []
    for text in texts:
        entry = entries.get(text)
        if entry is None:
            entry = entries[text] = _name_entry(text, cache.folded_words)
        found.append(entry)
    problems, block, exempt, names = zip(*found, strict=True) if found else ((), (), (), ())
    return _table(list(problems), list(block), list(exempt)), list(names)


def _street_table(texts: list[str], cache: AddressKeyCache) -> _Table:
    entries = cache.streets
    found: list[_StreetEntry] = []
    for text in texts:
        entry = entries.get(text)
        if entry is None:
            entry = entries[text] = _street_entry(text)
        found.append(entry)
    problems, block, exempt = zip(*found, strict=True) if found else ((), (), ())
    return _table(list(problems), list(block), list(exempt))


def _postcode_table(texts: list[str]) -> tuple[NDArray[np.uint8], NDArray[np.uint64]]:
    parsed = [normalise_postcode(text) for text in texts]
    problems = [value if isinstance(value, AddressProblem) else 0 for value in parsed]
    postcodes = [0 if isinstance(value, AddressProblem) else value for value in parsed]
    return np.array(problems, dtype=np.uint8), np.array(postcodes, dtype=np.uint64)


class _Batch(NamedTuple):
    problems: NDArray[np.uint8]
    name_ids: NDArray[np.int64]
    names: list[NormalisedName | None]  # per name id
    name_block: NDArray[np.uint64]  # per row, gathered
    name_exempt: NDArray[np.uint64]
    street_block: NDArray[np.uint64]
    street_exempt: NDArray[np.uint64]
    postcodes: NDArray[np.uint64]


def _normalise_batch(rows: Sequence[AddressRow], cache: AddressKeyCache | None) -> _Batch:
    cache = AddressKeyCache() if cache is None else cache
    names = _intern([row[0] for row in rows])
    streets = _intern([row[1] for row in rows])
    postcodes = _intern([row[2] for row in rows])
    (name_problem, name_block, name_exempt), normalised = _name_table(names.texts, cache)
    street_problem, street_block, street_exempt = _street_table(streets.texts, cache)
    cache.trim()
    postcode_problem, postcode_value = _postcode_table(postcodes.texts)
    blank = [
        np.array([not text.strip() for text in column.texts], dtype=np.bool_)[column.ids]
        for column in (names, streets, postcodes)
    ]
    problems = name_problem[names.ids]
    for later in (street_problem[streets.ids], postcode_problem[postcodes.ids]):
        problems = np.where(problems == 0, later, problems)
    problems[blank[0] & blank[1] & blank[2]] = AddressProblem.EMPTY
    return _Batch(
        problems,
        names.ids,
        normalised,
        name_block[names.ids],
        name_exempt[names.ids],
        street_block[streets.ids],
        street_exempt[streets.ids],
        postcode_value[postcodes.ids],
    )


def name_address_keys(rows: Sequence[AddressRow], cache: AddressKeyCache | None = None) -> NameAddressBatch:
    """Block and exempt keys of checked rows (any sequences of name, street, postcode[, ...]).

    Pass one `AddressKeyCache` for all batches of a stream to normalise each distinct text once.
    """
    batch = _normalise_batch(rows, cache)
    valid = batch.problems == 0
    block = xxh64_of_three_words(batch.name_block, batch.street_block, batch.postcodes, _BLOCK_SEED)
    block = np.where(valid, block | _KEY_BIT, _NO_KEY)
    exempt = xxh64_of_three_words(batch.name_exempt, batch.street_exempt, batch.postcodes, _EXEMPT_SEED)
    exempt = np.where(valid & (batch.name_exempt != 0), exempt | _KEY_BIT, _NO_KEY)
    return NameAddressBatch(block, exempt, batch.problems)


def register_name_address_keys(
    rows: Sequence[AddressRow], cache: AddressKeyCache | None = None
) -> RegisterKeyBatch:
    """Every key a block list stores for its rows, with the row each came from."""
    batch = _normalise_batch(rows, cache)
    # per distinct name: the part hashes of all its register pairs, flattened with offsets
    pair_hashes: list[int] = []
    pair_counts = np.zeros(len(batch.names), dtype=np.int64)
    for position, name in enumerate(batch.names):
        if name is not None:
            pairs = name.register_pairs
            pair_counts[position] = len(pairs)
            pair_hashes.extend(_part_hash((surname, initial), _BLOCK_SEED) for initial, surname in pairs)
    pair_starts = np.concatenate(([0], np.cumsum(pair_counts)[:-1]))
    valid_rows = np.flatnonzero(batch.problems == 0)
    counts = pair_counts[batch.name_ids[valid_rows]]
    origins = np.repeat(valid_rows, counts)
    within = np.arange(len(origins)) - np.repeat(np.cumsum(counts) - counts, counts)
    name_hashes = np.array(pair_hashes, dtype=np.uint64)[pair_starts[batch.name_ids[origins]] + within]
    keys = xxh64_of_three_words(
        name_hashes, batch.street_block[origins], batch.postcodes[origins], _BLOCK_SEED
    )
    return RegisterKeyBatch(keys | _KEY_BIT, origins.astype(np.int64), batch.problems)
