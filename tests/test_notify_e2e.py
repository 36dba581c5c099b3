"""Proactive notifications end to end on the real Redis: a carrier change goes through the
tracking listener, the policy and the outbox into the web chat channel and the ledger."""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot.changes import Change, ChangeKind
from bot.channels import ChannelLimits, SendError
from bot.models import Address, ChannelName, OutboundMessage
from bot.notify import Notifier, cli_ledger, http_order_notifications
from carriers.model import CustomsStage, Money, Reason, Status
from tests.conftest import make_settings, shop_headers
from tests.factories import order_payload

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # the clock fixture's start


async def add_order(services, **kw) -> str:
    from bot.orders import validate_order

    body = order_payload(**kw)
    order = validate_order(body, carriers=services.tracking.carriers,
                           detect=services.tracking.detect, now=services.tracking.clock())
    await services.orders.upsert(order)
    return body["shipments"][0]["tracking_number"]


def wire(services, **settings) -> Notifier:
    """The app's Notifier (or one registered where Services wires it: tracking listener,
    outbox hook, delivery listener)."""
    existing = getattr(services, "notifier", None)
    if existing is not None:
        existing.settings = replace(existing.settings, **settings)
        return existing
    merged = replace(services.settings, **settings) if settings else services.settings
    notifier = Notifier(services.store, merged, services.i18n, services.orders, services.outbox,
                        services.consent, services.handoff, services.tracking.clock,
                        history=services.history, tracking=services.tracking)
    services.tracking.listeners.append(notifier.on_changes)
    services.outbox.add_outcome_hook(notifier.on_outcome)
    if getattr(services, "delivery", None) is not None:
        services.delivery.listeners.append(notifier.on_delivery)
    return notifier


async def carrier_reports(services, *changes: Change) -> None:
    """What tracking does when it stores a new snapshot: tell every listener the changes."""
    for listener in services.tracking.listeners:
        await listener(list(changes))
    await services.pump()


async def scan(services, number: str) -> None:
    """The carrier is asked (as polling or a chat lookup does): its answer goes through
    change detection and the tracking listeners, then the outbox is pumped."""
    await services.tracking.current("demo", number, max_age=0)
    await services.pump()


async def settle(services, notifier: Notifier) -> None:
    """Let a burst window pass and release what waited for it."""
    services.tracking.clock.advance(seconds=notifier.settings.notify_collapse_seconds + 1)
    await notifier.release_due()
    await services.pump()


def change(kind: ChangeKind, number: str, at: datetime, status: Status, **kw) -> Change:
    kw.setdefault("previous_status", Status.IN_TRANSIT)
    return Change(kind=kind, carrier="demo", tracking_number=number,
                  key=f"{number}:{kind.value}:{at.isoformat()}", status=status,
                  occurred_at=at, **kw)


async def test_quiet_hours_defer_a_thai_delivery_notice_until_morning_in_bangkok(
        services, chat_factory, clock):
    # journey 2 (Shenzhen -> Bangkok), 75 h in: released by customs, delivered at 22:00 Bangkok
    number = await add_order(services, order_id="TH-Q", phone="+66812345678", locale="th",
                             timezone="Asia/Bangkok", journey=2, hours=75)
    chat = await chat_factory("+66812345678")
    notifier = wire(services)
    await scan(services, number)  # 16:00 in Bangkok: first scan, "shipped"
    await settle(services, notifier)
    [shipped] = await chat.replies()
    assert "ข่าวดีค่ะ พัสดุของคุณกำลังเดินทางแล้ว!" in shipped["text"]

    clock.now = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)  # 22:30 in Bangkok
    await scan(services, number)
    assert await chat.replies() == []  # a delivered notice is not worth waking anyone for
    ledger = await notifier.ledger_for_order("TH-Q")
    assert [(e["decision"], e["reason"], e["kinds"]) for e in ledger[-1:]] == [
        ("deferred", "quiet_hours", ["delivered"])]
    assert ledger[-1]["until"] == "2026-11-24T08:00:00+07:00"  # 08:00 in Bangkok
    assert ledger[-1]["locale"] == "th" and ledger[-1]["channel"] == "webchat"

    clock.now = datetime(2026, 11, 24, 0, 59, tzinfo=UTC)  # 07:59 in Bangkok
    assert await notifier.release_due() == 0
    await services.pump()
    assert await chat.replies() == []

    clock.now = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # 08:00 in Bangkok: released
    assert await notifier.release_due() == 1
    await services.pump()
    [msg] = await chat.replies()
    assert msg["kind"] == "notification"
    assert "พัสดุของคุณจัดส่งถึงแล้วค่ะ" in msg["text"]
    assert "23 พฤศจิกายน พ.ศ. 2569, 22:00, Bangkok" in msg["text"]  # Bangkok time, BE year
    assert "2026" not in msg["text"]
    deferred, sent = (await notifier.ledger_for_order("TH-Q"))[-2:]
    assert deferred["status"] == "released" and deferred["sent_in"] == sent["id"]
    assert sent["decision"] == "sent" and sent["reason"] == "released"
    assert sent["template"] == "notifications/delivered" and sent["locale"] == "th"
    assert sent["status"] == "delivered" and sent["receipt"]["provider_id"].startswith("wc_")
    assert sent["idem"].startswith("n:")
    assert await notifier.release_due() == 0  # nothing left waiting


