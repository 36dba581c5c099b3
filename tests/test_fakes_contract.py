"""Contract tests: the fake Twilio and fake Telegram, driven by the real client libraries.

Twilio: requests and 201/200 bodies are validated with openapi-core against the official
twilio_api_v2010.json; webhooks are verified with twilio's RequestValidator. Telegram: the fake is
driven by python-telegram-bot's Bot and checked against api.json's method and type tables.
"""

from __future__ import annotations

import hmac
import json
import re
import warnings
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, RetryAfter
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from tests.fakes import serve
from tests.fakes.telegram import FakeTelegram, Limit, check_object
from tests.fakes.twilio import SPEC_VIOLATION, FakeTwilio, create_message_schema
from tests.paths import shared

MESSAGES = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
MESSAGE = "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json"
PUBLIC = "https://shipmate.example.com"
CUSTOMER = "+385911234567"
WA_CUSTOMER = "whatsapp:" + CUSTOMER
INBOUND_SMS_PARAMS = {
    "MessageSid", "SmsSid", "SmsMessageSid", "AccountSid", "From", "To", "Body",
    "NumMedia", "NumSegments", "SmsStatus", "ApiVersion",
}  # fmt: skip


# ---- Twilio helpers ------------------------------------------------------------------------


class TwilioReceiver:
    """The smallest app endpoint: verify X-Twilio-Signature on the public URL, record params."""

    def __init__(self, auth_token: str, public_base: str) -> None:
        self.validator = RequestValidator(auth_token)
        self.public_base = public_base
        self.received: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_post("/twilio/{kind}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        url = self.public_base + request.raw_path
        valid = self.validator.validate(url, form, request.headers.get("X-Twilio-Signature", ""))
        self.received.append(
            {"kind": request.match_info["kind"], "params": dict(form), "valid": valid}
        )
        if not valid:
            return web.Response(status=403, text="bad signature")
        return web.Response(text="<Response/>", content_type="text/xml")


@pytest.fixture(scope="module")
def messages_api() -> OpenAPI:
    spec = json.loads(shared("twilio", "twilio_api_v2010.json").read_text(encoding="utf-8"))
    # Only the Messages paths: loading all ~200 operations takes seconds and checks nothing more.
    return OpenAPI.from_dict({**spec, "paths": {p: spec["paths"][p] for p in (MESSAGES, MESSAGE)}})


def assert_matches_spec(api: OpenAPI, recorded: dict[str, Any]) -> None:
    """Validate one request the fake received, and its answer, against the OpenAPI spec."""
    content_type = recorded["headers"].get("Content-Type", "application/json").split(";")[0]
    request = MockRequest(
        "https://api.twilio.com",
        recorded["method"].lower(),
        recorded["path"],
        headers=recorded["headers"],
        data=recorded["raw_body"] or None,
        content_type=content_type,
    )
    result = api.unmarshal_request(request)
    assert not result.errors, result.errors
    body = json.dumps(recorded["response"]).encode()
    api.validate_response(
        request, MockResponse(body, recorded["status"], content_type="application/json")
    )


@pytest.fixture
async def twilio() -> Any:
    async with FakeTwilio() as fake:
        yield fake


@pytest.fixture
async def receiver(twilio: FakeTwilio) -> Any:
    app = TwilioReceiver(twilio.auth_token, PUBLIC)
    async with serve(app.app) as url:
        twilio.proxy(PUBLIC, url)
        yield app


@pytest.fixture
async def client(twilio: FakeTwilio) -> Any:
    http = AsyncTwilioHttpClient()
    client = Client(twilio.account_sid, twilio.auth_token, http_client=http, environment={})
    client.api.base_url = twilio.url
    yield client
    await http.close()


# ---- Twilio: REST contract -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "num_segments"),
    [
        ("Vaš paket HR123 je isporučen.", "1"),
        ("a" * 161, "2"),
        ("č" * 71, "2"),
        ("€" * 80, "1"),
        ("Paket HR123 stiže sutra 😀", "1"),
    ],
)
async def test_sms_send_matches_the_spec(
    twilio: FakeTwilio, client: Client, messages_api: OpenAPI, body: str, num_segments: str
) -> None:
    message = await client.messages.create_async(
        to=CUSTOMER, from_=twilio.phone_number, body=body, status_callback=PUBLIC + "/twilio/status"
    )
    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
    assert (message.status, message.direction, message.body) == ("queued", "outbound-api", body)
    assert message.num_segments == num_segments
    assert message.date_created.tzinfo is not None
    assert message.error_code is None
    created = twilio.requests[-1]
    assert created["status"] == 201
    assert set(created["params"]) <= set(create_message_schema()["properties"])
    assert_matches_spec(messages_api, created)

    fetched = await client.messages(message.sid).fetch_async()
    assert (fetched.sid, fetched.body, fetched.to) == (message.sid, body, CUSTOMER)
    assert_matches_spec(messages_api, twilio.requests[-1])
    assert twilio.messages[-1]["status_callback"] == PUBLIC + "/twilio/status"


