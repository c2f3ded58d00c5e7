"""ISO 17442 LEI validation, checked against published LEIs and an independent MOD 97-10."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.models.lei import is_valid_lei, lei_problem, lei_with_check_digits

#: LEIs published in the GLEIF register (entity in the comment).
PUBLISHED_LEIS = [
    "5493001KJTIIGC8Y1R12",  # Bloomberg Finance L.P.
    "HWUPKR0MPOU8FGXBT394",  # Apple Inc.
    "7LTWFZYICNSX8D621K86",  # Deutsche Bank AG
    "549300ZFEEJ2IP5VME73",
    "213800WSGIIZCXF1P572",  # example LEI of the ISO 17442 structure (LOU 2138)
]

ALPHABET = string.digits + string.ascii_uppercase
_LETTER_VALUE = {ch: i for i, ch in enumerate(string.ascii_uppercase, start=10)}


def reference_mod97(code: str) -> int:
    """ISO 7064 MOD 97-10 remainder, computed piecewise (no big integers, no base-36 parsing)."""
    remainder = 0
    for ch in code:
        if ch.isdigit():
            remainder = (remainder * 10 + ord(ch) - ord("0")) % 97
        else:
            remainder = (remainder * 100 + _LETTER_VALUE[ch]) % 97
    return remainder


def reference_check_digits(base18: str) -> str:
    """The two check digits of ISO 7064 MOD 97-10: 98 - (base * 100 mod 97), i.e. 02..98."""
    return f"{98 - reference_mod97(base18 + '00'):02d}"


def reference_is_valid(lei: str) -> bool:
    return (
        len(lei) == 20
        and all(ch in ALPHABET for ch in lei[:18])
        and lei[18:].isdigit()
        and 2 <= int(lei[18:]) <= 98
        and reference_mod97(lei) == 1
    )


prefixes = st.text(alphabet=ALPHABET, min_size=18, max_size=18)


# -- published LEIs --------------------------------------------------------------------------


@pytest.mark.parametrize("lei", PUBLISHED_LEIS)
def test_published_leis_are_valid(lei: str) -> None:
    assert reference_is_valid(lei), "the reference implementation disagrees with the register"
    assert lei_problem(lei) is None
    assert is_valid_lei(lei)


@pytest.mark.parametrize("lei", PUBLISHED_LEIS)
def test_check_digits_of_published_leis_are_recomputed(lei: str) -> None:
    assert lei_with_check_digits(lei[:18]) == lei


@pytest.mark.parametrize("lei", PUBLISHED_LEIS)
def test_swapped_check_digits_are_invalid(lei: str) -> None:
    swapped = lei[:18] + lei[19] + lei[18]
    assert swapped != lei
    assert not is_valid_lei(swapped)
    problem = lei_problem(swapped)
    assert problem is not None
    assert "check digits are wrong" in problem
    assert "MOD 97-10" in problem


@pytest.mark.parametrize("lei", PUBLISHED_LEIS)
def test_every_same_class_single_substitution_is_invalid(lei: str) -> None:
    """MOD 97-10 catches every single substitution of a digit by a digit or a letter by a letter.

    Exhaustive over all 20 positions of each published LEI.
    """
    tried = 0
    for pos, original in enumerate(lei):
        pool = string.digits if original.isdigit() else string.ascii_uppercase
        for replacement in pool:
            if replacement == original:
                continue
            changed = lei[:pos] + replacement + lei[pos + 1 :]
            problem = lei_problem(changed)
            assert problem is not None, f"{changed} (position {pos + 1} changed) accepted"
            assert "check digits are wrong" in problem
            tried += 1
    assert tried > 20 * 9


@pytest.mark.parametrize("lei", PUBLISHED_LEIS)
def test_any_single_substitution_agrees_with_reference(lei: str) -> None:
    """Digit <-> letter substitutions change the digit string's length; compare with the reference."""
    for pos in range(20):
        for replacement in ALPHABET:
            changed = lei[:pos] + replacement + lei[pos + 1 :]
            if changed == lei:
                continue
            assert is_valid_lei(changed) == reference_is_valid(changed), changed