async def test_urgent_news_goes_out_in_quiet_hours_silently(services, chat_factory, clock):
    number = await add_order(services, order_id="HR-U", journey=1, hours=23)
    chat = await chat_factory("+385911234567")
    notifier = wire(services)
    clock.now = datetime(2026, 11, 23, 5, 30, tzinfo=UTC)  # 06:30 in Zagreb
    await carrier_reports(services, change(ChangeKind.OUT_FOR_DELIVERY, number, clock.now,
                                           Status.OUT_FOR_DELIVERY))
    [msg] = await chat.replies()
    assert "Vaš je paket danas u dostavi." in msg["text"]
    [sent] = await notifier.ledger_for_order("HR-U")
    assert sent["reason"] == "urgent_quiet_hours" and sent["silent"] is True


async def test_a_burst_collapses_into_one_message_with_what_happened(services, chat_factory,
                                                                     clock):
    number = await add_order(services, order_id="HR-B", journey=5, hours=70)
    chat = await chat_factory("+385911234567")
    notifier = wire(services)
    t = clock.now
    await carrier_reports(services, change(ChangeKind.SHIPPED, number, t - timedelta(minutes=4),
                                           Status.IN_TRANSIT, previous_status=Status.PENDING))
    clock.advance(seconds=60)
    await carrier_reports(services, change(ChangeKind.CUSTOMS_CLEARED, number,
                                           t - timedelta(minutes=2), Status.IN_TRANSIT,
                                           customs=CustomsStage.RELEASED),
                          change(ChangeKind.DELAYED, number, t - timedelta(minutes=1),
                                 Status.DELAYED, reason=Reason.WEATHER_DELAY,
                                 eta=t + timedelta(days=3), previous_eta=t + timedelta(days=1)))
    assert await chat.replies() == []  # waiting for the burst to settle
    clock.advance(seconds=notifier.settings.notify_collapse_seconds)
    assert await notifier.release_due() == 1
    await services.pump()
    [msg] = await chat.replies()
    text = msg["text"]
    assert "Vaš paket kasni. Ispričavamo se zbog čekanja." in text  # the newest news leads
    assert "Loše vrijeme usporava dostavu." in text
    assert "Nova očekivana dostava: 26. studenoga 2026. (ranije: 24. studenoga 2026.)" in text
    assert "Od naše zadnje poruke:" in text and "poslano" in text and "ocarinjeno" in text
    assert [b["payload"] for b in msg["buttons"]] == ["notify:on", "human"]
    assert [b["label"] for b in msg["buttons"]] == ["Čekat ću, javite mi novosti",
                                                   "Razgovor s osobom"]
    ledger = await notifier.ledger_for_order("HR-B")
    assert [e["decision"] for e in ledger] == ["deferred", "deferred", "deferred", "sent"]
    assert all(e["reason"] == "collapse" for e in ledger[:3])
    assert ledger[3]["kinds"] == ["shipped", "customs_cleared", "delayed"]


async def test_the_same_news_twice_is_announced_once(services, chat_factory):
    number = await add_order(services, order_id="HR-D", journey=4, hours=30)
    chat = await chat_factory("+385911234567")
    notifier = wire(services)
    failed = change(ChangeKind.DELIVERY_FAILED, number, services.tracking.clock(),
                    Status.DELIVERY_FAILED, reason=Reason.CONSIGNEE_NOT_HOME)
    await carrier_reports(services, failed)
    await carrier_reports(services, failed)  # a webhook push and a poll saw the same event
    [msg] = await chat.replies()
    assert "Nitko nije bio kod kuće" in msg["text"]
    ledger = await notifier.ledger_for_order("HR-D")
    assert [(e["decision"], e.get("reason")) for e in ledger] == [
        ("sent", "urgent"), ("suppressed", "already_announced")]


