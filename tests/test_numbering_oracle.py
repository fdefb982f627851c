"""The normaliser against libphonenumber, and its two entry points against each other (hypothesis).

The oracle is ``phonenumbers.parse(text, "SE")`` + ``is_valid_number`` + ``format_number(E164)`` +
``number_type``: for every text made of digits, separators and a leading ``+`` the normaliser must give
the same validity, key and line type. Numbers are generated from real Swedish ranges (mobile, fixed
lines behind real area codes, the other types) and written every common way; "digit soup" behind every
prefix the rules care about covers the corners (bare 46, 00 vs 000, +00, national prefix 0).
"""

from __future__ import annotations

import numpy as np
import phonenumbers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nixlookup.server.numbering import (
    LineType,
    ParsedBatch,
    ParsedNumber,
    Problem,
    classify_key,
    classify_keys,
    parse_number,
    parse_numbers,
)

EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW_EXAMPLES = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Real Swedish area codes (PTS), without the national prefix: 8 Stockholm, 2-digit and 3-digit ones.
AREA_CODES = ["8", "11", "13", "16", "18", "19", "21", "23", "26", "31", "33", "35", "36", "40", "42", "44",
              "46", "54", "60", "63", "90", "120", "121", "122", "123", "125", "140", "141", "142", "143",
              "144", "150", "151", "152", "155", "156", "157", "158", "159", "171", "173", "174", "175",
              "176", "220", "221", "222", "223", "224", "225", "226", "227", "240", "241", "243", "246",
              "247", "248", "250", "251", "253", "270", "271", "278", "280", "281", "290", "291", "292",
              "293", "294", "295", "297", "300", "301", "302", "303", "304", "320", "321", "322", "325",
              "340", "345", "346", "370", "371", "372", "380", "381", "382", "383", "390", "392", "393",
              "410", "411", "413", "414", "415", "416", "417", "418", "430", "431", "433", "435", "451",
              "454", "455", "456", "457", "459", "470", "471", "472", "474", "476", "477", "478", "479",
              "480", "481", "485", "486", "490", "491", "492", "493", "494", "495", "496", "498", "499",
              "500", "501", "502", "503", "504", "505", "506", "510", "511", "512", "513", "514", "515",
              "520", "521", "522", "523", "524", "525", "526", "528", "530", "531", "532", "533", "534",
              "550", "551", "552", "553", "554", "555", "560", "563", "564", "565", "570", "571", "573",
              "580", "581", "582", "583", "584", "585", "586", "587", "589", "590", "591", "611", "612",
              "613", "620", "621", "622", "623", "624", "640", "642", "643", "644", "645", "647", "650",
              "651", "652", "653", "657", "660", "661", "662", "663", "670", "671", "672", "680", "682",
              "684", "687", "690", "691", "692", "693", "695", "696", "910", "911", "912", "913", "914",
              "915", "916", "918", "920", "921", "922", "923", "924", "925", "926", "927", "928", "929",
              "930", "932", "933", "934", "935", "940", "941", "942", "943", "950", "951", "952", "953",
              "954", "960", "961", "970", "971", "973", "975", "976", "977", "978", "980", "981"]  # fmt: skip
MOBILE_PREFIXES = ["70", "72", "73", "76", "78", "79"]
OTHER_PREFIXES = {  # prefix: subscriber lengths (toll free, premium, shared cost, personal, pager, UAN)
    "20": (4, 5, 6, 7), "9001": (3, 4, 5, 6), "9394": (3, 4, 5), "649": (6,), "991": (4, 7),
    "771": (6,), "752": (6,), "740": (6,), "102": (6,), "254": (9,),
}  # fmt: skip
FOREIGN = {
    "1": 10,
    "44": 10,
    "47": 8,
    "45": 8,
    "358": 9,
    "49": 10,
    "33": 9,
    "7": 10,
    "86": 11,
}  # cc: NSN digits
SEPARATORS = [" ", "-", ".", "/", " - ", "\u00a0", "\u2013", "  "]
LINE_TYPE = {
    phonenumbers.PhoneNumberType.MOBILE: LineType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE: LineType.FIXED,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE: LineType.MOBILE,
}


