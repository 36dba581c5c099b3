"""Proactive updates: the right news, once, in the customer's language, at a decent hour.

Three layers:

* `decide()` — a pure policy: (change, customer, conversation, now, settings) -> Decision
  (send now / defer until an aware datetime / suppress with a reason). Table-tested.
* `Notifier` — the effects: who is subscribed to a shipment, what we already told them, the
  durable deferral (a Redis zset by due time released by `run(stop)`), collapsing bursts into
  one message, rendering in the customer's locale/timezone/channel, the outbox, the dialog
  context, fallbacks to another channel and handoffs on trouble.
* `Ledger` — every decision (sent, deferred until when, suppressed and why, failed and why,
  fallback) per order, with template, locale, channel, idempotency key and delivery receipt.

Only transactional updates about a customer's own shipments are sent; consent is per
customer and channel (`bot.consent`), and a customer who said STOP on a channel is never
messaged there.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import itertools
import json
import logging
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_tz

from bot.changes import Change, ChangeKind
from bot.channels import ChannelLimits, Receipt, SendError
from bot.config import Settings
from bot.consent import Consent
from bot.handoff import Handoff
from bot.i18n import I18n, LocaleInputs, choose_locale
from bot.loop import keep_running
from bot.models import (
    Address,
    Button,
    ChannelName,
    Customer,
    Order,
    OutboundMessage,
    Owner,
    snapshot_from_dict,
)
from bot.orders import Orders, order_addresses
from bot.outbox import Outbox
from bot.store import Store, is_unavailable
from carriers.model import CustomsStage, Money, Reason, Status, TrackingSnapshot

log = logging.getLogger(__name__)

MAX_AGE = timedelta(days=2)  # older carrier events are history, not news
TOLD_TTL = 60 * 86400  # remember what a customer was told about a shipment this long
PENDING_TTL = 7 * 86400
LINK_TTL = 30 * 86400  # idem / provider id -> ledger entry
BUDGET_WINDOW = 86400
LOCK_MS = 15_000
RELEASE_LEASE = 120.0  # a claimed deferral comes back if its releaser dies
IN_CHAT_WAIT = timedelta(seconds=60)  # news found while the person is chatting waits this long
ANSWER_SLACK = timedelta(minutes=2)  # a turn's message arrived this long before its lookup

#: News that cannot wait for the morning.
URGENT_KINDS = frozenset({ChangeKind.OUT_FOR_DELIVERY, ChangeKind.DELIVERY_FAILED,
                          ChangeKind.READY_FOR_PICKUP, ChangeKind.CUSTOMS_HELD,
                          ChangeKind.DUTIES_DUE})
CUSTOMS_ACTION = frozenset({CustomsStage.HELD, CustomsStage.DUTIES_DUE, CustomsStage.INFO_REQUIRED})
CUSTOMS_REASONS = frozenset({Reason.CUSTOMS_INSPECTION, Reason.CUSTOMS_DUTIES_UNPAID,
                             Reason.CUSTOMS_DOCUMENTATION, Reason.CUSTOMS_PROHIBITED,
                             Reason.CUSTOMS_DELAY})
#: Where to reach a customer who has not written to us, best first.
CHANNEL_ORDER = (ChannelName.WHATSAPP, ChannelName.SMS, ChannelName.TELEGRAM, ChannelName.WEBCHAT)
#: Order of kinds along a journey (breaks ties between changes with the same event time).
KIND_ORDER = (ChangeKind.SHIPPED, ChangeKind.CUSTOMS_HELD, ChangeKind.DUTIES_DUE,
              ChangeKind.CUSTOMS_CLEARED, ChangeKind.STALLED, ChangeKind.DELAYED,
              ChangeKind.OUT_FOR_DELIVERY, ChangeKind.DELIVERY_FAILED,
              ChangeKind.READY_FOR_PICKUP, ChangeKind.DELIVERED, ChangeKind.RETURN_TO_SENDER,
              ChangeKind.EXCEPTION)
#: Buttons per kind: (payload, label key). Label keys: templates/_buttons.j2, else
#: templates/notifications/_buttons.j2. "I'll wait" re-subscribes to this shipment.
BUTTONS: dict[ChangeKind, tuple[tuple[str, str], ...]] = {
    ChangeKind.DELAYED: (("notify:on", "wait"), ("human", "human")),
    ChangeKind.DELIVERY_FAILED: (("human", "human"),),
    ChangeKind.CUSTOMS_HELD: (("human", "human"),),
    ChangeKind.DUTIES_DUE: (("human", "human"),),
    ChangeKind.STALLED: (("notify:on", "wait"), ("human", "human")),
    ChangeKind.RETURN_TO_SENDER: (("human", "human"),),
    ChangeKind.EXCEPTION: (("human", "human"),),
}
OWN_LABELS = frozenset({"wait"})
#: Delivery statuses by rank (a receipt never moves backwards).
RECEIPT_RANK = {"queued": 1, "accepted": 1, "scheduled": 1, "sending": 2, "sent": 3,
                "delivered": 4, "partially_delivered": 4, "read": 5,
                "undelivered": 9, "failed": 9, "canceled": 9}
FAILED = frozenset({"undelivered", "failed", "canceled"})


# ====================================================================== pure policy
class Action(enum.StrEnum):
    """What to do with one piece of news for one person."""

    SEND = "send"
    DEFER = "defer"
    SUPPRESS = "suppress"


@dataclass(frozen=True, slots=True)
class Reach:
    """One address of a customer and whether we may and can use it."""

    address: Address
    opted_out: bool = False  # the customer said STOP on this channel
    unreachable: bool = False  # the provider said this address cannot receive
    configured: bool = True  # this deployment has the channel


@dataclass(frozen=True, slots=True)
class CustomerCtx:
    """What the policy knows about the person."""

    customer_id: str = ""
    locale: str = "en"
    timezone: str = "UTC"
    reach: tuple[Reach, ...] = ()
    last_address: Address | None = None  # where they last wrote from
    muted: bool = False  # said "stop updates" for this shipment


@dataclass(frozen=True, slots=True)
class ConversationCtx:
    """What the policy knows about this person and this shipment."""

    announced: frozenset[str] = frozenset()  # change keys already sent, deferred or suppressed
    sent_today: int = 0  # messages about this shipment to this person in the budget window
    pending_due: datetime | None = None  # a deferred batch for this shipment waits until then
    releasing: bool = False  # deciding again for a deferred batch whose time has come
    agent_owned: bool = False  # an agent (or the queue) owns the conversation
    in_turn: bool = False  # the person is being answered right now (their lookup found this)
    answered_in_chat: bool = False  # that answer showed this shipment: nothing left to tell


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's answer; `channels` is the chosen address first, then the fallbacks."""

    action: Action
    reason: str
    until: datetime | None = None
    urgent: bool = False
    silent: bool = False  # sent during quiet hours: no sound (Telegram disable_notification)
    channels: tuple[Address, ...] = ()

    @property
    def channel(self) -> Address | None:
        return self.channels[0] if self.channels else None


