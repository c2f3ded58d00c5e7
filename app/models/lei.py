"""Legal Entity Identifier (ISO 17442) validation.

An LEI is 20 characters: 18 upper-case alphanumerics followed by two check digits computed with
ISO/IEC 7064 MOD 97-10 (the IBAN algorithm): letters are replaced by two digits (A=10 ... Z=35) and
the whole number must be congruent to 1 modulo 97.

>>> is_valid_lei("5493001KJTIIGC8Y1R12")
True
>>> lei_with_check_digits("5493001KJTIIGC8Y1R")
'5493001KJTIIGC8Y1R12'
"""

from __future__ import annotations

import re

_LEI_RE = re.compile(r"^[0-9A-Z]{18}[0-9]{2}$")


def _as_number(text: str) -> int:
    return int("".join(str(int(ch, 36)) for ch in text))


def lei_problem(lei: str) -> str | None:
    """Return why ``lei`` is not a valid LEI, or ``None`` when it is valid."""
    if len(lei) != 20:
        return f"an LEI has 20 characters, this one has {len(lei)}"
    if not _LEI_RE.match(lei):
        return "an LEI is 18 upper-case letters or digits followed by 2 check digits"
    # MOD 97-10 check digits are 98 - (n mod 97), i.e. 02..98: "00", "01" and "99" can leave
    # remainder 1 too but are never issued, so they are wrong even when the remainder fits.
    if not 2 <= int(lei[18:]) <= 98 or _as_number(lei) % 97 != 1:
        return "the check digits are wrong (ISO 17442 / ISO 7064 MOD 97-10)"
    return None


def is_valid_lei(lei: str) -> bool:
    """True when ``lei`` has the ISO 17442 form and correct check digits."""
    return lei_problem(lei) is None


def lei_with_check_digits(base18: str) -> str:
    """Append the two ISO 7064 MOD 97-10 check digits to an 18-character LEI prefix."""
    if len(base18) != 18 or not re.match(r"^[0-9A-Z]{18}$", base18):
        raise ValueError("base18 must be 18 upper-case letters or digits")
    check = 98 - (_as_number(base18 + "00") % 97)
    return f"{base18}{check:02d}"
