"""Masking of personal data in transcript text: 居民身份证号, mobile numbers and landlines.

Only exact patterns bounded by non-digits are masked, so dates (20261208), amounts,
appointment codes and longer digit runs such as bank card numbers are left whole.
Full-width digits (１３８…, typed with a Chinese input method) are masked like ASCII ones.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

_FULL_WIDTH = str.maketrans("０１２３４５６７８９＋", "0123456789+")
_SEP = r"[\s\-－]"
_ID18 = re.compile(r"(?<!\d)[1-8]\d{5}(\d{8})\d{3}[\dXxＸｘ](?![\dXxＸｘ])")
_ID15 = re.compile(r"(?<!\d)[1-8]\d{5}(\d{6})\d{3}(?!\d)")
_MOBILE = re.compile(rf"(?<![\d+])((?:(?:\+|00)?86{_SEP}?)?1[3-9]\d{_SEP}?)(\d{{4}})({_SEP}?\d{{4}})(?!\d)")
_LANDLINE = re.compile(
    rf"(?<!\d)([(（]?0(?:10|2\d|[3-9]\d{{2}})(?:[)）]\s?|{_SEP}))([1-9]\d{{2,3}}{_SEP}?)(\d{{4}})(?!\d)"
)


def _birth_date_plausible(digits: str) -> bool:
    """A real ID's YYYYMMDD is a date between 1900 and today."""
    try:
        born = dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return False
    return dt.date(1900, 1, 1) <= born <= dt.date.today()


def _stars(text: str) -> str:
    return re.sub(r"\d", "*", text)


def _id18(match: re.Match[str]) -> str:
    # The checksum is deliberately not required: a mistyped ID number is still someone's ID number.
    number = match.group()
    return number[:6] + "*" * 8 + number[-4:] if _birth_date_plausible(match.group(1)) else number


def _id15(match: re.Match[str]) -> str:
    number = match.group()
    return number[:6] + "*" * 5 + number[-4:] if _birth_date_plausible("19" + match.group(1)) else number


def _mask_ascii(text: str) -> str:
    text = _ID18.sub(_id18, text)
    text = _ID15.sub(_id15, text)
    text = _MOBILE.sub(lambda m: m.group(1) + "****" + m.group(3), text)
    return _LANDLINE.sub(lambda m: m.group(1) + _stars(m.group(2)) + m.group(3), text)


def mask_text(text: str) -> str:
    """110101199003071234 → 110101********1234, 138 1234 5678 → 138 **** 5678, 010-12345678 → 010-****5678."""
    plain = text.translate(_FULL_WIDTH)
    masked = _mask_ascii(plain)
    if masked == plain:
        return text
    # Every substitution only turns digits into "*", so positions line up with the original text.
    return "".join("*" if new == "*" != old else kept for kept, old, new in zip(text, plain, masked, strict=True))


def mask_value(value: Any) -> Any:
    """A copy of a JSON value with every string (and any integer that is a phone or ID number) masked."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {key: mask_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        masked = mask_text(str(value))
        return value if masked == str(value) else masked
    return value
