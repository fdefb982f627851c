"""nixlookup.server.addressing: who a NIX-Adresserat row names, as uint64 keys (text -> key, like numbering).

- personnummer: a written personnummer or samordningsnummer -> its 12-digit key ``YYYYMMDDNNNC``
  (`parse_personnummer`, `parse_personnummer_many`), or a `PersonnummerProblem`.
- names, streets: Swedish names, street lines and postcodes folded to what identifies a person.
- keys: the 64-bit name-address keys (bit 63 set, so never 0 and never a personnummer key): the block
  key a checked row is looked up by, the register keys a block list stores, the strict exempt key of
  consent and relationship lists (`name_address_keys`, `register_name_address_keys`), or an
  `AddressProblem`.
- addressee: whole rows (personnummer and/or name and address) as columns -> every key they are checked
  or stored by, and why a row is invalid (`addressee_keys`, `register_row_keys`).
- synthetic: a seeded synthetic register, its CSV file, and variant spellings of its people (the
  matching oracle).

Batch functions take sequences of strings or `AddressRow` and return numpy uint64 keys and uint8
problem codes. docs/addresses.md says what counts as the same person, and why.
"""

from nixlookup.server.addressing._addressee import (
    ADDRESSEE_COLUMNS,
    AddresseeKeys,
    addressee_keys,
    register_row_keys,
    row_count,
    row_problem,
)
from nixlookup.server.addressing._keys import (
    DEFAULT_CACHE_TEXTS,
    NAME_ADDRESS_KEY_BIT,
    AddressKeyCache,
    AddressRow,
    NameAddressBatch,
    NormalisedAddressee,
    RegisterKeyBatch,
    block_key,
    exempt_key,
    name_address_keys,
    normalise_row,
    register_keys,
    register_name_address_keys,
)
from nixlookup.server.addressing._names import MAX_NAME_TOKENS, NormalisedName, normalise_name
from nixlookup.server.addressing._personnummer import (
    MAX_PERSONNUMMER_CHARS,
    PERSONNUMMER_PROBLEM_TEXT,
    ParsedPersonnummer,
    PersonnummerBatch,
    PersonnummerProblem,
    parse_personnummer,
    parse_personnummer_many,
)
from nixlookup.server.addressing._problems import ADDRESS_PROBLEM_TEXT, AddressProblem
from nixlookup.server.addressing._streets import (
    NormalisedStreet,
    normalise_city,
    normalise_postcode,
    normalise_street,
)
from nixlookup.server.addressing._synthetic import (
    DEFAULT_ADDRESS_SEED,
    DEFAULT_REFERENCE_DATE,
    EXEMPT_CHANGING_KINDS,
    REGISTER_CSV_HEADER,
    REGISTER_ONLY_KINDS,
    SyntheticAddressRegister,
    Variant,
    generate_address_register,
    register_columns,
    register_rows,
    write_register_csv,
    write_variants,
)

__all__ = [
    "ADDRESSEE_COLUMNS",
    "ADDRESS_PROBLEM_TEXT",
    "DEFAULT_ADDRESS_SEED",
    "DEFAULT_CACHE_TEXTS",
    "DEFAULT_REFERENCE_DATE",
    "EXEMPT_CHANGING_KINDS",
    "MAX_NAME_TOKENS",
    "MAX_PERSONNUMMER_CHARS",
    "NAME_ADDRESS_KEY_BIT",
    "PERSONNUMMER_PROBLEM_TEXT",
    "REGISTER_CSV_HEADER",
    "REGISTER_ONLY_KINDS",
    "AddressKeyCache",
    "AddressProblem",
    "AddressRow",
    "AddresseeKeys",
    "NameAddressBatch",
    "NormalisedAddressee",
    "NormalisedName",
    "NormalisedStreet",
    "ParsedPersonnummer",
    "PersonnummerBatch",
    "PersonnummerProblem",
    "RegisterKeyBatch",
    "SyntheticAddressRegister",
    "Variant",
    "addressee_keys",
    "block_key",
    "exempt_key",
    "generate_address_register",
    "name_address_keys",
    "normalise_city",
    "normalise_name",
    "normalise_postcode",
    "normalise_row",
    "normalise_street",
    "parse_personnummer",
    "parse_personnummer_many",
    "register_columns",
    "register_keys",
    "register_name_address_keys",
    "register_row_keys",
    "register_rows",
    "row_count",
    "row_problem",
    "write_register_csv",
    "write_variants",
]
