"""The conversation engine: inbound pipeline (durable, deduped, one turn at a time per
conversation, silent while an agent owns it) and the dialog that answers customers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as phone_tz

from bot import intents
from bot.channels import ChannelLimits
from bot.config import SUPPORTED_LOCALES, Settings
from bot.consent import Consent
from bot.handoff import Handoff
from bot.history import History
from bot.i18n import I18n, LocaleInputs, choose_locale, current_locale, detect_language
from bot.intents import Intent, Kind
from bot.loop import keep_running
from bot.models import (
    Address,
    Button,
    ChannelName,
    Customer,
    Message,
    Order,
    OutboundMessage,
    Owner,
)
from bot.orders import Orders, normalize_tracking
from bot.outbox import Outbox
from bot.store import Store, is_unavailable
from bot.tracking import ShipmentView, Tracking
from carriers.model import Reason, Status
from carriers.numbers import find_numbers

log = logging.getLogger(__name__)

INBOUND_GROUP = "engine"
DEDUPE_TTL = 7 * 86400
TROUBLE = {Status.RETURN_TO_SENDER, Status.DELIVERY_FAILED, Status.ON_HOLD}
TROUBLE_REASONS = {Reason.LOST, Reason.DAMAGED, Reason.CUSTOMS_DOCUMENTATION,
                   Reason.CUSTOMS_PROHIBITED}
NOT_UNDERSTOOD_LIMIT = 2


@dataclass(slots=True)
class Turn:
    """One customer message being answered."""

    message: Message
    customer: Customer
    locale: str
    tz: str
    dialog: dict[str, Any]
    limits: ChannelLimits
    replies: list[OutboundMessage] = field(default_factory=list)


class Engine:
    """Receives customer messages and answers them through the outbox."""

    def __init__(self, *, store: Store, settings: Settings, i18n: I18n, orders: Orders,
                 tracking: Tracking, handoff: Handoff, history: History, outbox: Outbox,
                 consent: Consent, limits: Mapping[ChannelName, ChannelLimits],
                 clock: Callable[[], datetime] | None = None) -> None:
        self.store, self.settings, self.i18n = store, settings, i18n
        self.orders, self.tracking, self.handoff = orders, tracking, handoff
        self.history, self.outbox, self.consent = history, outbox, consent
        self.limits = dict(limits)
        self.k = store.keys
        self.clock = clock or (lambda: datetime.now(UTC))
        self._group_ready = False

    # ------------------------------------------------------------------ inbound pipeline
    async def receive(self, message: Message) -> bool:
        """Durably queue an inbound message; False when it is a duplicate (webhook retry).

        The entry is written before the 'seen' mark: a crash in between can only cause a
        duplicate entry, which `handle` drops, never a lost message.
        """
        ident = f"{message.address.channel}:{message.provider_id}"
        if await self.store.exists(self.k.dedupe("done", ident)) or \
                await self.store.exists(self.k.dedupe("seen", ident)):
            return False
        if not self._group_ready:
            await self.store.ensure_group(self.k.inbound(), INBOUND_GROUP)
            self._group_ready = True
        await self.store.xadd(self.k.inbound(), {
            "address": str(message.address), "text": message.text,
            "provider_id": message.provider_id, "received_at": message.received_at.isoformat(),
            "payload": message.payload, "locale_hint": message.locale_hint,
            "profile_name": message.profile_name,
        })
        await self.store.set_str(self.k.dedupe("seen", ident), "1", ttl=DEDUPE_TTL)
        return True

    async def process_once(self, consumer: str, *, block_ms: int | None = None, count: int = 20,
                           reclaim_ms: int = 60_000) -> int:
        """Handle queued inbound messages (and ones a crashed consumer left behind)."""
        stream = self.k.inbound()
        if not self._group_ready:
            await self.store.ensure_group(stream, INBOUND_GROUP)
            self._group_ready = True
        entries = await self.store.xautoclaim(stream, INBOUND_GROUP, consumer, reclaim_ms, count)
        entries += await self.store.xreadgroup(stream, INBOUND_GROUP, consumer, count, block_ms)
        for entry_id, f in entries:
            try:
                message = Message(
                    address=Address.parse(f["address"]), text=f.get("text", ""),
                    provider_id=f["provider_id"],
                    received_at=datetime.fromisoformat(f["received_at"]),
                    payload=f.get("payload", ""), locale_hint=f.get("locale_hint", ""),
                    profile_name=f.get("profile_name", ""),
                )
                await self.handle(message)
            except Exception as exc:
                if is_unavailable(exc):
                    raise  # Redis is down: leave it pending, it is reclaimed later
                # a message we cannot handle must not jam the stream: keep it for a person
                log.exception("inbound entry %s failed; moved to the dead-letter stream", entry_id)
                await self.store.xadd(self.k.shared("inbound", "dead"),
                                      dict(f, error=f"{type(exc).__name__}: {exc}"[:500]),
                                      maxlen=100_000)
            await self.store.xack(stream, INBOUND_GROUP, entry_id)
            await self.store.xdel(stream, entry_id)
        return len(entries)

    async def run(self, consumer: str, stop: asyncio.Event) -> None:
        """Process inbound messages until `stop`; survive Redis hiccups."""

        async def step() -> int:
            return await self.process_once(consumer, block_ms=1000) or 1  # it blocks itself

        await keep_running("engine", step, stop)

    async def handle(self, message: Message) -> None:
        """One turn, under the conversation's lock; exactly once per provider message id."""
        customer = await self.orders.customer_for(message.address)
        if customer is None:  # customer_for(create=True) always returns one
            raise LookupError(f"no customer for {message.address.channel}")
        lock_key = self.k.turn_lock(customer.id)
        token = None
        for _ in range(600):  # wait up to ~30 s for the previous turn of this conversation
            token = await self.store.acquire_lock(lock_key, 30_000)
            if token:
                break
            await asyncio.sleep(0.05)
        if token is None:
            raise TimeoutError(f"conversation {customer.id} stayed locked")
        try:
            done_key = self.k.dedupe("done", f"{message.address.channel}:{message.provider_id}")
            if await self.store.exists(done_key):
                return
            await self._turn(message, customer)
            await self.store.set_str(done_key, "1", ttl=DEDUPE_TTL)
        finally:
            await self.store.release_lock(lock_key, token)

    async def _turn(self, message: Message, customer: Customer) -> None:
        conv = self.k.conversation(customer.id)
        await self.store.hset(conv, {"address": str(message.address),
                                     "last_inbound_at": message.received_at.isoformat()},
                              ttl=self.settings.conversation_ttl)
        shown = message.text or message.payload
        await self.history.add(customer.id, direction="inbound", sender="customer", text=shown,
                               channel=message.address.channel.value, at=message.received_at,
                               ref=message.provider_id)
        owner = await self.handoff.owner(customer.id)
        intent = self._parse(message, has_choices=False)
        if intent.kind is Kind.STOP or intent.kind is Kind.START:
            await self.consent.set(customer.id, message.address.channel.value,
                                   intent.kind is Kind.START, "keyword", message.received_at)
        if owner != Owner.BOT.value:
            return  # an agent (or the queue) owns the conversation: the bot stays silent
        turn = await self._start_turn(message, customer)
        if turn.limits.provider_answers_stop and intent.kind is not Kind.START and \
                await self.consent.opted_out(customer.id, message.address.channel.value):
            return  # the provider blocks every send until START (Twilio 21610): stay quiet
        intent = self._parse(message, has_choices=bool(turn.dialog.get("choices")))
        try:
            await self._answer(turn, intent)
        finally:
            await self.store.set_json(self.k.dialog(customer.id), turn.dialog,
                                      ttl=self.settings.conversation_ttl)
            for reply in turn.replies:
                await self.outbox.enqueue(reply)
                await self.history.add(customer.id, direction="outbound", sender="bot",
                                       text=reply.text, channel=reply.address.channel.value,
                                       ref=reply.idem)

    def _parse(self, message: Message, *, has_choices: bool) -> Intent:
        return intents.parse(message.text, self.i18n.keywords, payload=message.payload,
                             extra_refs=find_numbers(message.text), has_choices=has_choices)

    async def _start_turn(self, message: Message, customer: Customer) -> Turn:
        dialog = await self.store.get_json(self.k.dialog(customer.id)) or {}
        detected = detect_language(message.text)
        if detected:
            await self.store.hset(self.k.conversation(customer.id), {"detected_locale": detected})
        locale, tz = await self._locale_and_zone(message.address, customer, text=message.text,
                                                 hint=message.locale_hint, detected=detected)
        limits = self.limits.get(message.address.channel, ChannelLimits())
        return Turn(message, customer, locale, tz, dialog, limits)

    async def _locale_and_zone(self, address: Address, customer: Customer, *, text: str = "",
                               hint: str = "", detected: str = "") -> tuple[str, str]:
        """The customer's language (DESIGN.md chain) and timezone."""
        orders = await self.orders.for_customer(customer.id)
        phone = customer.phone or (address.user if address.channel in (
            ChannelName.SMS, ChannelName.WHATSAPP) else "")
        locale = choose_locale(LocaleInputs(
            explicit=customer.locale, order_locale=next((o.locale for o in orders if o.locale), ""),
            channel_hint=hint, text=text, phone=phone, default=self.settings.default_locale,
        ))
        if not detected and not customer.locale and locale == self.settings.default_locale:
            remembered = await self.store.hget(self.k.conversation(customer.id), "detected_locale")
            locale = remembered or locale
        current_locale.set(locale)
        tz = customer.timezone or next((o.timezone for o in orders if o.timezone), "") \
            or _phone_zone(phone) or self.settings.default_timezone
        return locale, tz

    # ------------------------------------------------------------------ replies
    def _reply(self, turn: Turn, template: str, buttons: list[tuple[str, str, str]] = (),
               **ctx: Any) -> None:
        """Render a template into the turn's replies. buttons: (payload, label key, label arg)."""
        channel = turn.message.address.channel.value
        rendered = [Button(p, self.i18n.label(key, turn.locale, arg)) for p, key, arg in buttons]
        text = self.i18n.render(template, turn.locale, channel, tz=turn.tz,
                                shop=self.settings.shop_name, **ctx)
        text, rendered, choices = self.i18n.offer(text, rendered, turn.limits.max_buttons,
                                                  turn.locale, channel, turn.tz)
        turn.dialog.pop("choices", None)
        if choices:
            turn.dialog["choices"] = choices
        idem = f"{turn.message.address.channel}:{turn.message.provider_id}:{len(turn.replies)}"
        turn.replies.append(OutboundMessage(
            idem=idem, address=turn.message.address, text=text,
            buttons=rendered, customer_id=turn.customer.id,
            kind="reply", template=template, locale=turn.locale,
        ))

    def _menu_buttons(self) -> list[tuple[str, str, str]]:
        return [("orders", "orders", ""), ("human", "human", ""), ("lang", "language", "")]

    # ------------------------------------------------------------------ dialog
    async def _answer(self, turn: Turn, intent: Intent) -> None:
        if intent.kind is Kind.CHOICE:
            payload = turn.dialog.get("choices", {}).get(intent.arg)
            intent = intents.from_payload(payload) if payload else Intent(Kind.UNKNOWN)
        if intent.kind is not Kind.UNKNOWN:
            await self.store.delete(self.k.not_understood(turn.customer.id))
        awaiting = turn.dialog.get("awaiting", "")
        if awaiting == "verify" and intent.kind in (Kind.UNKNOWN, Kind.WHERE_IS) \
                and not intent.arg and not await self._mentions_order(intent):
            await self._verify(turn, turn.message.text)
            return
        if intent.kind is Kind.UNKNOWN and awaiting == "reference" and turn.message.text.strip():
            intent = Intent(Kind.WHERE_IS, references=(turn.message.text.strip(),))
        handler = {
            Kind.STOP: self._stop, Kind.START: self._start, Kind.HUMAN: self._human,
            Kind.HELP: self._help, Kind.LANGUAGE: self._language_menu,
            Kind.SET_LANGUAGE: self._set_language, Kind.NOTIFY_ON: self._notify,
            Kind.NOTIFY_OFF: self._notify, Kind.LIST_ORDERS: self._list_orders,
            Kind.WHERE_IS: self._where_is, Kind.LINK: self._link, Kind.UNKNOWN: self._unknown,
        }[intent.kind]
        await handler(turn, intent)

    async def _stop(self, turn: Turn, intent: Intent) -> None:
        turn.dialog.clear()
        if not turn.limits.provider_answers_stop:  # Twilio SMS confirms STOP itself
            self._reply(turn, "stopped")

    async def _start(self, turn: Turn, intent: Intent) -> None:
        self._reply(turn, "started", self._menu_buttons())

    async def _help(self, turn: Turn, intent: Intent) -> None:
        turn.dialog.clear()
        self._reply(turn, "menu", self._menu_buttons(), name=turn.customer.name)

    async def _language_menu(self, turn: Turn, intent: Intent) -> None:
        self._reply(turn, "language_menu", [(f"lang:{loc}", f"lang_{loc}", "")
                                            for loc in SUPPORTED_LOCALES])

    async def _set_language(self, turn: Turn, intent: Intent) -> None:
        if intent.arg not in SUPPORTED_LOCALES:
            await self._language_menu(turn, intent)
            return
        turn.customer.locale = intent.arg
        await self.orders.save_customer(turn.customer)
        turn.locale = intent.arg
        current_locale.set(intent.arg)
        self._reply(turn, "language_set", self._menu_buttons())

    async def _human(self, turn: Turn, intent: Intent, reason: str = "customer_asked") -> None:
        esc = await self.handoff.escalate(turn.customer.id, reason,
                                          turn.message.address.channel.value)
        turn.dialog.clear()
        if esc.on_shift:
            self._reply(turn, "handoff_queued", position=esc.position)
        else:
            hours = self.settings.business_hours
            self._reply(turn, "handoff_closed", opens_at=esc.opens_at,
                        hours_tz=str(hours.tz) if hours else "")

    async def _unknown(self, turn: Turn, intent: Intent) -> None:
        count = await self.store.count_in_window(self.k.not_understood(turn.customer.id),
                                                 self.settings.conversation_ttl)
        if count >= NOT_UNDERSTOOD_LIMIT:
            await self.store.delete(self.k.not_understood(turn.customer.id))
            await self._human(turn, intent, reason="bot_stuck")
            return
        self._reply(turn, "not_understood", self._menu_buttons())

    async def _link(self, turn: Turn, intent: Intent) -> None:
        order_id = await self.store.get_str(self.k.link_token(intent.arg))
        order = await self.orders.get(order_id) if order_id else None
        if order is None:
            await self._help(turn, intent)
            return
        owner = await self.orders.customer(order.customer_id)
        if owner is not None:
            await self.orders.link(turn.message.address, owner)
            turn.customer = owner
            turn.locale, turn.tz = await self._locale_and_zone(turn.message.address, owner)
        await self._show_order(turn, order, full=True)

    async def _list_orders(self, turn: Turn, intent: Intent) -> None:
        orders = await self.orders.for_customer(turn.customer.id)
        if not orders:
            turn.dialog["awaiting"] = "reference"
            self._reply(turn, "orders_none")
            return
        self._reply(turn, "orders_list", [(f"order:{o.id}", "order", o.id) for o in orders[:6]],
                    orders=[{"id": o.id, "shipments": len(o.shipments)} for o in orders])

    async def _notify(self, turn: Turn, intent: Intent) -> None:
        on = intent.kind is Kind.NOTIFY_ON
        targets: list[tuple[str, str]] = []
        if turn.dialog.get("shipment"):
            targets = [tuple(turn.dialog["shipment"].split(":", 1))]  # type: ignore[list-item]
        else:
            for order in await self.orders.for_customer(turn.customer.id):
                targets += [(s.carrier, s.tracking_number) for s in order.shipments]
        if not targets:
            turn.dialog["awaiting"] = "reference"
            self._reply(turn, "ask_reference")
            return
        cid = turn.customer.id
        for carrier, number in targets:
            subs, muted = self.k.shipment_subscribers(carrier, number), self.k.shipment_muted(carrier, number)
            if on:
                await self.store.sadd(subs, cid)
                await self.store.srem(muted, cid)
            else:
                await self.store.srem(subs, cid)
                await self.store.sadd(muted, cid)
        if on:
            await self.consent.set(cid, turn.message.address.channel.value, True, "chat",
                                   turn.message.received_at)
        self._reply(turn, "notify_on" if on else "notify_off", count=len(targets))

    async def _where_is(self, turn: Turn, intent: Intent) -> None:
        turn.dialog.pop("awaiting", None)
        if intent.arg.startswith("carrier:"):
            _, carrier, number = intent.arg.split(":", 2)
            await self._show_tracking(turn, number, carrier=carrier)
            return
        if not intent.references:
            orders = await self.orders.for_customer(turn.customer.id)
            if len(orders) == 1:
                await self._show_order(turn, orders[0], full=True)
            elif orders:
                await self._list_orders(turn, intent)
            else:
                turn.dialog["awaiting"] = "reference"
                self._reply(turn, "ask_reference")
            return
        for ref in intent.references:
            order = await self._find_order(ref)
            if order is not None:
                await self._order_request(turn, order)
                return
        for ref in intent.references:
            number = normalize_tracking(ref)
            if self.tracking.detect(number):
                await self._show_tracking(turn, number)
                return
        cid = turn.customer.id
        if await self.orders.guesses_blocked(cid):
            self._locked(turn, await self.orders.blocked_until(cid, None, self.clock()))
            return
        await self.orders.record_wrong_guess(cid)
        turn.dialog["awaiting"] = "reference"
        self._reply(turn, "not_found", reference=intent.references[0])

    async def _mentions_order(self, intent: Intent) -> bool:
        for ref in intent.references:
            if await self._find_order(ref) is not None:
                return True
        return False

    async def _find_order(self, ref: str) -> Order | None:
        for candidate in dict.fromkeys((ref, ref.lstrip("#"), ref.upper(), ref.lstrip("#").upper())):
            order = await self.orders.get(candidate)
            if order:
                return order
        return None

    async def _order_request(self, turn: Turn, order: Order) -> None:
        cid = turn.customer.id
        if await self.orders.may_see_details(cid, order):
            await self._show_order(turn, order, full=True)
            return
        if await self.orders.guesses_blocked(cid, order.id):
            self._locked(turn, await self.orders.blocked_until(cid, order.id, self.clock()))
            return
        await self._show_order(turn, order, full=False)
        turn.dialog.update(awaiting="verify", order=order.id)

    def _locked(self, turn: Turn, until: datetime) -> None:
        turn.dialog.clear()
        self._reply(turn, "verify_locked", until=until)

    async def _verify(self, turn: Turn, answer: str) -> None:
        order = await self.orders.get(turn.dialog.get("order", ""))
        cid = turn.customer.id
        if order is None:
            turn.dialog.clear()
            await self._help(turn, Intent(Kind.HELP))
            return
        if await self.orders.guesses_blocked(cid, order.id):
            self._locked(turn, await self.orders.blocked_until(cid, order.id, self.clock()))
            return
        if await self.orders.verify(cid, order, answer):
            turn.dialog.clear()
            await self._show_order(turn, order, full=True)
            return
        left = await self.orders.record_wrong_guess(cid, order.id)
        if left <= 0:
            self._locked(turn, await self.orders.blocked_until(cid, order.id, self.clock()))
            return
        self._reply(turn, "verify_failed", left=left)

    async def _show_order(self, turn: Turn, order: Order, *, full: bool) -> None:
        views = [await self.tracking.current(s.carrier, s.tracking_number) for s in order.shipments]
        if not full:
            self._reply(turn, "order_coarse", order_id=order.id,
                        statuses=[_coarse(v) for v in views], ask_postcode=bool(order.postcode))
            return
        ships = [self._shipment_ctx(v) for v in views]
        if len(order.shipments) == 1:
            turn.dialog["shipment"] = f"{order.shipments[0].carrier}:{order.shipments[0].tracking_number}"
        else:
            turn.dialog.pop("shipment", None)
        turn.dialog["order"] = order.id
        promised = order.promised_delivery_date
        self._reply(turn, "order_status", self._status_buttons(ships), order_id=order.id,
                    shipments=ships, name=order.name,
                    promised=datetime.fromisoformat(promised).replace(tzinfo=ZoneInfo(turn.tz))
                    if promised else None)

    async def _show_tracking(self, turn: Turn, number: str, carrier: str = "") -> None:
        candidates = self.tracking.detect(number)
        if carrier:
            view = await self.tracking.current(carrier, number)
            for other in candidates:  # not found at the chosen carrier: try the next candidate
                if view.snapshot is not None or view.stale:
                    break
                if other != carrier:
                    view = await self.tracking.current(other, number)
        else:
            known = [c for c in candidates if (await self.tracking.stored(c, number)).snapshot]
            if len(candidates) > 1 and not known:
                self._reply(turn, "which_carrier", [(f"carrier:{c}:{number}", "carrier", c)
                                                    for c in candidates[:6]], number=number)
                return
            view = await self.tracking.find(number)
        if view is None or (view.snapshot is None and not view.stale):
            self._reply(turn, "tracking_unknown", number=number)
            turn.dialog["awaiting"] = "reference"
            return
        ship = self._shipment_ctx(view)
        turn.dialog["shipment"] = f"{view.carrier}:{number}"
        self._reply(turn, "tracking_status", self._status_buttons([ship]), shipment=ship)

    def _status_buttons(self, ships: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
        buttons = [("notify:on", "notify_on", "")]
        if any(s["trouble"] for s in ships):
            buttons.insert(0, ("human", "human", ""))
        return buttons + [("menu", "menu", "")]

    def _shipment_ctx(self, view: ShipmentView) -> dict[str, Any]:
        snap = view.snapshot
        last = snap.last_event if snap else None
        return {
            "carrier": view.carrier, "number": view.tracking_number,
            "status": snap.status.value if snap else "unknown",
            "reason": snap.reason.value if snap else "",
            "customs": snap.customs.value if snap else "",
            "last_when": last.timestamp if last else None,
            "last_where": last.location if last else "",
            "eta": snap.eta if snap else None, "eta_end": snap.eta_end if snap else None,
            "duties": snap.duties if snap else None,
            "payment_url": snap.payment_url if snap else "",
            "pickup_location": snap.pickup_location if snap else "",
            "pickup_until": datetime.combine(snap.pickup_until, datetime.min.time(), tzinfo=UTC)
            if snap and snap.pickup_until else None,
            "tracking_url": self.tracking.tracking_url(view.carrier, view.tracking_number),
            "stale": view.stale, "checked_at": view.checked_at,
            "not_found": snap is None and view.problem is not None,
            "trouble": bool(snap and (snap.status in TROUBLE or snap.reason in TROUBLE_REASONS)),
        }

    # ------------------------------------------------------------------ agent side
    async def agent_reply(self, cid: str, agent: str, text: str, *, idem: str) -> OutboundMessage:
        """Deliver an agent's message in the customer's channel (the agent must own it)."""
        await self.handoff.require_agent(cid, agent)
        address, locale, _tz = await self._reach(cid)
        body = self.i18n.render("agent_reply", locale, address.channel.value, agent=agent, text=text)
        out = OutboundMessage(idem=idem, address=address, text=body, customer_id=cid, kind="agent",
                              template="agent_reply", locale=locale)
        await self.outbox.enqueue(out)
        await self.history.add(cid, direction="outbound", sender="agent", agent=agent, text=text,
                               channel=address.channel.value, ref=idem)
        return out

    async def hand_back(self, cid: str, agent: str, *, idem: str) -> None:
        """Return the conversation to the bot and tell the customer."""
        await self.handoff.release(cid, agent)
        address, locale, _tz = await self._reach(cid)
        body = self.i18n.render("handoff_returned", locale, address.channel.value, agent=agent)
        await self.outbox.enqueue(OutboundMessage(idem=idem, address=address, text=body,
                                                  customer_id=cid, kind="reply",
                                                  template="handoff_returned", locale=locale))
        await self.history.add(cid, direction="outbound", sender="bot", text=body,
                               channel=address.channel.value, ref=idem)

    async def _reach(self, cid: str) -> tuple[Address, str, str]:
        """Where the customer last wrote from, and their language and timezone."""
        raw = await self.store.hget(self.k.conversation(cid), "address")
        customer = await self.orders.customer(cid)
        if not raw or customer is None:
            raise LookupError(f"conversation {cid} has no address yet")
        address = Address.parse(raw)
        locale, tz = await self._locale_and_zone(address, customer)
        return address, locale, tz


def _coarse(view: ShipmentView) -> str:
    return view.snapshot.status.value if view.snapshot else "unknown"


def _phone_zone(phone: str) -> str:
    if not phone:
        return ""
    try:
        zones = phone_tz.time_zones_for_number(phonenumbers.parse(phone))
    except phonenumbers.NumberParseException:
        return ""
    return zones[0] if len(zones) == 1 and zones[0] != "Etc/Unknown" else ""