def urgent(change: Change) -> bool:
    """Out for delivery, failed attempt, customs action needed, ready for pickup."""
    return change.kind in URGENT_KINDS


def is_routine(change: Change, tz: tzinfo = UTC) -> bool:
    """A scan that moves nothing the customer cares about (not news)."""
    kind = change.kind
    if kind is ChangeKind.SHIPPED:
        return change.previous_status not in (None, Status.PENDING, Status.UNKNOWN)
    if kind is ChangeKind.CUSTOMS_HELD:
        return change.customs not in CUSTOMS_ACTION and change.reason not in CUSTOMS_REASONS
    if kind is ChangeKind.DELAYED and change.status is not Status.DELAYED:
        if change.eta and change.previous_eta:  # the ETA moved: news only if a later day
            return change.eta.astimezone(tz).date() <= change.previous_eta.astimezone(tz).date()
        return False
    if kind in (ChangeKind.OUT_FOR_DELIVERY, ChangeKind.READY_FOR_PICKUP, ChangeKind.DELIVERED):
        return change.previous_status is change.status  # the same status scanned again
    return False


def in_quiet_hours(now: datetime, tz: tzinfo, quiet: tuple[time, time]) -> bool:
    """Whether `now` falls in the quiet hours of the customer's local day."""
    start, end = quiet
    if start == end:
        return False
    local = now.astimezone(tz).time().replace(tzinfo=None)
    if start < end:
        return start <= local < end
    return local >= start or local < end


def quiet_ends(now: datetime, tz: tzinfo, quiet: tuple[time, time]) -> datetime:
    """The next moment quiet hours end, in the customer's timezone (aware)."""
    local = now.astimezone(tz)
    day = local.date()
    for offset in range(3):
        candidate = datetime.combine(day + timedelta(days=offset), quiet[1], tzinfo=tz)
        if candidate > local:
            return candidate
    raise AssertionError("unreachable")  # pragma: no cover


def choose_channels(customer: CustomerCtx, skip: Iterable[Address] = ()) -> tuple[Address, ...]:
    """Usable addresses, best first: where they last wrote from, then WhatsApp, SMS, Telegram."""
    skipped = set(skip)
    usable = [r.address for r in customer.reach
              if r.configured and not r.opted_out and not r.unreachable
              and r.address not in skipped]
    ordered = sorted(dict.fromkeys(usable),
                     key=lambda a: CHANNEL_ORDER.index(a.channel) if a.channel in CHANNEL_ORDER
                     else len(CHANNEL_ORDER))
    last = customer.last_address
    if last is not None and last in ordered:
        ordered.remove(last)
        ordered.insert(0, last)
    return tuple(ordered)


def zone(name: str) -> tzinfo:
    """A timezone by IANA name; UTC when unknown."""
    try:
        return ZoneInfo(name) if name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def decide(change: Change, customer: CustomerCtx, conversation: ConversationCtx, now: datetime,
           settings: Settings) -> Decision:
    """The policy for one change and one person. Pure: everything comes in as arguments."""
    if change.key in conversation.announced:
        return Decision(Action.SUPPRESS, "already_announced")
    if conversation.answered_in_chat:
        return Decision(Action.SUPPRESS, "answered_in_chat")
    if customer.muted:
        return Decision(Action.SUPPRESS, "muted")
    tz = zone(customer.timezone)
    if is_routine(change, tz):
        return Decision(Action.SUPPRESS, "routine")
    if now - change.occurred_at > MAX_AGE and _dated_by_event(change):
        return Decision(Action.SUPPRESS, "too_old")
    channels = choose_channels(customer)
    if not channels:
        configured = [r for r in customer.reach if r.configured]
        if configured and all(r.opted_out for r in configured):
            return Decision(Action.SUPPRESS, "opted_out")
        return Decision(Action.SUPPRESS, "no_channel")
    if conversation.agent_owned:
        return Decision(Action.SUPPRESS, "agent_owns_conversation", channels=channels)
    if conversation.sent_today >= settings.notify_max_per_shipment_per_day:
        return Decision(Action.SUPPRESS, "daily_budget", channels=channels)
    if conversation.in_turn and not conversation.releasing:
        return Decision(Action.DEFER, "in_conversation", until=now + IN_CHAT_WAIT,
                        urgent=urgent(change), channels=channels)
    quiet = in_quiet_hours(now, tz, settings.quiet_hours)
    if urgent(change):
        return Decision(Action.SEND, "urgent_quiet_hours" if quiet else "urgent", urgent=True,
                        silent=quiet, channels=channels)
    if quiet:
        return Decision(Action.DEFER, "quiet_hours",
                        until=quiet_ends(now, tz, settings.quiet_hours), channels=channels)
    if conversation.releasing:
        return Decision(Action.SEND, "released", channels=channels)
    if settings.notify_collapse_seconds > 0:
        until = conversation.pending_due
        if until is None or until <= now:
            until = now + timedelta(seconds=settings.notify_collapse_seconds)
        return Decision(Action.DEFER, "collapse", until=until, channels=channels)
    return Decision(Action.SEND, "normal", channels=channels)


def _dated_by_event(change: Change) -> bool:
    """Whether `occurred_at` is a carrier event's time. A slipped ETA (no DELAYED scan) is
    dated by the last scan, which may be old although the news is new; a stall is dated now."""
    if change.kind is ChangeKind.DELAYED:
        return change.status is Status.DELAYED
    return change.kind is not ChangeKind.STALLED


def headline(changes: Sequence[Change]) -> Change:
    """The newest news of a batch (ties: the later stage of the journey)."""
    return max(changes, key=lambda c: (c.occurred_at, KIND_ORDER.index(c.kind)))


def trouble(change: Change) -> str:
    """Why this change needs a person ('' when it does not)."""
    if change.reason in (Reason.LOST, Reason.DAMAGED):
        return f"shipment_{change.reason.value}"
    if change.kind is ChangeKind.RETURN_TO_SENDER or change.status is Status.RETURN_TO_SENDER:
        return "shipment_returned"
    if change.customs is CustomsStage.INFO_REQUIRED or change.reason is Reason.CUSTOMS_DOCUMENTATION:
        return "customs_documents"
    return ""


