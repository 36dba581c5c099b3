"""The local web chat channel: the demo page and end-to-end tests talk to the bot through it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from bot.channels import ChannelLimits, Receipt
from bot.models import Address, ChannelName, Message, OutboundMessage
from bot.store import Store

INBOX_TTL = 7 * 86400


class WebchatChannel:
    """Sends by appending to a session inbox in Redis that the page polls."""

    name = ChannelName.WEBCHAT
    limits = ChannelLimits(max_text=4096, max_buttons=6, per_second=100.0)

    def __init__(self, store: Store, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.k = store.keys
        self.clock = clock or (lambda: datetime.now(UTC))

    async def open_session(self, phone: str = "") -> str:
        """A new chat session; `phone` (demo impersonation only) is recorded with it."""
        session = uuid.uuid4().hex
        await self.store.set_json(self.k.webchat_session(session), {"phone": phone}, ttl=INBOX_TTL)
        return session

    async def session(self, session: str) -> dict | None:
        """Session data, or None when unknown/expired."""
        return await self.store.get_json(self.k.webchat_session(session))

    def parse(self, session: str, text: str, payload: str = "", *, message_id: str = "",
              locale_hint: str = "") -> Message:
        """A web chat post as a Message."""
        return Message(
            address=Address(ChannelName.WEBCHAT, session), text=text,
            provider_id=message_id or uuid.uuid4().hex, received_at=self.clock(),
            payload=payload, locale_hint=locale_hint,
        )

    async def send(self, message: OutboundMessage) -> Receipt:
        """Append to the session's inbox."""
        provider_id = f"wc_{uuid.uuid4().hex[:12]}"
        await self.store.rpush_json(self.k.webchat_inbox(message.address.user), {
            "id": provider_id, "idem": message.idem, "kind": message.kind, "text": message.text,
            "buttons": [{"payload": b.payload, "label": b.label} for b in message.buttons],
            "at": self.clock().isoformat(),
        }, ttl=INBOX_TTL)
        return Receipt(provider_id, "delivered")

    async def inbox(self, session: str, after: int = 0) -> list[dict]:
        """Messages for a session from index `after` on."""
        return await self.store.lrange_json(self.k.webchat_inbox(session), after, -1)
