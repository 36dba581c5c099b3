"""A stateful fake of Twilio Programmable Messaging (SMS and WhatsApp) on the real wire format.

The REST side answers what `twilio`'s client sends to the Messages resource; the webhook side
posts inbound messages and status callbacks to the app, signed the way Twilio signs them. Request
parameters are checked against the CreateMessageRequest schema of the official OpenAPI spec.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from bot.sms import normalize_for_gsm
from bot.sms import segments as sms_segments
from tests.fakes import serve
from tests.paths import shared

API_VERSION = "2010-04-01"
WHATSAPP_WINDOW = timedelta(hours=24)
OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "UNSUBSCRIBE", "END", "QUIT", "STOPALL", "REVOKE", "OPTOUT", "CANCEL"}
)
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})
# Twilio test-credential magic `To` numbers and the error each one produces.
MAGIC_TO = {
    "+15005550001": 21211,
    "+15005550002": 21612,
    "+15005550003": 21408,
    "+15005550004": 21610,
    "+15005550009": 21614,
}
# Not a Twilio code: the fake refuses requests that break the spec or our adapter contract.
SPEC_VIOLATION = 90400

ERRORS = {
    20003: "Authenticate",
    20404: "The requested resource {path} was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    20503: "Service Unavailable",
    21211: "Invalid 'To' Phone Number: {to}",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21612: "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number via SMS.",
    21614: "'To' number {to} is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21655: "The ContentSid is Invalid.",
    21656: "The ContentVariables Parameter is invalid.",
    21910: "Invalid From and To pair. From and To should be of the same channel",
    30003: "Unreachable destination handset",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
    63016: (
        "Failed to send freeform message because you are outside the allowed window. "
        "If you are using WhatsApp, please use a Message Template."
    ),
    63024: "Invalid message recipient",
}
# Message resource fields, as in the spec's api.v2010.account.message examples.
RESOURCE_FIELDS = (
    "account_sid", "api_version", "body", "date_created", "date_sent", "date_updated",
    "direction", "error_code", "error_message", "from", "messaging_service_sid", "num_media",
    "num_segments", "price", "price_unit", "sid", "status", "subresource_uris", "to", "uri",
)  # fmt: skip
# Later statuses never go back to earlier ones, whatever order callbacks are flushed in.
STATUS_RANK = {
    "accepted": 0, "scheduled": 0, "queued": 1, "sending": 2, "sent": 3,
    "delivered": 4, "undelivered": 4, "failed": 4, "read": 5,
}  # fmt: skip
E164 = re.compile(r"^\+[1-9]\d{1,14}$")


class FakeClock:
    """A UTC clock that moves only when told to; call it for the current aware datetime."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime.now(UTC).replace(microsecond=0)
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = start

    def __call__(self) -> datetime:
        return self._now

    def advance(self, seconds: float = 0, **delta: float) -> datetime:
        """Move forward by `seconds` plus any timedelta keywords (hours=25); return the new now."""
        self._now += timedelta(seconds=seconds, **delta)
        return self._now


@dataclass
class Delivery:
    """One request the fake made to the app and what the app answered."""

    url: str
    signed_url: str
    params: dict[str, str]
    headers: dict[str, str]
    status: int
    text: str


@dataclass
class PendingCallback:
    """A lifecycle step of an outbound message, applied (and posted) on `deliver_callbacks`."""

    sid: str
    status: str
    url: str | None
    error_code: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


class TwilioError(Exception):
    """An error the fake answers with Twilio's JSON error body."""

    def __init__(
        self,
        code: int,
        status: int = 400,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
        **fmt: str,
    ) -> None:
        super().__init__(code)
        self.code, self.status, self.headers = code, status, headers
        self.message = message or ERRORS.get(code, "Error").format(**fmt)

    def response(self) -> web.Response:
        body = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        return web.json_response(body, status=self.status, headers=self.headers)


