"""Every template renders in every shipped locale, and every catalog is complete."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from bot.config import SUPPORTED_LOCALES
from bot.i18n import (
    LOCALES_DIR,
    TEMPLATES_DIR,
    LocaleInputs,
    MissingTranslation,
    choose_locale,
    detect_language,
    fmt_date,
    fmt_money,
    normalize_tag,
    phone_locale,
)
from carriers.model import Money

SHIPMENT = {
    "carrier": "demo", "number": "DM203500012", "status": "on_hold",
    "reason": "customs_duties_unpaid", "customs": "duties_due",
    "last_when": datetime(2026, 11, 22, 1, tzinfo=UTC), "last_where": "Bangkok",
    "eta": datetime(2026, 11, 24, 1, tzinfo=UTC), "eta_end": None,
    "duties": Money(Decimal("1250.00"), "THB"), "payment_url": "https://pay.example/1",
    "pickup_location": "Post office 1", "pickup_until": datetime(2026, 11, 30, tzinfo=UTC),
    "tracking_url": "https://t.example/1", "stale": True, "checked_at": None,
    "not_found": False, "trouble": True,
}
#: A context for every template; a template added without a context here fails the test.
CONTEXTS = {
    "menu": {"name": "Ana"}, "ask_reference": {}, "order_status": {
        "order_id": "1001", "shipments": [SHIPMENT, dict(SHIPMENT, status="ready_for_pickup",
                                                          customs="", duties=None)],
        "name": "Ana", "promised": datetime(2026, 12, 1, tzinfo=UTC)},
    "order_coarse": {"order_id": "1001", "statuses": ["in_transit", "delivered"], "ask_postcode": True},
    "tracking_status": {"shipment": SHIPMENT}, "tracking_unknown": {"number": "DM1"},
    "not_found": {"reference": "X1"}, "verify_failed": {"left": 3},
    "verify_locked": {"until": datetime(2026, 11, 22, 12, tzinfo=UTC)}, "orders_none": {},
    "orders_list": {"orders": [{"id": "1", "shipments": 1}, {"id": "2", "shipments": 2}]},
    "notify_on": {"count": 2}, "notify_off": {"count": 1}, "language_menu": {},
    "language_set": {}, "not_understood": {}, "handoff_queued": {"position": 3},
    "handoff_closed": {"opens_at": datetime(2026, 11, 23, 8, tzinfo=UTC), "hours_tz": "Europe/Zagreb"},
    "handoff_returned": {"agent": "Ana"}, "agent_reply": {"agent": "Ana", "text": "Hi"},
    "stopped": {}, "started": {}, "choices": {"choices": ["A", "B"]},
    "which_carrier": {"number": "123456789012"},
    "demo/whatsapp_template": {"kind": "duties_due"},
    "web/chat": {"impersonation": True, "personas": [{"phone": "+1", "name": "A", "order": "1", "locale": "en"}]},
}

NOTICE = {
    "order_id": "1001", "handoff": True,
    "s": dict(SHIPMENT, kind="", when=datetime(2026, 11, 22, 1, tzinfo=UTC), where="Bangkok",
              eta_end=datetime(2026, 11, 24, 5, tzinfo=UTC), window=True,
              previous_eta=datetime(2026, 11, 23, 1, tzinfo=UTC),
              pickup_until=date(2026, 11, 30)),
    "earlier": [{"kind": "shipped", "status": "in_transit", "customs": "",
                 "when": datetime(2026, 11, 21, 1, tzinfo=UTC)},
                {"kind": "duties_due", "status": "on_hold", "customs": "duties_due",
                 "when": datetime(2026, 11, 21, 5, tzinfo=UTC)}],
}
CONTEXTS.update({f"notifications/{kind}": NOTICE for kind in (
    "shipped", "out_for_delivery", "delivery_failed", "ready_for_pickup", "delivered", "delayed",
    "customs_held", "duties_due", "customs_cleared", "stalled", "return_to_sender", "exception")})

def template_names(i18n) -> list[str]:
    return [n.removesuffix(".j2") for n in i18n.template_names()]


CHANNEL_FOLDERS = ("sms", "whatsapp", "telegram")


def base_name(name: str) -> str:
    """'sms/order_status' -> 'order_status': a channel variant renders with its template's context."""
    folder, _, rest = name.partition("/")
    return rest if folder in CHANNEL_FOLDERS and rest in CONTEXTS else name


def test_every_template_has_a_test_context(i18n):
    assert sorted({base_name(n) for n in template_names(i18n)}) == sorted(CONTEXTS)


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_every_template_renders_in_every_locale(i18n, locale):
    for name in template_names(i18n):
        for channel in ("", "sms", "whatsapp", "telegram"):
            text = i18n.render(name, locale, channel, tz="Asia/Bangkok", shop="Shop",
                               **CONTEXTS[base_name(name)])
            assert text.strip(), f"{name} rendered empty in {locale}/{channel}"
            assert "\ue000" not in text


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_every_button_label_renders(i18n, locale):
    for key in ("orders", "human", "language", "menu", "notify_on", "notify_off", "order", "carrier",
                "lang_en", "lang_id", "lang_hr", "lang_th"):
        assert i18n.label(key, locale, "1001").strip()