async def test_customs_duties_in_the_customers_currency_and_language(services, chat_factory):
    cases = [
        ("ID-C", "+6281234567890", "id", "Asia/Jakarta", Money(Decimal("185000"), "IDR"),
         "Jumlah yang harus dibayar: Rp185.000", "Kami tidak pernah meminta pembayaran"),
        ("HR-C", "+385911234568", "hr", "Europe/Zagreb", Money(Decimal("23.40"), "EUR"),
         "Iznos za plaćanje: 23,40\xa0€", "Nikada ne tražimo plaćanje putem poruke."),
        ("TH-C", "+66812345679", "th", "Asia/Bangkok", Money(Decimal("1250"), "THB"),
         "ยอดที่ต้องชำระ: ฿1,250.00", "เราไม่เคยขอให้ชำระเงินผ่านข้อความค่ะ"),
    ]
    notifier = wire(services)
    for order_id, phone, locale, tz, duties, amount_line, warning in cases:
        number = await add_order(services, order_id=order_id, phone=phone, locale=locale,
                                 timezone=tz, journey=8, hours=37)
        chat = await chat_factory(phone)
        pay = f"https://track.example.com/demo/{number}/duties"
        await carrier_reports(services, change(
            ChangeKind.DUTIES_DUE, number, services.tracking.clock(), Status.ON_HOLD,
            reason=Reason.CUSTOMS_DUTIES_UNPAID, customs=CustomsStage.DUTIES_DUE,
            duties=duties, payment_url=pay))
        [msg] = await chat.replies()
        text = msg["text"]
        assert amount_line in text and warning in text
        assert pay in text
        urls = {w for w in text.split() if w.startswith("http")}
        assert urls <= {pay, f"https://track.example.com/demo/{number}"}, urls
        assert [b["payload"] for b in msg["buttons"]] == ["human"]
        [sent] = await notifier.ledger_for_order(order_id)
        assert sent["locale"] == locale and sent["template"] == "notifications/duties_due"
    assert "Rp185.000,00" not in text


async def test_a_reply_after_a_delay_notice_lands_in_that_shipments_context(
        services, chat_factory):
    first = await add_order(services, order_id="HR-1A", journey=1, hours=10)
    second = await add_order(services, order_id="HR-1B", journey=3, hours=21)
    chat = await chat_factory("+385911234567")
    notifier = wire(services)
    now = services.tracking.clock()
    await carrier_reports(services, change(ChangeKind.DELAYED, second, now, Status.DELAYED,
                                           reason=Reason.WEATHER_DELAY,
                                           eta=now + timedelta(days=2)))
    assert await chat.replies() == []
    services.tracking.clock.advance(minutes=6)
    await notifier.release_due()
    await services.pump()
    [notice] = await chat.replies()
    assert "Vaš paket kasni." in notice["text"]
    cid = await chat.customer_id()
    dialog = await services.store.get_json(services.store.keys.dialog(cid))
    assert dialog["shipment"] == f"demo:{second}" and dialog["order"] == "HR-1B"
    # "I'll wait, keep me posted": the engine subscribes to that shipment only
    reply = await chat.text(payload="notify:on")
    assert "Gotovo! Javit ćemo Vam se kad se nešto promijeni s Vašim paketom." in reply
    k = services.store.keys
    assert cid in await services.store.smembers(k.shipment_subscribers("demo", second))
    assert cid not in await services.store.smembers(k.shipment_subscribers("demo", first))