def oracle(text: str) -> ParsedNumber:
    """What libphonenumber says about a text, in our vocabulary (problems collapse to 'invalid')."""
    try:
        number = phonenumbers.parse(text, "SE")
    except phonenumbers.NumberParseException:
        return ParsedNumber(0, Problem.NOT_IN_PLAN, LineType.UNSPECIFIED)
    if not phonenumbers.is_valid_number(number):
        return ParsedNumber(0, Problem.NOT_IN_PLAN, LineType.UNSPECIFIED)
    key = int(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:])
    if number.country_code != 46:
        return ParsedNumber(key, Problem.OK, LineType.OTHER)
    return ParsedNumber(key, Problem.OK, LINE_TYPE.get(phonenumbers.number_type(number), LineType.OTHER))


def agrees_with_oracle(text: str) -> None:
    ours, theirs = parse_number(text), oracle(text)
    assert (ours.key, ours.valid, ours.line_type) == (theirs.key, theirs.valid, theirs.line_type), text


def digit_strings(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=min_size, max_size=max_size)


@st.composite
def swedish_nsns(draw: st.DrawFn) -> str:
    """National significant numbers from real ranges, plus near misses (lengths off by one)."""
    kind = draw(st.sampled_from(["mobile", "fixed", "other", "random"]))
    if kind == "mobile":
        nsn = draw(st.sampled_from(MOBILE_PREFIXES)) + draw(digit_strings(7, 7))
    elif kind == "fixed":
        area = draw(st.sampled_from(AREA_CODES))
        nsn = area + draw(digit_strings(5, 8 if area == "8" else 7))
    elif kind == "other":
        prefix, lengths = draw(st.sampled_from(sorted(OTHER_PREFIXES.items())))
        nsn = prefix + draw(digit_strings(min(lengths), max(lengths)))
    else:
        nsn = draw(st.sampled_from("123456789")) + draw(digit_strings(3, 12))
    if draw(st.integers(0, 9)) == 0:  # near miss
        nsn = nsn[:-1] if draw(st.booleans()) else nsn + draw(st.sampled_from("0123456789"))
    return nsn


@st.composite
def spaced(draw: st.DrawFn, digits: str) -> str:
    """``digits`` cut into random groups joined by random separators."""
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(digits) - 1)), max_size=4)))
    groups = [digits[start:end] for start, end in zip([0, *cuts], [*cuts, len(digits)], strict=True)]
    text = groups[0]
    for group in groups[1:]:
        text += draw(st.sampled_from(SEPARATORS)) + group
    return text


@st.composite
def written_swedish(draw: st.DrawFn) -> str:
    """A Swedish number written one of the common ways."""
    nsn = draw(swedish_nsns())
    body = draw(spaced(nsn))
    form = draw(st.sampled_from(["0{}", "+46 {}", "+46 (0){}", "+46{}", "0046 {}", "0046{}", "46{}", "46 {}",
                                 "+46 0{}", "0046 (0) {}", "(0{})", "+0046 {}", " 0{} "]))  # fmt: skip
    return form.format(body)


@st.composite
def written_foreign(draw: st.DrawFn) -> str:
    code, length = draw(st.sampled_from(sorted(FOREIGN.items())))
    national = draw(st.sampled_from("23456789")) + draw(digit_strings(length - 2, length))
    prefix = draw(st.sampled_from(["+", "00", "+ "]))
    return prefix + code + " " + draw(spaced(national))


@st.composite
def digit_soup(draw: st.DrawFn) -> str:
    """Digits (a real NSN or random ones) behind every prefix the rules distinguish, randomly spaced."""
    prefix = draw(st.sampled_from(["", "0", "00", "000", "+", "+0", "+00", "46", "460", "4600", "0046",
                                   "00460", "004600", "+46", "+460", "+4600", "+0046",
                                   "+00460"]))  # fmt: skip
    digits = prefix + draw(swedish_nsns() | digit_strings(0, 16))
    return draw(spaced(digits)) if digits else ""