def test_strict_rendering_fails_on_a_missing_translation(i18n, tmp_path):
    (tmp_path / "new.j2").write_text("{% trans %}A brand new sentence{% endtrans %}")
    from bot.i18n import I18n

    strict = I18n(templates_dir=tmp_path, strict=True)
    assert strict.render("new", "en") == "A brand new sentence"
    with pytest.raises(MissingTranslation):
        strict.render("new", "hr")


def extracted_ids() -> set:
    method_map = [("**.j2", "jinja2")]
    ids = set()
    for _file, _line, message, _comments, _ctx in extract_from_dir(
            str(TEMPLATES_DIR), method_map, options_map={"**.j2": {"extensions": "jinja2.ext.i18n"}}):
        ids.add(message if isinstance(message, str) else tuple(message))
    return ids


def merged_catalog(locale: str, expected_forms: int) -> dict:
    """Every locales/<locale>/LC_MESSAGES/*.po as one msgid -> Message map (as bot.i18n loads
    them); a msgid may sit in two files only with the same translation."""
    merged: dict = {}
    for path in sorted((LOCALES_DIR / locale / "LC_MESSAGES").glob("*.po")):
        with Path(path).open("rb") as fh:
            catalog = read_po(fh, locale=locale)
        assert catalog.num_plurals == expected_forms, f"{path.name}: wrong Plural-Forms"
        for msg in catalog:
            if not msg.id:
                continue
            key = msg.id if isinstance(msg.id, str) else msg.id[0]
            assert key not in merged or merged[key].string == msg.string, \
                f"[{locale}] {key!r} translated differently in two catalogs"
            merged[key] = msg
    return merged


@pytest.mark.parametrize("locale", [loc for loc in SUPPORTED_LOCALES if loc != "en"])
def test_catalog_is_complete_and_not_fuzzy(locale):
    expected_forms = {"hr": 3, "id": 1, "th": 1}[locale]
    catalog = merged_catalog(locale, expected_forms)
    ids = extracted_ids()
    assert ids, "no translatable strings found in templates/"
    for msgid in ids:
        msg = catalog.get(msgid if isinstance(msgid, str) else msgid[0])
        assert msg is not None, f"[{locale}] missing {msgid!r}"
        assert not msg.fuzzy, f"[{locale}] fuzzy {msgid!r}"
        strings = msg.string if isinstance(msg.string, tuple) else (msg.string,)
        assert len(strings) == (expected_forms if isinstance(msgid, tuple) else 1)
        assert all(s.strip() for s in strings), f"[{locale}] empty translation for {msgid!r}"
    stale = {m.id if isinstance(m.id, str) else tuple(m.id) for m in catalog.values()} - ids
    assert not stale, f"[{locale}] translations for strings no template uses: {stale}"


@pytest.mark.parametrize("n,form", [(1, "narudžbu"), (2, "narudžbe"), (4, "narudžbe"), (5, "narudžbi"),
                                    (11, "narudžbi"), (21, "narudžbu"), (22, "narudžbe"), (25, "narudžbi")])
def test_croatian_plural_forms(i18n, n, form):
    text = i18n.render("orders_list", "hr", tz="UTC", orders=[{"id": str(i)} for i in range(n)])
    assert text.startswith(f"Imate {n} {form}:")


def test_thai_dates_use_the_buddhist_era():
    assert fmt_date(date(2025, 3, 7), "th", UTC) == "7 มีนาคม พ.ศ. 2568"
    assert fmt_date(datetime(2026, 12, 31, 20, tzinfo=UTC), "th",
                    __import__("zoneinfo").ZoneInfo("Asia/Bangkok")) == "1 มกราคม พ.ศ. 2570"


def test_money_formats():
    assert fmt_money(Money(Decimal("185000"), "IDR"), "id") == "Rp185.000"
    assert fmt_money(Money(Decimal("185000.4"), "IDR"), "en") == "IDR185,000"
    assert fmt_money(Money(Decimal("23.40"), "EUR"), "hr") == "23,40\xa0€"
    assert fmt_money(Money(Decimal("1250"), "THB"), "th") == "฿1,250.00"


def test_locale_chain_order():
    base = LocaleInputs(explicit="th", order_locale="hr", channel_hint="id-ID",
                        text="Where is my parcel please?", phone="+385911234567", default="en")
    assert choose_locale(base) == "th"
    assert choose_locale(LocaleInputs(order_locale="hr", channel_hint="id", default="en")) == "hr"
    assert choose_locale(LocaleInputs(channel_hint="id-ID", text="where is my parcel please")) == "id"
    assert choose_locale(LocaleInputs(text="Di mana paket saya sekarang ya?", phone="+385911234567")) == "id"
    assert choose_locale(LocaleInputs(text="ok", phone="+6281234567890")) == "id"
    assert choose_locale(LocaleInputs(text="ok", phone="+4915112345678", default="hr")) == "hr"


def test_detection_needs_confidence_and_folds_close_languages():
    assert detect_language("Gdje je moja pošiljka, molim vas?") == "hr"
    assert detect_language("mana pesanan saya sekarang") == "id"
    assert detect_language("พัสดุของฉัน") == "th"
    assert detect_language("ok") == ""
    assert detect_language("DM203500012") == ""
    assert normalize_tag("hr-HR") == "hr" and normalize_tag("ms") == "id" and normalize_tag("de") == ""
    assert phone_locale("+66812345678") == "th" and phone_locale("+12025550143") == ""