async def test_a_subscriber_who_tracked_by_number_gets_the_news_without_the_order(
        services, chat_factory, clock):
    number = await add_order(services, order_id="HR-S", journey=1, hours=23)
    owner = await chat_factory("+385911234567")
    stranger = await chat_factory()
    notifier = wire(services)
    await stranger.say(number)  # the lookup asks the carrier: out for delivery (urgent)
    [to_owner] = await owner.replies()
    assert "Vaš je paket danas u dostavi." in to_owner["text"]
    await stranger.say(payload="notify:on")
    clock.advance(hours=5)  # delivered
    await scan(services, number)
    await settle(services, notifier)
    [to_owner] = await owner.replies()
    [to_stranger] = await stranger.replies()
    assert "HR-S" in to_owner["text"] and "Vaš je paket dostavljen." in to_owner["text"]
    assert "HR-S" not in to_stranger["text"] and number in to_stranger["text"]
    assert "Your parcel has been delivered." in to_stranger["text"]
    ledger = await notifier.ledger_for_order("HR-S")
    sent = [e for e in ledger if e["decision"] == "sent"]
    assert [e["kinds"] for e in sent] == [["out_for_delivery"], ["delivered"], ["delivered"]]
    assert {e["customer_id"] for e in sent} == {await owner.customer_id(),
                                                await stranger.customer_id()}


async def test_muted_opted_out_and_agent_owned_conversations_get_nothing(services, chat_factory):
    number = await add_order(services, order_id="HR-M", journey=1, hours=23)
    chat = await chat_factory("+385911234567")
    notifier = wire(services)
    cid = await chat.customer_id()
    now = services.tracking.clock()
    k = services.store.keys
    await services.store.sadd(k.shipment_muted("demo", number), cid)
    await carrier_reports(services, change(ChangeKind.OUT_FOR_DELIVERY, number, now,
                                           Status.OUT_FOR_DELIVERY))
    await services.store.srem(k.shipment_muted("demo", number), cid)
    await services.consent.set(cid, "webchat", False, "keyword", now)
    await carrier_reports(services, change(ChangeKind.DELIVERY_FAILED, number, now,
                                           Status.DELIVERY_FAILED))
    await services.consent.set(cid, "webchat", True, "keyword", now)
    await services.handoff.escalate(cid, "customer_asked", "webchat")
    await carrier_reports(services, change(ChangeKind.READY_FOR_PICKUP, number, now,
                                           Status.READY_FOR_PICKUP))
    await carrier_reports(services, change(ChangeKind.OUT_FOR_DELIVERY, number,
                                           now - timedelta(days=3), Status.OUT_FOR_DELIVERY))
    assert [m for m in await chat.replies() if m["kind"] == "notification"] == []
    reasons = [e["reason"] for e in await notifier.ledger_for_order("HR-M")]
    assert reasons == ["muted", "opted_out", "agent_owns_conversation", "too_old"]


class RefusingChannel:
    """A channel whose provider refuses every message for good (e.g. not on WhatsApp)."""

    name = ChannelName.TELEGRAM
    limits = ChannelLimits(max_text=4096, max_buttons=0)

    def __init__(self, error: SendError) -> None:
        self.error = error
        self.tried: list[OutboundMessage] = []

    async def send(self, message: OutboundMessage):  # type: ignore[no-untyped-def]
        self.tried.append(message)
        raise self.error


async def test_a_failed_channel_falls_back_to_the_next_opted_in_one(services, chat_factory):
    number = await add_order(services, order_id="HR-F", journey=1, hours=23)
    chat = await chat_factory("+385911234567")
    refusing = RefusingChannel(SendError("bot was blocked by the user", opted_out=True,
                                         code="403"))
    services.outbox.channels[ChannelName.TELEGRAM] = refusing
    customer = await services.orders.customer(await chat.customer_id())
    await services.orders.link(Address(ChannelName.TELEGRAM, "424242"), customer)
    await services.store.hset(services.store.keys.conversation(customer.id),
                              {"address": "telegram:424242"})  # they last wrote on Telegram
    notifier = wire(services)
    await carrier_reports(services, change(ChangeKind.OUT_FOR_DELIVERY, number,
                                           services.tracking.clock(), Status.OUT_FOR_DELIVERY))
    await services.pump()
    [tried] = refusing.tried
    assert "1. Čekat ću" not in tried.text  # no buttons for this kind, so no numbered choices
    [msg] = await chat.replies()  # re-rendered for the web chat, where buttons exist
    assert "Vaš je paket danas u dostavi." in msg["text"]
    first, second = await notifier.ledger_for_order("HR-F")
    assert first["channel"] == "telegram" and first["status"] == "failed"
    assert first["error"]["kind"] == "opted_out" and first["fallback_to"] == second["id"]
    assert second["decision"] == "fallback" and second["channel"] == "webchat"
    assert second["fallback_from"] == first["id"] and second["status"] == "delivered"
    assert second["idem"] == f"{first['idem']}:fb1"


