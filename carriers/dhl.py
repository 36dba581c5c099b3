"""DHL Shipment Tracking – Unified (GET /track/shipments) and its Push API.

Spec: `dpdhl_tracking-unified-api_1.3.1.openapi.json` (shared/fixtures/carriers/dhl). The
`statusCode` vocabulary is coarse (pre-transit, transit, delivered, failure, unknown); out for
delivery, pickup points, returns and everything about customs live only in the free text
(`status`, `description`, `remark`, `nextSteps`), read here in English (plus a few German words).

Timestamps (TIMESTAMP_POLICY = NAIVE_LOCAL): a numeric offset or `Z` is honoured; a time
without a zone (common in Express data) is the local clock at the event's country when that
country has one time zone, else at the destination's, else it is taken as UTC.

Push (Shipment Tracking – Unified – Push, no spec in our fixtures; shapes follow DHL's public
Postman/Bruno collections and independent client code): `POST /tracking/push/v1/subscription`
with `hook.authentication = {type: ApiKeyAuthentication, header, token}`. DHL then sends that
header with that token on every call to the hook, so `verify_webhook` compares WEBHOOK_HEADER
with `webhook_secret` in constant time. DHL first posts `{scope: subscription.validate, self,
secret}`; `handshake()` answers it by activating the subscription with the `DHL-API-Hook-Secret`
header. Updates arrive as `{scope: subscription.push, shipments: [...]}` in the tracking shape.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, tzinfo
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
from carriers.http import Response, request
from carriers.model import (
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

NAME = "dhl"
DEFAULT_BASE_URL = "https://api-eu.dhl.com"
CREDENTIALS = ("api_key", "webhook_secret")
# The spec takes one `trackingNumber` per call; default tier: 1 call/s and 250 calls/day.
LIMITS = Limits(batch_size=1, per_second=1.0, per_day=250, supports_push=True)
TIMESTAMP_POLICY = TimestampPolicy.NAIVE_LOCAL

TRACKING_PATH = "/track/shipments"
PUSH_PATH = "/tracking/push/v1/subscription"
#: The header DHL is told (hook.authentication) to send with `webhook_secret` on every push.
WEBHOOK_HEADER = "X-Shipmate-Token"
HANDSHAKE_HEADER = "DHL-API-Hook-Secret"
PUSH_EVENTS = ("Pre-Transit", "Transit", "Delivered", "Failure", "Unknown")
PUSH_BATCH = 10  # shipment IDs per subscription request (limit enforced by DHL client code)

_NUMBER = re.compile(
    r"\d{10}|\d{12}|\d{20}|JJD\d{12,24}|JVGL\d{6,20}|GM\d{16,22}|[A-Z]{2}\d{9}DE|3S[A-Z0-9]{8,20}"
)

# Countries with a single IANA zone (or one offset) that DHL data commonly names.
COUNTRY_ZONES: Mapping[str, str] = {
    "AE": "Asia/Dubai", "AT": "Europe/Vienna", "BE": "Europe/Brussels", "BG": "Europe/Sofia",
    "CH": "Europe/Zurich", "CN": "Asia/Shanghai", "CY": "Asia/Nicosia", "CZ": "Europe/Prague",
    "DE": "Europe/Berlin", "DK": "Europe/Copenhagen", "EE": "Europe/Tallinn",
    "EG": "Africa/Cairo", "ES": "Europe/Madrid", "FI": "Europe/Helsinki", "FR": "Europe/Paris",
    "GB": "Europe/London", "GR": "Europe/Athens", "HK": "Asia/Hong_Kong", "HR": "Europe/Zagreb",
    "HU": "Europe/Budapest", "IE": "Europe/Dublin", "IL": "Asia/Jerusalem", "IN": "Asia/Kolkata",
    "IS": "Atlantic/Reykjavik", "IT": "Europe/Rome", "JP": "Asia/Tokyo", "KR": "Asia/Seoul",
    "LT": "Europe/Vilnius", "LU": "Europe/Luxembourg", "LV": "Europe/Riga",
    "MA": "Africa/Casablanca",
    "MT": "Europe/Malta", "MY": "Asia/Kuala_Lumpur", "NL": "Europe/Amsterdam",
    "NO": "Europe/Oslo", "NZ": "Pacific/Auckland", "PH": "Asia/Manila", "PL": "Europe/Warsaw",
    "PT": "Europe/Lisbon", "QA": "Asia/Qatar", "RO": "Europe/Bucharest", "RS": "Europe/Belgrade",
    "SA": "Asia/Riyadh", "SE": "Europe/Stockholm", "SG": "Asia/Singapore", "SI": "Europe/Ljubljana",
    "SK": "Europe/Bratislava", "TH": "Asia/Bangkok", "TR": "Europe/Istanbul", "TW": "Asia/Taipei",
    "UA": "Europe/Kyiv", "UK": "Europe/London", "VN": "Asia/Ho_Chi_Minh",
    "ZA": "Africa/Johannesburg",
}

BASE_STATUS: Mapping[str, Status] = {
    "pre-transit": Status.PENDING,
    "transit": Status.IN_TRANSIT,
    "delivered": Status.DELIVERED,
    "failure": Status.DELIVERY_FAILED,
    "unknown": Status.UNKNOWN,
}

# (pattern, status, reason) read from the event's free text; first match wins.
RETURN = r"return(?:ed|ing)? to (?:the )?(?:sender|shipper)|back to (?:the )?sender|being returned"
MOVING_RULES: tuple[tuple[str, Status, Reason], ...] = (
    (RETURN, Status.RETURN_TO_SENDER, Reason.NONE),
    (r"out for delivery|with delivery courier|loaded onto the delivery vehicle"
     r"|in zustellung", Status.OUT_FOR_DELIVERY, Reason.NONE),
    (r"ready for (?:pick[- ]?up|collection)|available for (?:pick[- ]?up|collection)"
     r"|awaiting collection|can be picked up|zur abholung", Status.READY_FOR_PICKUP, Reason.NONE),
    (r"weather", Status.DELAYED, Reason.WEATHER_DELAY),
    (r"\bdelay", Status.DELAYED, Reason.OPERATIONAL_DELAY),
    (r"on hold|\bheld\b", Status.ON_HOLD, Reason.NONE),
    (r"picked up|pickup|accepted|posted|dropped off|handed over to dhl", Status.PICKED_UP,
     Reason.NONE),
)
FAILURE_RULES: tuple[tuple[str, Status, Reason], ...] = (
    (RETURN, Status.RETURN_TO_SENDER, Reason.NONE),
    (r"damaged", Status.ON_HOLD, Reason.DAMAGED),
    (r"\blost\b|cannot be located", Status.ON_HOLD, Reason.LOST),
    (r"refused|rejected", Status.DELIVERY_FAILED, Reason.CONSIGNEE_REFUSED),
    (r"address", Status.DELIVERY_FAILED, Reason.INCORRECT_ADDRESS),
    (r"closed", Status.DELIVERY_FAILED, Reason.BUSINESS_CLOSED),
    (r"not (?:at )?home|not available|no one|nobody|could not be delivered",
     Status.DELIVERY_FAILED, Reason.CONSIGNEE_NOT_HOME),
)
# Used when statusCode is missing (the spec's own example has none).
TEXT_RULES: tuple[tuple[str, Status, Reason], ...] = (
    (RETURN, Status.RETURN_TO_SENDER, Reason.NONE),
    (r"\bdelivered\b|zugestellt", Status.DELIVERED, Reason.NONE),
    *MOVING_RULES,
    (r"in transit|processed|arrived|departed|sort", Status.IN_TRANSIT, Reason.NONE),
)

_BLOCKING, _PAST_CUSTOMS, _HOLDABLE, _MOVED_ON = BLOCKING, PAST_CUSTOMS, HOLDABLE, MOVED_ON

_END_OF_DAY = clock_time(23, 59, 59)


# --- pure parsing ---------------------------------------------------------------------------

def parse(payload: Any, *, fetched_at: datetime, number: str | None = None) -> TrackingReport:
    """Turn a Shipments body or a problem+json body into a report.

    `number` is the tracking number that was asked for: DHL may answer a piece number with the
    shipment's own id, and a 404 problem does not always name the number.
    """
    report = TrackingReport()
    if not isinstance(payload, dict):
        raise CarrierError(NAME, f"unexpected tracking body: {type(payload).__name__}")
    if "shipments" not in payload:
        problem = _problem(payload, number)
        if problem is None:
            raise CarrierError(NAME, "tracking body has neither shipments nor a problem")
        report.problems[problem.tracking_number] = problem
        return report
    shipments = [s for s in payload.get("shipments") or () if isinstance(s, dict)]
    if number is None:
        for shipment in shipments:
            snap = snapshot(shipment, fetched_at=fetched_at)
            report.snapshots[snap.tracking_number] = snap
        return report
    if not shipments:
        report.problems[number] = NumberProblem(number, ProblemKind.NOT_FOUND, "no shipments")
        return report
    # The same number may exist in several DHL divisions: prefer an exact id, then the freshest.
    snaps = [snapshot(s, fetched_at=fetched_at, number=number) for s in shipments]
    exact = [s for s, raw in zip(snaps, shipments, strict=True) if str(raw.get("id")) == number]
    best = max(exact or snaps, key=_freshness)
    report.snapshots[number] = best
    return report


def snapshot(shipment: Mapping[str, Any], *, fetched_at: datetime | None = None,
             number: str | None = None) -> TrackingSnapshot:
    """One shipment as a snapshot (events oldest first, the current status included)."""
    dest_zone = _country_zone(_country(shipment.get("destination")))
    events = [e for e in (_event(raw, dest_zone) for raw in _raws(shipment.get("events"))) if e]
    current_raw = shipment.get("status") if isinstance(shipment.get("status"), dict) else None
    current = _event(current_raw, dest_zone) if current_raw else None
    if current is not None and not any(
        e.timestamp == current.timestamp and e.raw_text == current.raw_text for e in events
    ):
        events.append(current)
    events.sort(key=lambda e: e.timestamp)

    if current_raw is not None:
        status, reason = _classify(current_raw)
        customs_text = _text(current_raw)
        customs, customs_reason = customs_of(customs_text)
    elif events:
        status, reason = events[-1].status, events[-1].reason
        customs = CustomsStage.NONE
    else:
        status, reason, customs = Status.UNKNOWN, Reason.NONE, CustomsStage.NONE
    if customs is CustomsStage.NONE:
        customs, customs_event = customs_summary(events)
        customs_text = customs_event.raw_text if customs_event else ""
        customs_reason = customs_event.reason if customs_event else Reason.NONE
    if customs in _BLOCKING and status in _PAST_CUSTOMS:
        customs = CustomsStage.RELEASED
    duties, payment_url = None, ""
    if customs in _BLOCKING:
        reason = customs_reason
        status = Status.ON_HOLD if status in _HOLDABLE else status
        if customs is CustomsStage.DUTIES_DUE:
            duties, payment_url = money_in(customs_text), url_in(customs_text)
    eta, eta_end = _eta(shipment, dest_zone)
    newest = events[-1] if events else None
    details = shipment.get("details") if isinstance(shipment.get("details"), dict) else {}
    product = details.get("product") if isinstance(details.get("product"), dict) else {}
    return TrackingSnapshot(
        carrier=NAME,
        tracking_number=number or str(shipment.get("id") or ""),
        status=status,
        events=tuple(events),
        reason=reason,
        customs=customs,
        eta=eta,
        eta_end=eta_end,
        duties=duties,
        payment_url=payment_url,
        pickup_location=newest.location if newest and status is Status.READY_FOR_PICKUP else "",
        service=str(product.get("productName") or shipment.get("service") or ""),
        raw_code=str((current_raw or {}).get("statusCode") or ""),
        raw_text=str((current_raw or {}).get("status") or ""),
        fetched_at=fetched_at,
    )


def _problem(body: Mapping[str, Any], number: str | None,
             http_status: int = 404) -> NumberProblem | None:
    instance = str(body.get("instance") or "")
    number = number or instance.rstrip("/").rpartition("/")[2] or None
    if number is None or not ({"title", "detail", "status"} & body.keys()):
        return None
    try:
        status = int(body.get("status") or http_status)
    except (TypeError, ValueError):
        status = http_status
    kind = {404: ProblemKind.NOT_FOUND, 410: ProblemKind.EXPIRED}.get(status, ProblemKind.INVALID)
    return NumberProblem(number, kind, str(body.get("detail") or body.get("title") or ""))


def _raws(value: Any) -> Iterable[Mapping[str, Any]]:
    return [v for v in value or () if isinstance(v, dict)] if isinstance(value, list) else []


def _event(raw: Mapping[str, Any], dest_zone: tzinfo | None) -> TrackingEvent | None:
    place = raw.get("location") if isinstance(raw.get("location"), dict) else {}
    country = _country(place)
    when = _when(raw.get("timestamp"), _country_zone(country) or dest_zone)
    if when is None:
        return None
    status, reason = _classify(raw)
    customs, customs_reason = customs_of(_text(raw))
    if customs in _BLOCKING:
        reason = customs_reason
    address = place.get("address") if isinstance(place.get("address"), dict) else {}
    texts = [str(raw.get(k) or "") for k in ("status", "description", "remark", "nextSteps")]
    return TrackingEvent(
        timestamp=when,
        status=status,
        description=str(raw.get("description") or raw.get("status") or ""),
        location=str(address.get("addressLocality") or ""),
        country=country,
        reason=reason,
        customs=customs,
        raw_code=str(raw.get("statusCode") or ""),
        raw_text=" | ".join(dict.fromkeys(t for t in texts if t)),
    )


def _text(raw: Mapping[str, Any]) -> str:
    return " ".join(str(raw.get(k) or "") for k in ("status", "description", "remark", "nextSteps"))


def _classify(raw: Mapping[str, Any]) -> tuple[Status, Reason]:
    code = str(raw.get("statusCode") or "").strip().lower()
    text = _text(raw)
    if code == "delivered":
        rules: tuple[tuple[str, Status, Reason], ...] = ((RETURN, Status.RETURN_TO_SENDER,
                                                          Reason.NONE),)
    elif code == "failure":
        rules = FAILURE_RULES
    elif code in ("transit", "pre-transit"):
        rules = MOVING_RULES
    else:
        rules = TEXT_RULES
    for pattern, status, reason in rules:
        if re.search(pattern, text, re.I):
            if code == "pre-transit" and status is Status.PICKED_UP:
                break  # "pickup scheduled" before DHL has the parcel is still pending
            return status, reason
    return BASE_STATUS.get(code, Status.UNKNOWN), Reason.NONE






def _freshness(snap: TrackingSnapshot) -> datetime:
    return snap.events[-1].timestamp if snap.events else datetime.min.replace(tzinfo=UTC)


def _eta(shipment: Mapping[str, Any],
         zone: tzinfo | None) -> tuple[datetime | None, datetime | None]:
    frame = shipment.get("estimatedDeliveryTimeFrame")
    if isinstance(frame, dict):
        start = _when(frame.get("estimatedFrom"), zone)
        end = _when(frame.get("estimatedThrough"), zone)
        if start or end:
            return start or end, end
    raw = shipment.get("estimatedTimeOfDelivery")
    when = _when(raw, zone)
    if when is None:
        return None, None
    if _is_date(raw):
        return when, datetime.combine(when.date(), _END_OF_DAY, when.tzinfo)
    return when, None


def _when(value: Any, zone: tzinfo | None) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone or UTC)


def _is_date(value: Any) -> bool:
    try:
        date.fromisoformat(str(value).strip())
    except ValueError:
        return False
    return True


def _country(place: Any) -> str:
    address = place.get("address") if isinstance(place, dict) else None
    if not isinstance(address, dict):
        return ""
    code = str(address.get("countryCode") or "").strip().upper()
    return code if re.fullmatch(r"[A-Z]{2}", code) else ""


def _country_zone(country: str) -> ZoneInfo | None:
    name = COUNTRY_ZONES.get(country)
    return ZoneInfo(name) if name else None






def push_service(number: str) -> str:
    """The DHL division a push subscription must name, guessed from the number's format."""
    if re.fullmatch(r"\d{10}", number):
        return "express"
    if re.fullmatch(r"[A-Z]{2}\d{9}DE", number):
        return "post-de"
    if number.startswith("3S"):
        return "parcel-nl"
    if number.startswith("GM"):
        return "ecommerce"
    return "parcel-de"


