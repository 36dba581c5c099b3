"""Orders and shipments in: validation with precise errors, idempotent upsert, identity checks."""

from __future__ import annotations

import hmac
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from bot.config import SUPPORTED_LOCALES
from bot.models import Address, ChannelName, Customer, Order, ShipmentRef
from bot.store import Store

ORDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9#._\-/]{0,63}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
TELEGRAM = re.compile(r"^(-?\d{1,20}|@[A-Za-z0-9_]{5,32})$")
POSTCODE = re.compile(r"^[A-Za-z0-9 \-]{2,12}$")
TRACKING = re.compile(r"^[A-Z0-9]{6,40}$")
TOP_FIELDS = {"id", "customer", "shipments", "promised_delivery_date", "shipping_address"}
CUSTOMER_FIELDS = {"name", "phone", "email", "telegram", "locale", "timezone"}
MAX_SHIPMENTS = 20


class ValidationError(Exception):
    """A rejected order; `errors` names every invalid field."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


def normalize_tracking(number: str) -> str:
    """Upper-case, without spaces or dashes."""
    return re.sub(r"[\s\-]", "", number).upper()


def normalize_postcode(text: str) -> str:
    """Compare postcodes without spaces/dashes and case."""
    return re.sub(r"[\s\-]", "", text).upper()


def validate_order(payload: Any, *, carriers: Collection, detect: Callable[[str], list[str]],
                   now: datetime) -> Order:
    """Check a shop's order payload; return an Order (customer_id unset) or raise ValidationError."""
    errors: list[dict[str, str]] = []

    def err(path: str, message: str) -> None:
        errors.append({"field": path, "message": message})

    if not isinstance(payload, Mapping):
        raise ValidationError([{"field": "", "message": "body must be a JSON object"}])
    for key in sorted(set(payload) - TOP_FIELDS):
        err(key, "unknown field")
    order_id = payload.get("id")
    if not isinstance(order_id, str) or not ORDER_ID.match(order_id):
        err("id", "required: 1-64 characters, letters, digits and # . _ - /")
    cust = payload.get("customer")
    name = phone = email = telegram = locale = tz = ""
    if not isinstance(cust, Mapping):
        err("customer", "required: an object with name, phone, email")
    else:
        for key in sorted(set(cust) - CUSTOMER_FIELDS):
            err(f"customer.{key}", "unknown field")
        name = cust.get("name") if isinstance(cust.get("name"), str) else ""
        if not name.strip() or len(name) > 200:
            err("customer.name", "required: 1-200 characters")
        raw_phone = cust.get("phone")
        if not isinstance(raw_phone, str) or not raw_phone.startswith("+"):
            err("customer.phone", "required: an E.164 number such as +385911234567")
        else:
            try:
                parsed = phonenumbers.parse(raw_phone)
                phone = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
                if not phonenumbers.is_valid_number(parsed) or phone != raw_phone:
                    err("customer.phone", "not a valid E.164 number")
            except phonenumbers.NumberParseException:
                err("customer.phone", "not a valid E.164 number")
        email = cust.get("email") if isinstance(cust.get("email"), str) else ""
        if not EMAIL.match(email) or len(email) > 254:
            err("customer.email", "required: an email address")
        telegram = cust.get("telegram") or ""
        if telegram and (not isinstance(telegram, str) or not TELEGRAM.match(telegram)):
            err("customer.telegram", "a Telegram chat id or @username")
        locale = cust.get("locale") or ""
        if locale and locale not in SUPPORTED_LOCALES:
            err("customer.locale", f"one of {', '.join(SUPPORTED_LOCALES)}")
        tz = cust.get("timezone") or ""
        if tz:
            try:
                ZoneInfo(str(tz))
            except (ZoneInfoNotFoundError, ValueError):
                err("customer.timezone", "an IANA timezone such as Asia/Bangkok")
    addr = payload.get("shipping_address") or {}
    postcode = country = ""
    if not isinstance(addr, Mapping):
        err("shipping_address", "an object with postcode and country")
    else:
        for key in sorted(set(addr) - {"postcode", "country"}):
            err(f"shipping_address.{key}", "unknown field")
        postcode = addr.get("postcode") or ""
        if postcode and (not isinstance(postcode, str) or not POSTCODE.match(postcode)):
            err("shipping_address.postcode", "2-12 letters, digits, spaces or dashes")
        country = addr.get("country") or ""
        if country and (not isinstance(country, str) or not re.fullmatch(r"[A-Z]{2}", country)):
            err("shipping_address.country", "an ISO 3166-1 alpha-2 code such as HR")
    shipments: list[ShipmentRef] = []
    raw_ships = payload.get("shipments", [])
    if not isinstance(raw_ships, list) or len(raw_ships) > MAX_SHIPMENTS:
        err("shipments", f"a list of at most {MAX_SHIPMENTS} shipments")
        raw_ships = []
    seen: set[str] = set()
    for i, ship in enumerate(raw_ships):
        path = f"shipments[{i}]"
        if not isinstance(ship, Mapping):
            err(path, "an object with tracking_number and optional carrier")
            continue
        for key in sorted(set(ship) - {"tracking_number", "carrier"}):
            err(f"{path}.{key}", "unknown field")
        raw = ship.get("tracking_number")
        number = normalize_tracking(raw) if isinstance(raw, str) else ""
        if not TRACKING.match(number):
            err(f"{path}.tracking_number", "required: 6-40 letters and digits")
            continue
        if number in seen:
            err(f"{path}.tracking_number", "listed twice")
            continue
        seen.add(number)
        carrier = ship.get("carrier")
        if carrier is not None:
            if not isinstance(carrier, str) or carrier not in carriers:
                err(f"{path}.carrier", f"unknown carrier; configured: {', '.join(sorted(carriers))}")
                continue
        else:
            found = [c for c in detect(number) if c in carriers]
            if not found:
                err(f"{path}.carrier", "could not be detected from the tracking number; give it")
                continue
            carrier = found[0]
        shipments.append(ShipmentRef(carrier, number))
    promised = payload.get("promised_delivery_date") or ""
    if promised:
        try:
            date.fromisoformat(str(promised))
        except ValueError:
            err("promised_delivery_date", "an ISO date such as 2026-12-01")
    if errors:
        raise ValidationError(errors)
    stamp = now.astimezone(UTC).isoformat()
    return Order(
        id=str(order_id), customer_id="", name=name.strip(), phone=phone, email=email.strip(),
        telegram=telegram, locale=locale, timezone=tz, postcode=postcode, country=country,
        shipments=shipments, promised_delivery_date=str(promised), created_at=stamp,
        updated_at=stamp,
    )