async def test_delivery_receipts_update_the_ledger_monotonically(services, chat_factory):
    number = await add_order(services, order_id="HR-R", journey=1, hours=23)
    await chat_factory("+385911234567")
    notifier = wire(services)
    await carrier_reports(services, change(ChangeKind.OUT_FOR_DELIVERY, number,
                                           services.tracking.clock(), Status.OUT_FOR_DELIVERY))
    [sent] = await notifier.ledger_for_order("HR-R")
    pid = sent["receipt"]["provider_id"]
    await notifier.on_receipt(pid, "read")
    await notifier.on_receipt(pid, "sent")  # callbacks arrive out of order
    [sent] = await notifier.ledger_for_order("HR-R")
    assert sent["receipt"]["status"] == "read" and sent["status"] == "read"
    await notifier.on_receipt("SM-unknown", "delivered")  # not ours: ignored


async def test_trouble_opens_a_handoff_with_the_shipment_attached(services, chat_factory):
    number = await add_order(services, order_id="HR-T", journey=7, hours=44)
    chat = await chat_factory("+385911234567")
    notifier = wire(services, handoff_on_trouble=True)
    await carrier_reports(services, change(ChangeKind.EXCEPTION, number,
                                           services.tracking.clock(), Status.ON_HOLD,
                                           reason=Reason.LOST))
    clock = services.tracking.clock
    clock.advance(minutes=6)
    await notifier.release_due()
    await services.pump()
    [msg] = await chat.replies()
    assert "Prijevoznik javlja da je paket izgubljen." in msg["text"]
    assert "Kolega iz našeg tima provjerit će to" in msg["text"]
    cid = await chat.customer_id()
    doc = await services.store.get_json(services.store.keys.handoff(cid))
    assert doc["reason"] == "shipment_lost" and doc["shipment"] == f"demo:{number}"
    assert doc["order"] == "HR-T"
    assert await services.handoff.owner(cid) == "queue"


async def test_ledger_over_http_and_cli(services, chat_factory):
    from aiohttp.test_utils import TestClient, TestServer

    from bot.web import create_app

    number = await add_order(services, order_id="HR-L", journey=1, hours=23)
    await chat_factory("+385911234567")
    wire(services)
    await carrier_reports(services, change(ChangeKind.OUT_FOR_DELIVERY, number,
                                           services.tracking.clock(), Status.OUT_FOR_DELIVERY))
    app = create_app(services)
    app.router.add_get("/api/v1/orders/{order_id}/notifications",  # the lead's route
                       http_order_notifications)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/api/v1/orders/HR-L/notifications", headers=shop_headers())
        assert resp.status == 200
        body = await resp.json()
        [entry] = body["notifications"]
        assert entry["decision"] == "sent" and entry["channel"] == "webchat"
        assert "_spec" not in entry
        assert (await client.get("/api/v1/orders/NOPE/notifications",
                                 headers=shop_headers())).status == 404
        assert (await client.get("/api/v1/orders/HR-L/notifications")).status == 401

    settings = make_settings(redis_url="redis://127.0.0.1:6379/0",
                             key_prefix=services.store.keys.prefix)
    out = io.StringIO()
    assert await cli_ledger(settings, "HR-L", out=out) == 0
    assert "out_for_delivery  sent" in out.getvalue() and "idem=n:" in out.getvalue()
    out = io.StringIO()
    assert await cli_ledger(settings, "HR-L", as_json=True, out=out) == 0
    assert json.loads(out.getvalue())[0]["template"] == "notifications/out_for_delivery"


async def test_news_that_arrives_before_the_morning_replaces_the_deferred_one(
        services, chat_factory, clock):
    number = await add_order(services, order_id="HR-N", journey=3, hours=40)
    chat = await chat_factory("+385911234567")
    notifier = wire(services)
    clock.now = datetime(2026, 11, 23, 21, 0, tzinfo=UTC)  # 22:00 in Zagreb
    await carrier_reports(services, change(ChangeKind.DELAYED, number, clock.now, Status.DELAYED,
                                           eta=clock.now + timedelta(days=2)))
    clock.now = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # 07:00: delivered after all
    await carrier_reports(services, change(ChangeKind.DELIVERED, number, clock.now,
                                           Status.DELIVERED, previous_status=Status.DELAYED))
    assert await chat.replies() == []
    clock.now = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)  # 08:00 in Zagreb
    await notifier.release_due()
    await services.pump()
    [msg] = await chat.replies()  # one message: the newest news, with what happened before
    assert msg["text"].index("Vaš je paket dostavljen.") < msg["text"].index("kasni")
    assert "Nova očekivana dostava" not in msg["text"]  # the stale delay notice is not sent
    assert "Od naše zadnje poruke:" in msg["text"]
    assert msg["buttons"] == []


