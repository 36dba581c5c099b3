"""SMS encoding and segment arithmetic (GSM 03.38 / UCS-2), as carriers and Twilio bill it."""

from __future__ import annotations

import unicodedata
from typing import Literal, NamedTuple

Encoding = Literal["GSM-7", "UCS-2"]

# GSM 03.38 default alphabet, code points 0x00-0x7F in table order; 0x1B (ESC) is left out
# because it is the escape into the extension table, not a character.
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# Extension table: each character is sent as ESC + code, i.e. two septets.
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")
_GSM = GSM_BASIC | GSM_EXTENSION

SINGLE_LIMIT: dict[Encoding, int] = {"GSM-7": 160, "UCS-2": 70}
PART_LIMIT: dict[Encoding, int] = {"GSM-7": 153, "UCS-2": 67}

# Look-alikes that Twilio Smart Encoding rewrites to GSM-7. Only punctuation, spaces and
# symbols: letters with diacritics outside GSM (č ć đ š ž …) are deliberately not here.
_LOOKALIKES: dict[str, str] = {
    **dict.fromkeys("\u00ab\u00bb\u201c\u201d\u201e\u201f\u02ba\u02ee\u301d\u301e", '"'),
    **dict.fromkeys("\u2018\u2019\u201b\u2032\u2035\u02b9\u02bb\u02bc\u02bd\u02c8\u02ca\u02cb\u00b4`", "'"),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2043\u2212\u2022", "-"),
    # spaces that look like a space, and invisible characters that would only force UCS-2
    **dict.fromkeys("\u00a0\u1680\u202f\u205f\u3000\u2028\u2029", " "),
    **{chr(c): " " for c in range(0x2000, 0x200B)},
    **dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff\u00ad", ""),
    # fullwidth ASCII forms; the fullwidth grave accent becomes ' because ` is not GSM either
    **{chr(c): chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F)},
    "\uff40": "'",
    "\u201a": ",", "\u3001": ",", "\u3002": ".", "\u2026": "...", "\u203c": "!!",
    "\u2039": "<", "\u203a": ">", "\u00f7": "/", "\u2044": "/", "\u2215": "/",
    "\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4",
    "\u02c6": "^", "\u02dc": "~", "\u223c": "~", "\u2223": "|",
}  # fmt: skip
_SMART_TABLE = str.maketrans(_LOOKALIKES)


class SmsInfo(NamedTuple):
    """Encoding, length in encoding units (septets or UTF-16 code units) and segment count."""

    encoding: Encoding
    units: int
    segments: int


def encoding(text: str) -> Encoding:
    """GSM-7 when every character is in the GSM 03.38 basic or extension table, else UCS-2."""
    return "GSM-7" if all(ch in _GSM for ch in text) else "UCS-2"


def _unit_cost(ch: str, enc: Encoding) -> int:
    if enc == "GSM-7":
        return 2 if ch in GSM_EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1


def split(text: str) -> list[str]:
    """The parts `text` is sent in; escapes and surrogate pairs never straddle two parts."""
    enc = encoding(text)
    if sum(_unit_cost(ch, enc) for ch in text) <= SINGLE_LIMIT[enc]:
        return [text]
    limit, parts, start, fill = PART_LIMIT[enc], [], 0, 0
    for i, ch in enumerate(text):
        cost = _unit_cost(ch, enc)
        if fill + cost > limit:
            parts.append(text[start:i])
            start, fill = i, 0
        fill += cost
    parts.append(text[start:])
    return parts


def segments(text: str) -> SmsInfo:
    """Encoding, units and segment count of `text` sent as one SMS (an empty text is 1 segment)."""
    enc = encoding(text)
    units = sum(_unit_cost(ch, enc) for ch in text)
    return SmsInfo(enc, units, len(split(text)))


def normalize_for_gsm(text: str) -> str:
    """Replace look-alike punctuation and spaces with GSM-7 equivalents, as Smart Encoding does.

    The text is NFC-composed first so decomposed accents become one character; letters that
    GSM-7 lacks (Croatian č ć đ š ž, Thai, emoji) are kept, so such text stays UCS-2.
    """
    return unicodedata.normalize("NFC", text).translate(_SMART_TABLE)