# ====================================================================== serialization
def change_to_dict(c: Change) -> dict[str, Any]:
    """A change as plain JSON."""
    def iso(v: datetime | None) -> str | None:
        return v.isoformat() if v else None

    return {
        "kind": c.kind.value, "carrier": c.carrier, "tracking_number": c.tracking_number,
        "key": c.key, "status": c.status.value,
        "previous_status": c.previous_status.value if c.previous_status else None,
        "occurred_at": c.occurred_at.isoformat(), "reason": c.reason.value,
        "customs": c.customs.value, "eta": iso(c.eta), "previous_eta": iso(c.previous_eta),
        "duties": {"amount": str(c.duties.amount), "currency": c.duties.currency}
        if c.duties else None,
        "payment_url": c.payment_url, "pickup_location": c.pickup_location,
        "location": c.location,
    }


def change_from_dict(d: Mapping[str, Any]) -> Change:
    """Inverse of change_to_dict."""
    def dt(v: str | None) -> datetime | None:
        return datetime.fromisoformat(v) if v else None

    duties = d.get("duties")
    return Change(
        kind=ChangeKind(d["kind"]), carrier=d["carrier"], tracking_number=d["tracking_number"],
        key=d["key"], status=Status(d["status"]),
        previous_status=Status(d["previous_status"]) if d.get("previous_status") else None,
        occurred_at=datetime.fromisoformat(d["occurred_at"]), reason=Reason(d.get("reason", "")),
        customs=CustomsStage(d.get("customs", "")), eta=dt(d.get("eta")),
        previous_eta=dt(d.get("previous_eta")),
        duties=Money(Decimal(duties["amount"]), duties["currency"]) if duties else None,
        payment_url=d.get("payment_url", ""), pickup_location=d.get("pickup_location", ""),
        location=d.get("location", ""),
    )


def mask(user: str) -> str:
    """A phone number or chat id fit for a ledger a shop reads: '+385911234567' -> '+385*******67'."""
    if len(user) <= 6:
        return "*" * len(user)
    return user[:4] + "*" * (len(user) - 6) + user[-2:]


# ====================================================================== ledger
class Ledger:
    """Notification decisions per order (or per shipment when no order lists it).

    One Redis hash per order: entry id -> JSON. Ids sort by time. Entries are updated in place
    (compare-and-set) when an outcome or a delivery receipt arrives. Fields starting with '_'
    are internal (what a fallback needs to re-render) and never shown.
    """

    _seq = itertools.count()

    def __init__(self, store: Store, ttl: int = 90 * 86400) -> None:
        self.store = store
        self.k = store.keys
        self.ttl = ttl

    def key(self, order_id: str, carrier: str = "", number: str = "") -> str:
        if order_id:
            return self.k.order_state(order_id, "notifications")
        return self.k.shipment_state(carrier, number, "notifications")

    async def add(self, lkey: str, entry: dict[str, Any], at: datetime) -> str:
        eid = f"{int(at.timestamp() * 1000):013d}-{next(self._seq) % 1_000_000:06d}"
        entry = {"id": eid, "at": at.isoformat(), **entry}
        await self.store.hset(lkey, {eid: json.dumps(entry, ensure_ascii=False, default=str)},
                              ttl=self.ttl)
        return eid

    async def get(self, lkey: str, eid: str) -> dict[str, Any] | None:
        raw = await self.store.hget(lkey, eid)
        return json.loads(raw) if raw else None

    async def update(self, lkey: str, eid: str,
                     change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any] | None:
        """Apply `change` atomically (compare-and-set); it returns None to leave the entry."""
        for _ in range(20):
            raw = await self.store.hget(lkey, eid)
            if raw is None:
                return None
            new = change(json.loads(raw))
            if new is None:
                return None
            done, _prev = await self.store.cas_field(
                lkey, eid, raw, json.dumps(new, ensure_ascii=False, default=str), self.ttl)
            if done:
                return new
        log.warning("ledger entry %s kept changing; update dropped", eid)
        return None

    async def entries(self, lkey: str) -> list[dict[str, Any]]:
        """Every entry, oldest first, without internal fields."""
        raw = await self.store.hgetall(lkey)
        return [{k: v for k, v in json.loads(raw[eid]).items() if not k.startswith("_")}
                for eid in sorted(raw)]

    async def link(self, kind: str, ident: str, lkey: str, eid: str) -> None:
        """Find an entry later by an outbound idempotency key ('i') or provider id ('p')."""
        await self.store.set_str(self.k.shared(f"n{kind}:{ident}", "ledger"), f"{lkey}\n{eid}",
                                 ttl=LINK_TTL)

    async def find(self, kind: str, ident: str) -> tuple[str, str] | None:
        raw = await self.store.get_str(self.k.shared(f"n{kind}:{ident}", "ledger"))
        if not raw:
            return None
        lkey, _, eid = raw.partition("\n")
        return lkey, eid


# ====================================================================== the notifier
@dataclass(slots=True)
class Recipient:
    """One person to consider for a shipment's news."""

    cid: str
    order: Order | None  # the order that lists the shipment (their own when they have one)
    owner: bool  # the order is theirs: they may see its number
    muted: bool = False


@dataclass(slots=True)
class Batch:
    """Changes that go out as one message, with everything needed to render it again."""

    cid: str
    carrier: str
    number: str
    order_id: str
    show_order: bool
    changes: list[Change]
    silent: bool = False
    urgent: bool = False
    released: list[str] = field(default_factory=list)  # ledger ids of deferred entries


class LockBusy(Exception):
    """Another process kept a notification lock too long."""