async def test_media_urls_are_a_list_and_make_an_mms(
    twilio: FakeTwilio, client: Client, messages_api: OpenAPI
) -> None:
    urls = ["https://cdn.example.com/label.png", "https://cdn.example.com/proof.jpg"]
    message = await client.messages.create_async(
        to=CUSTOMER, from_=twilio.phone_number, body="Dokaz dostave", media_url=urls
    )
    assert message.sid.startswith("MM") and message.num_media == "2"
    assert twilio.requests[-1]["params"]["MediaUrl"] == urls
    assert_matches_spec(messages_api, twilio.requests[-1])


async def test_messaging_service_send_is_accepted_then_gets_a_sender(
    twilio: FakeTwilio, client: Client, messages_api: OpenAPI, receiver: TwilioReceiver
) -> None:
    service = "MG" + "ab" * 16
    message = await client.messages.create_async(
        to=CUSTOMER,
        messaging_service_sid=service,
        body="a" * 200,
        status_callback=PUBLIC + "/twilio/status",
    )
    assert (message.status, message.num_segments, message.from_) == ("accepted", "0", None)
    assert_matches_spec(messages_api, twilio.requests[-1])
    statuses = [d.params["MessageStatus"] for d in await twilio.deliver_callbacks()]
    assert statuses == ["queued", "sent", "delivered"]
    assert all(d.params["MessagingServiceSid"] == service for d in twilio.callbacks)
    fetched = await client.messages(message.sid).fetch_async()
    assert (fetched.status, fetched.from_, fetched.num_segments) == (
        "delivered",
        twilio.phone_number,
        "2",
    )


