"""`shipmate demo`: everything in one process on the embedded store, with seeded customers in
four languages whose parcels move on the demo carrier, and a local chat page.

From a source checkout the demo also runs a channel sandbox: the fake Twilio and the fake
Telegram Bot API of the test suite (tests/fakes) on localhost, with the app's SMS, WhatsApp and
Telegram channels pointed at them. The page then switches between web chat, SMS, WhatsApp and
Telegram; every inbound message is a correctly signed webhook (or a Telegram update with the
secret header) sent by the fake, exactly as the provider would, and every reply is what the
fake received from the app: SMS encoding and segments, WhatsApp free text or Content template
and the 24-hour window, Telegram inline keyboards. Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from bot import sms
from bot.changes import ChangeKind
from bot.config import SUPPORTED_LOCALES, Settings
from bot.i18n import I18n
from bot.orders import validate_order
from bot.services import Services
from bot.store import Store
from bot.web import create_app, problem, read_json, serve
from bot.worker import install_signal_handlers, run_worker
from carriers.demo import DemoCarrier, make_number

#: (order id, customer, shipments as (journey, hours already travelled), promised days from now)
PERSONAS = [
    ("HR-1001", {"name": "Ana Horvat", "phone": "+385911234567", "email": "ana@example.hr",
                 "locale": "hr", "timezone": "Europe/Zagreb"},
     {"postcode": "10000", "country": "HR"}, [(5, 39), (4, 26)], 5),
    ("ID-2002", {"name": "Budi Santoso", "phone": "+6281234567890", "email": "budi@example.co.id",
                 "locale": "id", "timezone": "Asia/Jakarta"},
     {"postcode": "12190", "country": "ID"}, [(8, 30), (3, 18)], 6),
    ("TH-3003", {"name": "Somchai Jaidee", "phone": "+66812345678", "email": "somchai@example.co.th",
                 "locale": "th", "timezone": "Asia/Bangkok"},
     {"postcode": "10110", "country": "TH"}, [(2, 34)], 4),
    ("US-4004", {"name": "Emily Carter", "phone": "+12025550143", "email": "emily@example.com",
                 "locale": "en", "timezone": "America/New_York"},
     {"postcode": "10001", "country": "US"}, [(6, 18)], 3),
]

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_ENV = "SHIPMATE_DEMO_SANDBOX"  # 0/false/off: no channel sandbox
#: A stranger on SMS/WhatsApp writes from a fictional number no order uses (NANP 555-01xx).
STRANGER_PHONE = "+12025550199"
#: Telegram private chat ids (= user ids) of the stranger and of the personas, in order.
STRANGER_CHAT = 710_000_000
FIRST_PERSONA_CHAT = 710_000_001
SANDBOX_SMS_MPS = 10.0  # the fake has no throughput limit; keep the page snappy
MAX_ADVANCE_HOURS = 24 * 14

#: Messages the bot may send long after the customer's last message (an agent's answer, the
#: hand-back): outside the window they go as a variable-free template.
REPLY_TEMPLATE_KINDS = ("agent_reply", "handoff_returned")

def demo_orders(now: datetime) -> list[dict]:
    """Order payloads exactly as a shop would POST them."""
    orders = []
    for serial, (order_id, customer, address, ships, promised) in enumerate(PERSONAS, start=1):
        orders.append({
            "id": order_id, "customer": customer, "shipping_address": address,
            "shipments": [{"tracking_number": make_number(j, hours, serial * 10 + i), "carrier": "demo"}
                          for i, (j, hours) in enumerate(ships)],
            "promised_delivery_date": (now + timedelta(days=promised)).date().isoformat(),
        })
    return orders


async def seed(services: Services, now: datetime) -> list[dict]:
    """Upsert the demo orders; return the personas shown on the chat page."""
    for payload in demo_orders(now):
        order = validate_order(payload, carriers=services.tracking.carriers,
                               detect=services.tracking.detect, now=now)
        await services.orders.upsert(order)
    return [{"order": o, "name": c["name"], "phone": c["phone"], "locale": c["locale"]}
            for o, c, _a, _s, _p in PERSONAS]


def wall_clock() -> datetime:
    return datetime.now(UTC)


class DemoClock:
    """The demo's clock: the wall clock plus however far the sandbox skipped ahead.

    The app (engine, channels, handoff, tracking freshness) and both fakes read this one clock,
    so skipping 25 hours closes the WhatsApp window on both sides at once. The demo carrier
    keeps the wall clock: parcels do not jump along their journeys when time is skipped.
    """

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> datetime:
        self.offset += timedelta(**delta)
        return self()


def whatsapp_template_texts(i18n: I18n) -> dict[str, str]:
    """{"kind:locale": text} the sandbox "approves" for every kind the app may send outside the
    window (templates/demo/whatsapp_template.j2)."""
    kinds = [*REPLY_TEMPLATE_KINDS, *(k.value for k in ChangeKind)]
    return {f"{kind}:{locale}": i18n.render("demo/whatsapp_template", locale, kind=kind)
            for locale in SUPPORTED_LOCALES for kind in kinds}

def _import_fakes() -> tuple[type, type]:
    """FakeTwilio and FakeTelegram from the source checkout, with their specs loaded."""
    if not (ROOT / "tests" / "fakes" / "twilio.py").is_file():
        raise ImportError(f"tests/fakes is not beside the installed code ({ROOT}); run the demo "
                          "from a source checkout")
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))
    import tests.fakes
    from tests.fakes.telegram import FakeTelegram, bot_api
    from tests.fakes.twilio import FakeTwilio, create_message_schema

    where = Path(tests.fakes.__file__).resolve().parent
    if where != ROOT / "tests" / "fakes":
        raise ImportError(f"another 'tests' package is imported ({where})")
    create_message_schema()  # the fakes validate against the shared specs: load them now
    bot_api()
    return FakeTwilio, FakeTelegram


async def open_sandbox(settings: Settings, clock: Callable[[], datetime], *,
                       public: str | None = None) -> tuple[Sandbox | None, Settings, str]:
    """Start the fakes and point the settings' channels at them.

    Returns (sandbox, settings for Services, one line for the console). Without the fakes the
    settings come back unchanged with None and the reason.
    """
    if os.environ.get(SANDBOX_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return None, settings, f"Channel sandbox off: {SANDBOX_ENV}=0."
    try:
        fake_twilio, fake_telegram = _import_fakes()
    except Exception as exc:  # the sandbox is optional: never let it stop the demo
        reason = str(exc) if isinstance(exc, ImportError | OSError) else f"{type(exc).__name__}: {exc}"
        return None, settings, f"Channel sandbox off: {reason}"
    telegram_note = ""
    try:
        import bot.channels.telegram  # noqa: F401 - the app's Telegram channel
    except Exception as exc:
        telegram_note = f" (Telegram off: {type(exc).__name__}: {exc})"
        fake_telegram = None  # type: ignore[assignment]
    stack = AsyncExitStack()
    try:
        twilio = await stack.enter_async_context(fake_twilio(clock=clock))
        telegram = None
        if fake_telegram is not None:
            telegram = await stack.enter_async_context(
                fake_telegram(clock=clock, allow_http_webhook=True))
    except BaseException:
        await stack.aclose()
        raise
    public = (public or f"http://localhost:{settings.port}").rstrip("/")
    templates = {key: twilio.add_template(text)
                 for key, text in whatsapp_template_texts(I18n()).items()}
    secret = secrets.token_urlsafe(32)
    configured = replace(
        settings, public_base_url=public,
        twilio_account_sid=twilio.account_sid, twilio_auth_token=twilio.auth_token,
        twilio_auth_token_secondary="", twilio_api_base_url=twilio.url,
        twilio_sms_from=twilio.phone_number, twilio_whatsapp_from=twilio.whatsapp_number,
        twilio_messaging_service_sid="", whatsapp_templates=templates,
        twilio_sms_mps=max(settings.twilio_sms_mps, SANDBOX_SMS_MPS),
        telegram_bot_token=telegram.token if telegram else "",
        telegram_api_base_url=telegram.url if telegram else settings.telegram_api_base_url,
        telegram_webhook_secret=secret if telegram else "",
        telegram_bot_username=telegram.me["username"] if telegram else "",
    )
    sandbox = Sandbox(twilio, telegram, clock, configured, stack)
    replaced = [name for name, on in (("TWILIO_*", settings.twilio_enabled),
                                      ("TELEGRAM_*", settings.telegram_enabled)) if on]
    line = (f"Channel sandbox on: SMS and WhatsApp go through a local fake Twilio ({twilio.url}; "
            f"SMS from {twilio.phone_number}, WhatsApp from {twilio.whatsapp_number}, "
            f"{len(templates)} approved WhatsApp templates)")
    if telegram:
        line += f", Telegram through a local fake Bot API ({telegram.url}, @{telegram.me['username']})"
    line += (f"{telegram_note}. Pick a channel on the page; nothing leaves this computer.")
    if replaced:
        line += f" ({' and '.join(replaced)} settings are not used by the demo.)"
    return sandbox, configured, line


@dataclass
class Sandbox:
    """The running fakes, the settings that point at them, and the demo's /demo/api routes."""

    twilio: Any  # tests.fakes.twilio.FakeTwilio
    telegram: Any  # tests.fakes.telegram.FakeTelegram | None
    clock: Callable[[], datetime]
    settings: Settings
    stack: AsyncExitStack
    services: Services | None = None
    personas: list[dict] = field(default_factory=list)
    webhook: dict[str, Any] = field(default_factory=dict)
    _feeds: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    _synced: dict[str, int] = field(default_factory=lambda: {"messages": 0, "auto": 0,
                                                             "requests": 0})

    @property
    def public(self) -> str:
        return self.settings.public_base_url.rstrip("/")

    @property
    def can_advance(self) -> bool:
        return callable(getattr(self.clock, "advance", None))

    async def attach(self, app: web.Application, services: Services,
                     personas: list[dict]) -> None:
        """Add the sandbox routes, give each persona a Telegram chat and deep link, and
        register the Telegram webhook with the fake."""
        self.services = services
        self.personas = []
        for i, p in enumerate(personas):
            token = await services.orders.link_token(p["order"])
            self.personas.append({**p, "telegram_chat_id": FIRST_PERSONA_CHAT + i,
                                  "telegram_start": f"/start {token}"})
        app.router.add_routes(self.routes())
        if self.telegram is not None:
            from bot.channels.telegram import set_webhook

            self.webhook = await set_webhook(self.settings)

    def route_to(self, local_base: str) -> None:
        """Deliver webhooks meant for the public URL to where the app really listens."""
        self.twilio.proxy(self.public, local_base)
        if self.telegram is not None:
            self.telegram.proxy(self.public, local_base)

    async def close(self) -> None:
        await self.stack.aclose()

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/demo/api/sandbox", self.info),
                web.post("/demo/api/send", self.send),
                web.post("/demo/api/tap", self.tap),
                web.get("/demo/api/inbox", self.inbox),
                web.post("/demo/api/advance", self.advance)]

    # ---- who is who
    def _persona(self, key: str) -> dict | None:
        for p in self.personas:
            if key in (p["phone"], str(p["telegram_chat_id"])):
                return p
        return None

    def _phone(self, raw: Any) -> str:
        phone = str(raw or "").strip()
        if phone and phone[0].isdigit():
            phone = "+" + phone  # a '+' read from a query string as a space
        if not re.fullmatch(r"\+[1-9]\d{6,14}", phone):
            raise web.HTTPBadRequest(text='{"error": "an E.164 phone number is required"}',
                                     content_type="application/json")
        return phone

    def _chat(self, raw: Any) -> int:
        key = str(raw or "").strip()
        persona = self._persona(key) or self._persona("+" + key)
        if persona is not None:
            return int(persona["telegram_chat_id"])
        if not re.fullmatch(r"[1-9]\d{0,15}", key):
            raise web.HTTPBadRequest(text='{"error": "a Telegram chat id (or a persona\'s phone) '
                                          'is required"}', content_type="application/json")
        return int(key)

    def _telegram_user(self, chat: int, lang: str) -> dict[str, Any]:
        persona = self._persona(str(chat))
        if persona is not None:
            return {"first_name": persona["name"].split()[0], "language_code": persona["locale"]}
        code = lang.replace("_", "-").split("-")[0].lower()
        return {"first_name": "Guest", "language_code": code if re.fullmatch(r"[a-z]{2,3}", code)
                else None}

    @staticmethod
    def _channel(body: dict[str, Any]) -> str:
        channel = body.get("channel")
        if channel not in ("sms", "whatsapp", "telegram"):
            raise web.HTTPBadRequest(text='{"error": "channel is sms, whatsapp or telegram"}',
                                     content_type="application/json")
        return str(channel)

    def _need_telegram(self) -> Any:
        if self.telegram is None:
            raise web.HTTPConflict(text='{"error": "Telegram is off in this sandbox"}',
                                   content_type="application/json")
        return self.telegram

    # ---- routes
    async def info(self, request: web.Request) -> web.Response:
        """What the page needs: senders, personas' Telegram chats, whether time can be skipped."""
        return web.json_response({
            "twilio": {"url": self.twilio.url, "sms_from": self.twilio.phone_number,
                       "whatsapp_from": self.twilio.whatsapp_number},
            "telegram": ({"url": self.telegram.url, "username": self.telegram.me["username"],
                          "webhook": self.webhook.get("url", "")} if self.telegram else None),
            "personas": self.personas,
            "stranger": {"phone": STRANGER_PHONE, "telegram_chat_id": STRANGER_CHAT},
            "templates": dict(self.settings.whatsapp_templates),
            "can_advance": self.can_advance, "now": self.clock().isoformat(),
        })

    async def send(self, request: web.Request) -> web.Response:
        """The customer writes: the fake sends the signed webhook / update to the app."""
        body = await read_json(request)
        if not isinstance(body, dict):
            return problem(400, "body must be a JSON object")
        channel = self._channel(body)
        text, payload = str(body.get("text") or ""), str(body.get("payload") or "")
        if payload:
            return await self._tap(channel, body)
        if not text.strip() or len(text) > 1600:
            return problem(400, "send text (1-1600 characters) or a payload")
        if channel == "telegram":
            telegram = self._need_telegram()
            chat = self._chat(body.get("from"))
            push = await telegram.push_message(
                chat, text, **self._telegram_user(chat, str(body.get("lang") or "")))
            return self._answer(channel, str(chat), push.status if push else None,
                                f"u{push.update['update_id']}" if push else "")
        phone = self._phone(body.get("from"))
        delivery = await self.twilio.send_inbound(
            self.public + _twilio_path(channel), phone, text, channel=channel,
            profile_name=self._profile_name(phone))
        self._sync()
        return self._answer(channel, phone, delivery.status, delivery.params["MessageSid"])

    async def tap(self, request: web.Request) -> web.Response:
        """A tapped button: a Telegram callback query, or a WhatsApp quick reply."""
        body = await read_json(request)
        if not isinstance(body, dict):
            return problem(400, "body must be a JSON object")
        return await self._tap(self._channel(body), body)

    async def _tap(self, channel: str, body: dict[str, Any]) -> web.Response:
        data = str(body.get("data") or body.get("payload") or "")
        if not data or len(data.encode()) > 256:
            return problem(400, "the button's data (payload) is required")
        if channel == "telegram":
            telegram = self._need_telegram()
            chat = self._chat(body.get("from"))
            message_id = body.get("message_id")
            if message_id is not None and not isinstance(message_id, int):
                return problem(400, "message_id must be a whole number")
            try:
                update = telegram.callback_query_update(
                    chat, data, message_id=message_id,
                    **self._telegram_user(chat, str(body.get("lang") or "")))
            except (LookupError, KeyError):
                return problem(404, "the bot has sent no such message to this chat")
            push = await telegram.push_update(update)
            return self._answer(channel, str(chat), push.status if push else None,
                                f"u{update['update_id']}")
        if channel == "sms":
            return problem(400, "SMS has no buttons: send the choice's number as text")
        phone = self._phone(body.get("from"))
        label = str(body.get("text") or data)
        delivery = await self.twilio.send_inbound(
            self.public + _twilio_path(channel), phone, channel="whatsapp", button=(label, data),
            profile_name=self._profile_name(phone))
        self._sync()
        return self._answer(channel, phone, delivery.status, delivery.params["MessageSid"])

    async def inbox(self, request: web.Request) -> web.Response:
        """What the fake received from the app for one recipient, oldest first."""
        channel = self._channel(dict(request.query))
        try:
            after = max(0, int(request.query.get("after", "0")))
        except ValueError:
            return problem(400, "after must be a whole number")
        if channel == "telegram":
            self._need_telegram()
            chat = self._chat(request.query.get("to"))
            messages = self._telegram_feed(chat)
            return web.json_response({"channel": channel, "to": str(chat), "total": len(messages),
                                      "messages": messages[after:]})
        phone = self._phone(request.query.get("to"))
        await self.twilio.deliver_callbacks()  # move statuses on (queued -> sent -> delivered)
        self._sync()
        messages = [self._twilio_entry(e) for e in self._feeds.get((channel, phone), [])]
        out: dict[str, Any] = {"channel": channel, "to": phone, "total": len(messages),
                               "messages": messages[after:]}
        if channel == "whatsapp":
            out["window"] = self._window(phone)
        return web.json_response(out)

    async def advance(self, request: web.Request) -> web.Response:
        """Skip time on the app's and the fakes' shared clock (e.g. past the WhatsApp window)."""
        if not self.can_advance:
            return problem(409, "this clock cannot be moved")
        body = await read_json(request)
        hours = body.get("hours") if isinstance(body, dict) else None
        if isinstance(hours, bool) or not isinstance(hours, int | float) \
                or not 0 < hours <= MAX_ADVANCE_HOURS:
            return problem(400, f"hours: a number above 0 and at most {MAX_ADVANCE_HOURS}")
        now = self.clock.advance(hours=float(hours))  # type: ignore[attr-defined]
        offset = getattr(self.clock, "offset", None)
        return web.json_response({
            "now": now.isoformat(),
            "ahead_hours": offset.total_seconds() / 3600 if isinstance(offset, timedelta) else None})

    # ---- helpers
    def _profile_name(self, phone: str) -> str:
        persona = self._persona(phone)
        return persona["name"] if persona else "Guest"

    @staticmethod
    def _answer(channel: str, sender: str, status: int | None, provider_id: str) -> web.Response:
        ok = status is not None and 200 <= status < 300
        return web.json_response({"channel": channel, "from": sender, "app_status": status,
                                  "provider_id": provider_id, "delivered": ok},
                                 status=200 if ok else 502)

    def _sync(self) -> None:
        """File what the fake Twilio saw since last time under (channel, customer), in order:
        the app's messages, Twilio's own keyword answers (STOP/HELP), refused API calls."""
        fake, seen = self.twilio, self._synced
        for message in fake.messages[seen["messages"]:]:
            channel, user = _split_address(message["to"])
            self._feeds.setdefault((channel, user), []).append({"kind": "message", "ref": message})
        seen["messages"] = len(fake.messages)
        for reply in fake.auto_replies[seen["auto"]:]:
            self._feeds.setdefault(("sms", reply["to"]), []).append({"kind": "auto", "ref": reply})
        seen["auto"] = len(fake.auto_replies)
        for call in fake.requests[seen["requests"]:]:
            if not call["path"].endswith("/Messages.json") or call["method"] != "POST" \
                    or call["status"] == 201:
                continue
            to = call["params"].get("To")
            if isinstance(to, str) and to:
                channel, user = _split_address(to)
                self._feeds.setdefault((channel, user), []).append({"kind": "refused", "ref": call})
        seen["requests"] = len(fake.requests)

    def _twilio_entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        ref = entry["ref"]
        if entry["kind"] == "auto":
            info = sms.segments(ref["body"])
            return {"kind": "auto_reply", "text": ref["body"], "encoding": info.encoding,
                    "segments": info.segments}
        if entry["kind"] == "refused":
            response = ref.get("response") or {}
            return {"kind": "refused", "code": response.get("code"),
                    "error": response.get("message", ""), "status": ref["status"]}
        out: dict[str, Any] = {"kind": "message", "id": ref["sid"], "text": ref["body"] or "",
                               "status": ref["status"], "error_code": ref["error_code"]}
        if ref["to"].startswith("whatsapp:"):
            variables = ref.get("content_variables")
            try:
                parsed = json.loads(variables) if variables else {}
            except ValueError:
                parsed = {}
            out.update(mode="template" if ref.get("content_sid") else "free",
                       content_sid=ref.get("content_sid"), variables=parsed)
        else:
            info = sms.segments(ref["body"] or "")
            out.update(encoding=info.encoding, segments=int(ref["num_segments"] or info.segments),
                       characters=len(ref["body"] or ""))
        return out

    def _window(self, phone: str) -> dict[str, Any]:
        opened = self.twilio.window_opened.get(phone)
        now = self.clock()
        closes = opened + timedelta(hours=24) if opened else None
        offset = getattr(self.clock, "offset", None)
        return {"open": bool(closes and now < closes),
                "closes_at": closes.isoformat() if closes else None, "now": now.isoformat(),
                "ahead_hours": offset.total_seconds() / 3600 if isinstance(offset, timedelta)
                else None}

    def _telegram_feed(self, chat: int) -> list[dict[str, Any]]:
        fake = self.telegram
        own = sorted((mid, m) for (cid, mid), m in fake.messages.items()
                     if cid == chat and m.get("from", {}).get("id") == fake.me["id"])
        feed = []
        for mid, m in own:
            rows = (m.get("reply_markup") or {}).get("inline_keyboard") or []
            feed.append({"kind": "message", "message_id": mid, "text": m.get("text", ""),
                         "buttons": [[{"text": b.get("text", ""), "data": b.get("callback_data", "")}
                                      for b in row] for row in rows]})
        return feed


