"""Channel adapters: parse inbound wire formats into Messages, send OutboundMessages.

Each channel declares its limits as data; the engine and sender read them, never the
channel's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.models import ChannelName, OutboundMessage


@dataclass(frozen=True, slots=True)
class ChannelLimits:
    """What a channel can carry."""

    max_text: int = 4096
    max_buttons: int = 0  # 0: no buttons, offer numbered choices in text
    messaging_window_hours: int = 0  # WhatsApp: 24
    per_second: float = 30.0  # sends per second for this sender (shared by all processes)
    per_chat_per_second: float = 0.0  # 0 = no per-recipient limit
    provider_answers_stop: bool = False  # the provider replies to STOP itself (Twilio SMS)


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the provider said when it accepted a message."""

    provider_id: str
    status: str = "sent"


class SendError(Exception):
    """A send failed. `permanent` ones are never retried; `retry_after` is honoured exactly.

    `unreachable` means this address cannot receive on this channel (fall back elsewhere);
    `opted_out` means the customer stopped us or blocked the bot.
    """

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None,
                 code: str = "", opted_out: bool = False, unreachable: bool = False,
                 needs_template: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent or opted_out or unreachable
        self.retry_after = retry_after
        self.code = code
        self.opted_out = opted_out
        self.unreachable = unreachable
        self.needs_template = needs_template


class Channel(Protocol):
    """A messaging channel.

    Optional members a channel may add (looked up with getattr): `routes()` -> aiohttp route
    definitions for its webhooks; `split(message)` -> the parts one message is sent as (SMS
    segments, Telegram's 4096 limit); `lookup_sent(message, since)` -> a receipt if the provider
    already accepted it (lets the outbox avoid a duplicate after a crash mid-send);
    `close()` -> release its client at shutdown.
    """

    name: ChannelName
    limits: ChannelLimits

    async def send(self, message: OutboundMessage) -> Receipt:
        """Deliver one message or raise SendError."""
        ...
