"""Customs news written only in free text (DHL remarks, USPS event text): stage, reason,
duties amount and the payment link, read the same way for every carrier that needs it."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from carriers.model import CustomsStage, Money, Reason, Status, TrackingEvent

# First match wins; (pattern, stage, reason, needs customs context). English plus the German
# words DHL uses.
CUSTOMS_RULES: tuple[tuple[str, CustomsStage, Reason, bool], ...] = (
    (r"released (?:from|by) customs|clearance (?:processing )?complete|cleared (?:through )?customs"
     r"|customs clearance completed|zollabfertigung abgeschlossen", CustomsStage.RELEASED,
     Reason.NONE, False),
    (r"(?:dut(?:y|ies)|taxes)[^.]*\b(?:have been|has been|were|was) paid",
     CustomsStage.PROCESSING, Reason.NONE, False),
    (r"prohibited|seized|confiscat", CustomsStage.HELD, Reason.CUSTOMS_PROHIBITED, True),
    (r"dut(?:y|ies)|import tax|customs (?:charges|fees)|taxes (?:are )?due|einfuhrabgaben",
     CustomsStage.DUTIES_DUE, Reason.CUSTOMS_DUTIES_UNPAID, False),
    (r"document|paperwork|invoice|information (?:is )?(?:required|needed|missing)",
     CustomsStage.INFO_REQUIRED, Reason.CUSTOMS_DOCUMENTATION, True),
    (r"customs inspection|inspected by customs|(?:held|detained) (?:by|in|at) customs"
     r"|customs hold", CustomsStage.HELD, Reason.CUSTOMS_INSPECTION, False),
    (r"customs delay|clearance delay|delayed[^.]*customs", CustomsStage.HELD,
     Reason.CUSTOMS_DELAY, False),
    (r"customs|clearance|\bzoll", CustomsStage.PROCESSING, Reason.NONE, False),
)
CUSTOMS_CONTEXT = re.compile(r"customs|clearance|\bimport\b|dut(?:y|ies)|\bzoll", re.I)
BLOCKING = frozenset({CustomsStage.HELD, CustomsStage.DUTIES_DUE, CustomsStage.INFO_REQUIRED})
PAST_CUSTOMS = frozenset({Status.OUT_FOR_DELIVERY, Status.READY_FOR_PICKUP, Status.DELIVERED})
HOLDABLE = frozenset({Status.IN_TRANSIT, Status.PICKED_UP, Status.DELAYED, Status.UNKNOWN})
#: A later scan with one of these statuses (and no customs text) means customs let it go.
MOVED_ON = PAST_CUSTOMS | {Status.IN_TRANSIT}

_CURRENCIES = ("EUR|USD|GBP|CHF|PLN|CZK|SEK|NOK|DKK|HUF|RON|BGN|JPY|CNY|HKD|SGD|AUD|CAD|NZD"
               "|INR|TRY|ZAR|THB|IDR|MYR|AED|SAR|ILS|MXN|BRL|KRW")
_MONEY = re.compile(
    rf"\b(?P<c1>{_CURRENCIES})\s?(?P<a1>\d+(?:[.,]\d{{1,2}})?)"
    rf"|(?P<a2>\d+(?:[.,]\d{{1,2}})?)\s?(?P<c2>{_CURRENCIES})\b"
    r"|(?P<sym>[$€£])\s?(?P<a3>\d+(?:[.,]\d{1,2})?)"
)
_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP"}
_URL = re.compile(r"https?://[^\s\"'<>]+[^\s\"'<>.,;:!?)]")


def customs_of(text: str) -> tuple[CustomsStage, Reason]:
    """Customs stage and reason a piece of carrier text describes."""
    for pattern, stage, reason, needs_context in CUSTOMS_RULES:
        if re.search(pattern, text, re.I) and (not needs_context or CUSTOMS_CONTEXT.search(text)):
            return stage, reason
    return CustomsStage.NONE, Reason.NONE


def customs_summary(events: list[TrackingEvent]) -> tuple[CustomsStage, TrackingEvent | None]:
    """The customs stage of the newest customs event; a hold is over once the parcel moved on."""
    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        if event.customs is CustomsStage.NONE:
            continue
        later = events[index + 1:]
        if event.customs is not CustomsStage.RELEASED and any(e.status in MOVED_ON for e in later):
            return CustomsStage.RELEASED, event
        return event.customs, event
    return CustomsStage.NONE, None


def money_in(text: str) -> Money | None:
    """The first amount with a currency in a text (duties), if any."""
    m = _MONEY.search(text)
    if not m:
        return None
    currency = m.group("c1") or m.group("c2") or _SYMBOLS.get(m.group("sym") or "", "")
    amount = m.group("a1") or m.group("a2") or m.group("a3") or ""
    try:
        return Money(Decimal(amount.replace(",", ".")), currency)
    except InvalidOperation:
        return None


def url_in(text: str) -> str:
    """The first web link in a text ('' if none)."""
    m = _URL.search(text)
    return m.group(0) if m else ""
