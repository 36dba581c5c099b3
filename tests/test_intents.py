"""Intent parsing tables in every shipped language (pure)."""

from __future__ import annotations

import pytest

from bot.intents import Kind, fold, from_payload, parse, references


@pytest.fixture(scope="module")
def kw(i18n):
    return i18n.keywords


@pytest.mark.parametrize("text,kind", [
    ("STOP", Kind.STOP), ("stop", Kind.STOP), ("BERHENTI", Kind.STOP), ("Odjava", Kind.STOP),
    ("หยุด", Kind.STOP), ("START", Kind.START), ("mulai", Kind.START), ("เริ่ม", Kind.START),
    ("please stop sending me that", Kind.UNKNOWN),
    ("talk to a human", Kind.HUMAN), ("mau bicara dengan orang asli", Kind.HUMAN),
    ("trebam čovjeka", Kind.HUMAN), ("ขอคุยกับคน", Kind.HUMAN),
    ("help", Kind.HELP), ("bantuan", Kind.HELP), ("Pomoć!", Kind.HELP), ("pomoc", Kind.HELP),
    ("เมนู", Kind.HELP), ("/start", Kind.HELP), ("/help", Kind.HELP),
    ("change language", Kind.LANGUAGE), ("ganti bahasa", Kind.LANGUAGE), ("jezik", Kind.LANGUAGE),
    ("เปลี่ยนภาษา", Kind.LANGUAGE),
    ("notify me", Kind.NOTIFY_ON), ("kabari saya ya", Kind.NOTIFY_ON), ("obavijesti me", Kind.NOTIFY_ON),
    ("แจ้งเตือนฉัน", Kind.NOTIFY_ON),
    ("stop notifying me", Kind.NOTIFY_OFF), ("matikan notifikasi", Kind.NOTIFY_OFF),
    ("bez obavijesti", Kind.NOTIFY_OFF), ("หยุดแจ้งเตือน", Kind.NOTIFY_OFF),
    ("my orders", Kind.LIST_ORDERS), ("pesanan saya", Kind.LIST_ORDERS),
    ("moje narudžbe", Kind.LIST_ORDERS), ("คำสั่งซื้อของฉัน", Kind.LIST_ORDERS),
    ("where is my order?", Kind.WHERE_IS), ("paket saya di mana", Kind.WHERE_IS),
    ("gdje mi je paket", Kind.WHERE_IS), ("พัสดุอยู่ไหน", Kind.WHERE_IS),
    ("blorp", Kind.UNKNOWN),
])
def test_keywords(kw, text, kind):
    assert parse(text, kw).kind is kind


@pytest.mark.parametrize("text,refs", [
    ("where is order #1001?", ("#1001",)),
    ("gdje je HR-1001, molim", ("HR-1001",)),
    ("track dm203500012 pls", ("dm203500012",)),
    ("paket 1Z999AA10123456784 dan 12345", ("1Z999AA10123456784", "12345")),
    ("I have 2 questions", ()),
])
def test_references(text, refs):
    assert references(text) == refs


def test_references_make_a_where_is_intent(kw):
    intent = parse("hello, HR-1001?", kw)
    assert intent.kind is Kind.WHERE_IS and intent.references == ("HR-1001",)
    assert parse("DM203500012", kw).references == ("DM203500012",)


def test_language_names_set_the_language(kw):
    assert parse("Hrvatski", kw).kind is Kind.SET_LANGUAGE
    assert parse("hrvatski", kw).arg == "hr"
    assert parse("ภาษาไทย", kw).arg == "th"
    assert parse("Bahasa Indonesia", kw).arg == "id"


def test_payloads_and_commands(kw):
    assert parse("", kw, payload="lang:hr").arg == "hr"
    assert from_payload("lang").kind is Kind.LANGUAGE
    assert from_payload("order:HR-1").references == ("HR-1",)
    assert from_payload("carrier:dhl:123456").arg == "carrier:dhl:123456"
    assert from_payload("notify:off").kind is Kind.NOTIFY_OFF
    assert from_payload("bogus").kind is Kind.UNKNOWN
    assert parse("/start abc123", kw).kind is Kind.LINK and parse("/start abc123", kw).arg == "abc123"
    assert parse("/stop", kw).kind is Kind.STOP


def test_numbered_choices_only_when_offered(kw):
    assert parse("2", kw, has_choices=True).kind is Kind.CHOICE
    assert parse("2", kw).kind is Kind.UNKNOWN


def test_fold():
    assert fold("  Pomoć!! ") == "pomoc"
    assert fold("ČOVJEK") == "covjek"