@pytest.mark.parametrize(
    ("to", "code"),
    [
        ("+15005550001", 21211),
        ("+15005550002", 21612),
        ("+15005550003", 21408),
        ("+15005550004", 21610),
        ("+15005550009", 21614),
        ("0911234567", 21211),
    ],
)
async def test_sync_errors_raise_twilio_rest_exception(
    twilio: FakeTwilio, client: Client, to: str, code: int
) -> None:
    with pytest.raises(TwilioRestException) as caught:
        await client.messages.create_async(to=to, from_=twilio.phone_number, body="Bok")
    assert (caught.value.status, caught.value.code) == (400, code)
    answer = twilio.requests[-1]["response"]
    assert set(answer) == {"code", "message", "more_info", "status"}
    assert answer["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert twilio.messages == []


async def test_missing_sender_or_content_is_refused(twilio: FakeTwilio, client: Client) -> None:
    with pytest.raises(TwilioRestException) as no_sender:
        await client.messages.create_async(to=CUSTOMER, body="Bok")
    with pytest.raises(TwilioRestException) as no_body:
        await client.messages.create_async(to=CUSTOMER, from_=twilio.phone_number)
    assert (no_sender.value.code, no_body.value.code) == (21603, 21602)


async def test_wrong_credentials_get_401(twilio: FakeTwilio) -> None:
    http = AsyncTwilioHttpClient()
    intruder = Client(twilio.account_sid, "0" * 32, http_client=http, environment={})
    intruder.api.base_url = twilio.url
    try:
        with pytest.raises(TwilioRestException) as caught:
            await intruder.messages.create_async(to=CUSTOMER, from_=twilio.phone_number, body="x")
    finally:
        await http.close()
    assert (caught.value.status, caught.value.code) == (401, 20003)
    assert twilio.messages == []


@pytest.mark.parametrize(
    "form",
    [
        {"To": CUSTOMER, "From": "+15005550006", "Body": "x", "Statuscallback": "https://a.b/c"},
        {"To": CUSTOMER, "From": "+15005550006", "ContentSid": "HX123"},
        {"To": CUSTOMER, "From": "+15005550006", "Body": "x", "ProvideFeedback": "maybe"},
    ],
)
async def test_params_outside_the_spec_are_refused(
    twilio: FakeTwilio, form: dict[str, str]
) -> None:
    url = f"{twilio.url}/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
    auth = {"Authorization": aiohttp.encode_basic_auth(twilio.account_sid, twilio.auth_token)}
    async with aiohttp.ClientSession() as session, session.post(url, data=form, headers=auth) as r:
        answer = await r.json()
    assert (r.status, answer["code"]) == (400, SPEC_VIOLATION)


# ---- Twilio: WhatsApp 24-hour window ---------------------------------------------------------


async def test_whatsapp_free_form_needs_the_24_hour_window(
    twilio: FakeTwilio, client: Client, receiver: TwilioReceiver, messages_api: OpenAPI
) -> None:
    sender = "whatsapp:" + twilio.whatsapp_number
    template = twilio.add_template("Vaš paket {{1}} stiže {{2}}")
    variables = json.dumps({"1": "HR123", "2": "7. 3. 2025."})

    with pytest.raises(TwilioRestException) as outside:
        await client.messages.create_async(to=WA_CUSTOMER, from_=sender, body="Bok!")
    assert outside.value.code == 63016

    sent = await client.messages.create_async(
        to=WA_CUSTOMER, from_=sender, content_sid=template, content_variables=variables
    )
    assert sent.body == "Vaš paket HR123 stiže 7. 3. 2025."
    assert sent.num_segments == "1"
    assert_matches_spec(messages_api, twilio.requests[-1])

    with pytest.raises(TwilioRestException) as both:
        await client.messages.create_async(
            to=WA_CUSTOMER,
            from_=sender,
            content_sid=template,
            content_variables=variables,
            body="x",
        )
    assert both.value.code == 63016

    reply = await twilio.send_inbound(
        PUBLIC + "/twilio/whatsapp", CUSTOMER, "Gdje je paket?", channel="whatsapp"
    )
    assert reply.status == 200
    inside = await client.messages.create_async(to=WA_CUSTOMER, from_=sender, body="Evo ga!")
    assert inside.status == "queued"

    twilio.clock.advance(hours=24, seconds=1)
    with pytest.raises(TwilioRestException) as expired:
        await client.messages.create_async(to=WA_CUSTOMER, from_=sender, body="Još nešto?")
    assert expired.value.code == 63016
    await client.messages.create_async(
        to=WA_CUSTOMER, from_=sender, content_sid=template, content_variables=variables
    )


async def test_whatsapp_body_and_content_sid_together_are_refused_inside_the_window(
    twilio: FakeTwilio, client: Client
) -> None:
    twilio.open_window(CUSTOMER)
    template = twilio.add_template("Bok {{1}}")
    with pytest.raises(TwilioRestException) as caught:
        await client.messages.create_async(
            to=WA_CUSTOMER, from_="whatsapp:" + twilio.whatsapp_number, body="x",
            content_sid=template, content_variables='{"1": "Ana"}',
        )  # fmt: skip
    assert caught.value.code == SPEC_VIOLATION


@pytest.mark.parametrize(
    ("registered", "variables", "code"),
    [
        (False, '{"1": "HR1"}', 21655),
        (True, "not json", 21656),
        (True, "{}", 21656),
        (True, '{"1": 5}', 21656),
    ],
)
async def test_whatsapp_template_errors(
    twilio: FakeTwilio, client: Client, registered: bool, variables: str, code: int
) -> None:
    sid = twilio.add_template("Paket {{1}}") if registered else "HX" + "0" * 32
    with pytest.raises(TwilioRestException) as caught:
        await client.messages.create_async(
            to=WA_CUSTOMER, from_="whatsapp:" + twilio.whatsapp_number,
            content_sid=sid, content_variables=variables,
        )  # fmt: skip
    assert caught.value.code == code


async def test_numbers_not_on_whatsapp_get_63024_but_sms_still_works(
    twilio: FakeTwilio, client: Client
) -> None:
    twilio.not_on_whatsapp.add(CUSTOMER)
    twilio.open_window(CUSTOMER)
    with pytest.raises(TwilioRestException) as caught:
        await client.messages.create_async(
            to=WA_CUSTOMER, from_="whatsapp:" + twilio.whatsapp_number, body="x"
        )
    assert caught.value.code == 63024
    sms = await client.messages.create_async(to=CUSTOMER, from_=twilio.phone_number, body="x")
    assert sms.status == "queued"


async def test_sender_and_recipient_must_share_a_channel(
    twilio: FakeTwilio, client: Client
) -> None:
    with pytest.raises(TwilioRestException) as caught:
        await client.messages.create_async(to=WA_CUSTOMER, from_=twilio.phone_number, body="x")
    assert caught.value.code == 21910


# ---- Twilio: STOP / START --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop", "start"), [("STOP", "START"), ("unsubscribe", "yes"), (" Quit ", "UNSTOP")]
)
async def test_stop_and_start_keywords_toggle_sms_opt_out(
    twilio: FakeTwilio, client: Client, receiver: TwilioReceiver, stop: str, start: str
) -> None:
    answered = await twilio.send_inbound(PUBLIC + "/twilio/sms", CUSTOMER, stop)
    assert answered.status == 200
    assert receiver.received[-1]["params"]["Body"] == stop  # the app still sees the keyword
    with pytest.raises(TwilioRestException) as caught:
        await client.messages.create_async(to=CUSTOMER, from_=twilio.phone_number, body="Paket")
    assert caught.value.code == 21610

    await twilio.send_inbound(PUBLIC + "/twilio/sms", CUSTOMER, start)
    message = await client.messages.create_async(
        to=CUSTOMER, from_=twilio.phone_number, body="Paket"
    )
    assert message.status == "queued"
    assert [r["to"] for r in twilio.auto_replies] == [CUSTOMER, CUSTOMER]


