"""Telegram through python-telegram-bot's `Bot`: webhook in, sendMessage out.

The Bot API base URL is configuration, so a sandbox or a local fake can stand behind it.
Everything Telegram-shaped (Update JSON, error classes, inline keyboards, the 4096 limit
counted in UTF-16 units, 64-byte callback data) stays in this module.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import unicodedata
import warnings
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from bot.channels import ChannelLimits, Receipt, SendError
from bot.config import Settings
from bot.consent import Consent
from bot.models import Address, ChannelName, Message, OutboundMessage
from bot.store import Store

log = logging.getLogger(__name__)
# PTB 22's RetryAfter reads its own deprecated int `retry_after` when constructed; we read
# the value as a timedelta or a number (see _retry_seconds), so the warning is noise here.
warnings.filterwarnings("ignore", message=r".*`retry_after` will be of type",
                        category=PTBDeprecationWarning)

WEBHOOK_PATH = "/webhooks/telegram"
WEBHOOK_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ("message", "callback_query")
MAX_TEXT = 4096  # UTF-16 code units, after entity parsing (we send plain text)
MAX_CALLBACK_DATA = 64  # bytes
CALLBACK_REF = "cb~"  # callback data that stands for a longer payload kept in Redis
CALLBACK_TTL = 30 * 86400
FALLBACK_PAYLOAD = "menu"  # a tapped button whose long payload expired shows the menu


# ---------------------------------------------------------------- pure translation

def message_from_update(update: Update, received_at: datetime) -> Message | None:
    """A customer Message from a Telegram Update; None for updates the bot does not answer.

    Text (or a caption) from a user becomes the text; a tapped inline button becomes the
    payload. The chat id is the address, `update_id` the provider id used for dedupe.
    """
    provider_id = f"u{update.update_id}"
    query = update.callback_query
    if query is not None:
        if query.from_user.is_bot or query.data is None:
            return None
        chat = query.message.chat.id if query.message is not None else query.from_user.id
        return Message(
            address=Address(ChannelName.TELEGRAM, str(chat)), text="", payload=query.data,
            provider_id=provider_id, received_at=received_at,
            locale_hint=query.from_user.language_code or "",
            profile_name=query.from_user.full_name,
        )
    msg = update.message
    if msg is None or msg.from_user is None or msg.from_user.is_bot:
        return None
    text = msg.text or msg.caption or ""
    if not text.strip():
        return None
    return Message(
        address=Address(ChannelName.TELEGRAM, str(msg.chat.id)), text=text,
        provider_id=provider_id, received_at=received_at,
        locale_hint=msg.from_user.language_code or "", profile_name=msg.from_user.full_name,
    )


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def _fits(text: str, limit: int) -> int:
    """How many code points of `text` fit in `limit` UTF-16 units."""
    used = 0
    for i, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > limit:
            return i
    return len(text)


def _joins_previous(ch: str) -> bool:
    """Characters that belong to the character before them (marks, ZWJ, selectors, skin tones)."""
    return (unicodedata.combining(ch) > 0 or ch in "\u200d\ufe0e\ufe0f"
            or 0x1F3FB <= ord(ch) <= 0x1F3FF or unicodedata.category(ch) == "Me")


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Split a long text at paragraph, then line, then word boundaries.

    Lengths are UTF-16 units (as Telegram counts) while cuts fall between code points, so a
    surrogate pair is never cut; a hard cut also keeps combining marks and emoji sequences whole.
    """
    parts: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        end = _fits(rest, limit)  # rest[:end] fits, rest[end] does not
        window = rest[:end]
        cut = -1
        for sep in ("\n\n", "\n", " "):  # a boundary in the second half wins
            at = window.rfind(sep)
            if at >= end // 2:
                cut = at
                break
        if cut < 0:
            cut = max(window.rfind("\n"), window.rfind(" "))
        head = rest[:cut].rstrip() if cut > 0 else ""
        if head:
            rest = rest[cut:]
            rest = rest[1:] if rest.startswith(" ") else rest.lstrip("\n")
        else:  # no boundary at all: cut hard, but not inside a grapheme cluster
            cut = end
            while cut > 1 and (_joins_previous(rest[cut]) or rest[cut - 1] == "\u200d"):
                cut -= 1
            head, rest = rest[:cut], rest[cut:]
        parts.append(head)
    if rest.strip() or not parts:
        parts.append(rest)
    return parts