class Notifier:
    """Turns carrier changes into customer messages (see the module docstring)."""

    def __init__(self, store: Store, settings: Settings, i18n: I18n, orders: Orders,
                 outbox: Outbox, consent: Consent, handoff: Handoff,
                 clock: Callable[[], datetime] | None = None, *, history: Any = None,
                 tracking: Any = None) -> None:
        self.store, self.settings, self.i18n = store, settings, i18n
        self.orders, self.outbox, self.consent, self.handoff = orders, outbox, consent, handoff
        self.clock = clock or (lambda: datetime.now(UTC))
        self.history = history  # bot.history.History: agents see notifications in the history
        self.tracking = tracking  # bot.tracking.Tracking: tracking links
        self.k = store.keys
        self.ledger = Ledger(store, settings.history_ttl)

    # ------------------------------------------------------------------ keys
    def _due_key(self) -> str:
        return self.k.shared("notify", "due")

    def _told_key(self, cid: str, carrier: str, number: str) -> str:
        return self.k.shipment_state(carrier, number, f"told:{cid}")

    def _budget_key(self, cid: str, carrier: str, number: str) -> str:
        return self.k.shipment_state(carrier, number, f"sent:{cid}")

    def _pending_key(self, cid: str, carrier: str, number: str) -> str:
        return self.k.customer_state(cid, f"notify-pending:{carrier}:{number}")

    def _lock_key(self, cid: str, carrier: str, number: str) -> str:
        return self.k.customer_state(cid, f"notify-lock:{carrier}:{number}")

    @asynccontextmanager
    async def _locked(self, key: str, wait: float = 10.0):  # type: ignore[no-untyped-def]
        token = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while token is None:
            token = await self.store.acquire_lock(key, LOCK_MS)
            if token is None:
                if loop.time() > deadline:
                    raise LockBusy(key)
                await asyncio.sleep(0.02)
        try:
            yield
        finally:
            await self.store.release_lock(key, token)

    # ------------------------------------------------------------------ entry points
    async def on_changes(self, changes: list[Change]) -> None:
        """Tracking listener: decide and act for every subscriber of every changed shipment."""
        groups: dict[tuple[str, str], list[Change]] = {}
        for change in changes:
            groups.setdefault((change.carrier, change.tracking_number), []).append(change)
        for (carrier, number), group in groups.items():
            group.sort(key=lambda c: (c.occurred_at, KIND_ORDER.index(c.kind)))
            for recipient in await self.recipients(carrier, number):
                try:
                    async with self._locked(self._lock_key(recipient.cid, carrier, number)):
                        await self._handle(recipient, carrier, number, group)
                except Exception as exc:
                    if is_unavailable(exc):
                        raise  # the caller retries the whole snapshot later
                    log.exception("notification for %s %s failed", carrier, number)

    async def recipients(self, carrier: str, number: str) -> list[Recipient]:
        """The orders' customers plus everyone who asked to be notified; muted ones flagged."""
        orders = await self.orders.orders_for_shipment(carrier, number)
        subscribers = await self.store.smembers(self.k.shipment_subscribers(carrier, number))
        muted = await self.store.smembers(self.k.shipment_muted(carrier, number))
        out: dict[str, Recipient] = {}
        for order in orders:
            if order.customer_id and order.customer_id not in out:
                out[order.customer_id] = Recipient(order.customer_id, order, True)
        for cid in sorted(subscribers):
            if cid not in out:
                own = None
                for order in orders:
                    if await self.orders.may_see_details(cid, order):
                        own = order
                        break
                out[cid] = Recipient(cid, own or (orders[0] if orders else None), own is not None)
        for r in out.values():
            r.muted = r.cid in muted
        return list(out.values())

    async def _handle(self, r: Recipient, carrier: str, number: str, changes: list[Change]) -> None:
        now = self.clock()
        customer, conv, conv_hash, pending = await self.contexts(r, carrier, number, now)
        lkey = self.ledger.key(r.order.id if r.order else "", carrier, number)
        send: list[tuple[Change, Decision]] = []
        defer: list[tuple[Change, Decision]] = []
        told: dict[str, str] = {}
        for change in changes:
            d = decide(change, customer, conv, now, self.settings)
            if d.action is Action.SUPPRESS:
                await self._log_suppressed(lkey, r, change, d, customer)
                if change.key not in conv.announced:
                    told[change.key] = f"suppressed:{d.reason}"
            elif d.action is Action.DEFER:
                defer.append((change, d))
                told[change.key] = "pending"
                conv = replace(conv, pending_due=max(d.until, conv.pending_due)  # type: ignore[type-var]
                               if conv.pending_due else d.until)
            else:
                send.append((change, d))
                told[change.key] = "sent"
            conv = replace(conv, announced=conv.announced | {change.key})
        pending_key = self._pending_key(r.cid, carrier, number)
        if send:
            # an urgent message goes now and takes along what waits (and what would wait)
            pending = pending or {}
            batch = Batch(
                r.cid, carrier, number, r.order.id if r.order else "", r.owner,
                [change_from_dict(c) for c in pending.get("changes", [])]
                + [c for c, _ in send] + [c for c, _ in defer],
                silent=any(d.silent for _, d in send), urgent=any(d.urgent for _, d in send),
                released=list(pending.get("entries", [])))
            for key in [*pending.get("keys", []), *(c.key for c, _ in defer)]:
                told[key] = "sent"
            await self._send(batch, customer, lkey, reason=send[0][1].reason, conv_hash=conv_hash,
                             enrich=bool(pending))
            if pending:
                await self.store.delete(pending_key)
                await self.store.zrem(self._due_key(), self._member(r.cid, carrier, number))
        elif defer:
            pending = pending or {
                "cid": r.cid, "carrier": carrier, "number": number, "changes": [], "keys": [],
                "entries": [], "order_id": r.order.id if r.order else "", "owner": r.owner,
                "ledger": lkey, "since": now.isoformat()}
            due = max(d.until for _, d in defer if d.until)  # type: ignore[type-var]
            if pending.get("due"):
                due = max(due, datetime.fromisoformat(pending["due"]))
            for change, d in defer:
                pending["changes"].append(change_to_dict(change))
                pending["keys"].append(change.key)
                pending["entries"].append(await self._log_deferred(lkey, r, change, d, customer))
            pending["due"] = due.isoformat()
            if conv.in_turn:
                pending["in_turn_at"] = now.isoformat()
            await self.store.set_json(pending_key, pending, ttl=PENDING_TTL)
            await self.store.zadd(self._due_key(), {self._member(r.cid, carrier, number):
                                                    due.timestamp()})
        if told:
            await self.store.hset(self._told_key(r.cid, carrier, number), told, ttl=TOLD_TTL)

    @staticmethod
    def _member(cid: str, carrier: str, number: str) -> str:
        return f"{cid}\t{carrier}\t{number}"

    # ------------------------------------------------------------------ contexts
    async def contexts(self, r: Recipient, carrier: str, number: str, now: datetime, *,
                       waiting: Mapping[str, Any] | None = None
                       ) -> tuple[CustomerCtx, ConversationCtx, dict[str, str], dict | None]:
        """Everything the policy needs about a recipient and a shipment (few round trips):
        (customer, conversation, the conversation hash, the waiting batch). `waiting`: the
        batch being released (its changes are not 'already announced')."""
        releasing = waiting is not None
        conv_hash = await self.store.hgetall(self.k.conversation(r.cid))
        customer = await self.customer_ctx(r, conv_hash)
        told = await self.store.hgetall(self._told_key(r.cid, carrier, number))
        sent = await self.store.get_count(self._budget_key(r.cid, carrier, number))
        pending = None if releasing else await self.store.get_json(
            self._pending_key(r.cid, carrier, number))
        in_turn = False if releasing else await self.store.exists(self.k.turn_lock(r.cid))
        answered = False
        if waiting is not None and conv_hash.get("last_inbound_at"):
            # they asked after the news was found (or in the very turn that found it): the
            # answer they got showed it, if it was about this shipment
            asked = datetime.fromisoformat(conv_hash["last_inbound_at"])
            since = [datetime.fromisoformat(waiting["since"])] if waiting.get("since") else []
            if waiting.get("in_turn_at"):
                since.append(datetime.fromisoformat(waiting["in_turn_at"]) - ANSWER_SLACK)
            if since and asked >= min(since):
                dialog = await self.store.get_json(self.k.dialog(r.cid)) or {}
                answered = dialog.get("shipment") == f"{carrier}:{number}" or bool(
                    r.order and r.owner and dialog.get("order") == r.order.id)
        conversation = ConversationCtx(
            announced=frozenset(told) - set(waiting.get("keys", []) if waiting else ()),
            sent_today=sent,
            pending_due=datetime.fromisoformat(pending["due"]) if pending and pending.get("due")
            else None,
            releasing=releasing,
            agent_owned=(conv_hash.get("owner") or Owner.BOT.value) != Owner.BOT.value,
            in_turn=in_turn, answered_in_chat=answered)
        return customer, conversation, conv_hash, pending

    async def customer_ctx(self, r: Recipient, conv: Mapping[str, str] | None = None
                           ) -> CustomerCtx:
        """Locale, timezone and addresses of a recipient, with consent and reachability."""
        customer = await self.orders.customer(r.cid) or Customer(id=r.cid)
        if conv is None:
            conv = await self.store.hgetall(self.k.conversation(r.cid))
        locale, tz = await self._locale_and_zone(customer, r.order if r.owner else None, conv)
        addresses = [Address.parse(a) for a in customer.addresses if ":" in a]
        if r.owner and r.order is not None and r.order.customer_id == r.cid:
            addresses += order_addresses(r.order)
        consent = await self.consent.get(r.cid)
        reach = []
        for address in dict.fromkeys(addresses):
            configured = address.channel in self.outbox.channels
            unreachable = configured and await self.store.exists(
                self.k.address_state(address.channel, address.user, "unreachable"))
            opted_out = not consent.get(address.channel.value, {}).get("opted_in", True)
            reach.append(Reach(address, opted_out, unreachable, configured))
        last = None
        if conv.get("address"):
            try:
                last = Address.parse(conv["address"])
            except ValueError:
                last = None
        return CustomerCtx(r.cid, locale, tz, tuple(reach), last, r.muted)

    async def _locale_and_zone(self, customer: Customer, order: Order | None,
                               conv: Mapping[str, str]) -> tuple[str, str]:
        order_locale = order.locale if order else ""
        order_tz = order.timezone if order else ""
        if not order_locale or not order_tz:
            for o in await self.orders.for_customer(customer.id):
                order_locale = order_locale or o.locale
                order_tz = order_tz or o.timezone
        locale = choose_locale(LocaleInputs(explicit=customer.locale, order_locale=order_locale,
                                            phone=customer.phone,
                                            default=self.settings.default_locale))
        if not customer.locale and not order_locale and conv.get("detected_locale"):
            locale = conv["detected_locale"]
        tz = customer.timezone or order_tz or _phone_zone(customer.phone) \
            or self.settings.default_timezone
        return locale, tz

    # ------------------------------------------------------------------ ledger helpers
    @staticmethod
    def _base_entry(r: Recipient, change: Change, customer: CustomerCtx,
                    d: Decision) -> dict[str, Any]:
        return {"customer_id": r.cid, "order_id": r.order.id if r.order else None,
                "shipment": f"{change.carrier}:{change.tracking_number}",
                "kinds": [change.kind.value], "keys": [change.key],
                "occurred_at": change.occurred_at.isoformat(),
                "template": f"notifications/{change.kind.value}", "locale": customer.locale,
                "channel": d.channel.channel.value if d.channel else None}

    async def _log_suppressed(self, lkey: str, r: Recipient, change: Change, d: Decision,
                              customer: CustomerCtx) -> None:
        await self.ledger.add(lkey, {**self._base_entry(r, change, customer, d),
                                     "decision": "suppressed", "reason": d.reason}, self.clock())

    async def _log_deferred(self, lkey: str, r: Recipient, change: Change, d: Decision,
                            customer: CustomerCtx) -> str:
        return await self.ledger.add(lkey, {
            **self._base_entry(r, change, customer, d), "decision": "deferred",
            "reason": d.reason, "until": d.until.isoformat() if d.until else None,
            "status": "waiting"}, self.clock())

    # ------------------------------------------------------------------ sending
    async def _send(self, batch: Batch, customer: CustomerCtx, lkey: str, *, reason: str,
                    fallback_from: str = "", tried: Sequence[str] = (), idem: str = "",
                    conv_hash: Mapping[str, str] | None = None,
                    enrich: bool = True) -> str | None:
        """Render the batch for the best channel, enqueue it, log it; return the ledger id."""
        now = self.clock()
        head = headline(batch.changes)
        skipped: list[str] = []
        address = None
        window = False
        for candidate in choose_channels(customer, skip=[Address.parse(t) for t in tried]):
            if candidate.channel is ChannelName.WHATSAPP:
                window = await self._window_open(candidate, now, conv_hash)
                key = f"{head.kind.value}:{customer.locale}"
                if not window and key not in self.settings.whatsapp_templates:
                    skipped.append(f"whatsapp: window closed and no approved template {key}")
                    continue  # it would only fail with 63016: go straight to the next channel
            address = candidate
            break
        if address is None:
            if skipped and not fallback_from:
                await self.ledger.add(lkey, {
                    "customer_id": batch.cid, "order_id": batch.order_id or None,
                    "shipment": f"{batch.carrier}:{batch.number}", "decision": "suppressed",
                    "reason": "no_usable_channel", "skipped": skipped,
                    "kinds": [c.kind.value for c in batch.changes],
                    "keys": [c.key for c in batch.changes], "locale": customer.locale}, now)
            return None
        ship = await self.shipment_ctx(head, now, customer.timezone, enrich=enrich)
        hand = bool(self.settings.handoff_on_trouble and any(trouble(c) for c in batch.changes))
        ctx = self._template_ctx(batch, head, ship, hand)
        text, buttons, choices = self.render(head.kind, address.channel, customer.locale,
                                             customer.timezone, ctx)
        idem = idem or "n:" + hashlib.sha1(  # noqa: S324 - an id, not a secret
            "|".join([batch.cid, batch.carrier, batch.number,
                      *sorted(c.key for c in batch.changes)]).encode()).hexdigest()[:24]
        content: dict[str, Any] = {"silent": batch.silent}
        whatsapp = ""
        if address.channel is ChannelName.WHATSAPP:
            content["variables"] = self.variables(head.kind, customer.locale, customer.timezone, ctx)
            whatsapp = "session" if window else "template"
            content["window"] = whatsapp
        spec = {"cid": batch.cid, "carrier": batch.carrier, "number": batch.number,
                "order_id": batch.order_id, "show_order": batch.show_order,
                "changes": [change_to_dict(c) for c in batch.changes], "silent": batch.silent,
                "urgent": batch.urgent, "tried": [*tried, str(address)], "idem": idem}
        eid = await self.ledger.add(lkey, {
            "customer_id": batch.cid, "order_id": batch.order_id or None,
            "shipment": f"{batch.carrier}:{batch.number}",
            "decision": "fallback" if fallback_from else "sent", "reason": reason,
            "kinds": [c.kind.value for c in batch.changes], "keys": [c.key for c in batch.changes],
            "headline": head.kind.value, "urgent": batch.urgent, "silent": batch.silent,
            "template": f"{'sms/' if address.channel is ChannelName.SMS else ''}"
                        f"notifications/{head.kind.value}",
            "locale": customer.locale, "channel": address.channel.value,
            "address": f"{address.channel}:{mask(address.user)}", "whatsapp": whatsapp or None,
            "whatsapp_template": f"{head.kind.value}:{customer.locale}"
            if whatsapp == "template" else None, "idem": idem, "status": "queued", "receipt": None,
            "error": None, "fallback_from": fallback_from or None,
            "released_from": batch.released or None, "handoff": hand,
            "skipped": skipped or None, "_spec": spec,
        }, now)
        content["notify"] = {"ledger": lkey, "entry": eid}
        message = OutboundMessage(
            idem=idem, address=address, text=text, buttons=buttons, customer_id=batch.cid,
            kind="notification", template=head.kind.value, locale=customer.locale,
            content=content)
        await self.outbox.enqueue(message)
        for rid in batch.released:
            await self.ledger.update(lkey, rid, lambda e, eid=eid: {**e, "status": "released",
                                                                    "sent_in": eid})
        if fallback_from:
            await self.ledger.update(lkey, fallback_from,
                                     lambda e, eid=eid: {**e, "fallback_to": eid})
        else:
            await self.store.count_in_window(self._budget_key(batch.cid, batch.carrier,
                                                              batch.number), BUDGET_WINDOW)
        if self.history is not None:
            await self.history.add(batch.cid, direction="outbound", sender="bot", text=text,
                                   channel=address.channel.value, kind="notification", ref=idem)
        await self._set_context(batch, choices)
        if hand:
            await self._escalate(batch, address)
        return eid

    async def shipment_ctx(self, head: Change, now: datetime, tz_name: str, *,
                           enrich: bool = True) -> dict[str, Any]:
        """The headline change, completed from the stored snapshot (window, pickup date…).

        Tracking calls its listeners before it stores the new snapshot, so while the news is
        fresh the stored one is the previous (`enrich=False` skips reading it); for released
        and fallback messages it shows the news."""
        snap = await self._snapshot(head.carrier, head.tracking_number) if enrich else None
        same = snap is not None and snap.status is head.status
        eta = head.eta or (snap.eta if same and snap else None)
        eta_end = getattr(head, "eta_end", None) or (
            snap.eta_end if snap and snap.eta and eta and snap.eta == eta else None)
        tz = zone(tz_name)
        window = bool(eta and eta_end and eta.astimezone(tz).date() == eta_end.astimezone(tz).date()
                      and head.kind is ChangeKind.OUT_FOR_DELIVERY)
        pickup_until: date | None = getattr(head, "pickup_until", None) or (
            snap.pickup_until if snap and same else None)
        last = snap.last_event if snap else None
        return {
            "carrier": head.carrier, "number": head.tracking_number, "kind": head.kind.value,
            "status": head.status.value, "reason": head.reason.value,
            "customs": head.customs.value, "when": head.occurred_at,
            "where": head.location or (last.location if last and same else ""),
            "eta": eta, "eta_end": eta_end, "window": window, "previous_eta": head.previous_eta,
            "duties": head.duties or (snap.duties if same and snap else None),
            "payment_url": head.payment_url or (snap.payment_url if same and snap else ""),
            "pickup_location": head.pickup_location or (snap.pickup_location if same and snap
                                                        else ""),
            "pickup_until": pickup_until, "tracking_url": self._tracking_url(head.carrier,
                                                                             head.tracking_number),
        }

    async def _snapshot(self, carrier: str, number: str) -> TrackingSnapshot | None:
        doc = await self.store.get_json(self.k.shipment(carrier, number)) or {}
        return snapshot_from_dict(doc["snapshot"]) if doc.get("snapshot") else None

    def _tracking_url(self, carrier: str, number: str) -> str:
        if self.tracking is not None:
            return self.tracking.tracking_url(carrier, number)
        return ""

    def _template_ctx(self, batch: Batch, head: Change, ship: dict[str, Any],
                      hand: bool) -> dict[str, Any]:
        earlier = [{"kind": c.kind.value, "status": c.status.value, "customs": c.customs.value,
                    "when": c.occurred_at}
                   for c in sorted(batch.changes, key=lambda c: c.occurred_at)
                   if c is not head and c.key != head.key]
        return {"shop": self.settings.shop_name,
                "order_id": batch.order_id if batch.show_order else "", "s": ship,
                "earlier": earlier, "handoff": hand}

    def render(self, kind: ChangeKind, channel: ChannelName, locale: str, tz: str,
               ctx: Mapping[str, Any]) -> tuple[str, list[Button], dict[str, str]]:
        """Text, buttons and numbered choices (for channels without buttons) of a message."""
        text = self.i18n.render(f"notifications/{kind.value}", locale, channel.value, tz=tz, **ctx)
        limits = self._limits(channel)
        buttons = [Button(payload, self.label(key, locale)) for payload, key in BUTTONS.get(kind, ())]
        if channel is ChannelName.SMS:
            return text, [], {}  # SMS stays short: the customer can reply in words
        return self.i18n.offer(text, buttons, limits.max_buttons, locale, channel.value, tz)

    def label(self, key: str, locale: str) -> str:
        """A button label: shared ones from templates/_buttons.j2, ours from notifications/."""
        if key in OWN_LABELS:
            return self.i18n.render("notifications/_buttons", locale, key=key)
        return self.i18n.label(key, locale)

    def variables(self, kind: ChangeKind, locale: str, tz: str,
                  ctx: Mapping[str, Any]) -> dict[str, str]:
        """WhatsApp Content template variables (see templates/notifications/_variables.j2)."""
        raw = self.i18n.render("notifications/_variables", locale, tz=tz, kind=kind.value, **ctx)
        return {k: (v or "-") for k, v in json.loads(raw).items()}

    def _limits(self, channel: ChannelName) -> ChannelLimits:
        ch = self.outbox.channels.get(channel)
        return ch.limits if ch is not None else ChannelLimits()

    async def _window_open(self, address: Address, now: datetime,
                           conv: Mapping[str, str] | None) -> bool:
        """WhatsApp's 24-hour window: open when they wrote from this address < 24 h ago (the
        Twilio channel keeps the time; the conversation's last inbound is the fallback)."""
        raw = await self.store.get_str(self.k.address_state(address.channel, address.user,
                                                            "wa-window"))
        if not raw and conv and conv.get("address") == str(address):
            raw = conv.get("last_inbound_at")
        return bool(raw) and now - datetime.fromisoformat(raw) < timedelta(hours=24)  # type: ignore[arg-type]

    async def _set_context(self, batch: Batch, choices: Mapping[str, str]) -> None:
        """A reply after this message is about this shipment (and order). No turn lock: a turn
        running right now saves its own dialog at its end, and that context wins."""
        key = self.k.dialog(batch.cid)
        dialog = await self.store.get_json(key) or {}
        dialog["shipment"] = f"{batch.carrier}:{batch.number}"
        if batch.order_id and batch.show_order:
            dialog["order"] = batch.order_id
        dialog.pop("awaiting", None)
        if choices:
            dialog["choices"] = dict(choices)
        else:
            dialog.pop("choices", None)
        await self.store.set_json(key, dialog, ttl=self.settings.conversation_ttl)

    async def _escalate(self, batch: Batch, address: Address) -> None:
        """Open a handoff with the shipment attached (HANDOFF_ON_TROUBLE)."""
        reason = next(t for t in (trouble(c) for c in batch.changes) if t)
        esc = await self.handoff.escalate(batch.cid, reason, address.channel.value)
        if esc.escalated:
            doc = await self.store.get_json(self.k.handoff(batch.cid)) or {}
            doc.update(shipment=f"{batch.carrier}:{batch.number}", order=batch.order_id or None)
            await self.store.set_json(self.k.handoff(batch.cid), doc)

    # ------------------------------------------------------------------ outcomes
    async def on_outcome(self, message: OutboundMessage, receipt: Receipt | None,
                         error: SendError | None) -> None:
        """Outbox hook: record the receipt or the failure; fall back when it failed for good."""
        if message.kind != "notification":
            return
        meta = message.content.get("notify") or {}
        lkey, eid = meta.get("ledger"), meta.get("entry")
        if not lkey or not eid:
            return
        at = self.clock().isoformat()
        if receipt is not None:
            await self.ledger.link("p", receipt.provider_id, lkey, eid)
            await self.ledger.update(lkey, eid, lambda e: _with_receipt(
                e, receipt.provider_id, receipt.status or "sent", "", at))
            return
        if error is None:
            return
        kind = ("opted_out" if error.opted_out else "unreachable" if error.unreachable
                else "needs_template" if error.needs_template
                else "permanent" if error.permanent else "retries_exhausted")
        await self.ledger.update(lkey, eid, lambda e: {
            **e, "status": "failed",
            "error": {"kind": kind, "code": error.code, "message": str(error)[:200], "at": at}})
        await self._fallback(lkey, eid)

    async def on_receipt(self, provider_id: str, status: str, error_code: str = "") -> None:
        """A delivery status callback (bot/delivery.py): update the ledger; fall back when a
        notification could not be delivered."""
        found = await self.ledger.find("p", provider_id)
        if found is None:
            return
        lkey, eid = found
        at = self.clock().isoformat()
        entry = await self.ledger.update(lkey, eid, lambda e: _with_receipt(
            e, provider_id, status, error_code, at))
        if entry is not None and status in FAILED:
            await self._fallback(lkey, eid)

    async def on_delivery(self, update: Any) -> None:
        """`bot.delivery.Delivery` listener (DeliveryUpdate): same as on_receipt."""
        if getattr(update, "kind", "notification") not in ("notification", ""):
            return
        if update.provider_id:
            await self.on_receipt(update.provider_id, update.status, update.error_code)

    async def _fallback(self, lkey: str, eid: str) -> None:
        """Send the same news on the next opted-in channel, rendered for that channel (once)."""
        entry = await self.ledger.get(lkey, eid)
        if not entry or not entry.get("_spec"):
            return
        if not await self.store.first_time(self.k.shared(f"nf:{entry['idem']}", "fallback"),
                                           LINK_TTL):
            return  # the outcome hook and a failed receipt both report one failure
        spec = entry["_spec"]
        cid = spec["cid"]
        order = await self.orders.get(spec["order_id"]) if spec.get("order_id") else None
        r = Recipient(cid, order, bool(spec.get("show_order")))
        customer = await self.customer_ctx(r)
        batch = Batch(cid, spec["carrier"], spec["number"], spec.get("order_id", ""),
                      bool(spec.get("show_order")),
                      [change_from_dict(c) for c in spec["changes"]],
                      silent=bool(spec.get("silent")), urgent=bool(spec.get("urgent")))
        tried = list(spec.get("tried", []))
        base = spec["idem"].split(":fb", 1)[0]
        new = None
        if choose_channels(customer, skip=[Address.parse(t) for t in tried]):
            new = await self._send(batch, customer, lkey, reason="fallback",
                                   fallback_from=eid, tried=tried,
                                   idem=f"{base}:fb{len(tried)}")
        if new is None:
            await self.ledger.update(lkey, eid, lambda e: {**e, "fallback_to": "none_available"})

    # ------------------------------------------------------------------ deferrals
    async def release_due(self, limit: int = 100) -> int:
        """Release deferred batches whose time has come; return how many were handled."""
        now = self.clock()
        members = await self.store.claim_due(self._due_key(), now.timestamp(), RELEASE_LEASE,
                                             limit)
        for member in members:
            cid, carrier, number = member.split("\t")
            try:
                async with self._locked(self._lock_key(cid, carrier, number)):
                    await self._release(cid, carrier, number, member)
            except Exception as exc:
                if is_unavailable(exc):
                    raise
                log.exception("releasing notifications for %s %s failed", carrier, number)
        return len(members)

    async def _release(self, cid: str, carrier: str, number: str, member: str) -> None:
        now = self.clock()
        pending_key = self._pending_key(cid, carrier, number)
        pending = await self.store.get_json(pending_key)
        if not pending:
            await self.store.zrem(self._due_key(), member)
            return
        due = datetime.fromisoformat(pending["due"])
        if due > now:  # moved later meanwhile
            await self.store.zadd(self._due_key(), {member: due.timestamp()})
            return
        order = await self.orders.get(pending["order_id"]) if pending.get("order_id") else None
        r = Recipient(cid, order, bool(pending.get("owner")))
        r.muted = cid in await self.store.smembers(self.k.shipment_muted(carrier, number))
        customer, conv, conv_hash, _ = await self.contexts(r, carrier, number, now,
                                                           waiting=pending)
        lkey = pending["ledger"]
        changes = [change_from_dict(c) for c in pending["changes"]]
        ids = dict(zip(pending["keys"], pending["entries"], strict=False))
        send: list[tuple[Change, Decision]] = []
        keep: list[tuple[Change, Decision]] = []
        told: dict[str, str] = {}
        for change in changes:
            d = decide(change, customer, conv, now, self.settings)
            if d.action is Action.SUPPRESS:
                told[change.key] = f"suppressed:{d.reason}"
                await self.ledger.update(lkey, ids.get(change.key, ""), lambda e, d=d: {
                    **e, "status": "dropped", "dropped_because": d.reason})
            elif d.action is Action.DEFER:
                keep.append((change, d))
            else:
                send.append((change, d))
                told[change.key] = "sent"
            conv = replace(conv, announced=conv.announced | {change.key})
        if send:
            batch = Batch(cid, carrier, number, pending.get("order_id", ""), r.owner,
                          [c for c, _ in send], silent=any(d.silent for _, d in send),
                          urgent=any(d.urgent for _, d in send),
                          released=[ids[c.key] for c, _ in send if c.key in ids])
            await self._send(batch, customer, lkey, reason=send[0][1].reason, conv_hash=conv_hash)
        if keep:
            due = max(d.until for _, d in keep if d.until)  # type: ignore[type-var]
            pending["changes"] = [change_to_dict(c) for c, _ in keep]
            pending["keys"] = [c.key for c, _ in keep]
            pending["entries"] = [ids.get(c.key, "") for c, _ in keep]
            pending["due"] = due.isoformat()
            pending.pop("in_turn_at", None)
            await self.store.set_json(pending_key, pending, ttl=PENDING_TTL)
            await self.store.zadd(self._due_key(), {member: due.timestamp()})
        else:
            await self.store.delete(pending_key)
            await self.store.zrem(self._due_key(), member)
        if told:
            await self.store.hset(self._told_key(cid, carrier, number), told, ttl=TOLD_TTL)

    async def next_due(self) -> datetime | None:
        """When the earliest deferred notification is due (None: nothing waits)."""
        first = await self.store.zrange_with_scores(self._due_key(), 0, 0)
        return datetime.fromtimestamp(first[0][1], UTC) if first else None

    async def run(self, stop: asyncio.Event, *, interval: float = 5.0) -> None:
        """Worker loop: release due deferrals until `stop`; Redis hiccups are retried."""
        await keep_running("notifier", self.release_due, stop, idle=interval)

    # ------------------------------------------------------------------ reading the ledger
    async def ledger_for_order(self, order_id: str) -> list[dict[str, Any]]:
        """Every notification decision about an order's shipments, oldest first."""
        return await self.ledger.entries(self.ledger.key(order_id))

    async def ledger_for_shipment(self, carrier: str, number: str) -> list[dict[str, Any]]:
        """Decisions about a shipment no order lists (tracked by number only)."""
        return await self.ledger.entries(self.ledger.key("", carrier, number))


