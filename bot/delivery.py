"""Delivery receipts: the monotonic state of every outbound message, unreachable addresses,
provider-reported opt-outs, and listeners (the notification ledger) told when a state moves.

Provider callbacks arrive out of order and more than once; a state only ever moves up the
rank (queued < sending < sent < delivered < read), and undelivered/failed are terminal.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.channels import Receipt, SendError
from bot.consent import Consent
from bot.models import Address, OutboundMessage
from bot.store import Store

log = logging.getLogger(__name__)

#: Provider statuses by rank; a callback with a rank not above the stored one changes nothing.
STATUS_RANK = {
    "accepted": 0, "scheduled": 0, "queued": 1, "sending": 2, "sent": 3, "delivered": 4,
    "partially_delivered": 4, "read": 5, "undelivered": 9, "failed": 9, "canceled": 9,
}  # fmt: skip
#: Nothing comes after these.
TERMINAL = frozenset({"undelivered", "failed", "canceled"})
RECEIPT_TTL = 14 * 86400
UNREACHABLE_TTL = 30 * 86400  # try the address again after a month (numbers move to WhatsApp)


def mask(user: str) -> str:
    """A phone number or chat id fit for logs: '+385911234567' -> '+385******67'."""
    if len(user) <= 6:
        return "*" * len(user)
    return user[:4] + "*" * (len(user) - 6) + user[-2:]


@dataclass(frozen=True, slots=True)
class DeliveryUpdate:
    """An outbound message's state moved (or its send finished): what listeners receive."""

    provider_id: str  # '' when the provider refused the message outright
    status: str
    error_code: str = ""
    idem: str = ""
    address: str = ""  # "channel:user"
    customer_id: str = ""
    kind: str = ""  # reply | agent | notification
    template: str = ""

    @property
    def final(self) -> bool:
        """Whether no further update is expected (delivered counts: 'read' is optional)."""
        return self.status in TERMINAL or self.status in ("delivered", "read")


Listener = Callable[[DeliveryUpdate], Awaitable[None]]