async def test_keywords_only_count_as_the_whole_message_and_only_on_sms(
    twilio: FakeTwilio, client: Client, receiver: TwilioReceiver
) -> None:
    await twilio.send_inbound(PUBLIC + "/twilio/sms", CUSTOMER, "please stop the delivery")
    await twilio.send_inbound(PUBLIC + "/twilio/whatsapp", CUSTOMER, "STOP", channel="whatsapp")
    assert twilio.opted_out == set()
    await client.messages.create_async(to=CUSTOMER, from_=twilio.phone_number, body="ok")
    await client.messages.create_async(
        to=WA_CUSTOMER, from_="whatsapp:" + twilio.whatsapp_number, body="ok"
    )


# ---- Twilio: status callbacks -----------------------------------------------------------------


async def test_status_callbacks_are_signed_and_wait_for_a_flush(
    twilio: FakeTwilio, client: Client, receiver: TwilioReceiver
) -> None:
    callback = PUBLIC + "/twilio/status?tenant=hr&x=a+b"
    message = await client.messages.create_async(
        to=CUSTOMER, from_=twilio.phone_number, body="Paket", status_callback=callback
    )
    assert receiver.received == []
    deliveries = await twilio.deliver_callbacks()
    assert [d.params["MessageStatus"] for d in deliveries] == ["sent", "delivered"]
    assert all(d.status == 200 for d in deliveries)
    assert all(r["valid"] for r in receiver.received)
    first = receiver.received[0]["params"]
    assert {
        "MessageSid",
        "MessageStatus",
        "SmsSid",
        "SmsStatus",
        "AccountSid",
        "From",
        "To",
        "ApiVersion",
    } <= set(first)
    assert (first["MessageSid"], first["To"], first["From"]) == (
        message.sid,
        CUSTOMER,
        twilio.phone_number,
    )
    fetched = await client.messages(message.sid).fetch_async()
    assert fetched.status == "delivered" and fetched.date_sent is not None
    assert await twilio.deliver_callbacks() == []

    delivered = deliveries[-1]
    signature = delivered.headers["X-Twilio-Signature"]
    validator = RequestValidator(twilio.auth_token)
    assert validator.validate(delivered.signed_url, delivered.params, signature)
    tampered = {**delivered.params, "MessageStatus": "failed"}
    assert not validator.validate(delivered.signed_url, tampered, signature)
    assert not validator.validate(delivered.url, delivered.params, signature)  # internal URL
    assert not RequestValidator("f" * 32).validate(
        delivered.signed_url, delivered.params, signature
    )


@pytest.mark.parametrize(
    ("code", "expected"), [(30007, ["sent", "undelivered"]), (30008, ["failed"])]
)
async def test_delivery_failures_carry_error_codes(
    twilio: FakeTwilio, client: Client, receiver: TwilioReceiver, code: int, expected: list[str]
) -> None:
    twilio.fail_delivery(CUSTOMER, code, status=None if code == 30007 else "failed")
    message = await client.messages.create_async(
        to=CUSTOMER,
        from_=twilio.phone_number,
        body="Paket",
        status_callback=PUBLIC + "/twilio/status",
    )
    deliveries = await twilio.deliver_callbacks()
    assert [d.params["MessageStatus"] for d in deliveries] == expected
    assert deliveries[-1].params["ErrorCode"] == str(code)
    assert "ErrorCode" not in deliveries[0].params or len(deliveries) == 1
    fetched = await client.messages(message.sid).fetch_async()
    assert (fetched.status, fetched.error_code) == (expected[-1], code)


async def test_callbacks_can_arrive_out_of_order_and_status_stays_monotonic(
    twilio: FakeTwilio, client: Client, receiver: TwilioReceiver
) -> None:
    twilio.whatsapp_read_receipts = True
    twilio.open_window(CUSTOMER)
    message = await client.messages.create_async(
        to=WA_CUSTOMER, from_="whatsapp:" + twilio.whatsapp_number, body="Paket stiže",
        status_callback=PUBLIC + "/twilio/status",
    )  # fmt: skip
    deliveries = await twilio.deliver_callbacks(reverse=True)
    assert [d.params["MessageStatus"] for d in deliveries] == ["read", "delivered", "sent"]
    assert all(r["valid"] for r in receiver.received)
    assert deliveries[0].params["ChannelPrefix"] == "whatsapp"
    fetched = await client.messages(message.sid).fetch_async()
    assert fetched.status == "read"


