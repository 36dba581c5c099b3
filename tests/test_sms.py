"""SMS encoding and segment arithmetic: golden cases from the channels research (§4)."""

from __future__ import annotations

import pytest

from bot.sms import (
    GSM_BASIC,
    GSM_EXTENSION,
    SmsInfo,
    encoding,
    normalize_for_gsm,
    segments,
    split,
)

CROATIAN = "čćđšžČĆĐŠŽ"


def units_of(part: str) -> int:
    return segments(part).units


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 160, SmsInfo("GSM-7", 160, 1)),
        ("a" * 161, SmsInfo("GSM-7", 161, 2)),
        ("a" * 306, SmsInfo("GSM-7", 306, 2)),
        ("a" * 307, SmsInfo("GSM-7", 307, 3)),
        ("č" * 70, SmsInfo("UCS-2", 70, 1)),
        ("č" * 71, SmsInfo("UCS-2", 71, 2)),
        ("č" * 134, SmsInfo("UCS-2", 134, 2)),
        ("č" * 135, SmsInfo("UCS-2", 135, 3)),
        ("€" * 80, SmsInfo("GSM-7", 160, 1)),
        ("€" * 81, SmsInfo("GSM-7", 162, 2)),
        ("€[]{}~^|\\", SmsInfo("GSM-7", 18, 1)),
        ("\f", SmsInfo("GSM-7", 2, 1)),
        ("พัสดุ", SmsInfo("UCS-2", 5, 1)),
        ("😀", SmsInfo("UCS-2", 2, 1)),
        ("😀" * 35, SmsInfo("UCS-2", 70, 1)),
        ("😀" * 36, SmsInfo("UCS-2", 72, 2)),
        ("", SmsInfo("GSM-7", 0, 1)),
    ],
)
def test_golden_segments(text: str, expected: SmsInfo) -> None:
    assert segments(text) == expected


def test_extension_character_is_never_split_across_parts() -> None:
    # 306 septets would fit 2 parts of 153 if the escape pair could straddle the boundary.
    text = "a" * 152 + "€" + "a" * 152
    parts = split(text)
    assert [units_of(p) for p in parts] == [152, 153, 1]
    assert segments(text).segments == 3


def test_astral_character_is_never_split_across_parts() -> None:
    text = "č" * 66 + "😀" + "č" * 66  # 134 UTF-16 units, but the surrogate pair cannot split
    parts = split(text)
    assert [units_of(p) for p in parts] == [66, 67, 1]
    assert parts[1].startswith("😀")
    assert segments(text) == SmsInfo("UCS-2", 134, 3)


@pytest.mark.parametrize(
    "text",
    [
        "Vaš paket HR123456789 je isporučen. " * 9,
        "Paket Anda sedang dalam perjalanan, estimasi tiba besok. {~} " * 7,
        "พัสดุของคุณถูกจัดส่งแล้ว 📦 " * 11,
        "€" * 77 + "a" * 400,
    ],
)
def test_split_parts_rejoin_and_respect_part_limits(text: str) -> None:
    info, parts = segments(text), split(text)
    limit = 153 if info.encoding == "GSM-7" else 67
    assert "".join(parts) == text
    assert len(parts) == info.segments > 1
    assert all(units_of(p) <= limit for p in parts)
    # greedy packing: the next character would not have fitted into any full part
    for part, following in zip(parts, parts[1:], strict=False):
        assert units_of(part + following[0]) > limit


def test_one_croatian_letter_switches_the_whole_message_to_ucs2() -> None:
    assert encoding("Paket je isporucen") == "GSM-7"
    assert encoding("Paket je isporučen") == "UCS-2"
    for letter in CROATIAN:
        assert encoding("a" * 100 + letter) == "UCS-2"


def test_thai_is_always_ucs2_and_marks_count_as_units() -> None:
    assert encoding("สถานะ") == "UCS-2"
    assert segments("ก" * 70).segments == 1
    assert segments("ก" * 71).segments == 2


def test_indonesian_plain_latin_fits_gsm7() -> None:
    assert encoding("Di mana paket saya? Pesanan #123 tiba besok pukul 10:00.") == "GSM-7"


def test_gsm_tables_are_the_03_38_alphabet() -> None:
    assert len(GSM_BASIC) == 127  # 128 code points minus ESC
    assert len(GSM_EXTENSION) == 10
    assert not GSM_BASIC & GSM_EXTENSION
    assert "\x1b" not in GSM_BASIC
    assert encoding("\x1b") == "UCS-2"
    for ch in "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà\n\r":
        assert segments(ch) == SmsInfo("GSM-7", 1, 1), ch
    for ch in "`çêâ":  # common look-alikes that are not in GSM 03.38
        assert encoding(ch) == "UCS-2", ch


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("“Stiglo je”", '"Stiglo je"'),
        ("‘ok’", "'ok'"),
        ("it’s", "it's"),
        ("10–12 h — sutra", "10-12 h - sutra"),
        ("Čekajte…", "Čekajte..."),
        ("HR\u00a0123", "HR 123"),
        ("a\u202fb\u2009c", "a b c"),
        ("zero\u200bwidth", "zerowidth"),
        ("ＨＲ１２３", "HR123"),
        ("cafe\u0301", "café"),
    ],
)
def test_normalize_for_gsm_replaces_lookalikes(raw: str, normalized: str) -> None:
    assert normalize_for_gsm(raw) == normalized


def test_normalize_for_gsm_keeps_croatian_letters_and_thai() -> None:
    text = f"Poštovani, {CROATIAN} – “paket” je isporučen…"
    out = normalize_for_gsm(text)
    assert all(letter in out for letter in CROATIAN)
    assert out == f'Poštovani, {CROATIAN} - "paket" je isporučen...'
    assert encoding(out) == "UCS-2"
    assert normalize_for_gsm("พัสดุ 📦") == "พัสดุ 📦"


def test_normalizing_indonesian_punctuation_gets_back_to_gsm7() -> None:
    text = "Pesanan “HR123” tiba besok — terima kasih…"
    assert segments(text).encoding == "UCS-2"
    assert segments(normalize_for_gsm(text)) == SmsInfo("GSM-7", 44, 1)
