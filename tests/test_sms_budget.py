"""SMS-short templates stay within a per-locale segment budget; their catalogs are complete.

Croatian diacritics (č ć đ š ž) and Thai force UCS-2 (70/67 units per segment), English and
Indonesian stay GSM-7 (160/153) once punctuation is normalised the way the channel sends it.
Each case is rendered as the engine sends it on SMS: the template plus the numbered choices it
appends for the buttons it would have offered.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import extract_from_dir, extract_from_file
from babel.messages.pofile import read_po

from bot import sms
from bot.config import SUPPORTED_LOCALES
from bot.i18n import LOCALES_DIR, TEMPLATES_DIR, I18n
from carriers.model import Money

#: locale -> (encoding, segments for the template text, segments as sent with choices)
BUDGET = {"en": ("GSM-7", 2, 2), "id": ("GSM-7", 2, 2), "hr": ("UCS-2", 3, 4),
          "th": ("UCS-2", 3, 4)}
SHOP = "Shipmate Demo Shop"
TZ = "Europe/Zagreb"

_SHIPMENT = {
    "carrier": "demo", "number": "DM203500012", "status": "in_transit", "reason": "",
    "customs": "", "last_when": datetime(2026, 11, 22, 7, 40, tzinfo=UTC),
    "last_where": "Zagreb sorting centre", "eta": datetime(2026, 11, 24, 9, tzinfo=UTC),
    "eta_end": None, "duties": None, "payment_url": "", "pickup_location": "",
    "pickup_until": None, "tracking_url": "https://track.example.com/demo/DM203500012",
    "stale": False, "checked_at": None, "not_found": False, "trouble": False,
}


def shipment(**changes: Any) -> dict[str, Any]:
    return dict(_SHIPMENT, **changes)


def order(*ships: dict[str, Any]) -> dict[str, Any]:
    return {"order_id": "HR-1001", "shipments": list(ships), "name": "Ana", "promised": None}


STATUS = ["notify_on", "menu"]  # the engine's buttons under a status (trouble adds "human")
TROUBLE = ["human", "notify_on", "menu"]
MENU = ["orders", "human", "language"]
#: name -> (template, context, buttons the engine offers with it)
CASES: dict[str, tuple[str, dict[str, Any], list[str]]] = {
    "order in transit": ("order_status", order(shipment()), STATUS),
    "order out for delivery": ("order_status", order(shipment(status="out_for_delivery")), STATUS),
    "order delivered": ("order_status", order(shipment(status="delivered")), STATUS),
    "order not shipped": ("order_status", order(), STATUS),
    "order with duties to pay": ("order_status", order(shipment(
        status="on_hold", customs="duties_due", reason="customs_duties_unpaid",
        duties=Money(Decimal("23.40"), "EUR"), payment_url="https://pay.example.com/d/8f3k2",
        trouble=True)), TROUBLE),
    "order at a pickup point": ("order_status", order(shipment(
        status="ready_for_pickup", pickup_location="Posta 10000 Zagreb",
        pickup_until=datetime(2026, 11, 30, tzinfo=UTC))), STATUS),
    "tracking, failed attempt": ("tracking_status", {"shipment": shipment(
        status="delivery_failed", reason="consignee_not_home", trouble=True)}, TROUBLE),
    "tracking, carrier down": ("tracking_status", {"shipment": shipment(stale=True)}, STATUS),
    "tracking, delayed by weather": ("tracking_status", {"shipment": shipment(
        status="delayed", reason="weather_delay")}, STATUS),
    "menu": ("menu", {"name": "Ana"}, MENU),
    "menu, no name": ("menu", {"name": ""}, MENU),
    "not understood": ("not_understood", {}, MENU),
    "handoff after hours": ("handoff_closed", {
        "opens_at": datetime(2026, 11, 23, 8, tzinfo=UTC), "hours_tz": TZ}, []),
}


def render(i18n: I18n, case: str, locale: str, channel: str, *, with_choices: bool) -> str:
    template, ctx, buttons = CASES[case]
    text = i18n.render(template, locale, channel, tz=TZ, shop=SHOP, **ctx)
    if with_choices and buttons:  # what Engine._reply appends when a channel has no buttons
        labels = [i18n.label(b, locale) for b in buttons]
        text += "\n\n" + i18n.render("choices", locale, channel, tz=TZ, choices=labels)
    return sms.normalize_for_gsm(text)


def sms_templates() -> set[str]:
    return {p.stem for p in (TEMPLATES_DIR / "sms").glob("*.j2") if not p.name.startswith("_")}


def test_every_sms_template_has_budget_cases() -> None:
    assert sms_templates() >= {"order_status", "tracking_status", "menu", "not_understood",
                               "handoff_closed"}
    assert sms_templates() == {template for template, _, _ in CASES.values()}


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
@pytest.mark.parametrize("case", CASES)
def test_sms_stays_within_the_segment_budget(i18n: I18n, locale: str, case: str) -> None:
    encoding, template_budget, sent_budget = BUDGET[locale]
    alone = sms.segments(render(i18n, case, locale, "sms", with_choices=False))
    sent = sms.segments(render(i18n, case, locale, "sms", with_choices=True))
    assert sent.encoding == encoding, f"{case}/{locale}: {sent}"
    assert alone.segments <= template_budget, f"{case}/{locale}: {alone}"
    assert sent.segments <= sent_budget, f"{case}/{locale} as sent: {sent}"


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
@pytest.mark.parametrize("case", CASES)
def test_the_sms_variant_is_shorter_than_the_chat_text(i18n: I18n, locale: str, case: str) -> None:
    short = sms.segments(render(i18n, case, locale, "sms", with_choices=False))
    chat = sms.segments(render(i18n, case, locale, "", with_choices=False))
    assert short.units < chat.units, f"{case}/{locale}: sms {short} vs chat {chat}"


def test_diacritics_are_what_makes_croatian_ucs2(i18n: I18n) -> None:
    text = render(i18n, "not understood", "hr", "sms", with_choices=False)
    assert sms.segments(text).encoding == "UCS-2"
    folded = text.translate(str.maketrans("čćđšžČĆĐŠŽ", "ccdszCCDSZ"))
    assert sms.segments(folded).encoding == "GSM-7"


# ---------------------------------------------------------------- channels.po


def catalog(locale: str, name: str) -> Any:
    with (LOCALES_DIR / locale / "LC_MESSAGES" / name).open("rb") as fh:
        return read_po(fh, locale=locale)


def sms_msgids() -> set[str]:
    """Strings of the SMS-short chat templates (templates/sms/*.j2, not sub-folders)."""
    ids: set[str] = set()
    for path in sorted((TEMPLATES_DIR / "sms").glob("*.j2")):
        for _line, message, _comments, _ctx in extract_from_file(
                "jinja2", str(path), options={"extensions": "jinja2.ext.i18n"}):
            ids.add(message if isinstance(message, str) else message[0])
    return ids


def all_template_msgids() -> set[str]:
    found = extract_from_dir(str(TEMPLATES_DIR), [("**.j2", "jinja2")],
                             options_map={"**.j2": {"extensions": "jinja2.ext.i18n"}})
    return {m if isinstance(m, str) else m[0] for _f, _l, m, _c, _ctx in found}


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_channels_catalog_is_complete_and_does_not_clash(locale: str) -> None:
    channels = catalog(locale, "channels.po")
    messages = catalog(locale, "messages.po")
    assert channels.num_plurals == {"en": 2, "hr": 3, "id": 1, "th": 1}[locale]
    assert channels.plural_expr == messages.plural_expr
    own = {m.id for m in channels if m.id}
    for other in (LOCALES_DIR / locale / "LC_MESSAGES").glob("*.po"):  # one home per msgid
        if other.name != "channels.po":
            ids = {m.id if isinstance(m.id, str) else m.id[0] for m in catalog(locale, other.name)}
            assert not own & ids, f"[{locale}] also in {other.name}: {own & ids}"
    assert own <= all_template_msgids(), "translations no template uses"
    for msgid in sms_msgids():
        msg = channels.get(msgid) or messages.get(msgid)
        assert msg is not None, f"[{locale}] missing {msgid!r}"
        assert not msg.fuzzy and msg.string.strip(), f"[{locale}] untranslated {msgid!r}"
        placeholders = sorted(re.findall(r"%\(\w+\)s", msgid))
        assert sorted(re.findall(r"%\(\w+\)s", msg.string)) == placeholders, msgid


def test_channels_catalogs_have_gettext_headers() -> None:
    for locale in SUPPORTED_LOCALES:
        text = Path(LOCALES_DIR / locale / "LC_MESSAGES" / "channels.po").read_text("utf-8")
        assert f'"Language: {locale}\\n"' in text
        assert '"Content-Type: text/plain; charset=utf-8\\n"' in text
        assert "Plural-Forms: nplurals=" in text