junk = st.text(max_size=30) | st.text(alphabet="0123456789+-() .\x00/#x", max_size=30)
any_text = written_swedish() | written_foreign() | digit_soup() | junk


@EXAMPLES
@given(written_swedish())
def test_swedish_numbers_agree_with_libphonenumber(text: str) -> None:
    """Real Swedish numbers in every common form: same validity, key and line type as libphonenumber."""
    agrees_with_oracle(text)


@FEW_EXAMPLES
@given(written_foreign())
def test_foreign_numbers_agree_with_libphonenumber(text: str) -> None:
    """International +CC / 00CC numbers are valid exactly when libphonenumber says so, line type OTHER."""
    agrees_with_oracle(text)


@EXAMPLES
@given(digit_soup())
def test_digit_soup_agrees_with_libphonenumber(text: str) -> None:
    """Arbitrary digits behind 0, 00, 000, +, +0, +00, 46, 0046 ...: libphonenumber's rules, exactly."""
    agrees_with_oracle(text)


@EXAMPLES
@given(junk)
def test_junk_never_raises(text: str) -> None:
    """Any text is an answer: valid with a key, or key 0 with a problem that has a reason."""
    parsed = parse_number(text)
    assert parsed.valid == (parsed.key != 0)
    assert parsed.valid == (parsed.line_type != LineType.UNSPECIFIED)


def rows(batch: ParsedBatch) -> list[ParsedNumber]:
    return [batch[index] for index in range(len(batch))]


@EXAMPLES
@given(st.lists(any_text, max_size=40))
def test_vectorised_equals_scalar(texts: list[str]) -> None:
    """parse_numbers on list[str], list[bytes], S and U arrays equals parse_number item by item."""
    expected = [parse_number(text) for text in texts]
    assert rows(parse_numbers(texts)) == expected
    encoded = [text.encode("utf-8", "surrogatepass") for text in texts]
    assert rows(parse_numbers(encoded)) == [parse_number(data) for data in encoded]
    if texts:
        assert rows(parse_numbers(np.array(encoded))) == [parse_number(data) for data in encoded]


@EXAMPLES
@given(st.lists(st.binary(max_size=30) | st.builds(str.encode, any_text), max_size=40))
def test_vectorised_equals_scalar_on_raw_bytes(lines: list[bytes]) -> None:
    """Arbitrary bytes lines (NULs, invalid UTF-8, high bytes) in a batch equal the scalar path on each."""
    assert rows(parse_numbers(lines)) == [parse_number(line) for line in lines]


@EXAMPLES
@given(st.lists(st.tuples(st.booleans(), digit_strings(0, 20)), min_size=1, max_size=40))
def test_plain_digit_batches_equal_scalar(lines: list[tuple[bool, str]]) -> None:
    """Batches of bare digit lines (the fast plain path, with or without a leading +) equal scalar results."""
    texts = [("+" if plus else "") + digits for plus, digits in lines]
    assert rows(parse_numbers([text.encode() for text in texts])) == [parse_number(text) for text in texts]
    digits_only = [digits for _, digits in lines]
    assert rows(parse_numbers(digits_only)) == [parse_number(text) for text in digits_only]


swedish_keys = st.builds(
    lambda length, rest: 46 * 10**length + rest % 10**length, st.integers(0, 17), st.integers(0, 10**17)
)
keys = (
    swedish_keys | st.integers(0, 2**64 - 1) | st.integers(1, 10**15) | st.sampled_from([0, 1, 46, 2**64 - 1])
)


@EXAMPLES
@given(st.lists(keys, max_size=40))
def test_classify_keys_equals_classify_key(values: list[int]) -> None:
    """The vectorised key check equals the scalar one item by item."""
    batch = classify_keys(np.array(values, dtype=np.uint64))
    assert rows(batch) == [classify_key(value) for value in values]


@EXAMPLES
@given(any_text)
def test_a_parsed_key_classifies_the_same(text: str) -> None:
    """The key of a valid number is itself a valid key with the same line type (keys are canonical)."""
    parsed = parse_number(text)
    if parsed.valid:
        assert classify_key(parsed.key) == parsed