@given(prefix=prefixes, pos=st.integers(0, 19), data=st.data())
def test_single_changed_character_is_invalid(prefix: str, pos: int, data: st.DataObject) -> None:
    lei = prefix + reference_check_digits(prefix)
    original = lei[pos]
    pool = string.digits if original.isdigit() else string.ascii_uppercase
    replacement = data.draw(st.sampled_from([c for c in pool if c != original]))
    changed = lei[:pos] + replacement + lei[pos + 1 :]
    assert is_valid_lei(lei)
    assert not is_valid_lei(changed)


# -- messages --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lei", "expected"),
    [
        ("5493001KJTIIGC8Y1R1", "an LEI has 20 characters, this one has 19"),
        ("5493001KJTIIGC8Y1R123", "an LEI has 20 characters, this one has 21"),
        ("", "an LEI has 20 characters, this one has 0"),
        ("5493001kjtiigc8y1r12", "upper-case"),  # lower case
        ("5493001KJTIIGC8Y1R1A", "2 check digits"),  # letter in the check digits
        ("5493001KJTIIGC-Y1R12", "upper-case letters or digits"),  # punctuation
        ("5493001KJTIIGC8Y1R 2", "2 check digits"),
        ("5493001KJTIIGC8Y1R13", "check digits are wrong"),
    ],
)
def test_problem_messages(lei: str, expected: str) -> None:
    problem = lei_problem(lei)
    assert problem is not None
    assert expected in problem
    assert not is_valid_lei(lei)


# -- lei_with_check_digits ---------------------------------------------------------------------


@given(prefix=prefixes)
def test_with_check_digits_round_trip(prefix: str) -> None:
    lei = lei_with_check_digits(prefix)
    assert len(lei) == 20
    assert lei.startswith(prefix)
    assert lei[18:] == reference_check_digits(prefix)
    assert lei_problem(lei) is None


@given(prefix=prefixes)
def test_exactly_one_of_the_100_suffixes_is_valid(prefix: str) -> None:
    """Brute force: of 00..99 only the ISO 7064 check digits (02..98) are accepted."""
    valid = [f"{cc:02d}" for cc in range(100) if is_valid_lei(f"{prefix}{cc:02d}")]
    assert valid == [reference_check_digits(prefix)]
    assert lei_with_check_digits(prefix) == prefix + valid[0]


@pytest.mark.parametrize(
    ("prefix", "check", "alias"),
    [
        # base * 100 = 0 (mod 97): the check digits are 98, and "01" also leaves remainder 1
        ("549300TEST00000059", "98", "01"),
        # base * 100 = 96 (mod 97): the check digits are 02, and "99" also leaves remainder 1
        ("549300TEST00000091", "02", "99"),
        # base * 100 = 1 (mod 97): the check digits are 97, and "00" also leaves remainder 1
        ("549300TEST00000027", "97", "00"),
    ],
)
def test_check_digits_outside_02_to_98_are_rejected(prefix: str, check: str, alias: str) -> None:
    assert reference_mod97(prefix + alias) == 1  # the alias passes a bare "mod 97 == 1" test
    assert lei_with_check_digits(prefix) == prefix + check
    assert is_valid_lei(prefix + check)
    problem = lei_problem(prefix + alias)
    assert problem is not None
    assert "check digits" in problem


@pytest.mark.parametrize(
    "bad",
    ["", "5493001KJTIIGC8Y1", "5493001KJTIIGC8Y1RX", "5493001kjtiigc8y1r", "5493001KJTIIGC8Y-R"],
)
def test_with_check_digits_rejects_bad_prefix(bad: str) -> None:
    with pytest.raises(ValueError, match="18 upper-case letters or digits"):
        lei_with_check_digits(bad)