def _twilio_path(channel: str) -> str:
    from bot.channels.twilio import SMS_PATH, WHATSAPP_PATH

    return WHATSAPP_PATH if channel == "whatsapp" else SMS_PATH


def _split_address(raw: str) -> tuple[str, str]:
    return ("whatsapp", raw[len("whatsapp:"):]) if raw.startswith("whatsapp:") else ("sms", raw)


# ---------------------------------------------------------------- assembling the demo
@dataclass
class Demo:
    """The demo's parts, built but not yet serving."""

    services: Services
    app: web.Application
    personas: list[dict]
    sandbox: Sandbox | None
    note: str  # the console line about the channel sandbox
    owns_store: bool = True

    async def close(self) -> None:
        """Close the channels' own clients and the services, then the fakes (clients first:
        a server waits for the keep-alive connections still open to it)."""
        try:
            for channel in self.services.channels.values():
                closer = getattr(channel, "close", None)
                if closer is not None:
                    await closer()
            if self.owns_store:
                await self.services.close()
            else:
                await self.services.session.close()
        finally:
            if self.sandbox is not None:
                await self.sandbox.close()


async def build_demo(settings: Settings, *, store: Store | None = None,
                     clock: Callable[[], datetime] | None = None, i18n: I18n | None = None,
                     public: str | None = None, sandbox: bool = True) -> Demo:
    """Services, seed data, the web app and (from a source checkout) the channel sandbox.

    `store`, `clock`, `i18n` and `public` are for tests; the demo uses the embedded or
    configured store, a DemoClock and http://localhost:<port>.
    """
    clock = clock or DemoClock()
    box, note = None, ""
    if sandbox:
        box, settings, note = await open_sandbox(settings, clock, public=public)
    try:
        services = await Services.create(settings, store=store, clock=clock, i18n=i18n)
    except BaseException:
        if box is not None:
            await box.close()
        raise
    demo = Demo(services, web.Application(), [], box, note, owns_store=store is None)
    try:
        carrier = services.tracking.carriers.get("demo")
        if isinstance(carrier, DemoCarrier):
            carrier.clock = wall_clock  # parcels keep real time when the sandbox skips ahead
        demo.personas = await seed(services, clock())
        demo.app = create_app(services, personas=demo.personas)
        if box is not None:
            await box.attach(demo.app, services, demo.personas)
    except BaseException:
        await demo.close()
        raise
    return demo


