"""Twilio SMS and WhatsApp: one adapter class, two instances, limits declared as data.

Inbound: webhooks signed with X-Twilio-Signature over the PUBLIC URL (PUBLIC_BASE_URL plus the
raw path and query as received, so it works behind a proxy), checked against the primary and
the secondary auth token; parsed into a Message, queued by the engine (which dedupes on
MessageSid) and answered at once with empty TwiML. Status callbacks move each message's
receipt monotonically (bot/delivery.py).

Outbound: the Messages API through twilio's async client on the process's shared aiohttp
session. SMS text is normalised like Twilio Smart Encoding and paced per segment. WhatsApp
sends free text only inside the 24-hour customer-service window; outside it, only the approved
Content template configured for the message's kind and locale.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from bot import outbox as outbox_module
from bot import sms
from bot.channels import ChannelLimits, Receipt, SendError
from bot.config import Settings
from bot.delivery import Delivery, address_key, classify_code, mask
from bot.models import Address, ChannelName, Message, OutboundMessage
from bot.store import Store

log = logging.getLogger(__name__)

SMS_PATH = "/webhooks/twilio/sms"
WHATSAPP_PATH = "/webhooks/twilio/whatsapp"
STATUS_PATH = "/webhooks/twilio/status"
WHATSAPP_PREFIX = "whatsapp:"
BODY_MAX = 1600  # Twilio's limit for one Body
WINDOW = timedelta(hours=24)  # WhatsApp customer-service window
REQUEST_TIMEOUT = 20.0  # seconds for one Messages API call
MAX_MEDIA = 10
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


# ---------------------------------------------------------------- parsing (pure)
@dataclass(frozen=True, slots=True)
class Media:
    """One attachment of an inbound message (the URL needs the account's credentials)."""

    url: str
    content_type: str


@dataclass(frozen=True, slots=True)
class Location:
    """A shared WhatsApp location."""

    latitude: float
    longitude: float
    address: str = ""
    label: str = ""


@dataclass(frozen=True, slots=True)
class Inbound:
    """Everything a Twilio inbound webhook told us; `message` is what the engine gets."""

    message: Message
    message_type: str = ""  # WhatsApp: text, image, interactive, button, location…
    media: tuple[Media, ...] = ()
    location: Location | None = None
    wa_id: str = ""
    button_text: str = ""
    replied_to: str = ""  # OriginalRepliedMessageSid

    @property
    def empty(self) -> bool:
        """Nothing a person could answer (e.g. a reaction)."""
        m = self.message
        return not (m.text.strip() or m.payload or self.media or self.location)


def address_of(raw: str) -> Address:
    """'whatsapp:+385…' -> WhatsApp address, '+385…' -> SMS address."""
    if raw.startswith(WHATSAPP_PREFIX):
        return Address(ChannelName.WHATSAPP, raw[len(WHATSAPP_PREFIX):])
    return Address(ChannelName.SMS, raw)


def parse_inbound(params: Mapping[str, str], received_at: datetime) -> Inbound:
    """A Twilio inbound-message webhook's form parameters as an Inbound; unknown keys ignored."""
    sid = params.get("MessageSid") or params.get("SmsMessageSid") or params.get("SmsSid") or ""
    sender = params.get("From") or ""
    if not sid or not sender:
        raise ValueError("MessageSid and From are required")
    try:
        count = min(int(params.get("NumMedia") or 0), MAX_MEDIA)
    except ValueError:
        count = MAX_MEDIA
    media = tuple(Media(params[f"MediaUrl{i}"], params.get(f"MediaContentType{i}", ""))
                  for i in range(count) if params.get(f"MediaUrl{i}"))
    location = None
    if params.get("Latitude") and params.get("Longitude"):
        try:
            location = Location(float(params["Latitude"]), float(params["Longitude"]),
                                params.get("Address", ""), params.get("Label", ""))
        except ValueError:
            location = None
    message = Message(
        address=address_of(sender), text=params.get("Body") or "", provider_id=sid,
        received_at=received_at, payload=(params.get("ButtonPayload") or "")[:256],
        profile_name=params.get("ProfileName") or "",
    )
    return Inbound(message, message_type=params.get("MessageType") or "", media=media,
                   location=location, wa_id=params.get("WaId") or "",
                   button_text=params.get("ButtonText") or "",
                   replied_to=params.get("OriginalRepliedMessageSid") or "")


def split_body(text: str, limit: int = BODY_MAX) -> list[str]:
    """Split text longer than one API Body at paragraph, line or word breaks."""
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = 0
        for sep in ("\n\n", "\n", " "):
            pos = rest.rfind(sep, 0, limit)
            if pos > limit // 2:
                cut = pos
                break
        cut = cut or limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    parts.append(rest)
    return parts


def retry_after_seconds(raw: str | None, now: datetime) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent or garbled."""
    if not raw:
        return None
    raw = raw.strip()
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        return float(raw)
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def twilio_error(status: int, code: int | None, retry_after: float | None) -> SendError:
    """A Twilio API error as a SendError, by what the code means (research/channels.md §1.4)."""
    code_s = str(code or status)
    text = f"Twilio error {code_s} (HTTP {status})"  # no provider text: it quotes the number
    meaning = classify_code(code_s)
    if meaning == "opted_out":
        return SendError(text, opted_out=True, code=code_s)
    if meaning == "unreachable":
        return SendError(text, unreachable=True, code=code_s)
    if code_s == "63016":
        return SendError(text, needs_template=True, permanent=True, code=code_s)
    if status == 429 or code_s in ("20429", "63018") or status >= 500:
        return SendError(text, retry_after=retry_after, code=code_s)
    if status in (401, 403):  # credentials: retried with backoff while someone fixes them
        return SendError(text, code=code_s)
    return SendError(text, permanent=True, code=code_s)  # 30007 and other 4xx: same answer again


# ---------------------------------------------------------------- HTTP client
_last_response: ContextVar[dict[str, Any] | None] = ContextVar("twilio_last_response",
                                                               default=None)


class SharedSessionHttpClient(AsyncTwilioHttpClient):
    """twilio's async HTTP client on the process's shared aiohttp session; keeps Retry-After
    (TwilioRestException drops the response headers)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        super().__init__(pool_connections=False)
        self.session = session

    async def request(self, method: str, url: str, params: dict[str, object] | None = None,
                      data: dict[str, object] | None = None, headers: dict[str, str] | None = None,
                      auth: tuple[str, str] | None = None,
                      timeout: float | None = None,  # noqa: ASYNC109 - twilio's signature
                      allow_redirects: bool = False) -> Any:
        headers = dict(headers or {})
        if auth is not None:  # aiohttp deprecates BasicAuth objects; same header, sent directly
            headers["Authorization"] = aiohttp.encode_basic_auth(*auth)
        response = await super().request(method, url, params=params, data=data, headers=headers,
                                         timeout=timeout, allow_redirects=allow_redirects)
        box = _last_response.get()
        if box is not None:
            box["retry_after"] = (response.headers or {}).get("Retry-After")
        return response

    async def close(self) -> None:
        """The session belongs to the process (Services.close closes it)."""


# ---------------------------------------------------------------- the channel
@dataclass(frozen=True, slots=True)
class TwilioReceipt(Receipt):
    """A Receipt with the SMS billing size (segments across all parts, and the encoding)."""

    segments: int = 1
    encoding: str = ""
    parts: tuple[str, ...] = ()  # provider ids of further parts of an over-long text


class TwilioChannel:
    """SMS or WhatsApp through Twilio; `build` makes one instance per configured channel."""

    def __init__(self, name: ChannelName, limits: ChannelLimits, *, client: Client,
                 sender: Mapping[str, str], settings: Settings, store: Store, delivery: Delivery,
                 clock: Callable[[], datetime], validators: list[RequestValidator],
                 serves_status: bool = False) -> None:
        self.name = name
        self.limits = limits
        self.client = client
        self.sender = dict(sender)  # {"from_": …} or {"messaging_service_sid": …}
        self.settings = settings
        self.store = store
        self.k = store.keys
        self.delivery = delivery
        self.clock = clock
        self.validators = validators
        self.serves_status = serves_status
        self.public_base = settings.public_base_url.rstrip("/")
        self.templates = dict(settings.whatsapp_templates)
        self.status_callback = _callback_url(self.public_base + STATUS_PATH)
        # the rate bucket lives in Redis, shared by processes: wall time (swappable in tests)
        self.now: Callable[[], float] = time.time
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    @property
    def whatsapp(self) -> bool:
        return self.name is ChannelName.WHATSAPP

    @property
    def inbound_path(self) -> str:
        return WHATSAPP_PATH if self.whatsapp else SMS_PATH

    # ---- webhooks
    def routes(self) -> list[web.RouteDef]:
        """This instance's inbound webhook (and the shared status callback, on one instance)."""
        out = [web.post(self.inbound_path, self.handle_inbound)]
        if self.serves_status:
            out.append(web.post(STATUS_PATH, self.handle_status))
        return out

    def verify(self, request: web.Request, form: Mapping[str, str]) -> bool:
        """X-Twilio-Signature over the public URL, with the primary or the secondary token."""
        signature = request.headers.get("X-Twilio-Signature", "")
        url = self.public_base + request.raw_path  # raw path and query exactly as received
        results = [v.validate(url, form, signature) for v in self.validators]  # no short cut
        return bool(signature) and any(results)

    async def handle_inbound(self, request: web.Request) -> web.Response:
        """An inbound SMS/WhatsApp message: verify, parse, queue, answer empty TwiML."""
        form = await request.post()
        if not self.verify(request, form):
            return _forbidden(request, form)
        try:
            inbound = parse_inbound(form, self.clock())
        except ValueError as exc:
            log.warning("Twilio webhook %s: %s", request.path, exc)
            return web.Response(status=400, text=str(exc))
        message = inbound.message
        await self.delivery.clear_unreachable(message.address)
        if message.address.channel is ChannelName.WHATSAPP:
            await self.store.set_str(self._window_key(message.address), message.received_at.isoformat(),
                                     ttl=int(WINDOW.total_seconds()))
        if inbound.empty:
            log.info("Twilio %s %s from %s has nothing to answer", inbound.message_type or "message",
                     message.provider_id, address_key(message.address))
            return _twiml()
        from bot.web import SERVICES  # the web app holds the engine; imported late (import cycle)

        await request.app[SERVICES].engine.receive(message)
        return _twiml()

    async def handle_status(self, request: web.Request) -> web.Response:
        """A status callback: move the message's receipt (never backwards)."""
        form = await request.post()
        if not self.verify(request, form):
            return _forbidden(request, form)
        sid = form.get("MessageSid") or form.get("SmsSid") or ""
        status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
        if not sid or not status:
            return web.Response(status=400, text="MessageSid and MessageStatus are required")
        to = form.get("To") or ""
        await self.delivery.record_status(sid, status, form.get("ErrorCode") or "",
                                          address=address_of(to) if to else None)
        return _twiml()

    # ---- WhatsApp window
    def _window_key(self, address: Address) -> str:
        return self.k.address_state(ChannelName.WHATSAPP, address.user, "wa-window")

    async def window_open(self, address: Address) -> bool:
        """Whether the customer wrote on WhatsApp in the last 24 hours (free text allowed)."""
        raw = await self.store.get_str(self._window_key(address))
        if not raw:
            return False
        return self.clock() - datetime.fromisoformat(raw) < WINDOW

    # ---- sending
    def split(self, message: OutboundMessage) -> list[OutboundMessage]:
        """SMS longer than one API Body: several messages, each with its own idempotency key
        (the outbox sends them in order). WhatsApp is never split here: outside the window
        each part would become one more template."""
        if self.whatsapp:
            return [message]
        texts = split_body(sms.normalize_for_gsm(message.text))
        if len(texts) == 1:
            return [message]
        return [replace(message, idem=f"{message.idem}#{i}", text=text)
                for i, text in enumerate(texts, 1)]

    async def send(self, message: OutboundMessage) -> Receipt:
        """Deliver one message or raise SendError (see `twilio_error` for the mapping)."""
        if self.whatsapp:
            return await self._send_whatsapp(message)
        return await self._send_sms(message)

    async def _send_sms(self, message: OutboundMessage) -> TwilioReceipt:
        body = sms.normalize_for_gsm(message.text)
        sent: list[tuple[Any, sms.SmsInfo]] = []
        for i, part in enumerate(split_body(body)):  # one part unless the outbox did not split
            info = sms.segments(part)
            await self._take_tokens(info.segments - (0 if i else 1))
            sent.append((await self._create(message, to=message.address.user, body=part), info))
        segments = sum(info.segments for _, info in sent)
        encoding = "UCS-2" if any(info.encoding == "UCS-2" for _, info in sent) else "GSM-7"
        first = sent[0][0]
        log.info("SMS %s to %s: %d segment(s), %s", first.sid, address_key(message.address),
                 segments, encoding)
        return TwilioReceipt(first.sid, first.status or "queued", segments=segments,
                             encoding=encoding, parts=tuple(r.sid for r, _ in sent[1:]))

    async def _send_whatsapp(self, message: OutboundMessage) -> TwilioReceipt:
        if await self.window_open(message.address):
            try:
                return await self._send_free_form(message)
            except SendError as exc:
                if exc.code != "63016":
                    raise
                log.info("WhatsApp window closed for %s although we saw it open; using the "
                         "template", address_key(message.address))
                await self.store.delete(self._window_key(message.address))
        return await self._send_template(message)

    async def _send_free_form(self, message: OutboundMessage) -> TwilioReceipt:
        to = WHATSAPP_PREFIX + message.address.user
        results = []
        for i, part in enumerate(split_body(message.text)):
            await self._take_tokens(1 if i else 0)
            results.append(await self._create(message, to=to, body=part))
        return TwilioReceipt(results[0].sid, results[0].status or "queued",
                             parts=tuple(r.sid for r in results[1:]))

    async def _send_template(self, message: OutboundMessage) -> TwilioReceipt:
        content_sid = self.templates.get(f"{message.template}:{message.locale}")
        if not content_sid:
            raise SendError(f"WhatsApp window closed and no template for "
                            f"{message.template}:{message.locale}", needs_template=True,
                            permanent=True, code="63016")
        variables = {str(k): str(v) for k, v in message.content.get("variables", {}).items()}
        result = await self._create(message, to=WHATSAPP_PREFIX + message.address.user,
                                    content_sid=content_sid,
                                    content_variables=json.dumps(variables, ensure_ascii=False))
        return TwilioReceipt(result.sid, result.status or "queued")

    async def _create(self, message: OutboundMessage, **params: Any) -> Any:
        """One Messages API call; errors become SendErrors (recording opt-outs, dead numbers)."""
        if self.status_callback:
            params["status_callback"] = self.status_callback
        box: dict[str, Any] = {}
        token = _last_response.set(box)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                return await self.client.messages.create_async(**self.sender, **params)
        except (TwilioRestException, TwilioServiceException) as exc:
            error = twilio_error(int(exc.status or 0), exc.code,
                                 retry_after_seconds(box.get("retry_after"), self.clock()))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(f"Twilio unreachable: {type(exc).__name__}", code="network") from None
        finally:
            _last_response.reset(token)
        await self.delivery.apply_error(message.address, error.code,
                                        customer_id=message.customer_id)
        log.warning("Twilio refused %s to %s: %s%s", message.idem, address_key(message.address),
                    error.code, "" if error.permanent else " (will retry)")
        raise error

    async def _take_tokens(self, count: int) -> None:
        """Take `count` more tokens from this channel's sender bucket, the one the outbox
        takes one token from per provider call: so the budget counts SMS segments (and extra
        parts), not API calls, across all processes."""
        rate = self.limits.per_second * getattr(outbox_module, "HEADROOM", 1.0)
        if rate <= 0:
            return
        key = self.k.rate(self.name.value)
        for _ in range(max(0, count)):
            while wait := await self.store.take_token(key, 1, rate, self.now()):
                await self.sleep(wait)


def _twiml() -> web.Response:
    return web.Response(text=EMPTY_TWIML, content_type="text/xml")


def _forbidden(request: web.Request, form: Mapping[str, str]) -> web.Response:
    log.warning("Twilio webhook %s rejected: bad signature (From %s)", request.path,
                mask(form.get("From") or form.get("To") or ""))
    return web.Response(status=403, text="invalid signature")


def _callback_url(url: str) -> str:
    """The status callback URL, or '' when Twilio could not reach it (local development)."""
    host = urlsplit(url).hostname or ""
    if host in ("localhost", "0.0.0.0") or host.startswith("127.") or "_" in host:  # noqa: S104
        return ""
    return url


def build(settings: Settings, store: Store, session: aiohttp.ClientSession,
          clock: Callable[[], datetime], *,
          delivery: Delivery | None = None) -> dict[ChannelName, TwilioChannel]:
    """The configured Twilio channels, sharing one client, one Delivery and the status route.

    SMS is on with TWILIO_SMS_FROM or TWILIO_MESSAGING_SERVICE_SID (the service wins when both
    are set); WhatsApp is on with TWILIO_WHATSAPP_FROM.
    """
    client = Client(settings.twilio_account_sid, settings.twilio_auth_token,
                    http_client=SharedSessionHttpClient(session), environment={})
    client.api.base_url = settings.twilio_api_base_url.rstrip("/")
    delivery = delivery or Delivery(store, clock=clock)
    validators = [RequestValidator(token) for token in
                  (settings.twilio_auth_token, settings.twilio_auth_token_secondary) if token]
    common = {"client": client, "settings": settings, "store": store, "delivery": delivery,
              "clock": clock, "validators": validators}
    channels: dict[ChannelName, TwilioChannel] = {}
    if settings.twilio_messaging_service_sid or settings.twilio_sms_from:
        sender = ({"messaging_service_sid": settings.twilio_messaging_service_sid}
                  if settings.twilio_messaging_service_sid else {"from_": settings.twilio_sms_from})
        channels[ChannelName.SMS] = TwilioChannel(
            ChannelName.SMS, ChannelLimits(max_text=BODY_MAX, max_buttons=0,
                                           per_second=settings.twilio_sms_mps,
                                           provider_answers_stop=True),
            sender=sender, serves_status=True, **common)
    if settings.twilio_whatsapp_from:
        channels[ChannelName.WHATSAPP] = TwilioChannel(
            # in-session buttons need a Content template: choices come numbered in the text
            ChannelName.WHATSAPP, ChannelLimits(max_text=BODY_MAX, max_buttons=0,
                                                messaging_window_hours=24,
                                                per_second=settings.twilio_whatsapp_mps),
            sender={"from_": WHATSAPP_PREFIX + settings.twilio_whatsapp_from},
            serves_status=not channels, **common)
    return channels