@functools.cache
def create_message_schema() -> dict[str, Any]:
    """The spec's CreateMessageRequest schema (form body of POST Messages.json)."""
    spec = json.loads(shared("twilio", "twilio_api_v2010.json").read_text(encoding="utf-8"))
    post = spec["paths"]["/2010-04-01/Accounts/{AccountSid}/Messages.json"]["post"]
    return post["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]


def _check_form_value(name: str, value: str, schema: Mapping[str, Any]) -> None:
    kind = schema.get("type", "string")
    ok = True
    if kind == "boolean":
        ok = value.lower() in ("true", "false")
    elif kind == "integer":
        ok = re.fullmatch(r"-?\d+", value) is not None
    elif kind == "number":
        ok = re.fullmatch(r"-?\d+(\.\d+)?", value) is not None
    elif kind == "string":
        ok = (
            len(value) >= schema.get("minLength", 0)
            and len(value) <= schema.get("maxLength", len(value))
            and ("pattern" not in schema or re.search(schema["pattern"], value) is not None)
        )
    if not ok:
        raise TwilioError(
            SPEC_VIOLATION,
            message=f"Fake Twilio: {name}={value!r} does not match the spec ({kind})",
        )


def parse_create_form(form: Mapping[str, str] | Any) -> dict[str, Any]:
    """Form params checked against CreateMessageRequest; array params become lists."""
    props = create_message_schema()["properties"]
    params: dict[str, Any] = {}
    for name in dict.fromkeys(form.keys()):
        schema = props.get(name)
        if schema is None:
            raise TwilioError(
                SPEC_VIOLATION,
                message=f"Fake Twilio: {name!r} is not a CreateMessageRequest parameter",
            )
        values = form.getall(name)
        if schema.get("type") == "array":
            for value in values:
                _check_form_value(name, value, schema["items"])
            params[name] = list(values)
        else:
            _check_form_value(name, values[-1], schema)
            params[name] = values[-1]
    return params


def _bare(address: str) -> str:
    return address.split(":", 1)[1] if ":" in address else address


def _rfc2822(moment: datetime | None) -> str | None:
    return format_datetime(moment.astimezone(UTC)) if moment else None


class FakeTwilio:
    """Fake Twilio Messages API plus inbound/status-callback webhooks; use as `async with`."""

    def __init__(
        self,
        account_sid: str | None = None,
        auth_token: str | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        phone_number: str = "+15005550006",
        whatsapp_number: str = "+14155238886",
        messaging_service_sid: str | None = None,
    ) -> None:
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_token = auth_token or secrets.token_hex(16)
        self.clock = clock or FakeClock()  # any callable returning an aware datetime will do
        self.phone_number = phone_number
        self.whatsapp_number = whatsapp_number
        self.messaging_service_sid = messaging_service_sid
        self.url = ""  # set when served
        # what happened, for assertions
        self.messages: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.inbound: list[dict[str, str]] = []
        self.callbacks: list[Delivery] = []
        self.auto_replies: list[dict[str, str]] = []
        self.pending_callbacks: list[PendingCallback] = []
        # knobs
        self.opted_out: set[str] = set()
        self.not_on_whatsapp: set[str] = set()
        self.delivery_failures: dict[str, tuple[int, str]] = {}
        self.whatsapp_read_receipts = False
        self.window_opened: dict[str, datetime] = {}
        self.templates: dict[str, str] = {}
        self.proxies: dict[str, str] = {}
        self._forced: list[tuple[int, int]] = []
        self._by_sid: dict[str, dict[str, Any]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._stack = AsyncExitStack()
        self.app = web.Application(middlewares=[self._recorder])
        base = "/2010-04-01/Accounts/{account_sid}"
        self.app.router.add_post(base + "/Messages.json", self._create_message)
        self.app.router.add_get(base + "/Messages/{sid}.json", self._fetch_message)

    async def __aenter__(self) -> FakeTwilio:
        self.url = await self._stack.enter_async_context(serve(self.app))
        self._session = await self._stack.enter_async_context(aiohttp.ClientSession())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
        self._session = None

    # ---- knobs -------------------------------------------------------------------------

    def fail_next(self, status: int = 429, *, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next `times` API calls with 429 (Retry-After, code 20429), 500 or 503."""
        if status not in (429, 500, 503):
            raise ValueError("fail_next supports 429, 500 and 503")
        self._forced.extend([(status, retry_after)] * times)

    def fail_delivery(self, number: str, code: int = 30007, status: str | None = None) -> None:
        """Make messages to `number` end `undelivered` (30xxx) or `failed` with ErrorCode `code`."""
        final = status or ("undelivered" if 30000 <= code < 31000 else "failed")
        self.delivery_failures[_bare(number)] = (code, final)

    def open_window(self, number: str, at: datetime | None = None) -> None:
        """Record an inbound WhatsApp message from `number`, which opens the 24-hour window."""
        self.window_opened[_bare(number)] = at or self.clock()

    def add_template(self, text: str, sid: str | None = None) -> str:
        """Register a Content API template ({{1}} placeholders); return its HX sid."""
        sid = sid or "HX" + secrets.token_hex(16)
        self.templates[sid] = text
        return sid

    def proxy(self, public_base: str, local_base: str) -> None:
        """Deliver requests meant for `public_base...` to `local_base...`, signed for the former."""
        self.proxies[public_base.rstrip("/")] = local_base.rstrip("/")

    def sign(self, url: str, params: Mapping[str, str], token: str | None = None) -> str:
        """X-Twilio-Signature for `params` posted to the public `url`."""
        return RequestValidator(token or self.auth_token).compute_signature(url, params)

    def message(self, sid: str) -> dict[str, Any]:
        """The stored message (outbound or inbound) with fake-only keys."""
        return self._by_sid[sid]

    # ---- webhooks to the app -------------------------------------------------------------

    async def send_inbound(
        self,
        url: str,
        from_: str,
        body: str = "",
        *,
        channel: str = "sms",
        to: str | None = None,
        media: Sequence[str] = (),
        location: Sequence[float | str] | None = None,
        button: tuple[str, str] | None = None,
        profile_name: str = "Ana Horvat",
        sign_with: str | None = None,
        **extra: str,
    ) -> Delivery:
        """Post an inbound SMS/WhatsApp webhook to `url` (a public URL, see `proxy`).

        `media` is a list of content types, `location` is (lat, lon[, address, label]),
        `button` is (text, payload) for a quick-reply tap, `sign_with` signs with another token
        (a forged request). Opt-out keywords and the WhatsApp window take effect first, as on
        Twilio, whatever the app answers.
        """
        if channel not in ("sms", "whatsapp"):
            raise ValueError("channel is 'sms' or 'whatsapp'")
        whatsapp = channel == "whatsapp"
        user = _bare(from_)
        prefix = "whatsapp:" if whatsapp else ""
        to = to or prefix + (self.whatsapp_number if whatsapp else self.phone_number)
        if button and not body:
            body = button[0]
        sid = ("MM" if media else "SM") + secrets.token_hex(16)
        params: dict[str, str] = {
            "MessageSid": sid,
            "SmsSid": sid,
            "SmsMessageSid": sid,
            "AccountSid": self.account_sid,
            "From": prefix + user,
            "To": to,
            "Body": body,
            "NumMedia": str(len(media)),
            "NumSegments": "1" if whatsapp else str(sms_segments(body).segments),
            "SmsStatus": "received",
            "ApiVersion": API_VERSION,
        }
        if self.messaging_service_sid:
            params["MessagingServiceSid"] = self.messaging_service_sid
        for i, content_type in enumerate(media):
            params[f"MediaContentType{i}"] = content_type
            params[f"MediaUrl{i}"] = (
                f"https://api.twilio.com/{API_VERSION}/Accounts/{self.account_sid}"
                f"/Messages/{sid}/Media/ME{secrets.token_hex(16)}"
            )
        if location is not None:
            keys = ("Latitude", "Longitude", "Address", "Label")
            params.update({key: str(value) for key, value in zip(keys, location, strict=False)})
        if whatsapp:
            params["ProfileName"] = profile_name
            params["WaId"] = user.lstrip("+")
            params["MessageType"] = (
                "location" if location is not None
                else "interactive" if button
                else media[0].split("/")[0] if media
                else "text"
            )  # fmt: skip
            if button:
                params["ButtonText"], params["ButtonPayload"] = button
            self.window_opened[user] = self.clock()
        else:
            self._apply_keyword(user, to, body)
        params.update({key: str(value) for key, value in extra.items()})
        self.inbound.append(params)
        self._by_sid[sid] = self._inbound_resource(params)
        return await self._post(url, params, sign_with=sign_with)

    async def deliver_callbacks(
        self, *, reverse: bool = False, sid: str | None = None
    ) -> list[Delivery]:
        """Advance pending message lifecycles and post their status callbacks (in order, or reversed)."""
        due, kept = [], []
        for cb in self.pending_callbacks:
            (due if sid is None or cb.sid == sid else kept).append(cb)
        self.pending_callbacks = kept
        deliveries = []
        for cb in reversed(due) if reverse else due:
            params = self._advance(cb)
            if cb.url:
                delivery = await self._post(cb.url, params)
                self.callbacks.append(delivery)
                deliveries.append(delivery)
        return deliveries

    # ---- REST API ------------------------------------------------------------------------

    @web.middleware
    async def _recorder(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        try:
            response = await handler(request)
        except TwilioError as exc:
            response = exc.response()
        except web.HTTPNotFound:
            response = TwilioError(20404, 404, path=request.path).response()
        form = await request.post() if request.method == "POST" else request.query
        body = getattr(response, "text", None)
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "params": {
                    key: form.getall(key) if len(form.getall(key)) > 1 else form[key]
                    for key in dict.fromkeys(form.keys())
                },
                "raw_body": raw,
                "headers": dict(request.headers),
                "status": response.status,
                "response": json.loads(body) if body else None,
            }
        )
        return response

    def _check_access(self, request: web.Request) -> None:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            login, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            login = password = ""
        if (
            scheme.lower() != "basic"
            or not secrets.compare_digest(login.encode(), self.account_sid.encode())
            or not secrets.compare_digest(password.encode(), self.auth_token.encode())
        ):
            raise TwilioError(20003, 401, headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})
        if request.match_info["account_sid"] != self.account_sid:
            raise TwilioError(20404, 404, path=request.path)
        if self._forced:
            status, retry_after = self._forced.pop(0)
            headers = {"Retry-After": str(retry_after)} if status == 429 else None
            raise TwilioError({429: 20429, 500: 20500, 503: 20503}[status], status, headers=headers)

    async def _fetch_message(self, request: web.Request) -> web.Response:
        self._check_access(request)
        message = self._by_sid.get(request.match_info["sid"])
        if message is None:
            raise TwilioError(20404, 404, path=request.path)
        return web.json_response(_public(message))

    async def _create_message(self, request: web.Request) -> web.Response:
        self._check_access(request)
        params = parse_create_form(await request.post())
        message = self._accept(params)
        self.messages.append(message)
        self._by_sid[message["sid"]] = message
        reply = _public(message)
        if params.get("MessagingServiceSid"):
            reply["num_segments"] = "0"  # no sender assigned yet, as the spec says
        return web.json_response(reply, status=201)

    def _accept(self, params: dict[str, Any]) -> dict[str, Any]:
        to = params.get("To")
        sender = params.get("From")
        service = params.get("MessagingServiceSid")
        body = params.get("Body")
        media = params.get("MediaUrl", [])
        content_sid = params.get("ContentSid")
        if not to:
            raise TwilioError(21604)
        if not sender and not service:
            raise TwilioError(21603)
        if not body and not media and not content_sid:
            raise TwilioError(21602)
        whatsapp = to.startswith("whatsapp:")
        number = _bare(to)
        if not E164.match(number):
            raise TwilioError(21211, to=to)
        if sender and sender.startswith("whatsapp:") != whatsapp:
            raise TwilioError(21910)
        if body and len(body) > 1600:
            raise TwilioError(21617)
        if whatsapp:
            self._check_whatsapp(number, params)
        else:
            if number in MAGIC_TO:
                raise TwilioError(MAGIC_TO[number], to=to)
            if number in self.opted_out:
                raise TwilioError(21610)
        text = self._render(content_sid, params.get("ContentVariables")) if content_sid else body
        if params.get("SmartEncoded", "").lower() == "true" and text:
            text = normalize_for_gsm(text)
        now = self.clock()
        sid = ("MM" if media else "SM") + secrets.token_hex(16)
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        message = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": text,
            "date_created": _rfc2822(now),
            "date_sent": None,
            "date_updated": _rfc2822(now),
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": None if service else sender,
            "messaging_service_sid": service,
            "num_media": str(len(media)),
            "num_segments": "1" if whatsapp or media else str(sms_segments(text or "").segments),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service else "queued",
            "subresource_uris": {"media": uri + "/Media.json"},
            "to": to,
            "uri": uri + ".json",
            # fake-only keys, not part of the resource
            "content_sid": content_sid,
            "content_variables": params.get("ContentVariables"),
            "status_callback": params.get("StatusCallback"),
            "media_url": media,
        }
        self._plan_lifecycle(message, sender or self._sender_for(whatsapp))
        return message

    def _check_whatsapp(self, number: str, params: Mapping[str, Any]) -> None:
        if number in self.not_on_whatsapp:
            raise TwilioError(63024)
        free_form = bool(params.get("Body") or params.get("MediaUrl"))
        opened = self.window_opened.get(number)
        inside = opened is not None and self.clock() - opened < WHATSAPP_WINDOW
        if free_form and not inside:
            raise TwilioError(63016)
        if free_form and params.get("ContentSid"):
            raise TwilioError(
                SPEC_VIOLATION,
                message="Fake Twilio: send either Body/MediaUrl or ContentSid, not both",
            )

    def _render(self, content_sid: str, variables: str | None) -> str:
        template = self.templates.get(content_sid)
        if template is None:
            raise TwilioError(21655)
        try:
            values = json.loads(variables) if variables else {}
        except ValueError:
            raise TwilioError(21656) from None
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise TwilioError(21656)
        missing = set(re.findall(r"\{\{(\w+)\}\}", template)) - set(values)
        if missing:
            raise TwilioError(21656)
        return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], template)

    def _sender_for(self, whatsapp: bool) -> str:
        return "whatsapp:" + self.whatsapp_number if whatsapp else self.phone_number

    def _plan_lifecycle(self, message: dict[str, Any], sender: str) -> None:
        sid, url = message["sid"], message["status_callback"]
        whatsapp = message["to"].startswith("whatsapp:")
        steps: list[PendingCallback] = []
        if message["messaging_service_sid"]:
            steps.append(PendingCallback(sid, "queued", url, extra={"From": sender}))
        failure = self.delivery_failures.get(_bare(message["to"]))
        if failure and failure[1] == "failed":
            steps.append(PendingCallback(sid, "failed", url, failure[0]))
        else:
            steps.append(PendingCallback(sid, "sent", url))
            if failure:
                steps.append(PendingCallback(sid, failure[1], url, failure[0]))
            else:
                steps.append(PendingCallback(sid, "delivered", url))
                if whatsapp and self.whatsapp_read_receipts:
                    steps.append(PendingCallback(sid, "read", url))
        self.pending_callbacks.extend(steps)

    def _advance(self, step: PendingCallback) -> dict[str, str]:
        message = self._by_sid[step.sid]
        now = self.clock()
        if "From" in step.extra and message["from"] is None:
            message["from"] = step.extra["From"]  # the service assigns a sender
        if STATUS_RANK[step.status] >= STATUS_RANK[message["status"]]:
            message["status"] = step.status
            message["date_updated"] = _rfc2822(now)
            if step.status == "sent":
                message["date_sent"] = _rfc2822(now)
        if step.error_code:
            message["error_code"] = step.error_code
            message["error_message"] = ERRORS.get(step.error_code, "Error")
        sender = message["from"] or step.extra.get("From", "")
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "From": sender,
            "To": message["to"],
            "MessageSid": step.sid,
            "SmsSid": step.sid,
            "MessageStatus": step.status,
            "SmsStatus": step.status,
        }
        if message["messaging_service_sid"]:
            params["MessagingServiceSid"] = message["messaging_service_sid"]
        if step.error_code:
            params["ErrorCode"] = str(step.error_code)
            params["ErrorMessage"] = ERRORS.get(step.error_code, "Error")
        if message["to"].startswith("whatsapp:"):
            params["ChannelPrefix"] = "whatsapp"
            params["ChannelToAddress"] = _bare(message["to"])
            if step.status in ("delivered", "read"):
                params["EventType"] = step.status.upper()
        return params

    def _apply_keyword(self, user: str, to: str, body: str) -> None:
        keyword = body.strip().upper()
        if keyword in OPT_OUT_KEYWORDS:
            self.opted_out.add(user)
            reply = "You have successfully been unsubscribed. Reply START to resubscribe."
        elif keyword in OPT_IN_KEYWORDS:
            self.opted_out.discard(user)
            reply = "You have successfully been re-subscribed to messages from this number."
        elif keyword in HELP_KEYWORDS:
            reply = "Reply STOP to unsubscribe. Msg&Data Rates May Apply."
        else:
            return
        self.auto_replies.append({"from": to, "to": user, "body": reply})

    def _inbound_resource(self, params: Mapping[str, str]) -> dict[str, Any]:
        now, sid = self.clock(), params["MessageSid"]
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.account_sid, "api_version": API_VERSION,
            "body": params["Body"], "date_created": _rfc2822(now), "date_sent": _rfc2822(now),
            "date_updated": _rfc2822(now), "direction": "inbound", "error_code": None,
            "error_message": None, "from": params["From"],
            "messaging_service_sid": params.get("MessagingServiceSid"),
            "num_media": params["NumMedia"], "num_segments": params["NumSegments"],
            "price": None, "price_unit": "USD", "sid": sid, "status": "received",
            "subresource_uris": {"media": uri + "/Media.json"}, "to": params["To"],
            "uri": uri + ".json",
        }  # fmt: skip

    async def _post(
        self, url: str, params: dict[str, str], *, sign_with: str | None = None
    ) -> Delivery:
        if self._session is None:
            raise RuntimeError("FakeTwilio is not running: use `async with FakeTwilio() as fake`")
        target = url
        for public, local in self.proxies.items():
            if url == public or url.startswith(public + "/") or url.startswith(public + "?"):
                target = local + url[len(public) :]
                break
        headers = {
            "X-Twilio-Signature": self.sign(url, params, sign_with),
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            "User-Agent": "TwilioProxy/1.1",
            "Accept": "*/*",
        }
        async with self._session.post(target, data=params, headers=headers) as response:
            text = await response.text()
            return Delivery(target, url, dict(params), headers, response.status, text)


def _public(message: Mapping[str, Any]) -> dict[str, Any]:
    return {key: message[key] for key in RESOURCE_FIELDS}
