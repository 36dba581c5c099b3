"""Telegram end to end: the fake Bot API on localhost, the real web app, engine and outbox.

The fake checks every call against the Bot API tables and enforces the real flood limits
(1 message per second per chat, 30 per second per bot) on the wall clock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from telegram import Update

from bot.channels.telegram import (
    CALLBACK_REF,
    TelegramChannel,
    message_from_update,
    set_webhook,
    split_text,
    utf16_len,
)
from bot.config import Settings
from bot.i18n import I18n
from bot.models import Address, Button, ChannelName, OutboundMessage
from bot.orders import validate_order
from bot.services import Services
from bot.store import Store
from bot.web import create_app
from carriers.demo import DemoCarrier
from tests.conftest import make_settings
from tests.driver import Clock
from tests.factories import order_payload
from tests.fakes.telegram import FakeTelegram

SECRET = "whsec_0123456789abcdef-XYZ"
PUBLIC = "https://shipmate.example.com"
HOOK = PUBLIC + "/webhooks/telegram"
# PTB 22's RetryAfter reads its own deprecated int `retry_after` while being constructed
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*`retry_after` will be of type:telegram.warnings.PTBDeprecationWarning")


def wall_clock() -> datetime:
    return datetime.now(UTC)


class FloatClock:
    """Epoch seconds that move only when told to (the outbox's retry clock)."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class Env:
    services: Services
    fake: FakeTelegram
    channel: TelegramChannel
    settings: Settings
    app_url: str
    webhook_info: dict[str, Any]

    def sent_to(self, chat: int) -> list[dict[str, Any]]:
        return [p for p in self.fake.sent if p["chat_id"] == chat]

    def calls_to(self, chat: int, method: str = "sendMessage") -> list[dict[str, Any]]:
        return [c for c in self.fake.calls
                if c["method"] == method and c["params"].get("chat_id") == chat]

    async def inbound_queued(self) -> int:
        return await self.services.store.xlen(self.services.store.keys.inbound())

    async def post(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, session.post(
                self.app_url + "/webhooks/telegram", data=body,
                headers={"Content-Type": "application/json", **(headers or {})}) as response:
            return response.status, await response.text()


@pytest.fixture
async def env(store: Store, clock: Clock, i18n: I18n) -> AsyncIterator[Env]:
    async with FakeTelegram(clock=wall_clock) as fake:
        settings = make_settings(
            telegram_bot_token=fake.token, telegram_api_base_url=fake.url,
            telegram_webhook_secret=SECRET, telegram_bot_username=fake.me["username"],
            public_base_url=PUBLIC)
        demo = DemoCarrier(epoch=clock.now, speed=1.0, clock=clock)
        services = await Services.create(settings, store=store, carriers={"demo": demo},
                                         clock=clock, i18n=i18n)
        channel = services.channels[ChannelName.TELEGRAM]
        assert isinstance(channel, TelegramChannel)
        server = TestServer(create_app(services), host="127.0.0.1")
        await server.start_server()
        try:
            app_url = str(server.make_url("")).rstrip("/")
            fake.proxy(PUBLIC, app_url)
            info = await set_webhook(settings)
            yield Env(services, fake, channel, settings, app_url, info)
        finally:
            await server.close()
            await channel.close()
            await services.session.close()


async def add_order(services: Services, **kw: Any) -> str:
    body = order_payload(**kw)
    order = validate_order(body, carriers=services.tracking.carriers,
                           detect=services.tracking.detect, now=services.tracking.clock())
    await services.orders.upsert(order)
    return body["id"]


def note(idem: str, chat: int, text: str, **kw: Any) -> OutboundMessage:
    return OutboundMessage(idem=idem, address=Address(ChannelName.TELEGRAM, str(chat)), text=text,
                           kind="notification", **kw)


# ---------------------------------------------------------------- webhook registration

async def test_set_webhook_registers_the_url_the_secret_and_the_update_types(env: Env) -> None:
    assert env.fake.webhook == {"url": HOOK, "secret_token": SECRET, "max_connections": 40,
                                "allowed_updates": ["message", "callback_query"]}
    assert env.webhook_info["url"] == HOOK
    assert env.webhook_info["allowed_updates"] == ["message", "callback_query"]
    assert env.webhook_info["pending_update_count"] == 0


# ---------------------------------------------------------------- inbound

async def test_a_text_reaches_the_engine_and_the_reply_has_an_inline_keyboard(env: Env) -> None:
    push = await env.fake.push_message(1001, "/start", first_name="Ana", language_code="en")
    assert push is not None and (push.status, push.url) == (200, env.app_url + "/webhooks/telegram")
    assert await env.inbound_queued() == 1
    await env.services.pump()
    (reply,) = env.sent_to(1001)
    assert reply["text"].startswith("Hi! I'm the Test Shop delivery assistant.")
    assert reply["reply_markup"] == {"inline_keyboard": [
        [{"text": "My orders", "callback_data": "orders"}],
        [{"text": "Talk to a person", "callback_data": "human"}],
        [{"text": "Language", "callback_data": "lang"}]]}
    customer = await env.services.orders.customer_for(Address(ChannelName.TELEGRAM, "1001"),
                                                      create=False)
    assert customer is not None
    inbound = [h for h in await env.services.history.read(customer.id) if h["direction"] == "inbound"]
    assert [(h["text"], h["channel"]) for h in inbound] == [("/start", "telegram")]


async def test_language_code_picks_the_reply_language_for_a_stranger(env: Env) -> None:
    await env.fake.push_message(1002, "/start", first_name="Ivana", language_code="hr")
    await env.fake.push_message(1012, "/start", first_name="Siti", language_code="id")
    await env.services.pump()
    (hr,) = env.sent_to(1002)
    assert hr["text"].startswith("Pozdrav!")
    assert [row[0]["text"] for row in hr["reply_markup"]["inline_keyboard"]][0] == "Moje narudžbe"
    (ind,) = env.sent_to(1012)
    assert not ind["text"].startswith(("Hi!", "Pozdrav"))


async def test_a_forged_or_missing_secret_is_403_and_nothing_is_queued(env: Env) -> None:
    forged = await env.fake.push_update(env.fake.message_update(1003, "help"), forged=True)
    assert forged is not None and forged.status == 403
    update = json.dumps(env.fake.message_update(1003, "help")).encode()
    assert (await env.post(update))[0] == 403  # no header at all
    assert (await env.post(update, {"X-Telegram-Bot-Api-Secret-Token": SECRET[:-1]}))[0] == 403
    # the body is not even parsed before the check: garbage with a wrong secret is still 403
    assert (await env.post(b"{not json", {"X-Telegram-Bot-Api-Secret-Token": "nope"}))[0] == 403
    assert await env.inbound_queued() == 0
    await env.services.pump()
    assert env.fake.sent == []


@pytest.mark.parametrize("body", [
    b"{not json", b"[]", b"\xff\xfe", b'{"update_id": "7"}', b'{"message": {}}',
    b'{"update_id": 7, "message": {"text": "hi"}}',
])
async def test_malformed_updates_are_400_never_500(env: Env, body: bytes) -> None:
    status, text = await env.post(body, {"X-Telegram-Bot-Api-Secret-Token": SECRET})
    assert status == 400, text
    assert "malformed" in json.loads(text)["error"]
    assert await env.inbound_queued() == 0


async def test_updates_the_bot_does_not_answer_are_acknowledged(env: Env) -> None:
    edited = env.fake.message_update(1013, "typo")
    edited["edited_message"] = edited.pop("message") | {"edit_date": 1}
    status, _ = await env.post(json.dumps(edited).encode(),
                               {"X-Telegram-Bot-Api-Secret-Token": SECRET})
    assert status == 200
    assert await env.inbound_queued() == 0


async def test_the_same_update_twice_is_processed_once(env: Env) -> None:
    update = env.fake.message_update(1004, "help", language_code="en")
    first = await env.fake.push_update(update)
    again = await env.fake.push_update(update)  # Telegram retries when it got no 2xx in time
    assert first is not None and again is not None and (first.status, again.status) == (200, 200)
    assert await env.inbound_queued() == 1
    await env.services.pump()
    assert len(env.sent_to(1004)) == 1


async def test_a_callback_query_is_answered_and_its_data_becomes_the_payload(env: Env) -> None:
    await env.fake.push_message(1005, "/start", language_code="en")
    await env.services.pump()
    push = await env.fake.push_callback(1005, "lang", language_code="en")
    assert push is not None and push.status == 200
    query_id = push.update["callback_query"]["id"]
    assert env.fake.answered == {query_id: {"callback_query_id": query_id}}  # before any pump
    await env.services.pump()
    menu = env.sent_to(1005)[-1]
    assert menu["text"] == "Which language would you like?"
    assert [row[0]["callback_data"] for row in menu["reply_markup"]["inline_keyboard"]] == [
        "lang:en", "lang:id", "lang:hr", "lang:th"]
    await env.fake.push_callback(1005, "lang:hr")
    await env.services.pump()
    assert "hrvatskom" in env.sent_to(1005)[-1]["text"]  # now in Croatian
    assert len(env.fake.answered) == 2


async def test_a_payload_over_64_bytes_travels_as_a_short_reference(env: Env) -> None:
    long_payload = "order:" + "Ž" * 40  # 86 bytes in UTF-8
    await env.services.outbox.enqueue(note("n:long-button", 1014, "Your orders",
                                           buttons=[Button(long_payload, "Order")]))
    await env.services.outbox.process_once("t")
    (sent,) = env.sent_to(1014)
    data = sent["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    assert data.startswith(CALLBACK_REF) and len(data.encode()) <= 64
    await env.fake.push_callback(1014, data, language_code="en")
    await env.services.pump()
    customer = await env.services.orders.customer_for(Address(ChannelName.TELEGRAM, "1014"),
                                                      create=False)
    assert customer is not None
    inbound = [h["text"] for h in await env.services.history.read(customer.id)
               if h["direction"] == "inbound"]
    assert inbound == [long_payload]


async def test_start_with_an_order_link_token_links_the_chat(env: Env) -> None:
    await add_order(env.services, order_id="HR-14", journey=1, hours=10)
    token = await env.services.orders.link_token("HR-14")
    await env.fake.push_message(1006, f"/start {token}", language_code="en")
    await env.services.pump()
    assert "Narudžba HR-14" in "\n".join(m["text"] for m in env.sent_to(1006))
    owner = (await env.services.orders.get("HR-14")).customer_id
    linked = await env.services.orders.customer_for(Address(ChannelName.TELEGRAM, "1006"),
                                                    create=False)
    assert linked is not None and linked.id == owner


# ---------------------------------------------------------------- outbound

async def test_a_5000_character_text_is_split_into_two_messages(env: Env) -> None:
    paragraphs = [f"Paragraph {i}: " + " ".join(["paket je na putu"] * 28) for i in range(10)]
    text = "\n\n".join(paragraphs)
    assert 4500 < len(text) < 5200
    await env.services.outbox.enqueue(note("n:long", 1007, text, buttons=[Button("menu", "Menu")]))
    await env.services.outbox.process_once("t")
    first, second = env.sent_to(1007)
    assert utf16_len(first["text"]) <= 4096 and utf16_len(second["text"]) <= 4096
    assert first["text"] + "\n\n" + second["text"] == text  # cut at a paragraph boundary
    assert "reply_markup" not in first
    assert second["reply_markup"] == {"inline_keyboard": [[{"text": "Menu", "callback_data": "menu"}]]}
    assert all(c["status"] == 200 for c in env.calls_to(1007)), "the parts were not paced"
    keys = env.services.store.keys
    assert await env.services.store.get_str(keys.outbox_sent("n:long")) is not None
    assert await env.services.store.xlen(keys.outbox()) == 0


async def test_a_blocked_chat_is_opted_out_and_dead_lettered_not_retried(env: Env) -> None:
    await env.fake.push_message(1008, "/start", language_code="en")
    await env.services.pump()
    cid = (await env.services.orders.customer_for(Address(ChannelName.TELEGRAM, "1008"),
                                                  create=False)).id
    env.fake.blocked.add(1008)
    await env.services.outbox.enqueue(note("n:blocked", 1008, "Your parcel was delivered"))
    await env.services.outbox.process_once("t")
    consent = (await env.services.consent.get(cid))["telegram"]
    assert (consent["opted_in"], consent["source"]) == (False, "blocked")
    (_, dead), = await env.services.outbox.dead_letters()
    assert (dead["idem"], dead["code"], dead["permanent"]) == ("n:blocked", "403", "1")
    assert "blocked" in dead["error"]
    for _ in range(3):
        await env.services.outbox.process_once("t")
    assert [c["status"] for c in env.calls_to(1008)] == [200, 403]
    # writing to the bot again means they unblocked it
    env.fake.blocked.discard(1008)
    await env.fake.push_message(1008, "hi again", language_code="en")
    consent = (await env.services.consent.get(cid))["telegram"]
    assert (consent["opted_in"], consent["source"]) == (True, "unblocked")


async def test_retry_after_is_honoured_exactly_and_keeps_the_chat_in_order(env: Env) -> None:
    box = env.services.outbox
    box.clock = retry_clock = FloatClock()
    t0 = retry_clock.t
    await env.channel.bot()  # getMe first, so the forced 429 lands on sendMessage
    env.fake.force_retry_after(7)
    await box.enqueue(note("n:first", 1009, "first"))
    await box.enqueue(note("n:second", 1009, "second"))
    await box.process_once("t")
    assert env.sent_to(1009) == []
    parked = await env.services.store.zrange_with_scores(env.services.store.keys.outbox_delayed())
    assert [(json.loads(m)["idem"], json.loads(m)["attempt"]) for m, _ in parked] == [
        ("n:first", "1"), ("n:second", "0")]  # the one behind it is parked, not failed
    assert parked[0][1] == t0 + 7
    assert parked[1][1] > t0 + 7

    retry_clock.t = t0 + 6.999
    assert await box.process_once("t") == 0
    retry_clock.t = t0 + 7
    assert await box.process_once("t") == 1
    assert [p["text"] for p in env.sent_to(1009)] == ["first"]
    retry_clock.t = parked[1][1]
    assert await box.process_once("t") == 1
    assert [p["text"] for p in env.sent_to(1009)] == ["first", "second"]
    assert [c["status"] for c in env.calls_to(1009)] == [429, 200, 200]


# ---------------------------------------------------------------- pure parts

def test_message_from_update_reads_text_captions_callbacks_and_skips_the_rest() -> None:
    fake = FakeTelegram()
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    text = fake.message_update(42, "Gdje je paket?", first_name="Ana", language_code="hr-HR",
                               last_name="Horvat")
    m = message_from_update(Update.de_json(text, None), now)
    assert m is not None
    assert (str(m.address), m.text, m.payload, m.provider_id, m.locale_hint, m.profile_name,
            m.received_at) == ("telegram:42", "Gdje je paket?", "", f"u{text['update_id']}",
                               "hr-HR", "Ana Horvat", now)
    photo = fake.message_update(42, "x")
    del photo["message"]["text"]
    photo["message"] |= {"caption": "HR123 damaged?", "photo": [
        {"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]}
    assert message_from_update(Update.de_json(photo, None), now).text == "HR123 damaged?"
    sticker_only = fake.message_update(42, "x")
    del sticker_only["message"]["text"]
    assert message_from_update(Update.de_json(sticker_only, None), now) is None
    from_bot = fake.message_update(42, "hi", user=fake.user(7, is_bot=True) | {"is_bot": True})
    assert message_from_update(Update.de_json(from_bot, None), now) is None
    fake.messages[(42, 9)] = {"message_id": 9, "from": fake.me, "chat": {"id": 42, "type": "private"},
                              "date": 0, "text": "menu"}
    tap = fake.callback_query_update(42, "orders", language_code=None)
    m = message_from_update(Update.de_json(tap, None), now)
    assert m is not None and (str(m.address), m.text, m.payload, m.locale_hint) == (
        "telegram:42", "", "orders", "")


def test_split_text_respects_paragraphs_lines_and_surrogate_pairs() -> None:
    assert split_text("kratko") == ["kratko"]
    lines = "\n".join(f"line {i:04d} " + "x" * 40 for i in range(120))  # no paragraph breaks
    parts = split_text(lines)
    assert len(parts) == 2 and all(utf16_len(p) <= 4096 for p in parts)
    assert "\n".join(parts) == lines
    # an emoji (two UTF-16 units) straddling the limit moves whole to the next part
    straddle = "a" * 4095 + "😀" + "b" * 10
    first, second = split_text(straddle)
    assert first == "a" * 4095 and second == "😀" + "b" * 10
    # no boundary at all: a hard cut that keeps a skin-tone emoji and accents whole
    tone = "a" * 4094 + "👍🏽" + "é" * 3
    first, second = split_text(tone)
    assert first == "a" * 4094 and second.startswith("👍🏽")
    for text in (straddle, tone, "\n\n".join(["ž" * 3000] * 3)):
        parts = split_text(text)
        assert all(utf16_len(p) <= 4096 for p in parts)
        assert all(p.encode("utf-16-le").decode("utf-16-le") == p for p in parts)


async def test_urgent_news_in_quiet_hours_arrives_silently(env: Env) -> None:
    await env.services.outbox.enqueue(note("n:quiet", 1011, "Out for delivery", content={"silent": True}))
    await env.services.outbox.enqueue(note("n:loud", 1012, "Delivered"))
    await env.services.outbox.process_once("t")
    [quiet] = env.sent_to(1011)
    [loud] = env.sent_to(1012)
    assert quiet["disable_notification"] is True
    assert loud.get("disable_notification") in (None, False)