def _chat_id(user: str) -> int | str:
    """Numeric chat ids as int; '@channelusername' as given."""
    return int(user) if user.lstrip("-").isdigit() else user


def _retry_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 moves retry_after from int to timedelta
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def make_bot(settings: Settings) -> Bot:
    """A Bot talking to `TELEGRAM_API_BASE_URL` (production, a sandbox or a local fake)."""
    base = settings.telegram_api_base_url.rstrip("/")
    return Bot(settings.telegram_bot_token, base_url=f"{base}/bot",
               base_file_url=f"{base}/file/bot",
               request=HTTPXRequest(connection_pool_size=64, read_timeout=10.0,
                                    write_timeout=10.0, connect_timeout=5.0, pool_timeout=5.0))


# ---------------------------------------------------------------- the channel

class TelegramChannel:
    """Telegram Bot API: verified webhook in, inline keyboards and split texts out."""

    name = ChannelName.TELEGRAM

    def __init__(self, settings: Settings, store: Store,
                 clock: Callable[[], datetime] | None = None, *, bot: Bot | None = None) -> None:
        self.settings = settings
        self.store = store
        self.k = store.keys
        self.clock = clock or (lambda: datetime.now(UTC))
        self.consent = Consent(store)
        self.limits = ChannelLimits(max_text=MAX_TEXT, max_buttons=8,
                                    per_second=settings.telegram_mps,
                                    per_chat_per_second=settings.telegram_per_chat_mps)
        self._bot = bot or make_bot(settings)
        self._ready = False
        self._init_lock = asyncio.Lock()

    async def bot(self) -> Bot:
        """The Bot, initialized once (getMe) on first use."""
        if not self._ready:
            async with self._init_lock:
                if not self._ready:
                    await self._bot.initialize()
                    self._ready = True
        return self._bot

    async def close(self) -> None:
        """Close the Bot's HTTP client."""
        if self._ready:
            await self._bot.shutdown()
            self._ready = False

    # ---- inbound
    def routes(self) -> list[web.RouteDef]:
        """POST /webhooks/telegram."""
        return [web.post(WEBHOOK_PATH, self.webhook)]

    async def webhook(self, request: web.Request) -> web.StreamResponse:
        """Verify the secret header, parse, answer callbacks, queue for the engine, 200."""
        from bot.web import SERVICES  # the web app carries the services (and the engine)

        secret = self.settings.telegram_webhook_secret
        given = request.headers.get(WEBHOOK_HEADER, "")
        if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
            return web.json_response({"error": "invalid secret token"}, status=403)
        try:
            data = json.loads(await request.read())
            if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
                raise ValueError("not a Telegram Update")
            update = Update.de_json(data, None)
        except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as exc:
            return web.json_response({"error": f"malformed update: {type(exc).__name__}"},
                                     status=400)
        try:
            message = message_from_update(update, self.clock())
        except (TypeError, AttributeError, ValueError) as exc:  # a well-formed JSON, odd shape
            return web.json_response({"error": f"malformed update: {type(exc).__name__}"},
                                     status=400)
        if message is None:
            return web.Response(status=200)
        if update.callback_query is not None:
            await self._answer(update.callback_query.id)
            message.payload = await self._resolve(message.address.user, message.payload)
        await request.app[SERVICES].engine.receive(message)
        await self._unblocked(message.address)
        return web.Response(status=200)

    async def _answer(self, query_id: str) -> None:
        """Stop the client's spinner; a failure here must not lose the tap."""
        try:
            await (await self.bot()).answer_callback_query(query_id)
        except TelegramError as exc:  # e.g. a webhook retry of a query already answered
            log.info("answerCallbackQuery failed: %s", exc)

    async def _unblocked(self, address: Address) -> None:
        """A chat that writes to us again has unblocked the bot: undo a 'blocked' opt-out."""
        cid = await self.store.get_str(self.k.address(address.channel, address.user))
        if not cid:
            return
        record = (await self.consent.get(cid)).get(self.name.value)
        if record and not record["opted_in"] and record["source"] == "blocked":
            await self.consent.set(cid, self.name.value, True, "unblocked", self.clock())

    # ---- callback data (1-64 bytes)
    def _ref_key(self, user: str, digest: str) -> str:
        return self.k.address_state(self.name.value, user, f"cb:{digest}")

    async def _callback_data(self, user: str, payload: str) -> str:
        """`payload` itself when it fits in 64 bytes, else a short reference kept in Redis."""
        if 1 <= len(payload.encode()) <= MAX_CALLBACK_DATA and not payload.startswith(CALLBACK_REF):
            return payload
        digest = hashlib.sha256(payload.encode()).hexdigest()[:32]
        await self.store.set_str(self._ref_key(user, digest), payload, ttl=CALLBACK_TTL)
        return CALLBACK_REF + digest

    async def _resolve(self, user: str, data: str) -> str:
        if not data.startswith(CALLBACK_REF):
            return data
        found = await self.store.get_str(self._ref_key(user, data[len(CALLBACK_REF):]))
        return found or FALLBACK_PAYLOAD

    # ---- outbound
    def split(self, message: OutboundMessage) -> list[OutboundMessage]:
        """One message per 4096-unit chunk; buttons ride on the last one."""
        texts = split_text(message.text, self.limits.max_text)
        if len(texts) == 1:
            return [message]
        last = len(texts) - 1
        return [replace(message, idem=f"{message.idem}#{i + 1}", text=t,
                        buttons=list(message.buttons) if i == last else [])
                for i, t in enumerate(texts)]

    async def send(self, message: OutboundMessage) -> Receipt:
        """Deliver a message (several if it is too long) or raise SendError."""
        receipt: Receipt | None = None
        for part in self.split(message):
            receipt = await self._send_one(part)
        assert receipt is not None
        return receipt

    async def _send_one(self, message: OutboundMessage) -> Receipt:
        chat = _chat_id(message.address.user)
        markup = None
        if message.buttons:
            markup = InlineKeyboardMarkup([
                [InlineKeyboardButton(b.label, callback_data=await self._callback_data(
                    message.address.user, b.payload))]
                for b in message.buttons[: self.limits.max_buttons]])
        try:
            bot = await self.bot()
            # urgent news in the customer's quiet hours arrives without a sound
            sent = await bot.send_message(chat_id=chat, text=message.text, reply_markup=markup,
                                          disable_notification=bool(message.content.get("silent")))
        except RetryAfter as exc:
            seconds = _retry_seconds(exc)
            raise SendError(f"Telegram flood control: retry after {seconds:g} s",
                            retry_after=seconds, code="429") from exc
        except Forbidden as exc:  # bot blocked, user deactivated, kicked from the group
            await self._blocked(message)
            raise SendError(exc.message, opted_out=True, code="403") from exc
        except ChatMigrated as exc:
            raise SendError(f"group moved to chat {exc.new_chat_id}", permanent=True,
                            code="chat_migrated") from exc
        except InvalidToken as exc:  # configuration: retry (and alert) rather than drop
            raise SendError("Telegram rejected the bot token", code="401") from exc
        except BadRequest as exc:  # before NetworkError: PTB derives it from NetworkError
            raise SendError(exc.message, permanent=True, code="400") from exc
        except NetworkError as exc:  # TimedOut included
            raise SendError(f"Telegram unreachable: {exc.message}", code="network") from exc
        except TelegramError as exc:
            raise SendError(exc.message, code="telegram") from exc
        return Receipt(provider_id=f"{chat}:{sent.message_id}", status="sent")

    async def _blocked(self, message: OutboundMessage) -> None:
        """Record that this customer cannot be reached here until they write again."""
        cid = message.customer_id or await self.store.get_str(
            self.k.address(self.name.value, message.address.user)) or ""
        if cid:
            await self.consent.set(cid, self.name.value, False, "blocked", self.clock())


def build(settings: Settings, store: Store, session: aiohttp.ClientSession,
          clock: Callable[[], datetime]) -> dict[ChannelName, TelegramChannel]:
    """The Telegram channel (PTB brings its own HTTP client, so `session` is not used)."""
    return {ChannelName.TELEGRAM: TelegramChannel(settings, store, clock)}


async def set_webhook(settings: Settings) -> dict[str, Any]:
    """Register `{PUBLIC_BASE_URL}/webhooks/telegram` with the secret; return getWebhookInfo."""
    if not settings.telegram_bot_token or not settings.telegram_webhook_secret:
        raise ValueError("TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET must be set")
    async with make_bot(settings) as bot:
        await bot.set_webhook(url=f"{settings.public_base_url.rstrip('/')}{WEBHOOK_PATH}",
                              secret_token=settings.telegram_webhook_secret,
                              allowed_updates=list(ALLOWED_UPDATES))
        info = await bot.get_webhook_info()
    return info.to_dict()