# ---- Twilio: throttling and outages -----------------------------------------------------------


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (500, 20500), (503, 20503)])
async def test_switchable_429_and_5xx(
    twilio: FakeTwilio, client: Client, status: int, code: int
) -> None:
    twilio.fail_next(status, retry_after=7)
    with pytest.raises(TwilioRestException) as caught:
        await client.messages.create_async(to=CUSTOMER, from_=twilio.phone_number, body="x")
    assert (caught.value.status, caught.value.code) == (status, code)
    headers = client.http_client._test_only_last_response.headers
    assert headers.get("Retry-After") == ("7" if status == 429 else None)
    assert twilio.messages == []
    retried = await client.messages.create_async(to=CUSTOMER, from_=twilio.phone_number, body="x")
    assert retried.status == "queued"


# ---- Twilio: inbound webhooks -----------------------------------------------------------------


async def test_inbound_sms_has_the_documented_params_and_a_valid_signature(
    twilio: FakeTwilio, receiver: TwilioReceiver
) -> None:
    answered = await twilio.send_inbound(PUBLIC + "/twilio/sms", CUSTOMER, "Gdje je moj paket?")
    assert (answered.status, answered.text) == (200, "<Response/>")
    params = receiver.received[-1]["params"]
    assert receiver.received[-1]["valid"]
    assert set(params) == INBOUND_SMS_PARAMS
    assert params["MessageSid"] == params["SmsSid"] == params["SmsMessageSid"]
    assert (params["SmsStatus"], params["ApiVersion"], params["NumSegments"]) == (
        "received",
        "2010-04-01",
        "1",
    )
    assert (params["From"], params["To"]) == (CUSTOMER, twilio.phone_number)
    assert twilio.message(params["MessageSid"])["direction"] == "inbound"


async def test_inbound_whatsapp_quick_reply_tap(
    twilio: FakeTwilio, receiver: TwilioReceiver
) -> None:
    await twilio.send_inbound(
        PUBLIC + "/twilio/whatsapp",
        CUSTOMER,
        channel="whatsapp",
        button=("Prati paket", "track:HR123"),
    )
    params = receiver.received[-1]["params"]
    assert receiver.received[-1]["valid"]
    assert INBOUND_SMS_PARAMS | {
        "ProfileName",
        "WaId",
        "MessageType",
        "ButtonText",
        "ButtonPayload",
    } <= set(params)
    assert (params["From"], params["To"]) == (WA_CUSTOMER, "whatsapp:" + twilio.whatsapp_number)
    assert (params["Body"], params["ButtonText"], params["ButtonPayload"]) == (
        "Prati paket",
        "Prati paket",
        "track:HR123",
    )
    assert (params["MessageType"], params["WaId"]) == ("interactive", CUSTOMER.lstrip("+"))


async def test_inbound_media_and_location(twilio: FakeTwilio, receiver: TwilioReceiver) -> None:
    await twilio.send_inbound(
        PUBLIC + "/twilio/whatsapp", CUSTOMER, channel="whatsapp", media=["image/jpeg"]
    )
    media = receiver.received[-1]["params"]
    assert media["MessageSid"].startswith("MM") and media["NumMedia"] == "1"
    assert media["MediaContentType0"] == "image/jpeg" and media["MessageType"] == "image"
    assert media["MediaUrl0"].startswith(
        f"https://api.twilio.com/2010-04-01/Accounts/{twilio.account_sid}/Messages/"
    )

    await twilio.send_inbound(
        PUBLIC + "/twilio/whatsapp", CUSTOMER, channel="whatsapp",
        location=(45.8131, 15.9772, "Ilica 1, Zagreb", "Ured"),
    )  # fmt: skip
    place = receiver.received[-1]["params"]
    assert (place["Latitude"], place["Longitude"], place["Address"], place["Label"]) == (
        "45.8131", "15.9772", "Ilica 1, Zagreb", "Ured",
    )  # fmt: skip
    assert place["MessageType"] == "location"


async def test_forged_inbound_is_refused_by_a_validating_app(
    twilio: FakeTwilio, receiver: TwilioReceiver
) -> None:
    answered = await twilio.send_inbound(
        PUBLIC + "/twilio/sms", CUSTOMER, "Bok", sign_with="e" * 32
    )
    assert answered.status == 403
    assert receiver.received[-1]["valid"] is False
    assert answered.url != answered.signed_url == PUBLIC + "/twilio/sms"


# ---- Telegram helpers ------------------------------------------------------------------------