def _local_base(settings: Settings) -> str:
    host = settings.host
    if host in ("", "0.0.0.0", "::", "localhost"):  # noqa: S104 - where to reach the wildcard
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


async def run_demo(settings: Settings) -> None:
    """The whole product in one process; prints where to click."""
    if settings.log_level == "INFO":  # the fakes' access logs and the HTTP clients' request dumps
        for name in ("aiohttp.access", "httpx", "twilio"):
            logging.getLogger(name).setLevel(logging.WARNING)
    demo = await build_demo(settings)
    services = demo.services
    if services.store.embedded:
        print("Using the embedded in-process store (no REDIS_URL set): data lives only as long "
              "as this process.")
    if demo.sandbox is not None:
        demo.sandbox.route_to(_local_base(settings))
    stop = asyncio.Event()
    install_signal_handlers(stop)
    print(f"Shipmate demo: open http://localhost:{settings.port}/ and chat as one of the seeded "
          "customers (or as a stranger). Ctrl+C stops it.")
    if demo.note:
        print(demo.note, flush=True)
    for p in demo.personas:
        print(f"  {p['name']} ({p['locale']}): order {p['order']}, phone {p['phone']}")
    try:
        await asyncio.gather(serve(demo.app, settings.host, settings.port, stop),
                             run_worker(services, stop))
    finally:
        await demo.close()