def _http_problem(resp: Response, number: str) -> NumberProblem:
    """A 4xx answer for one number, from its problem+json body when it has one."""
    try:
        body = resp.json()
    except CarrierError:
        body = None
    problem = _problem(body, number, resp.status) if isinstance(body, dict) else None
    if problem is None:
        kind = ProblemKind.NOT_FOUND if resp.status == 404 else ProblemKind.INVALID
        problem = NumberProblem(number, kind, f"HTTP {resp.status}")
    return problem


# --- webhooks -----------------------------------------------------------------------------

def _message(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise WebhookError("dhl: push body is not JSON") from exc
    if not isinstance(message, dict) or not isinstance(message.get("scope"), str):
        raise WebhookError("dhl: push body has no scope")
    return message


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), "")


# --- the adapter ----------------------------------------------------------------------------

class DhlCarrier:
    """DHL Shipment Tracking – Unified with the `DHL-API-Key` header, plus its Push API."""

    name = NAME
    limits = LIMITS

    def __init__(self, session: aiohttp.ClientSession, credentials: Credentials, *,
                 min_interval: float = 1 / LIMITS.per_second) -> None:
        self._session = session
        self._credentials = credentials
        self._base = (credentials.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._min_interval = min_interval
        self._next_call = 0.0
        self._pace = asyncio.Lock()

    def recognizes(self, number: str) -> bool:
        """Express waybills, Parcel DE codes, JJD/JVGL, eCommerce GM, Post DE S10, Parcel NL."""
        return bool(_NUMBER.fullmatch(number))

    async def track(self, numbers: NumberList) -> TrackingReport:
        """One GET per number (the API takes one), paced to LIMITS.per_second."""
        report = TrackingReport()
        for number in dict.fromkeys(numbers):
            await self._wait_turn()
            resp = await request(
                self._session, NAME, "GET", self._base + TRACKING_PATH,
                headers={"DHL-API-Key": self._credentials.get("api_key"),
                         "Accept": "application/json"},
                params={"trackingNumber": number, "language": "en"},
            )
            if resp.status == 200:
                report.merge(parse(resp.json(), fetched_at=datetime.now(UTC), number=number))
            elif resp.status in (400, 404, 410):
                report.problems[number] = _http_problem(resp, number)
            else:
                raise CarrierError(NAME, f"unexpected HTTP {resp.status}", status=resp.status)
        return report

    def verify_webhook(self, headers: dict[str, str], body: bytes) -> None:
        """Compare the WEBHOOK_HEADER token DHL was told to send, in constant time."""
        secret = self._credentials.get("webhook_secret")
        if not secret:
            raise WebhookError("dhl: no webhook secret configured, refusing pushes")
        given = _header(headers, WEBHOOK_HEADER)
        if not given or not hmac.compare_digest(given.encode(), secret.encode()):
            raise WebhookError(f"dhl: {WEBHOOK_HEADER} missing or wrong")
        _message(body)

    def parse_webhook(self, body: bytes) -> list[TrackingSnapshot]:
        """Shipments of a `subscription.push`; handshake messages carry none."""
        message = _message(body)
        if message["scope"] != "subscription.push":
            return []
        shipments = message.get("shipments")
        if not isinstance(shipments, list):
            raise WebhookError("dhl: push without a shipments list")
        report = parse({"shipments": shipments}, fetched_at=datetime.now(UTC))
        return list(report.snapshots.values())

    async def handshake(self, body: bytes) -> bool:
        """Activate a subscription when DHL posts `subscription.validate`; True if it did."""
        message = _message(body)
        if message["scope"] != "subscription.validate":
            return False
        subscription = str(message.get("self") or "").rstrip("/").rpartition("/")[2]
        secret = message.get("secret")
        if not subscription or not isinstance(secret, str) or not secret:
            raise WebhookError("dhl: validate message without self/secret")
        # Built from our own base URL, never from `self`, so a push cannot redirect our key.
        resp = await request(
            self._session, NAME, "POST", f"{self._base}{PUSH_PATH}/{subscription}",
            headers={"DHL-API-Key": self._credentials.get("api_key"), HANDSHAKE_HEADER: secret},
        )
        if resp.status >= 300:
            raise CarrierError(NAME, f"activation refused (HTTP {resp.status})", status=resp.status)
        return True

    async def subscribe(self, numbers: NumberList, callback_url: str) -> None:
        """Subscribe by shipment ID, grouped by guessed DHL division, 10 IDs per request."""
        token = self._credentials.get("webhook_secret")
        if not token:
            raise ValueError("DHL_WEBHOOK_SECRET is required: DHL sends it back on every push")
        groups: dict[str, list[str]] = {}
        for number in dict.fromkeys(numbers):
            groups.setdefault(push_service(number), []).append(number)
        for service, ids in groups.items():
            for start in range(0, len(ids), PUSH_BATCH):
                body = {
                    "hook": {"uri": callback_url, "authentication": {
                        "type": "ApiKeyAuthentication", "header": WEBHOOK_HEADER, "token": token}},
                    "format": "Default",
                    "type": "Shipment",
                    "service": service,
                    "events": list(PUSH_EVENTS),
                    "shipmentIDs": ids[start:start + PUSH_BATCH],
                }
                resp = await request(
                    self._session, NAME, "POST", self._base + PUSH_PATH, json_body=body,
                    headers={"DHL-API-Key": self._credentials.get("api_key"),
                             "Accept": "application/json"},
                )
                if resp.status >= 300:
                    raise CarrierError(NAME, f"subscription refused (HTTP {resp.status})",
                                       status=resp.status)

    async def _wait_turn(self) -> None:
        async with self._pace:
            delay = self._next_call - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next_call = time.monotonic() + self._min_interval


__all__ = [
    "CREDENTIALS", "DEFAULT_BASE_URL", "DhlCarrier", "LIMITS", "NAME", "TIMESTAMP_POLICY",
    "WEBHOOK_HEADER", "parse", "push_service", "snapshot",
]