# ---------------------------------------------------------------- Twilio: WhatsApp and SMS

DELAYED_HR = "{{5}}: Vaš paket {{2}} (narudžba {{1}}) kasni. Nova očekivana dostava: {{3}} Praćenje: {{4}}"


@pytest.fixture
async def twilio(store, clock, i18n):  # type: ignore[no-untyped-def]
    """The app with Twilio SMS + WhatsApp pointed at the fake Twilio; one approved template."""
    from bot.services import Services
    from carriers.demo import DemoCarrier
    from tests.fakes.twilio import FakeTwilio

    fake = FakeTwilio(clock=clock)
    await fake.__aenter__()
    delayed = fake.add_template(DELAYED_HR)
    settings = make_settings(
        twilio_account_sid=fake.account_sid, twilio_auth_token=fake.auth_token,
        twilio_api_base_url=fake.url, twilio_sms_from=fake.phone_number,
        twilio_whatsapp_from=fake.whatsapp_number, twilio_sms_mps=50.0,
        twilio_whatsapp_mps=50.0, whatsapp_templates={"delayed:hr": delayed})
    services = await Services.create(settings, store=store, clock=clock, i18n=i18n,
                                     carriers={"demo": DemoCarrier(epoch=clock.now, clock=clock)})
    yield services, fake
    await fake.__aexit__(None, None, None)
    await services.session.close()


async def test_whatsapp_outside_the_window_goes_as_the_approved_template(twilio):
    services, fake = twilio
    number = await add_order(services, order_id="HR-W", journey=3, hours=21)
    notifier = wire(services)
    now = services.tracking.clock()
    await carrier_reports(services, change(ChangeKind.DELAYED, number, now, Status.DELAYED,
                                           reason=Reason.WEATHER_DELAY,
                                           eta=now + timedelta(days=2)))
    await settle(services, notifier)
    [sent] = fake.messages
    assert sent["to"] == "whatsapp:+385911234567" and sent["content_sid"]
    assert sent["body"] == (f"Test Shop: Vaš paket Demo Express {number} (narudžba HR-W) kasni. "
                            f"Nova očekivana dostava: 25. studenoga 2026. "
                            f"Praćenje: https://track.example.com/demo/{number}")
    [*_, entry] = await notifier.ledger_for_order("HR-W")
    assert (entry["channel"], entry["whatsapp"], entry["whatsapp_template"]) == (
        "whatsapp", "template", "delayed:hr")
    assert entry["receipt"]["provider_id"] == sent["sid"]


async def test_without_an_approved_template_the_news_goes_as_a_short_sms(twilio):
    services, fake = twilio
    number = await add_order(services, order_id="HR-X", journey=1, hours=23)
    notifier = wire(services)
    await carrier_reports(services, change(ChangeKind.OUT_FOR_DELIVERY, number,
                                           services.tracking.clock(), Status.OUT_FOR_DELIVERY))
    await services.pump()
    [sms] = fake.messages  # WhatsApp has no template for out_for_delivery:hr: not even tried
    assert sms["to"] == "+385911234567"
    assert sms["body"] == (f"Test Shop (HR-X): Vaš je paket danas u dostavi.\n"
                           f"https://track.example.com/demo/{number}")
    [sent] = await notifier.ledger_for_order("HR-X")
    assert sent["channel"] == "sms" and sent["template"] == "sms/notifications/out_for_delivery"
    assert sent["skipped"] == [
        "whatsapp: window closed and no approved template out_for_delivery:hr"]
    assert sent["receipt"]["provider_id"] == sms["sid"]
    assert await services.outbox.dead_letters() == []


async def test_inside_the_whatsapp_window_free_text_needs_no_template(twilio):
    services, fake = twilio
    number = await add_order(services, order_id="HR-Z", journey=1, hours=23)
    notifier = wire(services)
    now = services.tracking.clock()
    # the customer wrote on WhatsApp a moment ago (what the Twilio webhook records)
    await services.store.set_str(services.store.keys.address_state(
        "whatsapp", "+385911234567", "wa-window"), now.isoformat())
    fake.open_window("+385911234567", now)
    await carrier_reports(services, change(ChangeKind.OUT_FOR_DELIVERY, number, now,
                                           Status.OUT_FOR_DELIVERY))
    [sent] = fake.messages
    assert sent["to"] == "whatsapp:+385911234567" and not sent["content_sid"]
    assert "Vaš je paket danas u dostavi." in sent["body"]
    [entry] = await notifier.ledger_for_order("HR-Z")
    assert (entry["channel"], entry["whatsapp"]) == ("whatsapp", "session")