Collection = set[str] | frozenset[str] | Mapping[str, Any]


def order_addresses(order: Order) -> list[Address]:
    """Where the order's customer can be reached (and recognised)."""
    out = [Address(ChannelName.SMS, order.phone), Address(ChannelName.WHATSAPP, order.phone)]
    if order.telegram and order.telegram.lstrip("-").isdigit():
        out.append(Address(ChannelName.TELEGRAM, order.telegram))
    return out


class Orders:
    """Order book on the store: upsert, read, and who may see what."""

    def __init__(self, store: Store, *, verify_max_attempts: int = 5, verify_window: int = 3600,
                 conversation_ttl: int = 72 * 3600) -> None:
        self.store = store
        self.k = store.keys
        self.max_attempts = verify_max_attempts
        self.window = verify_window
        self.conversation_ttl = conversation_ttl
        #: Called with (carrier, tracking number) for every shipment an upsert lists (schedule).
        self.shipment_hooks: list[Callable[[str, str], Awaitable[object]]] = []

    async def get(self, order_id: str) -> Order | None:
        """An order by its shop reference."""
        doc = await self.store.get_json(self.k.order(order_id))
        return Order.from_dict(doc) if doc else None

    async def customer(self, cid: str) -> Customer | None:
        doc = await self.store.get_json(self.k.customer(cid))
        return Customer.from_dict(doc) if doc else None

    async def save_customer(self, customer: Customer) -> None:
        await self.store.set_json(self.k.customer(customer.id), customer.to_dict())

    async def customer_for(self, address: Address, *, create: bool = True) -> Customer | None:
        """The customer behind an address; a new anonymous one when unknown and `create`."""
        cid = await self.store.get_str(self.k.address(address.channel, address.user))
        if cid:
            found = await self.customer(cid)
            if found:
                return found
        if not create:
            return None
        customer = Customer(id=f"c_{uuid.uuid4().hex[:16]}", addresses=[str(address)])
        if address.channel in (ChannelName.SMS, ChannelName.WHATSAPP):
            customer.phone = address.user
        await self.save_customer(customer)
        linked = await self.store.set_str(self.k.address(address.channel, address.user),
                                          customer.id, nx=True)
        if not linked:  # another process created one first: use theirs
            return await self.customer_for(address, create=False)
        return customer

    async def link(self, address: Address, customer: Customer) -> None:
        """Point an address at a customer (e.g. a Telegram deep link from an order email)."""
        await self.store.set_str(self.k.address(address.channel, address.user), customer.id)
        if str(address) not in customer.addresses:
            customer.addresses.append(str(address))
            await self.save_customer(customer)

    async def upsert(self, order: Order) -> tuple[Order, bool]:
        """Store a validated order; same payload twice leaves the same state. (order, created)."""
        previous = await self.get(order.id)
        customer = None
        for address in order_addresses(order):
            customer = await self.customer_for(address, create=False)
            if customer:
                break
        if customer is None:
            customer = Customer(id=f"c_{uuid.uuid4().hex[:16]}")
        customer.name, customer.phone, customer.email = order.name, order.phone, order.email
        customer.telegram = order.telegram or customer.telegram
        customer.timezone = order.timezone or customer.timezone
        order.customer_id = customer.id
        if previous:
            order.created_at = previous.created_at
            order.link_token = previous.link_token
            if _same(previous, order):
                order.updated_at = previous.updated_at
        await self.save_customer(customer)
        for address in order_addresses(order):
            await self.link(address, customer)
        if previous and previous.customer_id != customer.id:
            await self.store.srem(self.k.customer_orders(previous.customer_id), order.id)
        for gone in {(s.carrier, s.tracking_number) for s in (previous.shipments if previous else [])} - {
                (s.carrier, s.tracking_number) for s in order.shipments}:
            await self.store.srem(self.k.shipment_orders(*gone), order.id)
        for ship in order.shipments:
            await self.store.sadd(self.k.shipment_orders(ship.carrier, ship.tracking_number), order.id)
        await self.store.sadd(self.k.customer_orders(customer.id), order.id)
        await self.store.set_json(self.k.order(order.id), order.to_dict())
        for ship in order.shipments:
            for hook in self.shipment_hooks:
                await hook(ship.carrier, ship.tracking_number)
        return order, previous is None

    async def link_token(self, order_id: str) -> str:
        """The order's Telegram deep-link token (t.me/<bot>?start=<token>), made once."""
        order = await self.get(order_id)
        if order is None:
            raise LookupError(order_id)
        if not order.link_token:
            order.link_token = secrets.token_urlsafe(12)
            await self.store.set_json(self.k.order(order.id), order.to_dict())
        await self.store.set_str(self.k.link_token(order.link_token), order.id)
        return order.link_token

    async def for_customer(self, cid: str) -> list[Order]:
        """The customer's orders, newest first."""
        ids = await self.store.smembers(self.k.customer_orders(cid))
        orders = [o for o in [await self.get(i) for i in ids] if o]
        return sorted(orders, key=lambda o: o.created_at, reverse=True)

    async def orders_for_shipment(self, carrier: str, number: str) -> list[Order]:
        """Orders that list a shipment."""
        ids = await self.store.smembers(self.k.shipment_orders(carrier, number))
        return [o for o in [await self.get(i) for i in sorted(ids)] if o]

    # ---- identity: who may see what
    async def may_see_details(self, cid: str, order: Order) -> bool:
        """Owners (their phone/Telegram is on the order) and verified senders see details."""
        if order.customer_id == cid:
            return True
        return order.id in await self.store.smembers(self.k.verified(cid))

    async def guesses_blocked(self, cid: str, order_id: str | None = None) -> bool:
        """Whether this sender (or this order) has used up its wrong guesses for now."""
        if await self.store.get_count(self.k.verify_attempts_sender(cid)) >= self.max_attempts:
            return True
        if order_id is not None:
            count = await self.store.get_count(self.k.verify_attempts_order(order_id))
            return count >= self.max_attempts
        return False

    async def record_wrong_guess(self, cid: str, order_id: str | None = None) -> int:
        """Count a wrong guess (per sender, and per order when known); return tries left."""
        n = await self.store.count_in_window(self.k.verify_attempts_sender(cid), self.window)
        if order_id is not None:
            m = await self.store.count_in_window(self.k.verify_attempts_order(order_id), self.window)
            n = max(n, m)
        return max(0, self.max_attempts - n)

    async def blocked_until(self, cid: str, order_id: str | None, now: datetime) -> datetime:
        """When the guessing lock lifts (the later of the two windows)."""
        ttl = await self.store.ttl(self.k.verify_attempts_sender(cid))
        if order_id is not None:
            ttl = max(ttl, await self.store.ttl(self.k.verify_attempts_order(order_id)))
        return now + timedelta(seconds=max(ttl, 60))

    async def verify(self, cid: str, order: Order, answer: str) -> bool:
        """Second factor: the order's postcode or email. Constant-time comparison."""
        given = answer.strip()
        ok = False
        if order.postcode:
            ok |= hmac.compare_digest(normalize_postcode(given).encode(),
                                      normalize_postcode(order.postcode).encode())
        ok |= hmac.compare_digest(given.lower().encode(), order.email.lower().encode())
        if ok:
            key = self.k.verified(cid)
            await self.store.sadd(key, order.id)
            await self.store.expire(key, self.conversation_ttl)
        return ok


def _same(a: Order, b: Order) -> bool:
    da, db = a.to_dict(), b.to_dict()
    for d in (da, db):
        d.pop("updated_at", None)
        d.pop("created_at", None)
    return da == db
