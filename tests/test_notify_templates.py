"""Every notification template (chat and SMS variant) renders in every locale with strict
translations; the notifications catalogs are complete; SMS stays short; money, dates and
tone follow each locale's rules."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from bot.changes import ChangeKind
from bot.config import SUPPORTED_LOCALES
from bot.i18n import LOCALES_DIR, PARAGRAPH, TEMPLATES_DIR
from bot.notify import BUTTONS, OWN_LABELS
from bot.sms import normalize_for_gsm, segments
from carriers.model import Money

KINDS = [k.value for k in ChangeKind]
SHIP = {
    "carrier": "demo", "number": "DM203500012", "kind": "", "status": "on_hold",
    "reason": "customs_duties_unpaid", "customs": "duties_due",
    "when": datetime(2026, 11, 22, 1, tzinfo=UTC), "where": "Bangkok",
    "eta": datetime(2026, 11, 24, 3, tzinfo=UTC), "eta_end": datetime(2026, 11, 24, 7, tzinfo=UTC),
    "window": True, "previous_eta": datetime(2026, 11, 23, 1, tzinfo=UTC),
    "duties": Money(Decimal("1250.00"), "THB"),
    "payment_url": "https://track.example.com/demo/DM203500012/duties",
    "pickup_location": "Post office 1", "pickup_until": date(2026, 11, 30),
    "tracking_url": "https://track.example.com/demo/DM203500012",
}
EARLIER = [
    {"kind": "shipped", "status": "in_transit", "customs": "",
     "when": datetime(2026, 11, 21, 1, tzinfo=UTC)},
    {"kind": "customs_cleared", "status": "in_transit", "customs": "released",
     "when": datetime(2026, 11, 21, 5, tzinfo=UTC)},
    {"kind": "stalled", "status": "in_transit", "customs": "",
     "when": datetime(2026, 11, 21, 6, tzinfo=UTC)},
    {"kind": "delayed", "status": "in_transit", "customs": "",
     "when": datetime(2026, 11, 21, 7, tzinfo=UTC)},
    {"kind": "out_for_delivery", "status": "out_for_delivery", "customs": "",
     "when": datetime(2026, 11, 21, 8, tzinfo=UTC)},
]
#: The context the lead adds to tests/test_i18n.py CONTEXTS for every notification template.
NOTICE = {"order_id": "1001", "s": SHIP, "earlier": EARLIER, "handoff": True}
#: Variations that take every branch of the templates.
VARIANTS = [
    NOTICE,
    {"order_id": "", "s": dict(SHIP, eta=None, previous_eta=None, duties=None, payment_url="",
                               pickup_location="", pickup_until=None, where="", tracking_url="",
                               window=False, reason="", customs=""),
     "earlier": [], "handoff": False},
    {"order_id": "A-7", "s": dict(SHIP, reason="lost", customs="info_required", status="cancelled",
                                  pickup_location=""), "earlier": [], "handoff": False},
    {"order_id": "A-8", "s": dict(SHIP, reason="customs_prohibited", customs="held",
                                  status="delivery_failed", previous_eta=None, pickup_until=None),
     "earlier": EARLIER[:1], "handoff": False},
    {"order_id": "A-9", "s": dict(SHIP, reason="consignee_not_home", customs="",
                                  status="delivery_failed"), "earlier": [], "handoff": True},
]
CHANNELS = ("", "whatsapp", "telegram", "webchat", "sms")


def names() -> list[str]:
    return [f"notifications/{k}" for k in KINDS] + [f"sms/notifications/{k}" for k in KINDS]


def test_there_is_a_chat_and_an_sms_template_for_every_kind(i18n):
    have = {n.removesuffix(".j2") for n in i18n.template_names()}
    assert set(names()) <= have
    assert not {n for n in have if "notifications/" in n} - set(names()), "stray templates"


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_notification_renders_in_every_locale_and_channel(i18n, locale, kind):
    for ctx in VARIANTS:
        for channel in CHANNELS:
            for tz in ("Asia/Bangkok", "Europe/Zagreb", "Asia/Jakarta"):
                text = i18n.render(f"notifications/{kind}", locale, channel, tz=tz,
                                   shop="Test Shop", **dict(ctx, s=dict(ctx["s"], kind=kind)))
                assert text.strip(), f"{kind} empty in {locale}/{channel}"
                assert PARAGRAPH not in text and "None" not in text and "{{" not in text
                assert "\n\n\n" not in text and not text.startswith(" ")
                assert text.startswith("Test Shop"), text
        # the SMS variant by its own name too (as tests/test_i18n.py renders it)
        assert i18n.render(f"sms/notifications/{kind}", locale, tz="UTC", shop="S", **NOTICE)


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_sms_variants_stay_short(i18n, locale):
    for kind in KINDS:
        text = normalize_for_gsm(i18n.render(f"notifications/{kind}", locale, "sms",
                                             tz="Europe/Zagreb", shop="Test Shop", **NOTICE))
        info = segments(text)
        limit = 2 if info.encoding == "GSM-7" else 4  # Croatian letters and Thai are UCS-2
        assert info.segments <= limit, (kind, locale, info, text)
        assert "Since our last message" not in text and "\n\n" not in text


@pytest.mark.parametrize("locale,amount,warning", [
    ("en", "THB1,250.00", "We never ask for payment by message."),
    ("hr", "1.250,00\xa0THB", "Nikada ne tražimo plaćanje putem poruke."),
    ("id", "฿1.250,00", "Kami tidak pernah meminta pembayaran"),
    ("th", "฿1,250.00", "เราไม่เคยขอให้ชำระเงินผ่านข้อความค่ะ"),
])
@pytest.mark.parametrize("channel", ["", "sms"])
def test_duties_show_the_amount_only_the_official_link_and_the_warning(i18n, locale, amount,
                                                                       warning, channel):
    text = i18n.render("notifications/duties_due", locale, channel, tz="Asia/Bangkok",
                       shop="Test Shop", **NOTICE)
    assert amount in text and warning in text
    assert SHIP["payment_url"] in text
    urls = set(re.findall(r"https?://\S+", text))
    assert urls <= {SHIP["payment_url"], SHIP["tracking_url"]}


def test_money_and_dates_follow_the_locale(i18n):
    def render(locale: str, kind: str, **s) -> str:  # type: ignore[no-untyped-def]
        return i18n.render(f"notifications/{kind}", locale, tz="Asia/Jakarta", shop="S",
                           **dict(NOTICE, s=dict(SHIP, **s)))

    idr = Money(Decimal("185000"), "IDR")
    assert "Rp185.000" in render("id", "duties_due", duties=idr)
    assert "Rp185.000,00" not in render("id", "duties_due", duties=idr)
    assert "24. studenoga 2026." in render("hr", "shipped")  # genitive month
    th = render("th", "shipped")
    assert "24 พฤศจิกายน พ.ศ. 2569" in th and "2026" not in th.replace(SHIP["number"], "")
    assert "Tue 24 Nov 2026" in render("en", "shipped")
    # times are the customer's: 03:00-07:00 UTC is 10:00-14:00 in Jakarta
    assert "between 10:00 and 14:00" in render("en", "out_for_delivery")


def test_tone_is_formal_and_polite(i18n):
    for kind in KINDS:
        for channel in ("", "sms"):
            hr, id_, th = (i18n.render(f"notifications/{kind}", locale, channel, tz="UTC",
                                       shop="S", **NOTICE) for locale in ("hr", "id", "th"))
            assert not re.search(r"\b(vaš|vaša|vam|vas|tvoj|tvoja|ti)\b", hr), hr  # "Vi" form
            assert "kamu" not in id_.lower().split()
            assert "ค่ะ" in th or "คะ" in th, th  # the polite persona


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_whatsapp_variables_and_own_button_labels(i18n, locale):
    for kind in KINDS:
        raw = i18n.render("notifications/_variables", locale, tz="Asia/Bangkok", shop="S",
                          kind=kind, **NOTICE)
        variables = json.loads(raw)
        assert sorted(variables) == ["1", "2", "3", "4", "5"]
        assert all(isinstance(v, str) and v.strip() for v in variables.values()), (kind, variables)
    assert json.loads(i18n.render("notifications/_variables", locale, tz="UTC", shop="S",
                                  kind="duties_due", **NOTICE))["4"] == SHIP["payment_url"]
    for key in OWN_LABELS:
        label = i18n.render("notifications/_buttons", locale, key=key)
        assert label and label != key
    shared = {key for buttons in BUTTONS.values() for _, key in buttons} - OWN_LABELS
    for key in shared:
        assert i18n.label(key, locale) not in ("", key)


# ------------------------------------------------------------------ the catalogs
def notification_ids() -> set[str]:
    found = set()
    for sub in ("notifications", "sms/notifications"):
        for _f, _l, message, _c, _ctx in extract_from_dir(
                str(TEMPLATES_DIR / sub), [("**.j2", "jinja2")],
                options_map={"**.j2": {"extensions": "jinja2.ext.i18n"}}):
            found.add(message if isinstance(message, str) else message[0])
    return found


def read(locale: str, name: str):  # type: ignore[no-untyped-def]
    with Path(LOCALES_DIR / locale / "LC_MESSAGES" / name).open("rb") as fh:
        return read_po(fh, locale=locale)


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_notifications_catalog_is_complete_not_fuzzy_and_owns_no_shared_string(locale):
    ours = read(locale, "notifications.po")
    elsewhere: dict[str, object] = {}  # msgid -> translation in the other catalogs
    for po in sorted((LOCALES_DIR / locale / "LC_MESSAGES").glob("*.po")):
        if po.name != "notifications.po":
            for m in read(locale, po.name):
                if m.id:
                    elsewhere[m.id if isinstance(m.id, str) else m.id[0]] = m.string
    expected_forms = {"en": 2, "hr": 3, "id": 1, "th": 1}[locale]
    assert ours.num_plurals == expected_forms
    if locale == "hr":
        assert ours.plural_expr == ("(n%10==1 && n%100!=11 ? 0 : n%10>=2 && n%10<=4 && "
                                    "(n%100<10 || n%100>=20) ? 1 : 2)")
    have = {m.id for m in ours if m.id}
    needed = notification_ids() - set(elsewhere)  # strings another catalog already translates
    assert needed <= have, f"[{locale}] missing {sorted(needed - have)}"
    assert not have - notification_ids(), f"[{locale}] unused {sorted(have - needed)}"
    for message in ours:
        if not message.id:
            continue
        assert not message.fuzzy and message.string.strip(), message.id
        assert elsewhere.get(message.id, message.string) == message.string, \
            f"[{locale}] {message.id!r} is translated differently in another catalog"
        if locale == "en":
            assert message.string == message.id
        names_in = set(re.findall(r"%\((\w+)\)s", message.id))
        assert set(re.findall(r"%\((\w+)\)s", message.string)) == names_in, message.id