class Delivery:
    """Receipts per provider message id, unreachable marks per address, and their listeners."""

    def __init__(self, store: Store, *, consent: Consent | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.k = store.keys
        self.consent = consent or Consent(store)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.listeners: list[Listener] = []

    # ---- receipts
    async def record_sent(self, message: OutboundMessage, receipt: Receipt | None,
                          error: SendError | None = None) -> None:
        """Outbox outcome hook: remember which message a provider id belongs to, tell listeners."""
        if receipt is None:
            await self._tell(DeliveryUpdate(
                "", "failed", error.code if error else "", message.idem, str(message.address),
                message.customer_id, message.kind, message.template))
            return
        key = self.k.receipt(receipt.provider_id)
        meta = {"idem": message.idem, "address": str(message.address),
                "customer_id": message.customer_id, "kind": message.kind,
                "template": message.template}
        for extra in ("segments", "encoding"):  # SMS receipts carry their billing size
            if getattr(receipt, extra, None):
                meta[extra] = str(getattr(receipt, extra))
        await self.store.hset(key, meta, ttl=RECEIPT_TTL)
        await self.store.set_if_higher(key, STATUS_RANK.get(receipt.status, 0),
                                       {"status": receipt.status,
                                        "updated_at": self.clock().isoformat()}, ttl=RECEIPT_TTL)
        state = await self.store.hgetall(key)  # a callback may already have moved it further
        await self._tell(self._update(receipt.provider_id, state))

    async def record_status(self, provider_id: str, status: str, error_code: str = "", *,
                            address: Address | None = None) -> bool:
        """Apply a status callback monotonically; True when the stored state moved.

        Error codes that mean the address cannot receive (not on WhatsApp, landline, invalid
        number) mark it unreachable; codes that mean the customer blocked us record an opt-out.
        """
        rank = STATUS_RANK.get(status)
        if rank is None:
            log.info("ignoring unknown delivery status %r for %s", status, provider_id)
            return False
        key = self.k.receipt(provider_id)
        moved = await self.store.set_if_higher(
            key, rank, {"status": status, "error_code": error_code,
                        "updated_at": self.clock().isoformat()}, ttl=RECEIPT_TTL)
        if not moved:
            return False
        state = await self.store.hgetall(key)
        if address is None and state.get("address"):
            address = Address.parse(state["address"])
        if error_code and address is not None:
            await self.apply_error(address, error_code, customer_id=state.get("customer_id", ""))
        await self._tell(self._update(provider_id, state))
        return True

    async def state(self, provider_id: str) -> dict[str, str]:
        """The stored receipt: status, error_code, idem, address, customer_id, segments…"""
        return await self.store.hgetall(self.k.receipt(provider_id))

    # ---- addresses
    async def apply_error(self, address: Address, code: str, *, customer_id: str = "") -> None:
        """Record what a provider error code says about an address (see `classify_code`)."""
        meaning = classify_code(code)
        if meaning == "unreachable":
            await self.mark_unreachable(address, code)
        elif meaning == "opted_out":
            await self.record_opt_out(address, code, customer_id=customer_id)

    async def mark_unreachable(self, address: Address, code: str) -> None:
        """This address cannot receive on its channel (fall back to another one)."""
        await self.store.set_json(
            self.k.address_state(address.channel, address.user, "unreachable"),
            {"code": code, "at": self.clock().isoformat()}, ttl=UNREACHABLE_TTL)
        log.info("address %s:%s marked unreachable (%s)", address.channel, mask(address.user), code)

    async def is_unreachable(self, address: Address) -> bool:
        """Whether a provider told us this address cannot receive on its channel."""
        return await self.store.exists(
            self.k.address_state(address.channel, address.user, "unreachable"))

    async def clear_unreachable(self, address: Address) -> None:
        """The customer wrote from this address, so it can receive again."""
        await self.store.delete(self.k.address_state(address.channel, address.user, "unreachable"))

    async def record_opt_out(self, address: Address, code: str, *, customer_id: str = "") -> None:
        """The provider refused because the customer opted out: mirror it in consent.

        An opt-out we already know of (e.g. from the STOP keyword) keeps its original source.
        """
        cid = customer_id or await self.store.get_str(self.k.address(address.channel, address.user))
        if not cid:
            log.info("opt-out (%s) for unknown address %s:%s", code, address.channel,
                     mask(address.user))
            return
        if await self.consent.opted_out(cid, address.channel.value):
            return
        await self.consent.set(cid, address.channel.value, False, "provider_error", self.clock())
        log.info("customer %s opted out on %s (provider error %s)", cid, address.channel, code)

    # ---- listeners
    def _update(self, provider_id: str, state: dict[str, str]) -> DeliveryUpdate:
        return DeliveryUpdate(
            provider_id, state.get("status", ""), state.get("error_code", ""),
            state.get("idem", ""), state.get("address", ""), state.get("customer_id", ""),
            state.get("kind", ""), state.get("template", ""))

    async def _tell(self, update: DeliveryUpdate) -> None:
        for listener in self.listeners:
            try:
                await listener(update)
            except Exception:  # a broken listener must not lose the receipt for the others
                log.exception("delivery listener %r failed for %s", listener, update.provider_id)


#: Provider error codes by what they mean for the address (Twilio; see research/channels.md).
OPTED_OUT_CODES = frozenset({"21610", "63014"})
UNREACHABLE_CODES = frozenset({
    "21211",  # invalid 'To' number
    "21612",  # cannot route to this number from this sender
    "21614",  # not a mobile number (landline)
    "30005",  # unknown destination handset
    "30006",  # landline or unreachable carrier
    "63024",  # not a WhatsApp user
})


def classify_code(code: str) -> str:
    """'opted_out', 'unreachable' or '' for a provider error code."""
    if code in OPTED_OUT_CODES:
        return "opted_out"
    if code in UNREACHABLE_CODES:
        return "unreachable"
    return ""


def address_key(address: Address) -> str:
    """A log-safe form of an address."""
    return f"{address.channel}:{mask(address.user)}"