def _with_receipt(entry: dict[str, Any], provider_id: str, status: str, error_code: str,
                  at: str) -> dict[str, Any] | None:
    """The entry with a receipt status, only if it moves the status up (callbacks reorder)."""
    current = (entry.get("receipt") or {}).get("status", "")
    if current and RECEIPT_RANK.get(status, 0) <= RECEIPT_RANK.get(current, 0) \
            and (entry.get("receipt") or {}).get("provider_id") == provider_id:
        return None
    receipt = {"provider_id": provider_id, "status": status, "at": at}
    if error_code:
        receipt["error_code"] = error_code
    new = {**entry, "receipt": receipt}
    new["status"] = "failed" if status in FAILED else status
    if status in ("delivered", "read"):
        new.pop("_spec", None)  # no fallback after delivery: drop what it would re-render
    return new


def _phone_zone(phone: str) -> str:
    if not phone:
        return ""
    try:
        zones = phone_tz.time_zones_for_number(phonenumbers.parse(phone))
    except phonenumbers.NumberParseException:
        return ""
    return zones[0] if len(zones) == 1 and zones[0] != "Etc/Unknown" else ""


# ====================================================================== API and CLI handlers
async def http_order_notifications(request: Any) -> Any:
    """GET /api/v1/orders/{order_id}/notifications (shop API key): the order's ledger."""
    from aiohttp import web

    from bot.web import SERVICES, problem, require_shop

    require_shop(request)
    svc = request.app[SERVICES]
    order_id = request.match_info["order_id"]
    if await svc.orders.get(order_id) is None:
        return problem(404, "order not found")
    entries = await Ledger(svc.store, svc.settings.history_ttl).entries(
        svc.store.keys.order_state(order_id, "notifications"))
    return web.json_response({"order_id": order_id, "notifications": entries})