async def test_a_number_not_on_whatsapp_gets_the_news_by_sms(twilio):
    services, fake = twilio
    number = await add_order(services, order_id="HR-Y", journey=3, hours=21)
    fake.not_on_whatsapp.add("+385911234567")  # Twilio answers 63024
    notifier = wire(services)
    now = services.tracking.clock()
    await carrier_reports(services, change(ChangeKind.DELAYED, number, now, Status.DELAYED,
                                           eta=now + timedelta(days=2)))
    await settle(services, notifier)
    [sms] = fake.messages
    assert sms["to"] == "+385911234567"
    assert sms["body"].startswith("Test Shop (HR-Y): Vaš paket kasni, ispričavamo se.")
    whatsapp, sent = (await notifier.ledger_for_order("HR-Y"))[-2:]
    assert whatsapp["error"]["kind"] == "unreachable" and whatsapp["error"]["code"] == "63024"
    assert sent["channel"] == "sms" and sent["fallback_from"] == whatsapp["id"]
    # the next news skips WhatsApp (the channel marked the address unreachable)
    await carrier_reports(services, change(ChangeKind.OUT_FOR_DELIVERY, number,
                                           services.tracking.clock(), Status.OUT_FOR_DELIVERY))
    assert [m["to"] for m in fake.messages] == ["+385911234567"] * 2
    assert (await notifier.ledger_for_order("HR-Y"))[-1]["channel"] == "sms"


async def test_the_worker_loop_releases_deferrals_until_stopped(services, chat_factory, clock):
    number = await add_order(services, order_id="HR-RUN", journey=1, hours=27)
    chat = await chat_factory("+385911234567")
    notifier = wire(services)
    clock.now = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)  # 23:00 in Zagreb
    await carrier_reports(services, change(ChangeKind.DELIVERED, number, clock.now,
                                           Status.DELIVERED, previous_status=Status.OUT_FOR_DELIVERY))
    assert await notifier.next_due() == datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(stop, interval=0.01))
    await asyncio.sleep(0.05)
    assert await notifier.next_due() is not None  # still night
    clock.now = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
    for _ in range(200):
        if await notifier.next_due() is None:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)
    await services.pump()
    [msg] = await chat.replies()
    assert "Vaš je paket dostavljen." in msg["text"]


async def test_news_the_customers_own_lookup_found_is_not_sent_again(services, chat_factory,
                                                                     clock):
    await add_order(services, order_id="HR-A", journey=1, hours=23)
    chat = await chat_factory("+385911234567")
    notifier = wire(services)
    text = await chat.text("Gdje je moja narudžba HR-A?")  # the lookup finds "out for delivery"
    assert "u dostavi" in text
    clock.advance(seconds=61)
    await notifier.release_due()
    await services.pump()
    assert await chat.replies() == []  # the answer already said so
    [entry] = await notifier.ledger_for_order("HR-A")
    assert (entry["decision"], entry["reason"]) == ("deferred", "in_conversation")
    assert (entry["status"], entry["dropped_because"]) == ("dropped", "answered_in_chat")


async def test_news_found_during_a_chat_about_something_else_still_goes_out(services,
                                                                            chat_factory, clock):
    number = await add_order(services, order_id="HR-E", journey=1, hours=23)
    chat = await chat_factory("+385911234567")
    notifier = wire(services)
    cid = await chat.customer_id()
    k = services.store.keys
    token = await services.store.acquire_lock(k.turn_lock(cid), 30_000)  # mid-turn, say "menu"
    await carrier_reports(services, change(ChangeKind.OUT_FOR_DELIVERY, number, clock.now,
                                           Status.OUT_FOR_DELIVERY))
    await services.store.release_lock(k.turn_lock(cid), token)
    assert await chat.replies() == []
    clock.advance(seconds=61)
    await notifier.release_due()
    await services.pump()
    [msg] = await chat.replies()
    assert "Vaš je paket danas u dostavi." in msg["text"]
