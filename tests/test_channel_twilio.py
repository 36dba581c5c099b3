"""Twilio SMS and WhatsApp end to end: the fake Twilio on localhost, the real app on a real
socket behind a 'public' URL the fake maps to it, the real engine, outbox and Redis.

Every Messages API call the app makes is checked against the official OpenAPI spec.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest

from bot import outbox as outbox_module
from bot.channels import Receipt, SendError
from bot.channels.twilio import (
    SMS_PATH,
    STATUS_PATH,
    WHATSAPP_PATH,
    TwilioChannel,
    TwilioReceipt,
    parse_inbound,
    retry_after_seconds,
    split_body,
    twilio_error,
)
from bot.delivery import DeliveryUpdate, mask
from bot.models import Address, ChannelName, OutboundMessage
from bot.orders import validate_order
from bot.services import Services
from bot.store import Store
from bot.web import create_app
from carriers.demo import DemoCarrier
from tests.conftest import make_settings
from tests.driver import Clock
from tests.factories import order_payload
from tests.fakes.twilio import FakeTwilio
from tests.paths import shared
from tests.test_fakes_contract import MESSAGE, MESSAGES, assert_matches_spec

PUBLIC = "https://shipmate.example.com"
CUSTOMER = "+12025550143"  # a US number: the bot answers in English
HR_CUSTOMER = "+385911234567"
SECONDARY = "secondary-auth-token-0123456789"
SHIPPED_HR = "Vaš paket {{1}} je poslan i stiže {{2}}. Odgovorite za više informacija."


class FloatClock:
    """Epoch seconds for the outbox (`Outbox.clock`), moved by hand."""

    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Rig:
    """The app on a socket, the fake Twilio pointed at it, and what came out."""

    services: Services
    fake: FakeTwilio
    public: str
    local: str
    outbox_clock: FloatClock
    outcomes: list[tuple[OutboundMessage, Receipt | None, SendError | None]] = field(default_factory=list)
    updates: list[DeliveryUpdate] = field(default_factory=list)

    @property
    def sms_channel(self) -> TwilioChannel:
        return self.services.channels[ChannelName.SMS]  # type: ignore[return-value]

    @property
    def whatsapp_channel(self) -> TwilioChannel:
        return self.services.channels[ChannelName.WHATSAPP]  # type: ignore[return-value]

    async def sms(self, body: str, from_: str = CUSTOMER, **kw: Any):  # type: ignore[no-untyped-def]
        return await self.fake.send_inbound(self.public + SMS_PATH, from_, body, **kw)

    async def whatsapp(self, body: str = "", from_: str = CUSTOMER, **kw: Any):  # type: ignore[no-untyped-def]
        return await self.fake.send_inbound(self.public + WHATSAPP_PATH, from_, body,
                                            channel="whatsapp", **kw)

    async def pump(self) -> None:
        await self.services.pump()

    def api_calls(self) -> list[dict[str, Any]]:
        return [r for r in self.fake.requests if r["path"].endswith("/Messages.json")]

    async def queued_inbound(self) -> int:
        return await self.services.store.xlen(self.services.store.keys.inbound())

    async def notify(self, address: Address, *, template: str = "shipped", locale: str = "hr",
                     variables: dict[str, str] | None = None, idem: str = "n1") -> None:
        """Enqueue a proactive (business-initiated) message and run the sender once."""
        await self.services.outbox.enqueue(OutboundMessage(
            idem=idem, address=address, text="Vaš paket HR-1 je poslan.", kind="notification",
            template=template, locale=locale,
            content={"variables": variables or {"1": "HR-1", "2": "24. 11."}}))
        await self.services.outbox.process_once("test")


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture(scope="module")
def messages_api() -> OpenAPI:
    spec = json.loads(shared("twilio", "twilio_api_v2010.json").read_text(encoding="utf-8"))
    return OpenAPI.from_dict({**spec, "paths": {p: spec["paths"][p] for p in (MESSAGES, MESSAGE)}})


@pytest.fixture
async def make_rig(store: Store, clock: Clock, i18n, messages_api: OpenAPI  # type: ignore[no-untyped-def]
                   ) -> AsyncIterator[RigFactory]:
    """Build the app with Twilio settings pointing at a fresh fake; check the spec afterwards."""
    made: list[tuple[Rig, TestServer, FakeTwilio]] = []

    async def factory(public: str = PUBLIC, templates: bool = True, **overrides: Any) -> Rig:
        fake = FakeTwilio(clock=clock)
        await fake.__aenter__()
        shipped = fake.add_template(SHIPPED_HR)
        settings = make_settings(**{
            "twilio_account_sid": fake.account_sid, "twilio_auth_token": fake.auth_token,
            "twilio_auth_token_secondary": SECONDARY, "twilio_api_base_url": fake.url,
            "twilio_sms_from": fake.phone_number, "twilio_whatsapp_from": fake.whatsapp_number,
            "public_base_url": public, "twilio_sms_mps": 50.0, "twilio_whatsapp_mps": 50.0,
            "whatsapp_templates": {"shipped:hr": shipped} if templates else {},
            **overrides,
        })
        demo = DemoCarrier(epoch=clock.now, speed=1.0, clock=clock)
        services = await Services.create(settings, store=store, carriers={"demo": demo},
                                         clock=clock, i18n=i18n)
        outbox_clock = FloatClock()
        services.outbox.clock = outbox_clock
        server = TestServer(create_app(services), host="127.0.0.1")
        await server.start_server()
        local = str(server.make_url("")).rstrip("/")
        fake.proxy(public, local)
        rig = Rig(services, fake, public.rstrip("/"), local, outbox_clock)
        delivery = next(c.delivery for c in services.channels.values() if isinstance(c, TwilioChannel))
        assert delivery is services.delivery  # Services wires receipts on every outcome

        async def remember(message, receipt, error) -> None:  # type: ignore[no-untyped-def]
            rig.outcomes.append((message, receipt, error))

        async def listen(update: DeliveryUpdate) -> None:
            rig.updates.append(update)

        services.outbox.add_outcome_hook(remember)
        delivery.listeners.append(listen)
        made.append((rig, server, fake))
        return rig

    yield factory
    for rig, server, fake in made:
        for call in rig.api_calls():
            if call["status"] == 201:
                assert_matches_spec(messages_api, call)
            else:  # refused calls: at least our request was well-formed
                request = MockRequest("https://api.twilio.com", "post", call["path"],
                                      headers=call["headers"], data=call["raw_body"],
                                      content_type="application/x-www-form-urlencoded")
                result = messages_api.unmarshal_request(request)
                assert not result.errors, result.errors
        await server.close()
        await fake.__aexit__(None, None, None)
        await rig.services.session.close()


@pytest.fixture
async def rig(make_rig: RigFactory) -> Rig:
    return await make_rig()


async def add_order(services: Services, **kw: Any) -> str:
    body = order_payload(**kw)
    order = validate_order(body, carriers=services.tracking.carriers,
                           detect=services.tracking.detect, now=services.tracking.clock())
    await services.orders.upsert(order)
    return body["shipments"][0]["tracking_number"]


async def consent_of(rig: Rig, address: Address) -> dict[str, Any]:
    customer = await rig.services.orders.customer_for(address, create=False)
    assert customer is not None
    return (await rig.services.consent.get(customer.id)).get(address.channel.value, {})


# ---------------------------------------------------------------- inbound SMS, signatures


async def test_signed_sms_reaches_the_engine_and_the_reply_goes_out(rig: Rig) -> None:
    await add_order(rig.services, order_id="HR-1", phone=CUSTOMER, locale="en",
                    timezone="Europe/Zagreb", journey=1, hours=10)
    answered = await rig.sms("where is my order HR-1")
    assert answered.status == 200
    assert answered.text.endswith("<Response/>")
    assert await rig.queued_inbound() == 1  # queued, answered before any work was done
    assert rig.fake.messages == []

    await rig.pump()
    [sent] = rig.fake.messages
    assert (sent["to"], sent["from"]) == (CUSTOMER, rig.fake.phone_number)
    assert sent["body"].startswith("Order HR-1\n")
    assert "Reply with a number:" in sent["body"]  # SMS has no buttons: numbered choices
    assert "Last update" not in sent["body"]  # the SMS-short variant of order_status
    assert sent["status_callback"] == PUBLIC + STATUS_PATH
    [(_, receipt, error)] = rig.outcomes
    assert error is None and isinstance(receipt, TwilioReceipt)
    assert (receipt.provider_id, receipt.encoding) == (sent["sid"], "GSM-7")
    assert str(receipt.segments) == sent["num_segments"]
    state = await rig.sms_channel.delivery.state(sent["sid"])
    assert state["status"] == "queued" and state["segments"] == sent["num_segments"]
    assert state["idem"].startswith("sms:")


async def test_croatian_sms_is_ucs2_and_counted_in_segments(rig: Rig) -> None:
    await add_order(rig.services, order_id="HR-2", phone=HR_CUSTOMER, journey=1, hours=10)
    await rig.sms("Gdje je moja narudžba HR-2?", from_=HR_CUSTOMER)
    await rig.pump()
    [sent] = rig.fake.messages
    assert sent["body"].startswith("Narudžba HR-2")
    [(_, receipt, _)] = rig.outcomes
    assert isinstance(receipt, TwilioReceipt) and receipt.encoding == "UCS-2"
    assert str(receipt.segments) == sent["num_segments"]


async def test_forged_signature_gets_403_and_nothing_is_queued(rig: Rig, caplog) -> None:  # type: ignore[no-untyped-def]
    forged = await rig.sms("where is my order HR-1", sign_with="0" * 32)
    assert forged.status == 403
    assert await rig.queued_inbound() == 0
    assert CUSTOMER not in caplog.text and mask(CUSTOMER) in caplog.text  # masked in logs

    # signed for the internal URL the app sees instead of the public one Twilio called
    params = {"MessageSid": "SM" + "1" * 32, "From": CUSTOMER, "To": rig.fake.phone_number,
              "Body": "hi", "AccountSid": rig.fake.account_sid}
    signature = rig.fake.sign(rig.local + SMS_PATH, params)
    async with aiohttp.ClientSession() as http, http.post(
            rig.local + SMS_PATH, data=params, headers={"X-Twilio-Signature": signature}) as resp:
        assert resp.status == 403
    async with aiohttp.ClientSession() as http, http.post(rig.local + SMS_PATH, data=params) as resp:
        assert resp.status == 403  # no signature at all
    await rig.pump()
    assert rig.fake.messages == [] and await rig.queued_inbound() == 0


async def test_the_secondary_token_is_accepted_during_rotation(rig: Rig) -> None:
    answered = await rig.sms("hi", sign_with=SECONDARY)
    assert answered.status == 200
    assert await rig.queued_inbound() == 1


async def test_public_url_behind_a_proxy_with_a_path_and_a_query(make_rig: RigFactory) -> None:
    rig = await make_rig(public="https://edge.example.com/shop-bot")
    answered = await rig.fake.send_inbound(rig.public + SMS_PATH + "?tenant=hr&x=a+b%20c", CUSTOMER, "hi")
    assert answered.status == 200
    assert answered.url.startswith(rig.local + SMS_PATH)  # it really went through the mapping
    await rig.pump()
    assert rig.fake.messages[-1]["status_callback"] == rig.public + STATUS_PATH


async def test_a_webhook_retry_with_the_same_message_sid_is_processed_once(rig: Rig) -> None:
    first = await rig.sms("hi")
    async with aiohttp.ClientSession() as http, http.post(
            first.url, data=first.params, headers=first.headers) as again:
        assert again.status == 200
    assert await rig.queued_inbound() == 1
    await rig.pump()
    assert len(rig.fake.messages) == 1


async def test_sms_stop_records_consent_end_to_end(rig: Rig) -> None:
    await rig.sms("STOP")
    await rig.pump()
    consent = await consent_of(rig, Address(ChannelName.SMS, CUSTOMER))
    assert consent["opted_in"] is False and consent["source"] == "keyword"
    assert rig.fake.auto_replies[-1]["to"] == CUSTOMER  # Twilio answered STOP itself
    # Twilio confirms STOP on SMS itself, so the bot sends nothing (it would only get 21610)
    assert rig.outcomes == [] and rig.fake.messages == []

    await rig.sms("START")
    await rig.pump()
    assert (await consent_of(rig, Address(ChannelName.SMS, CUSTOMER)))["opted_in"] is True
    assert rig.fake.messages[-1]["to"] == CUSTOMER  # the welcome-back reply went out


# ---------------------------------------------------------------- inbound WhatsApp parsing


async def test_quick_reply_button_payload_becomes_the_message_payload(rig: Rig) -> None:
    answered = await rig.whatsapp(button=("Talk to a person", "human"))
    assert answered.status == 200
    parsed = parse_inbound(rig.fake.inbound[-1], datetime.now(UTC))
    assert (parsed.message.payload, parsed.button_text) == ("human", "Talk to a person")
    assert parsed.message.address == Address(ChannelName.WHATSAPP, CUSTOMER)
    assert (parsed.message.profile_name, parsed.wa_id) == ("Ana Horvat", CUSTOMER.lstrip("+"))
    assert parsed.message_type == "interactive"
    await rig.pump()
    customer = await rig.services.orders.customer_for(parsed.message.address, create=False)
    assert customer is not None
    assert await rig.services.handoff.owner(customer.id) != "bot"  # the tap asked for a person


async def test_media_location_and_unknown_parameters_parse(rig: Rig) -> None:
    mms = await rig.sms("proof of delivery?", media=["image/jpeg", "application/pdf"],
                        FutureParameter="x")
    assert mms.status == 200
    parsed = parse_inbound(rig.fake.inbound[-1], datetime.now(UTC))
    assert [m.content_type for m in parsed.media] == ["image/jpeg", "application/pdf"]
    assert all(m.url.startswith("https://api.twilio.com/") for m in parsed.media)
    assert parsed.message.provider_id.startswith("MM")

    located = await rig.whatsapp(location=(45.8131, 15.9775, "Ilica 1, Zagreb", "Home"))
    assert located.status == 200
    parsed = parse_inbound(rig.fake.inbound[-1], datetime.now(UTC))
    assert parsed.location is not None
    assert (parsed.location.latitude, parsed.location.longitude) == (45.8131, 15.9775)
    assert (parsed.location.address, parsed.location.label) == ("Ilica 1, Zagreb", "Home")
    assert parsed.message_type == "location"
    assert await rig.queued_inbound() == 2


def test_parse_inbound_is_lenient_but_needs_a_sid_and_a_sender() -> None:
    at = datetime.now(UTC)
    parsed = parse_inbound({"MessageSid": "SMx", "From": "+385911234567", "NumMedia": "two",
                            "MediaUrl0": "https://m/0", "Latitude": "north", "Longitude": "1"}, at)
    assert [m.url for m in parsed.media] == ["https://m/0"] and parsed.location is None
    assert parsed.message.text == "" and not parsed.empty
    with pytest.raises(ValueError):
        parse_inbound({"From": "+385911234567", "Body": "hi"}, at)


# ---------------------------------------------------------------- WhatsApp window


async def test_inside_the_window_free_text_with_numbered_buttons(rig: Rig) -> None:
    await rig.whatsapp("hi")
    await rig.pump()
    [sent] = rig.fake.messages
    assert (sent["to"], sent["from"]) == ("whatsapp:" + CUSTOMER, "whatsapp:" + rig.fake.whatsapp_number)
    assert sent["content_sid"] is None and "Body" in rig.api_calls()[-1]["params"]
    assert "1. My orders\n2. Talk to a person\n3. Language" in sent["body"]

    await rig.whatsapp("1")  # typing a number picks that button
    await rig.pump()
    assert "could not find orders linked to this chat" in rig.fake.messages[-1]["body"]


async def test_outside_the_window_only_the_content_template(rig: Rig) -> None:
    address = Address(ChannelName.WHATSAPP, HR_CUSTOMER)
    await rig.notify(address, variables={"1": "HR-1", "2": "u utorak"})
    call = rig.api_calls()[-1]
    assert call["status"] == 201
    assert "Body" not in call["params"]
    assert call["params"]["ContentSid"] == rig.whatsapp_channel.templates["shipped:hr"]
    assert json.loads(call["params"]["ContentVariables"]) == {"1": "HR-1", "2": "u utorak"}
    assert rig.fake.messages[-1]["body"] == (
        "Vaš paket HR-1 je poslan i stiže u utorak. Odgovorite za više informacija.")

    # the customer writes: free text for a day, then only the template again
    await rig.whatsapp("ok", from_=HR_CUSTOMER)
    await rig.notify(address, idem="n2")
    assert "Body" in rig.api_calls()[-1]["params"]
    rig.fake.clock.advance(hours=24, seconds=1)  # type: ignore[attr-defined]
    await rig.notify(address, idem="n3")
    assert "ContentSid" in rig.api_calls()[-1]["params"]
    assert "Body" not in rig.api_calls()[-1]["params"]


async def test_no_template_means_nothing_is_sent_and_the_message_dead_letters(rig: Rig) -> None:
    await rig.notify(Address(ChannelName.WHATSAPP, HR_CUSTOMER), template="delayed")
    assert rig.api_calls() == []
    [(_, receipt, error)] = rig.outcomes
    assert receipt is None and error is not None
    assert (error.needs_template, error.permanent, error.code) == (True, True, "63016")
    [(_, dead)] = await rig.services.outbox.dead_letters()
    assert (dead["code"], dead["permanent"]) == ("63016", "1")


async def test_twilio_saying_63016_switches_to_the_template_once(rig: Rig) -> None:
    address = Address(ChannelName.WHATSAPP, HR_CUSTOMER)
    # our record says the window is open; Twilio disagrees (say, the record outlived a restore)
    store = rig.services.store
    await store.set_str(store.keys.address_state("whatsapp", HR_CUSTOMER, "wa-window"),
                        rig.fake.clock().isoformat())
    await rig.notify(address)
    first, second = rig.api_calls()
    assert (first["status"], first["response"]["code"]) == (400, 63016)
    assert second["status"] == 201 and "ContentSid" in second["params"]
    assert not await rig.whatsapp_channel.window_open(address)


# ---------------------------------------------------------------- errors from Twilio


async def test_21610_records_the_opt_out_and_is_never_retried(rig: Rig) -> None:
    rig.fake.opted_out.add(CUSTOMER)  # opted out on Twilio's side only
    await rig.sms("hi")
    await rig.pump()
    consent = await consent_of(rig, Address(ChannelName.SMS, CUSTOMER))
    assert (consent["opted_in"], consent["source"]) == (False, "provider_error")
    rig.outbox_clock.t += 3600
    await rig.pump()
    assert len(rig.api_calls()) == 1
    [(_, dead)] = await rig.services.outbox.dead_letters()
    assert dead["code"] == "21610" and CUSTOMER not in dead["error"]


async def test_63024_marks_the_whatsapp_address_unreachable(rig: Rig) -> None:
    rig.fake.not_on_whatsapp.add(HR_CUSTOMER)
    await rig.notify(Address(ChannelName.WHATSAPP, HR_CUSTOMER))
    delivery = rig.whatsapp_channel.delivery
    assert await delivery.is_unreachable(Address(ChannelName.WHATSAPP, HR_CUSTOMER))
    assert not await delivery.is_unreachable(Address(ChannelName.SMS, HR_CUSTOMER))
    [(_, _, error)] = rig.outcomes
    assert error is not None and error.unreachable and error.code == "63024"
    # writing in again proves the address works: the mark goes
    await rig.whatsapp("hi", from_=HR_CUSTOMER)
    assert not await delivery.is_unreachable(Address(ChannelName.WHATSAPP, HR_CUSTOMER))


async def test_429_is_retried_after_exactly_the_retry_after_delay(rig: Rig) -> None:
    rig.fake.fail_next(429, retry_after=7)
    await rig.sms("hi")
    await rig.pump()
    assert [c["status"] for c in rig.api_calls()] == [429]
    rig.outbox_clock.t += 6.999
    await rig.services.outbox.process_once("test")
    assert len(rig.api_calls()) == 1
    rig.outbox_clock.t += 0.001
    await rig.services.outbox.process_once("test")
    assert [c["status"] for c in rig.api_calls()] == [429, 201]
    assert rig.fake.messages[-1]["to"] == CUSTOMER


async def test_5xx_is_retried_with_backoff(rig: Rig) -> None:
    rig.fake.fail_next(503)
    await rig.sms("hi")
    await rig.pump()
    rig.outbox_clock.t += 601  # beyond any backoff of the first retry
    await rig.services.outbox.process_once("test")
    assert [c["status"] for c in rig.api_calls()] == [503, 201]


@pytest.mark.parametrize(("status", "code", "flags"), [
    (400, 21610, {"opted_out": True, "permanent": True}),
    (400, 63014, {"opted_out": True, "permanent": True}),
    (400, 21211, {"unreachable": True, "permanent": True}),
    (400, 21612, {"unreachable": True, "permanent": True}),
    (400, 21614, {"unreachable": True, "permanent": True}),
    (400, 63024, {"unreachable": True, "permanent": True}),
    (400, 63016, {"needs_template": True, "permanent": True}),
    (400, 30007, {"permanent": True, "unreachable": False}),
    (400, 21408, {"permanent": True}),
    (429, 20429, {"permanent": False, "retry_after": 3.0}),
    (500, 20500, {"permanent": False, "retry_after": 3.0}),
    (401, 20003, {"permanent": False}),
])
def test_twilio_errors_are_mapped_by_meaning(status: int, code: int, flags: dict[str, Any]) -> None:
    error = twilio_error(status, code, 3.0)
    assert error.code == str(code)
    for name, value in flags.items():
        assert getattr(error, name) == value, name


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds("Mon, 23 Nov 2026 09:00:30 GMT", now) == 30.0
    assert retry_after_seconds(None, now) is None and retry_after_seconds("soon", now) is None


# ---------------------------------------------------------------- status callbacks


async def test_status_callbacks_out_of_order_end_in_the_highest_state(rig: Rig) -> None:
    await rig.sms("hi")
    await rig.pump()
    sid = rig.fake.messages[-1]["sid"]
    deliveries = await rig.fake.deliver_callbacks(reverse=True)  # delivered, then sent
    assert [d.params["MessageStatus"] for d in deliveries] == ["delivered", "sent"]
    assert all(d.status == 200 for d in deliveries)
    state = await rig.sms_channel.delivery.state(sid)
    assert state["status"] == "delivered"
    moved = [u for u in rig.updates if u.provider_id == sid]
    assert [u.status for u in moved] == ["queued", "delivered"]  # the late 'sent' moved nothing
    assert moved[-1].final and moved[-1].idem.startswith("sms:")


async def test_whatsapp_read_receipts_win_over_late_callbacks(rig: Rig) -> None:
    rig.fake.whatsapp_read_receipts = True
    await rig.whatsapp("hi")
    await rig.pump()
    sid = rig.fake.messages[-1]["sid"]
    await rig.fake.deliver_callbacks(reverse=True)
    assert (await rig.whatsapp_channel.delivery.state(sid))["status"] == "read"


async def test_undelivered_30007_is_terminal_and_keeps_the_address(rig: Rig) -> None:
    rig.fake.fail_delivery(CUSTOMER, 30007)
    await rig.sms("hi")
    await rig.pump()
    sid = rig.fake.messages[-1]["sid"]
    await rig.fake.deliver_callbacks()
    delivery = rig.sms_channel.delivery
    state = await delivery.state(sid)
    assert (state["status"], state["error_code"]) == ("undelivered", "30007")
    assert not await delivery.record_status(sid, "delivered")  # terminal: nothing after it
    assert not await delivery.is_unreachable(Address(ChannelName.SMS, CUSTOMER))


async def test_a_failed_callback_with_63024_marks_the_address_unreachable(rig: Rig) -> None:
    rig.fake.fail_delivery(HR_CUSTOMER, 63024)
    await rig.whatsapp("hi", from_=HR_CUSTOMER)
    await rig.pump()
    await rig.fake.deliver_callbacks()
    sid = rig.fake.messages[-1]["sid"]
    assert (await rig.whatsapp_channel.delivery.state(sid))["status"] == "failed"
    assert await rig.whatsapp_channel.delivery.is_unreachable(Address(ChannelName.WHATSAPP, HR_CUSTOMER))


async def test_status_callbacks_need_a_valid_signature(rig: Rig) -> None:
    params = {"MessageSid": "SM" + "2" * 32, "MessageStatus": "delivered", "To": CUSTOMER}
    signature = rig.fake.sign(rig.public + STATUS_PATH, params, "0" * 32)
    async with aiohttp.ClientSession() as http, http.post(
            rig.local + STATUS_PATH, data=params, headers={"X-Twilio-Signature": signature}) as resp:
        assert resp.status == 403
    assert await rig.sms_channel.delivery.state("SM" + "2" * 32) == {}


# ---------------------------------------------------------------- wiring, pacing, helpers


async def test_build_makes_the_configured_channels_with_their_limits(make_rig: RigFactory) -> None:
    rig = await make_rig()
    sms, whatsapp = rig.sms_channel, rig.whatsapp_channel
    assert (sms.limits.max_buttons, sms.limits.per_second, sms.limits.messaging_window_hours) == (0, 50.0, 0)
    assert (whatsapp.limits.max_buttons, whatsapp.limits.messaging_window_hours) == (0, 24)  # buttons come numbered in the text
    assert sms.client is whatsapp.client and sms.delivery is whatsapp.delivery
    assert sms.client.api.base_url == rig.fake.url
    assert [r.path for r in sms.routes()] == [SMS_PATH, STATUS_PATH]
    assert [r.path for r in whatsapp.routes()] == [WHATSAPP_PATH]

    only_service = await make_rig(twilio_sms_from="", twilio_whatsapp_from="",
                                  twilio_messaging_service_sid="MG" + "ab" * 16)
    assert set(only_service.services.channels) == {ChannelName.WEBCHAT, ChannelName.SMS}
    await only_service.sms("hi")
    await only_service.pump()
    params = only_service.api_calls()[-1]["params"]
    assert params["MessagingServiceSid"] == "MG" + "ab" * 16 and "From" not in params


async def test_sms_pacing_counts_segments_in_the_senders_bucket(rig: Rig) -> None:
    channel = rig.sms_channel
    channel.limits = replace(channel.limits, per_second=2.0)
    now = [1_000.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    channel.now, channel.sleep = (lambda: now[0]), sleep
    for i in range(2):  # 3 segments each: the outbox takes 1 token per call, the channel 2 more
        receipt = await channel.send(OutboundMessage(idem=f"p{i}", address=Address(
            ChannelName.SMS, CUSTOMER), text="x" * 400))
        assert isinstance(receipt, TwilioReceipt) and receipt.segments == 3
    rate = 2.0 * getattr(outbox_module, "HEADROOM", 1.0)
    # 4 extra tokens from a bucket of 1: the first is there, each other one waits 1/rate
    assert sum(slept) == pytest.approx(3 / rate, abs=0.01)


async def test_an_over_long_sms_goes_out_in_parts_each_sent_once(rig: Rig) -> None:
    text = "\n".join(f"Line {i:03d} " + "x" * 40 for i in range(60))
    message = OutboundMessage(idem="long", address=Address(ChannelName.SMS, CUSTOMER), text=text)
    parts = rig.sms_channel.split(message)
    assert [p.idem for p in parts] == ["long#1", "long#2"]
    assert rig.whatsapp_channel.split(replace(message, address=Address(
        ChannelName.WHATSAPP, CUSTOMER))) == [replace(message, address=Address(
            ChannelName.WHATSAPP, CUSTOMER))]
    await rig.services.outbox.enqueue(message)
    await rig.services.outbox.process_once("test")
    assert [len(m["body"]) <= 1600 for m in rig.fake.messages] == [True, True]
    assert "\n".join(m["body"] for m in rig.fake.messages) == text


def test_over_long_text_is_split_at_line_breaks() -> None:
    text = "\n".join(f"line {i:03d} " + "x" * 40 for i in range(60))
    parts = split_body(text)
    assert len(parts) == 2 and all(len(p) <= 1600 for p in parts)
    assert "\n".join(parts) == text
    assert split_body("short") == ["short"]


async def test_no_reply_on_sms_after_stop_until_start(rig: Rig) -> None:
    await rig.sms("STOP")
    await rig.pump()
    await rig.sms("hello?")
    await rig.pump()
    assert rig.fake.messages == [] and rig.outcomes == []  # nothing Twilio would refuse
    await rig.sms("START")
    await rig.pump()
    assert [m["to"] for m in rig.fake.messages] == [CUSTOMER]