class TelegramReceiver:
    """A webhook endpoint that checks the secret header in constant time and keeps the JSON."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_post("/telegram/webhook", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        header = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not hmac.compare_digest(header.encode(), self.secret.encode()):
            return web.Response(status=403)
        self.received.append({"content_type": request.content_type, "update": await request.json()})
        return web.Response()


@pytest.fixture
async def telegram() -> Any:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def bot(telegram: FakeTelegram) -> Any:
    async with Bot(telegram.token, base_url=f"{telegram.url}/bot") as bot:
        yield bot


def retry_seconds(error: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PTB 22 deprecates the int form in favour of timedelta
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else value


async def raw_call(fake: FakeTelegram, method: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    http_method = kwargs.pop("http_method", "POST")
    token = kwargs.pop("token", fake.token)
    async with (
        aiohttp.ClientSession() as session,
        session.request(http_method, f"{fake.url}/bot{token}/{method}", **kwargs) as response,
    ):
        return response.status, await response.json()


# ---- Telegram: through python-telegram-bot ----------------------------------------------------


async def test_initialize_calls_get_me(telegram: FakeTelegram, bot: Bot) -> None:
    assert telegram.calls[0]["method"] == "getMe"
    assert bot.username == telegram.me["username"]
    assert bot.id == int(telegram.token.split(":")[0])
    check_object("User", telegram.calls[0]["response"]["result"])


async def test_send_message_with_inline_keyboard_round_trips(
    telegram: FakeTelegram, bot: Bot
) -> None:
    markup = InlineKeyboardMarkup(
        [[InlineKeyboardButton("Prati paket", callback_data="trk:HR123")]]
    )
    message = await bot.send_message(chat_id=42, text="Vaš paket je na putu.", reply_markup=markup)
    assert message.reply_markup == markup
    assert (message.chat.id, message.chat.type, message.text) == (
        42,
        "private",
        "Vaš paket je na putu.",
    )
    assert message.from_user.id == bot.id
    sent = telegram.sent[-1]
    assert sent["reply_markup"] == {
        "inline_keyboard": [[{"text": "Prati paket", "callback_data": "trk:HR123"}]]
    }
    assert telegram.calls[-1]["content_type"] == "application/x-www-form-urlencoded"
    check_object("Message", telegram.calls[-1]["response"]["result"])


async def test_text_is_measured_after_entity_parsing(telegram: FakeTelegram, bot: Bot) -> None:
    html_message = await bot.send_message(1, "<b>Paket</b> &amp; <i>račun</i>", parse_mode="HTML")
    assert html_message.text == "Paket & račun"
    escaped = await bot.send_message(2, "*Paket* HR123 stiže 7\\. 3\\.", parse_mode="MarkdownV2")
    assert escaped.text == "Paket HR123 stiže 7. 3."
    with pytest.raises(BadRequest, match="(?i)Character '.' is reserved"):
        await bot.send_message(3, "Paket stiže 7. 3.", parse_mode="MarkdownV2")
    with pytest.raises(BadRequest, match="(?i)Unsupported start tag"):
        await bot.send_message(4, "<blink>Paket</blink>", parse_mode="HTML")
    with pytest.raises(BadRequest, match="(?i)message is too long"):
        await bot.send_message(5, "a" * 4097)
    with pytest.raises(BadRequest, match="(?i)message text is empty"):
        await bot.send_message(6, "<b></b>", parse_mode="HTML")
    assert len((await bot.send_message(7, "a" * 4096)).text) == 4096


async def test_callback_data_over_64_bytes_is_refused(bot: Bot) -> None:
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Prati", callback_data="č" * 33)]])
    with pytest.raises(BadRequest, match="(?i)BUTTON_DATA_INVALID"):
        await bot.send_message(42, "x", reply_markup=markup)


async def test_forced_429_surfaces_as_retry_after(telegram: FakeTelegram, bot: Bot) -> None:
    telegram.force_retry_after(17)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(42, "x")
    assert retry_seconds(caught.value) == 17
    assert telegram.calls[-1]["response"] == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 17",
        "parameters": {"retry_after": 17},
    }
    assert (await bot.send_message(42, "x")).text == "x"


async def test_flood_limits_per_chat_and_per_bot() -> None:
    async with (
        FakeTelegram(per_bot=Limit(3, 1.0)) as fake,
        Bot(fake.token, base_url=fake.api_url) as bot,
    ):
        await bot.send_message(1, "a")
        with pytest.raises(RetryAfter) as per_chat:
            await bot.send_message(1, "b")
        assert retry_seconds(per_chat.value) == 1
        await bot.send_message(2, "c")
        await bot.send_message(3, "d")
        with pytest.raises(RetryAfter):
            await bot.send_message(4, "e")  # fourth send within a second for the whole bot
        fake.clock.advance(1)
        await bot.send_message(1, "b")
        assert [p["text"] for p in fake.sent] == ["a", "c", "d", "b"]


async def test_group_limit_is_twenty_per_minute() -> None:
    async with FakeTelegram() as fake, Bot(fake.token, base_url=fake.api_url) as bot:
        for _ in range(20):
            await bot.send_message(-1001234567890, "HR123: novi razgovor")
            fake.clock.advance(1)
        with pytest.raises(RetryAfter) as caught:
            await bot.send_message(-1001234567890, "jedan previše")
        assert retry_seconds(caught.value) == 40


async def test_blocked_user_is_forbidden(telegram: FakeTelegram, bot: Bot) -> None:
    telegram.blocked.add(42)
    with pytest.raises(Forbidden, match="(?i)bot was blocked by the user"):
        await bot.send_message(42, "Paket")
    with pytest.raises(Forbidden):
        await bot.send_chat_action(42, "typing")
    assert telegram.sent == []


async def test_wrong_token_is_invalid(telegram: FakeTelegram) -> None:
    with pytest.raises(InvalidToken):
        async with Bot("123:wrong", base_url=telegram.api_url):
            pass


async def test_edit_message_text(telegram: FakeTelegram, bot: Bot) -> None:
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Osvježi", callback_data="r:1")]])
    sent = await bot.send_message(42, "U tranzitu", reply_markup=markup)
    telegram.clock.advance(1)
    edited = await bot.edit_message_text("Isporučeno", chat_id=42, message_id=sent.message_id)
    assert (edited.text, edited.reply_markup, edited.edit_date is not None) == (
        "Isporučeno",
        None,
        True,
    )
    telegram.clock.advance(1)
    with pytest.raises(BadRequest, match="(?i)message is not modified"):
        await bot.edit_message_text("Isporučeno", chat_id=42, message_id=sent.message_id)
    with pytest.raises(BadRequest, match="(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=42, message_id=999)


async def test_webhook_push_delivers_a_json_update_with_the_secret(
    telegram: FakeTelegram, bot: Bot
) -> None:
    secret = "s3cr3t_-Token"
    app = TelegramReceiver(secret)
    async with serve(app.app) as url:
        telegram.proxy("https://bot.shipmate.example.com", url)
        assert await bot.set_webhook(
            "https://bot.shipmate.example.com/telegram/webhook", secret_token=secret
        )
        info = await bot.get_webhook_info()
        assert info.url == "https://bot.shipmate.example.com/telegram/webhook"

        pushed = await telegram.push_message(
            777, "/start HR123", first_name="Siti", language_code="id"
        )
        assert pushed is not None and pushed.status == 200
        received = app.received[-1]
        assert received["content_type"] == "application/json"
        check_object("Update", received["update"])
        update = Update.de_json(received["update"], bot)
        assert update.message.text == "/start HR123"
        assert update.message.from_user.language_code == "id"
        assert update.message.chat.type == "private"
        assert (
            update.message.entities[0].type == "bot_command"
            and update.message.entities[0].length == 6
        )

        later = await telegram.push_message(777, "Gdje je paket?")
        assert later.update["update_id"] == pushed.update["update_id"] + 1

        forged = await telegram.push_update(telegram.message_update(777, "hi"), forged=True)
        assert forged.status == 403
        assert "403" in (await bot.get_webhook_info()).last_error_message


async def test_callback_query_flow(telegram: FakeTelegram, bot: Bot) -> None:
    app = TelegramReceiver("k")
    async with serve(app.app) as url:
        telegram.proxy("https://bot.example.com", url)
        await bot.set_webhook("https://bot.example.com/telegram/webhook", secret_token="k")
        markup = InlineKeyboardMarkup([[InlineKeyboardButton("Prati", callback_data="trk:HR1")]])
        sent = await bot.send_message(42, "Odaberite", reply_markup=markup)
        await telegram.push_callback(42, "trk:HR1")
        check_object("Update", app.received[-1]["update"])
        query = Update.de_json(app.received[-1]["update"], bot).callback_query
        assert (query.data, query.message.message_id, query.from_user.id) == (
            "trk:HR1",
            sent.message_id,
            42,
        )
        assert await bot.answer_callback_query(query.id, text="U tranzitu")
        assert telegram.answered[query.id]["text"] == "U tranzitu"
        with pytest.raises(BadRequest, match="(?i)query is too old"):
            await bot.answer_callback_query(query.id)


async def test_set_webhook_validates_secret_and_https(telegram: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(BadRequest, match="(?i)secret token"):
        await bot.set_webhook("https://bot.example.com/hook", secret_token="bad secret!")
    with pytest.raises(BadRequest, match="(?i)secret token"):
        await bot.set_webhook("https://bot.example.com/hook", secret_token="a" * 257)
    with pytest.raises(BadRequest, match="(?i)HTTPS URL"):
        await bot.set_webhook("http://bot.example.com/hook")
    assert telegram.webhook is None
    assert await bot.set_webhook("https://bot.example.com/hook", secret_token="a" * 256)
    assert await bot.delete_webhook()
    assert (await bot.get_webhook_info()).url == ""


async def test_without_a_webhook_updates_wait_for_get_updates(
    telegram: FakeTelegram, bot: Bot
) -> None:
    assert await telegram.push_message(5, "bok") is None
    updates = await bot.get_updates(timeout=0)
    assert [u.message.text for u in updates] == ["bok"]
    assert await bot.get_updates(offset=updates[-1].update_id + 1) == ()
    await bot.set_webhook("https://bot.example.com/hook")
    with pytest.raises(Conflict):
        await bot.get_updates()


async def test_chat_action(telegram: FakeTelegram, bot: Bot) -> None:
    assert await bot.send_chat_action(42, "typing")
    status, answer = await raw_call(
        telegram, "sendChatAction", data={"chat_id": "42", "action": "dancing"}
    )
    assert (status, answer["description"]) == (
        400,
        "Bad Request: wrong parameter action in request",
    )


# ---- Telegram: raw wire format ----------------------------------------------------------------


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"http_method": "GET", "params": {"chat_id": "42", "text": "upit"}},
        {
            "data": {
                "chat_id": "42",
                "text": "forma",
                "reply_markup": json.dumps(
                    {"inline_keyboard": [[{"text": "a", "url": "https://x.example"}]]}
                ),
            }
        },
        {
            "json": {
                "chat_id": 42,
                "text": "json",
                "disable_notification": True,
                "reply_markup": {"inline_keyboard": [[{"text": "a", "callback_data": "b"}]]},
            }
        },
        {
            "data": aiohttp.FormData(
                {"chat_id": "42", "text": "multipart"}, default_to_multipart=True
            )
        },
    ],
)
async def test_every_request_encoding_is_accepted(
    telegram: FakeTelegram, request_kwargs: dict[str, Any]
) -> None:
    status, answer = await raw_call(telegram, "sendMessage", **request_kwargs)
    assert (status, answer["ok"]) == (200, True), answer
    check_object("Message", answer["result"])
    assert telegram.sent[-1]["chat_id"] == 42


@pytest.mark.parametrize(
    ("request_kwargs", "description"),
    [
        (
            {"data": {"chat_id": "42", "text": "x", "colour": "red"}},
            'parameter "colour" is not accepted',
        ),
        (
            {"json": {"chat_id": 42, "text": "x", "parse_mod": "HTML"}},
            'parameter "parse_mod" is not accepted',
        ),
        ({"data": {"text": "x"}}, "chat_id is empty"),
        ({"data": {"chat_id": "42"}}, "message text is empty"),
        (
            {"data": {"chat_id": "42", "text": "x", "disable_notification": "maybe"}},
            "expected Boolean",
        ),
        ({"json": {"chat_id": {"id": 42}, "text": "x"}}, 'wrong parameter "chat_id"'),
        ({"json": {"chat_id": 42, "text": "x", "message_thread_id": "abc"}}, "expected Integer"),
        (
            {"data": {"chat_id": "42", "text": "x", "reply_markup": "{not json"}},
            'wrong parameter "reply_markup"',
        ),
        (
            {
                "json": {
                    "chat_id": 42,
                    "text": "x",
                    "reply_markup": {
                        "inline_keyboard": [[{"text": "a", "callback_data": "b", "colour": "red"}]]
                    },
                }
            },
            "no field 'colour'",
        ),
        (
            {
                "json": {
                    "chat_id": 42,
                    "text": "x",
                    "reply_markup": {"inline_keyboard": [[{"text": "a"}]]},
                }
            },
            "Text buttons are unallowed",
        ),
    ],
)
async def test_parameters_are_validated_against_the_spec(
    telegram: FakeTelegram, request_kwargs: dict[str, Any], description: str
) -> None:
    status, answer = await raw_call(telegram, "sendMessage", **request_kwargs)
    assert (status, answer["ok"], answer["error_code"]) == (400, False, 400)
    assert answer["description"].startswith("Bad Request: ")
    assert description in answer["description"]
    assert telegram.sent == []


async def test_unknown_token_and_unknown_method(telegram: FakeTelegram) -> None:
    assert await raw_call(telegram, "getMe", token="123:nope") == (
        401,
        {"ok": False, "error_code": 401, "description": "Unauthorized"},
    )
    status, answer = await raw_call(telegram, "sendTelepathy", data={"chat_id": "1"})
    assert (status, answer["error_code"]) == (404, 404)
    status, answer = await raw_call(
        telegram, "GETME", http_method="GET"
    )  # methods are case-insensitive
    assert (status, answer["result"]["is_bot"]) == (200, True)


async def test_methods_the_fake_does_not_implement_still_validate(telegram: FakeTelegram) -> None:
    status, answer = await raw_call(
        telegram, "sendPhoto", data={"chat_id": "1", "photo": "AgAC", "colour": "x"}
    )
    assert (status, answer["description"]) == (
        400,
        'Bad Request: parameter "colour" is not accepted by sendPhoto',
    )
    status, answer = await raw_call(telegram, "sendPhoto", data={"chat_id": "1", "photo": "AgAC"})
    assert (status, answer["description"]) == (
        400,
        "Bad Request: method sendPhoto is not supported by the fake",
    )
