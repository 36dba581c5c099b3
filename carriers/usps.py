"""USPS Tracking 3.2 (v3r2) and Subscriptions-Tracking 3.2: pure parser, thin I/O, webhooks.

Specs: `tracking-v3r2_4.yaml`, `subscriptions-tracking-v3r2_1.yaml`, `oauth2_3_update.yaml`
(shared/fixtures/carriers/usps). Status words come only from USPS Pub 199 (not enumerated in
the spec), so the newest event's code and text decide the status; `statusCategory` is the last
resort (the spec's own example pairs "Delivered, Front Door/Porch" with "Accepted").

Timestamps (TIMESTAMP_POLICY = MISLABELED_Z): `GMTTimestamp` (+ `GMTOffset`) wins. An
`eventTimestamp` with a numeric offset is trusted. One ending in `Z`, or without a zone, is the
local wall clock of the event: the v3 README sample shows `07:31:00Z` beside "7:31 am ... in
RICHMOND, VA". Such times are placed in `GMTOffset` when given, else in the event state's zone
(the state's dominant zone), else taken as UTC.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from carriers.customs_text import (
    BLOCKING,
    HOLDABLE,
    MOVED_ON,
    PAST_CUSTOMS,
    customs_of,
    customs_summary,
    money_in,
    url_in,
)
from carriers.http import Response, TokenCache, request
from carriers.model import (
    CarrierAuthError,
    CarrierError,
    Credentials,
    CustomsStage,
    Limits,
    NumberList,
    NumberProblem,
    ProblemKind,
    Reason,
    Status,
    TimestampPolicy,
    TrackingEvent,
    TrackingReport,
    TrackingSnapshot,
    WebhookError,
)

NAME = "usps"
DEFAULT_BASE_URL = "https://apis.usps.com"
CREDENTIALS = ("client_id", "client_secret", "webhook_secret")
#: Needed only by `subscribe`: the spec requires 1-3 `adminNotification` e-mails per subscription.
OPTIONAL_CREDENTIALS = ("admin_email",)
# v3.2 POST takes 1-35 numbers. 60 requests/hour is the reported default app quota (third-party
# report, not in the spec): 1/60 per second, 1440 per day.
LIMITS = Limits(batch_size=35, per_second=60 / 3600, per_day=60 * 24, supports_push=True)
TIMESTAMP_POLICY = TimestampPolicy.MISLABELED_Z

OAUTH_PATH = "/oauth2/v3/token"
TRACKING_PATH = "/tracking/v3r2/tracking"
SUBSCRIPTIONS_PATH = "/subscriptions-tracking/v3r2/subscriptions"
# ALL_UPDATES excludes delays, so ask for both.
SUBSCRIPTION_EVENT_TYPES = ("ALL_UPDATES", "PACKAGE_DELAYED")
WEBHOOK_SECRET_LENGTH = 32  # the spec fixes the subscription secret at exactly 32 characters

_NUMBER = re.compile(r"(?:420\d{5}(?:\d{4})?)?9[1-5]\d{18,20}|[A-Z]{2}\d{9}US")

# Dominant IANA zone per USPS state code; split states use the zone most addresses are in.
STATE_ZONES: Mapping[str, str] = {
    "AL": "America/Chicago", "AK": "America/Anchorage", "AZ": "America/Phoenix",
    "AR": "America/Chicago", "CA": "America/Los_Angeles", "CO": "America/Denver",
    "CT": "America/New_York", "DE": "America/New_York", "DC": "America/New_York",
    "FL": "America/New_York", "GA": "America/New_York", "HI": "Pacific/Honolulu",
    "ID": "America/Boise", "IL": "America/Chicago", "IN": "America/Indiana/Indianapolis",
    "IA": "America/Chicago", "KS": "America/Chicago", "KY": "America/New_York",
    "LA": "America/Chicago", "ME": "America/New_York", "MD": "America/New_York",
    "MA": "America/New_York", "MI": "America/Detroit", "MN": "America/Chicago",
    "MS": "America/Chicago", "MO": "America/Chicago", "MT": "America/Denver",
    "NE": "America/Chicago", "NV": "America/Los_Angeles", "NH": "America/New_York",
    "NJ": "America/New_York", "NM": "America/Denver", "NY": "America/New_York",
    "NC": "America/New_York", "ND": "America/Chicago", "OH": "America/New_York",
    "OK": "America/Chicago", "OR": "America/Los_Angeles", "PA": "America/New_York",
    "RI": "America/New_York", "SC": "America/New_York", "SD": "America/Chicago",
    "TN": "America/Chicago", "TX": "America/Chicago", "UT": "America/Denver",
    "VT": "America/New_York", "VA": "America/New_York", "WA": "America/Los_Angeles",
    "WV": "America/New_York", "WI": "America/Chicago", "WY": "America/Denver",
    "PR": "America/Puerto_Rico", "VI": "America/St_Thomas", "GU": "Pacific/Guam",
    "AS": "Pacific/Pago_Pago", "MP": "Pacific/Saipan", "MH": "Pacific/Majuro",
    "FM": "Pacific/Pohnpei", "PW": "Pacific/Palau",
}

# Pub 199 Appendix G event codes we are sure of (07 and 14 are also named in the spec itself).
EVENT_CODES: Mapping[str, tuple[Status, Reason]] = {
    "01": (Status.DELIVERED, Reason.NONE),
    "02": (Status.DELIVERY_FAILED, Reason.CONSIGNEE_NOT_HOME),  # notice left
    "03": (Status.PICKED_UP, Reason.NONE),  # accept or pickup
    "04": (Status.DELIVERY_FAILED, Reason.CONSIGNEE_REFUSED),
    "05": (Status.DELIVERY_FAILED, Reason.INCORRECT_ADDRESS),  # undeliverable as addressed
    "07": (Status.IN_TRANSIT, Reason.NONE),  # arrival at unit
    "09": (Status.RETURN_TO_SENDER, Reason.NONE),
    "10": (Status.IN_TRANSIT, Reason.NONE),  # processed
    "14": (Status.READY_FOR_PICKUP, Reason.NONE),  # available for pickup
    "43": (Status.DELIVERED, Reason.NONE),  # picked up by the addressee
    "GX": (Status.CANCELLED, Reason.NONE),  # label cancelled
    "MA": (Status.PENDING, Reason.NONE),  # pre-shipment info sent
    "OF": (Status.OUT_FOR_DELIVERY, Reason.NONE),
}

# Free-text rules for eventType/status, first match wins (order matters: attempts before
# "delivered", pickup-ready before "picked up").
TEXT_RULES: tuple[tuple[str, Status, Reason], ...] = (
    (r"out for delivery", Status.OUT_FOR_DELIVERY, Reason.NONE),
    (r"return(?:ed)? to sender|being returned", Status.RETURN_TO_SENDER, Reason.NONE),
    (r"available for pick[- ]?up|ready for pick[- ]?up|held at (?:the )?post office",
     Status.READY_FOR_PICKUP, Reason.NONE),
    (r"business (?:was )?closed", Status.DELIVERY_FAILED, Reason.BUSINESS_CLOSED),
    (r"refused", Status.DELIVERY_FAILED, Reason.CONSIGNEE_REFUSED),
    (r"insufficient address|undeliverable as addressed|no such number|addressee unknown",
     Status.DELIVERY_FAILED, Reason.INCORRECT_ADDRESS),
    (r"notice left|no authorized recipient", Status.DELIVERY_FAILED, Reason.CONSIGNEE_NOT_HOME),
    (r"delivery attempt|attempted", Status.DELIVERY_FAILED, Reason.NONE),
    (r"delivered|picked up at (?:the )?post office", Status.DELIVERED, Reason.NONE),
    (r"cancel+ed", Status.CANCELLED, Reason.NONE),
    (r"pre-shipment|label created|awaiting item", Status.PENDING, Reason.NONE),
    (r"accepted|acceptance|in possession|picked up", Status.PICKED_UP, Reason.NONE),
    (r"weather", Status.DELAYED, Reason.WEATHER_DELAY),
    (r"delayed|arriving late|running late", Status.DELAYED, Reason.OPERATIONAL_DELAY),
    (r"in transit|arrived|arrival|departed|departure|processed|forwarded|customs",
     Status.IN_TRANSIT, Reason.NONE),
)

CATEGORIES: Mapping[str, Status] = {
    "pre-shipment": Status.PENDING,
    "accepted": Status.PICKED_UP,
    "in transit": Status.IN_TRANSIT,
    "out for delivery": Status.OUT_FOR_DELIVERY,
    "available for pickup": Status.READY_FOR_PICKUP,
    "delivered": Status.DELIVERED,
    "delivery attempt": Status.DELIVERY_FAILED,
    "return to sender": Status.RETURN_TO_SENDER,
    "alert": Status.ON_HOLD,
}

_BLOCKING, _PAST_CUSTOMS, _HOLDABLE, _MOVED_ON = BLOCKING, PAST_CUSTOMS, HOLDABLE, MOVED_ON

_CLOCK = re.compile(r"(\d{1,2})(?::(\d{2}))?\s*([ap])\.?\s?m\b", re.I)
_OFFSET = re.compile(r"([+-]?)(\d{1,2}):?(\d{2})")
_TAG = re.compile(r"<[^>]*>")
_END_OF_DAY = clock_time(23, 59, 59)


# --- pure parsing ---------------------------------------------------------------------------

def parse(payload: Any, *, fetched_at: datetime) -> TrackingReport:
    """Turn a Tracking 3.2 body (200 list, 207 multi-status or one TrackingDetail) into a report."""
    items = payload if isinstance(payload, list) else [payload]
    report = TrackingReport()
    for item in items:
        if not isinstance(item, dict):
            raise CarrierError(NAME, f"unexpected tracking item: {type(item).__name__}")
        number = str(item.get("trackingNumber") or "")
        if "error" in item:
            problem = _problem(item)
            if problem is not None:
                report.problems[problem.tracking_number] = problem
        elif number:
            report.snapshots[number] = snapshot(item, fetched_at=fetched_at)
    return report


def snapshot(detail: Mapping[str, Any], *, fetched_at: datetime | None = None) -> TrackingSnapshot:
    """One TrackingDetail as a snapshot (events oldest first)."""
    raw_events = detail.get("trackingEvents")
    if isinstance(detail.get("trackingEvent"), dict):  # detailed-scan (SCAN_EVENT_EXTRACT) form
        raw_events = [detail["trackingEvent"]]
    events = sorted(
        (e for e in (_event(raw) for raw in raw_events or () if isinstance(raw, dict)) if e),
        key=lambda e: e.timestamp,
    )
    status, reason = _overall(detail, events)
    customs, customs_event = customs_summary(events)
    customs_text = customs_event.raw_text if customs_event else ""
    customs_reason = customs_event.reason if customs_event else Reason.NONE
    if customs is CustomsStage.NONE:
        customs_text = " ".join(str(detail.get(k) or "") for k in ("status", "statusSummary"))
        customs, customs_reason = customs_of(customs_text)
    if customs in _BLOCKING and status in _PAST_CUSTOMS:
        customs = CustomsStage.RELEASED
    duties, payment_url = None, ""
    if customs in _BLOCKING:
        reason = customs_reason
        status = Status.ON_HOLD if status in _HOLDABLE else status
        if customs is CustomsStage.DUTIES_DUE:
            duties, payment_url = money_in(customs_text), url_in(customs_text)
    eta, eta_end = _eta(detail, events)
    newest = events[-1] if events else None
    return TrackingSnapshot(
        carrier=NAME,
        tracking_number=str(detail.get("trackingNumber") or ""),
        status=status,
        events=tuple(events),
        reason=reason,
        customs=customs,
        eta=eta,
        eta_end=eta_end,
        duties=duties,
        payment_url=payment_url,
        pickup_location=newest.location if newest and status is Status.READY_FOR_PICKUP else "",
        service=_plain(detail.get("mailClass")),
        raw_code=str(detail.get("statusCategory") or ""),
        raw_text=str(detail.get("status") or detail.get("statusSummary") or ""),
        fetched_at=fetched_at,
    )


def _problem(item: Mapping[str, Any]) -> NumberProblem | None:
    number = str(item.get("trackingNumber") or "")
    if not number:
        return None
    error = item.get("error") if isinstance(item.get("error"), dict) else {}
    code = str(item.get("statusCode") or error.get("code") or "404")
    details = [e.get("detail", "") for e in error.get("errors") or () if isinstance(e, dict)]
    message = str(error.get("message") or next(filter(None, details), ""))
    if code.startswith("5"):
        return None  # USPS could not answer for this number now: absent, so asked again later
    kind = {"404": ProblemKind.NOT_FOUND, "410": ProblemKind.EXPIRED}.get(code, ProblemKind.INVALID)
    return NumberProblem(number, kind, message)


def _event(raw: Mapping[str, Any]) -> TrackingEvent | None:
    when = event_time(raw)
    if when is None:
        return None
    text = str(raw.get("eventType") or "")
    code = str(raw.get("eventCode") or "")
    status, reason = _classify(code, text)
    customs, customs_reason = customs_of(text)
    if customs in _BLOCKING:
        reason = customs_reason
    state = str(raw.get("eventState") or "").upper()
    zip_code = str(raw.get("eventZIPCode") or raw.get("eventZIP") or "")  # v3 said eventZIP
    place = " ".join(filter(None, [state, zip_code]))
    country = str(raw.get("eventCountry") or "").strip().upper()
    if not re.fullmatch(r"[A-Z]{2}", country):
        country = "US" if state in STATE_ZONES else ""
    return TrackingEvent(
        timestamp=when,
        status=status,
        description=text,
        location=", ".join(filter(None, [str(raw.get("eventCity") or ""), place])),
        country=country,
        reason=reason,
        customs=customs,
        raw_code=code,
        raw_text=text,
    )


def event_time(raw: Mapping[str, Any]) -> datetime | None:
    """The aware time of one USPS tracking event, following TIMESTAMP_POLICY."""
    offset = _offset(raw.get("GMTOffset"))
    gmt = _iso(raw.get("GMTTimestamp"))
    if gmt is not None:
        gmt = gmt if gmt.tzinfo else gmt.replace(tzinfo=UTC)  # documented as GMT
        return gmt.astimezone(offset) if offset else gmt
    text = str(raw.get("eventTimestamp") or "").strip()
    local = _iso(text)
    if local is None:
        return None
    if local.tzinfo is not None and not text.upper().endswith("Z"):
        return local
    zone: tzinfo = offset or _state_zone(raw.get("eventState")) or UTC
    return local.replace(tzinfo=zone)


def _classify(code: str, text: str) -> tuple[Status, Reason]:
    if code.upper() in EVENT_CODES:
        return EVENT_CODES[code.upper()]
    return _by_text(text)


def _by_text(text: str) -> tuple[Status, Reason]:
    for pattern, status, reason in TEXT_RULES:
        if re.search(pattern, text, re.I):
            return status, reason
    return Status.UNKNOWN, Reason.NONE


def _overall(detail: Mapping[str, Any], events: list[TrackingEvent]) -> tuple[Status, Reason]:
    if events and events[-1].status is not Status.UNKNOWN:
        return events[-1].status, events[-1].reason
    status, reason = _by_text(str(detail.get("status") or ""))
    if status is Status.UNKNOWN:
        category = str(detail.get("statusCategory") or "").strip().lower()
        status = CATEGORIES.get(category, Status.UNKNOWN)
    return status, reason






def _eta(detail: Mapping[str, Any],
         events: list[TrackingEvent]) -> tuple[datetime | None, datetime | None]:
    expect = detail.get("deliveryDateExpectation")
    if not isinstance(expect, dict):
        return None, None
    zone: tzinfo = (_state_zone(detail.get("destinationState"))
                    or (events[-1].timestamp.tzinfo if events else None) or UTC)
    for key in ("predictedDeliveryDate", "expectedDeliveryDate", "guaranteedDeliveryDate"):
        raw = str(expect.get(key) or "").strip()
        when = _iso(raw)
        if when is None:
            continue  # e.g. guaranteed "3 Business Days"
        if len(raw) > 10:  # a timestamp: the guarantee's deadline
            return None, when if when.tzinfo else when.replace(tzinfo=zone)
        day = when.date()
        start = _clock(expect.get("predictedDeliveryWindowStartTime"))
        end = _clock(expect.get("predictedDeliveryWindowEndTime")) or _clock(expect.get("endOfDay"))
        return (
            datetime.combine(day, start or clock_time(0), zone),
            datetime.combine(day, end or _END_OF_DAY, zone),
        )
    return None, None


def _iso(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        return None


def _offset(value: Any) -> timezone | None:
    """GMTOffset as written by USPS: '-7:00' (spec), '-0700', or minutes such as '-420'."""
    text = str(value).strip() if isinstance(value, str | int) else ""
    m = _OFFSET.fullmatch(text)
    if m and (":" in text or len(m.group(2) + m.group(3)) == 4):
        delta = timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
    elif re.fullmatch(r"[+-]?\d{1,4}", text):
        number = int(text)
        delta = timedelta(hours=number) if abs(number) <= 14 else timedelta(minutes=number)
        return timezone(delta) if abs(delta) < timedelta(hours=24) else None
    else:
        return None
    return timezone(-delta if m.group(1) == "-" else delta)


def _state_zone(state: Any) -> ZoneInfo | None:
    name = STATE_ZONES.get(str(state or "").strip().upper())
    return ZoneInfo(name) if name else None


def _clock(value: Any) -> clock_time | None:
    m = _CLOCK.search(str(value or ""))
    if not m:
        return None
    hour, minute = int(m.group(1)) % 12, int(m.group(2) or 0)
    if m.group(3).lower() == "p":
        hour += 12
    return clock_time(hour, minute) if minute < 60 else None






def _plain(value: Any) -> str:
    """USPS mail class names carry HTML ('Priority Mail<SUP>&reg;</SUP>')."""
    return html.unescape(_TAG.sub("", str(value or ""))).strip()


# --- webhooks (Subscriptions-Tracking 3.2) ---------------------------------------------------

def signature(secret: str, timestamp: str, payload: str) -> str:
    """X-HMAC: Base64(HMAC-SHA256(secret, timestamp + payload)) as the spec describes."""
    digest = hmac.new(secret.encode(), (timestamp + payload).encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _notification(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise WebhookError("usps: webhook body is not JSON") from exc
    if not isinstance(message, dict) or not all(
        isinstance(message.get(k), str) for k in ("subscriptionId", "timestamp", "payload")
    ):
        raise WebhookError("usps: webhook lacks subscriptionId/timestamp/payload strings")
    return message


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), "")


# --- the adapter ------------------------------------------------------------------------------

def _batches(numbers: Iterable[str], size: int) -> Iterable[list[str]]:
    unique = list(dict.fromkeys(numbers))
    for start in range(0, len(unique), size):
        yield unique[start:start + size]


class UspsCarrier:
    """USPS Tracking 3.2 with OAuth client credentials and Subscriptions-Tracking webhooks."""

    name = NAME
    limits = LIMITS

    def __init__(self, session: aiohttp.ClientSession, credentials: Credentials, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._session = session
        self._credentials = credentials
        self._base = (credentials.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._tokens = TokenCache(self._fetch_token, clock=clock)

    def recognizes(self, number: str) -> bool:
        """IMpb (optionally with its 420+ZIP routing prefix) or an S10 number ending in US."""
        return bool(_NUMBER.fullmatch(number))

    async def track(self, numbers: NumberList) -> TrackingReport:
        """POST batches of up to 35 numbers; 207 items that failed become NumberProblems."""
        report = TrackingReport()
        for batch in _batches(numbers, LIMITS.batch_size):
            body = [{"trackingNumber": n} for n in batch]
            resp = await self._authorized("POST", self._base + TRACKING_PATH, body)
            fetched_at = datetime.now(UTC)
            if resp.status in (200, 207):
                report.merge(parse(resp.json(), fetched_at=fetched_at))
            elif resp.status in (400, 404):
                kind = ProblemKind.NOT_FOUND if resp.status == 404 else ProblemKind.INVALID
                message = _error_message(resp)
                report.problems.update({n: NumberProblem(n, kind, message) for n in batch})
            else:
                raise CarrierError(NAME, f"unexpected HTTP {resp.status}", status=resp.status)
        return report

    def verify_webhook(self, headers: dict[str, str], body: bytes) -> None:
        """Check X-HMAC (or the deprecated hmac-header) in constant time."""
        secret = self._credentials.get("webhook_secret")
        if not secret:
            raise WebhookError("usps: no webhook secret configured, refusing unsigned pushes")
        given = _header(headers, "X-HMAC") or _header(headers, "hmac-header")
        if not given:
            raise WebhookError("usps: X-HMAC header missing")
        message = _notification(body)
        expected = signature(secret, message["timestamp"], message["payload"])
        if not hmac.compare_digest(expected.encode(), given.strip().encode()):
            raise WebhookError("usps: X-HMAC does not match")

    def parse_webhook(self, body: bytes) -> list[TrackingSnapshot]:
        """The callback's `payload` is a JSON string holding one TrackingDetail."""
        message = _notification(body)
        try:
            detail = json.loads(message["payload"])
        except ValueError as exc:
            raise WebhookError("usps: payload is not a JSON string") from exc
        if not isinstance(detail, dict) or not detail.get("trackingNumber"):
            raise WebhookError("usps: payload is not a TrackingDetail")
        sent = _iso(message["timestamp"])
        fetched_at = (sent if sent and sent.tzinfo else None) or datetime.now(UTC)
        return [snapshot(detail, fetched_at=fetched_at)]

    async def subscribe(self, numbers: NumberList, callback_url: str) -> None:
        """One Subscriptions-Tracking subscription per number, signed with `webhook_secret`."""
        secret = self._credentials.get("webhook_secret")
        admin = self._credentials.get("admin_email")
        if len(secret) != WEBHOOK_SECRET_LENGTH:
            raise ValueError(
                f"USPS_WEBHOOK_SECRET must be exactly {WEBHOOK_SECRET_LENGTH} characters")
        if not admin:
            raise ValueError("USPS_ADMIN_EMAIL is required: USPS mails subscription warnings there")
        if len(callback_url) > 200:
            raise ValueError("USPS accepts listener URLs of at most 200 characters")
        for number in dict.fromkeys(numbers):
            body = {
                "listenerURL": callback_url,
                "secret": secret,
                "adminNotification": [{"email": admin}],
                "filterProperties": {
                    "trackingNumber": number,
                    "trackingEventTypes": list(SUBSCRIPTION_EVENT_TYPES),
                },
            }
            resp = await self._authorized("POST", self._base + SUBSCRIPTIONS_PATH, body)
            if resp.status not in (200, 201):
                raise CarrierError(NAME, f"subscription refused (HTTP {resp.status}): "
                                   f"{_error_message(resp)}", status=resp.status)

    async def _authorized(self, method: str, url: str, body: Any) -> Response:
        """Call with the cached bearer token; on 401/403 fetch a fresh token and retry once."""
        token = await self._tokens.get()  # a refused client secret is not retried
        try:
            return await self._send(method, url, body, token)
        except CarrierAuthError:
            self._tokens.invalidate()
        return await self._send(method, url, body, await self._tokens.get())

    async def _send(self, method: str, url: str, body: Any, token: str) -> Response:
        return await request(self._session, NAME, method, url, json_body=body,
                             headers={"Authorization": f"Bearer {token}",
                                      "Accept": "application/json"})

    async def _fetch_token(self) -> tuple[str, float]:
        resp = await request(self._session, NAME, "POST", self._base + OAUTH_PATH, json_body={
            "grant_type": "client_credentials",
            "client_id": self._credentials.get("client_id"),
            "client_secret": self._credentials.get("client_secret"),
        })
        if resp.status != 200:
            raise CarrierAuthError(NAME, f"token request refused (HTTP {resp.status})",
                                   status=resp.status)
        data = resp.json()
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise CarrierError(NAME, "token response without access_token")
        return token, float(data.get("expires_in") or 0)


def _error_message(resp: Response) -> str:
    try:
        data = resp.json()
    except CarrierError:
        return ""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or "")
    return str(error or "")


__all__ = [
    "CREDENTIALS", "DEFAULT_BASE_URL", "LIMITS", "NAME", "OPTIONAL_CREDENTIALS",
    "TIMESTAMP_POLICY", "UspsCarrier", "event_time", "parse", "signature", "snapshot",
]
