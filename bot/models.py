"""Domain objects (DESIGN.md 'Domain words'), stored as JSON documents in Redis."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from carriers.model import (
    CustomsStage,
    Money,
    Reason,
    Status,
    TrackingEvent,
    TrackingSnapshot,
)


class ChannelName(enum.StrEnum):
    """Where a customer talks to us."""

    SMS = "sms"
    WHATSAPP = "whatsapp"
    TELEGRAM = "telegram"
    WEBCHAT = "webchat"


class Owner(enum.StrEnum):
    """Who answers a conversation. An agent owner is stored as 'agent:<name>'."""

    BOT = "bot"
    QUEUE = "queue"  # waiting for an agent; the bot stays silent


@dataclass(frozen=True, slots=True)
class Address:
    """A channel plus the user id on it (Telegram chat id, E.164 number, web session)."""

    channel: ChannelName
    user: str

    def __str__(self) -> str:
        return f"{self.channel}:{self.user}"

    @classmethod
    def parse(cls, text: str) -> Address:
        channel, _, user = text.partition(":")
        return cls(ChannelName(channel), user)


@dataclass(frozen=True, slots=True)
class Button:
    """A choice offered to the customer: `payload` comes back when tapped."""

    payload: str
    label: str


@dataclass(slots=True)
class Message:
    """One inbound message, already parsed from its channel's wire format."""

    address: Address
    text: str
    provider_id: str  # MessageSid, update_id, web message id: used for dedupe
    received_at: datetime
    payload: str = ""  # a tapped button's payload, when any
    locale_hint: str = ""  # e.g. Telegram language_code
    profile_name: str = ""


@dataclass(slots=True)
class OutboundMessage:
    """A message on its way to a customer; `idem` is its idempotency key."""

    idem: str
    address: Address
    text: str
    buttons: list[Button] = field(default_factory=list)
    customer_id: str = ""
    kind: str = "reply"  # reply | agent | notification
    template: str = ""
    locale: str = ""
    content: dict[str, Any] = field(default_factory=dict)  # channel extras (templates…)

    def to_fields(self) -> dict[str, str]:
        """Flat string fields for a Redis stream entry."""
        import json

        return {
            "idem": self.idem, "address": str(self.address), "text": self.text,
            "buttons": json.dumps([[b.payload, b.label] for b in self.buttons], ensure_ascii=False),
            "customer_id": self.customer_id, "kind": self.kind, "template": self.template,
            "locale": self.locale, "content": json.dumps(self.content, ensure_ascii=False),
        }

    @classmethod
    def from_fields(cls, f: dict[str, str]) -> OutboundMessage:
        import json

        return cls(
            idem=f["idem"], address=Address.parse(f["address"]), text=f.get("text", ""),
            buttons=[Button(p, label) for p, label in json.loads(f.get("buttons") or "[]")],
            customer_id=f.get("customer_id", ""), kind=f.get("kind", "reply"),
            template=f.get("template", ""), locale=f.get("locale", ""),
            content=json.loads(f.get("content") or "{}"),
        )


@dataclass(slots=True)
class Customer:
    """One person, reachable on several addresses."""

    id: str
    name: str = ""
    phone: str = ""  # E.164
    email: str = ""
    telegram: str = ""  # chat id or @username as given by the shop
    locale: str = ""  # explicit choice (chat) wins over the order's locale
    timezone: str = ""
    addresses: list[str] = field(default_factory=list)  # "channel:user"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Customer:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(slots=True)
class ShipmentRef:
    """A shipment as listed on an order."""

    carrier: str
    tracking_number: str


@dataclass(slots=True)
class Order:
    """A shop order: reference, customer contacts, locale, timezone, shipments."""

    id: str
    customer_id: str
    name: str
    phone: str
    email: str
    telegram: str = ""
    locale: str = ""
    timezone: str = ""
    postcode: str = ""
    country: str = ""
    shipments: list[ShipmentRef] = field(default_factory=list)
    promised_delivery_date: str = ""  # ISO date
    link_token: str = ""  # Telegram deep-link token (t.me/<bot>?start=<token>)
    created_at: str = ""
    updated_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Order:
        data = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        data["shipments"] = [ShipmentRef(**s) for s in d.get("shipments", [])]
        return cls(**data)

    def public(self) -> dict[str, Any]:
        """The order as the shop API returns it."""
        return {
            "id": self.id,
            "customer": {"name": self.name, "phone": self.phone, "email": self.email,
                         "telegram": self.telegram or None, "locale": self.locale or None,
                         "timezone": self.timezone or None},
            "shipping_address": {"postcode": self.postcode or None, "country": self.country or None},
            "shipments": [{"tracking_number": s.tracking_number, "carrier": s.carrier}
                          for s in self.shipments],
            "promised_delivery_date": self.promised_delivery_date or None,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }


def snapshot_to_dict(s: TrackingSnapshot) -> dict[str, Any]:
    """A snapshot as plain JSON (aware datetimes as ISO strings)."""

    def iso(v: datetime | date | None) -> str | None:
        return v.isoformat() if v else None

    return {
        "carrier": s.carrier, "tracking_number": s.tracking_number, "status": s.status.value,
        "reason": s.reason.value, "customs": s.customs.value, "eta": iso(s.eta),
        "eta_end": iso(s.eta_end),
        "duties": {"amount": str(s.duties.amount), "currency": s.duties.currency} if s.duties else None,
        "payment_url": s.payment_url, "pickup_location": s.pickup_location,
        "pickup_until": iso(s.pickup_until), "service": s.service, "raw_code": s.raw_code,
        "raw_text": s.raw_text, "fetched_at": iso(s.fetched_at),
        "events": [{
            "timestamp": e.timestamp.isoformat(), "status": e.status.value,
            "description": e.description, "location": e.location, "country": e.country,
            "reason": e.reason.value, "customs": e.customs.value, "raw_code": e.raw_code,
            "raw_text": e.raw_text,
        } for e in s.events],
    }


def snapshot_from_dict(d: dict[str, Any]) -> TrackingSnapshot:
    """Inverse of snapshot_to_dict."""

    def dt(v: str | None) -> datetime | None:
        return datetime.fromisoformat(v) if v else None

    duties = d.get("duties")
    return TrackingSnapshot(
        carrier=d["carrier"], tracking_number=d["tracking_number"], status=Status(d["status"]),
        reason=Reason(d.get("reason", "")), customs=CustomsStage(d.get("customs", "")),
        eta=dt(d.get("eta")), eta_end=dt(d.get("eta_end")),
        duties=Money(Decimal(duties["amount"]), duties["currency"]) if duties else None,
        payment_url=d.get("payment_url", ""), pickup_location=d.get("pickup_location", ""),
        pickup_until=date.fromisoformat(d["pickup_until"]) if d.get("pickup_until") else None,
        service=d.get("service", ""), raw_code=d.get("raw_code", ""),
        raw_text=d.get("raw_text", ""), fetched_at=dt(d.get("fetched_at")),
        events=tuple(TrackingEvent(
            timestamp=datetime.fromisoformat(e["timestamp"]), status=Status(e["status"]),
            description=e.get("description", ""), location=e.get("location", ""),
            country=e.get("country", ""), reason=Reason(e.get("reason", "")),
            customs=CustomsStage(e.get("customs", "")), raw_code=e.get("raw_code", ""),
            raw_text=e.get("raw_text", ""),
        ) for e in d.get("events", [])),
    )