def format_ledger(entries: Sequence[Mapping[str, Any]]) -> str:
    """The ledger as a table for the terminal."""
    lines = []
    for e in entries:
        what = e.get("decision", "")
        detail = {
            "suppressed": e.get("reason", ""),
            "deferred": f"until {e.get('until')} ({e.get('reason')}) -> {e.get('status')}",
        }.get(what, f"{e.get('status')} via {e.get('channel')} ({e.get('reason')})")
        receipt = e.get("receipt") or {}
        error = e.get("error") or {}
        extra = []
        if e.get("idem"):
            extra.append(f"idem={e['idem']}")
        if receipt:
            extra.append(f"receipt={receipt.get('provider_id')}:{receipt.get('status')}")
        if error:
            extra.append(f"error={error.get('kind')}:{error.get('code')}")
        if e.get("fallback_to"):
            extra.append(f"fallback_to={e['fallback_to']}")
        lines.append(f"{e.get('at', '')[:19]}  {e.get('shipment', '')}  "
                     f"{','.join(e.get('kinds', []))}  {what}: {detail}  "
                     f"[{e.get('template', '')} {e.get('locale', '')}] {' '.join(extra)}".rstrip())
    return "\n".join(lines)


async def cli_ledger(settings: Settings, order_id: str, *, as_json: bool = False,
                     out: TextIO | None = None) -> int:
    """`shipmate ledger ORDER_ID [--json]`: print an order's notification ledger."""
    out = out or sys.stdout
    store = Store.connect(settings.redis_url, settings.key_prefix)
    try:
        await store.ping()
        if await store.get_json(store.keys.order(order_id)) is None:
            print(f"shipmate: no order {order_id}", file=sys.stderr)
            return 1
        entries = await Ledger(store, settings.history_ttl).entries(
            store.keys.order_state(order_id, "notifications"))
    finally:
        await store.close()
    if as_json:
        print(json.dumps(entries, ensure_ascii=False, indent=2), file=out)
    elif entries:
        print(format_ledger(entries), file=out)
    else:
        print(f"no notifications recorded for order {order_id}", file=out)
    return 0
