"""UPS adapter: Track API v1 (polling) and Track Alert v2 (push), both over OAuth client credentials.

Pure parsers (`parse`, `parse_alert`) turn UPS payloads into the carrier-neutral model; the I/O
in `UpsCarrier` is a token cache, one GET per number and one POST per 100 subscriptions.

Times: activity `date`/`time` are local without a zone. The GMT fields (`gmtDate`, `gmtTime`,
`gmtOffset`) give the instant when present; `gmtTime` may be unpadded ("74700") and Track Alert
writes the offset with a dot ("-04.00"). Package-level dates (ETA) carry no zone at all, so they
are placed in the destination's zone, looked up from its state/country (`zone_for`).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from datetime import time as dtime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import aiohttp

from carriers import session_required
from carriers.http import Response, TokenCache, request
from carriers.model import (
    CarrierAuthError,
    CarrierError,
    Credentials,
    CustomsStage,
    Limits,
    Money,
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

log = logging.getLogger(__name__)

NAME = "ups"
DEFAULT_BASE_URL = "https://onlinetools.ups.com"
#: `webhook_credential` is the bearer credential registered with UPS for Track Alert callbacks.
CREDENTIALS = ("client_id", "client_secret", "webhook_credential")
# UPS publishes no rate limit (429 "10429" is observed); one number per Track API call.
LIMITS = Limits(batch_size=1, per_second=2.0, per_day=None, supports_push=True)
TIMESTAMP_POLICY = TimestampPolicy.NAIVE_LOCAL

OAUTH_PATH = "/security/v1/oauth/token"
TRACK_PATH = "/api/track/v1/details/{number}"
SUBSCRIBE_PATH = "/api/track/v2/subscription/standard/package"
SUBSCRIBE_BATCH = 100  # Track Alert rejects a whole request above 100 numbers (VSS220)
LOCALE = "en_US"  # descriptions are matched as English text below
TRANSACTION_SRC = "shipmate"

_ALERT_PATTERN = re.compile(r"1Z[0-9A-Z]{16}|1R(?:[0-9A-Z]{14}|[0-9A-Z]{26})")  # 1R: Roadie
_NUMBER_PATTERNS = (_ALERT_PATTERN, re.compile(r"[AHJKTV]\d{10}"))  # + waybill

# -- time -------------------------------------------------------------------------------------

_EASTERN, _CENTRAL, _MOUNTAIN, _PACIFIC = (
    "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
)
_REGION_ZONES: dict[str, dict[str, str]] = {
    # The dominant zone per state/province: good to the hour for nearly every address.
    "US": {
        **dict.fromkeys("CT DC DE FL GA IN KY MA MD ME MI NC NH NJ NY OH PA RI SC VA VT WV".split(),
                        _EASTERN),
        **dict.fromkeys("AL AR IA IL KS LA MN MO MS ND NE OK SD TN TX WI".split(), _CENTRAL),
        **dict.fromkeys("CO ID MT NM UT WY".split(), _MOUNTAIN),
        **dict.fromkeys("CA NV OR WA".split(), _PACIFIC),
        "AZ": "America/Phoenix", "AK": "America/Anchorage", "HI": "Pacific/Honolulu",
        "PR": "America/Puerto_Rico",
    },
    "CA": {
        **dict.fromkeys("ON QC".split(), "America/Toronto"),
        **dict.fromkeys("NS NB PE".split(), "America/Halifax"),
        "NL": "America/St_Johns", "MB": "America/Winnipeg", "SK": "America/Regina",
        "AB": "America/Edmonton", "BC": "America/Vancouver",
    },
}
_COUNTRY_ZONES = {
    # Only countries with one zone (or one dominant zone); US/CA need a state (above).
    "PR": "America/Puerto_Rico",
    "GB": "Europe/London", "IE": "Europe/Dublin", "PT": "Europe/Lisbon", "ES": "Europe/Madrid",
    "FR": "Europe/Paris", "BE": "Europe/Brussels", "NL": "Europe/Amsterdam",
    "LU": "Europe/Luxembourg", "DE": "Europe/Berlin", "CH": "Europe/Zurich", "AT": "Europe/Vienna",
    "IT": "Europe/Rome", "DK": "Europe/Copenhagen", "SE": "Europe/Stockholm",
    "NO": "Europe/Oslo", "FI": "Europe/Helsinki", "PL": "Europe/Warsaw", "CZ": "Europe/Prague",
    "HU": "Europe/Budapest", "GR": "Europe/Athens", "TR": "Europe/Istanbul",
    "IL": "Asia/Jerusalem", "AE": "Asia/Dubai", "IN": "Asia/Kolkata", "CN": "Asia/Shanghai",
    "HK": "Asia/Hong_Kong", "TW": "Asia/Taipei", "KR": "Asia/Seoul", "JP": "Asia/Tokyo",
    "SG": "Asia/Singapore", "PH": "Asia/Manila", "TH": "Asia/Bangkok", "VN": "Asia/Ho_Chi_Minh",
    "ZA": "Africa/Johannesburg",
}
_DAY_END = dtime(23, 59, 59)


def zone_for(state: str = "", country: str = "") -> tzinfo | None:
    """The local zone of a UPS address (state/province + ISO country), when it can be told."""
    country = (country or "").strip().upper()
    state = (state or "").strip().upper()
    name = _REGION_ZONES.get(country, {}).get(state) or _COUNTRY_ZONES.get(country)
    return ZoneInfo(name) if name else None


def _ymd(value: Any) -> date | None:
    text = str(value or "").strip().replace("-", "")
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _hms(value: Any) -> dtime | None:
    text = str(value or "").strip().replace(":", "")
    if not text.isdigit() or len(text) > 6:
        return None
    text = text.zfill(6)  # gmtTime comes unpadded, e.g. "74700" for 07:47:00
    try:
        return dtime(int(text[:2]), int(text[2:4]), int(text[4:]))
    except ValueError:
        return None


_OFFSET = re.compile(r"([+-])(\d{1,2})(?:[:.]?(\d{2}))?")


def _offset(value: Any) -> timezone | None:
    """'-05:00' (Track API) or '-04.00' (Track Alert) as a fixed offset."""
    match = _OFFSET.fullmatch(str(value or "").strip())
    if not match:
        return None
    sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
    if hours > 14 or minutes >= 60:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if sign == "-" else delta)


def _instant(local_date: Any, local_time: Any, gmt_date: Any, gmt_time: Any, gmt_offset: Any,
             zone: tzinfo | None) -> datetime | None:
    """An aware time from UPS's split fields; the GMT fields win, the local zone is a fallback."""
    ld, lt = _ymd(local_date), _hms(local_time)
    gd, gt = _ymd(gmt_date), _hms(gmt_time)
    if gd is not None and gt is not None:
        instant = datetime.combine(gd, gt, tzinfo=UTC)
        offset = _offset(gmt_offset)
        if offset is None and ld is not None and lt is not None:
            # No offset given: local minus GMT is the offset (rounded to a quarter hour).
            delta = datetime.combine(ld, lt) - datetime.combine(gd, gt)
            quarters = round(delta.total_seconds() / 900)
            if abs(quarters) <= 14 * 4:
                offset = timezone(timedelta(minutes=15 * quarters))
        return instant.astimezone(offset or UTC)
    if ld is not None:
        return datetime.combine(ld, lt or dtime(0), tzinfo=zone or UTC)
    return None


# -- status -----------------------------------------------------------------------------------

_DELIVERED_CODES = frozenset({"FS", "F4", "KB"})
_OUT_FOR_DELIVERY_CODES = frozenset({"OT"})
_PICKUP_CODES = frozenset({"OR", "PU"})
_CUSTOMS_RELEASED_CODES = frozenset({"SR"})
_CUSTOMS_WORDS = ("customs", "clearance", "brokerage", "duty", "duties")

# (words, status, reason) for exceptions that are not about customs; first match wins.
_EXCEPTION_RULES: tuple[tuple[tuple[str, ...], Status, Reason], ...] = (
    (("weather", "storm", "snow", "flood", "hurricane"), Status.DELAYED, Reason.WEATHER_DELAY),
    (("refused",), Status.ON_HOLD, Reason.CONSIGNEE_REFUSED),
    (("not available", "not home", "no one", "nobody"), Status.DELIVERY_FAILED,
     Reason.CONSIGNEE_NOT_HOME),
    (("business was closed", "business closed", "closed"), Status.DELIVERY_FAILED,
     Reason.BUSINESS_CLOSED),
    (("address",), Status.ON_HOLD, Reason.INCORRECT_ADDRESS),
    (("damage",), Status.ON_HOLD, Reason.DAMAGED),
    (("lost", "unable to locate", "cannot be located"), Status.ON_HOLD, Reason.LOST),
    (("attempt",), Status.DELIVERY_FAILED, Reason.UNKNOWN),
    (("delay", " late", "reschedul", "missed"), Status.DELAYED, Reason.OPERATIONAL_DELAY),
)
_CUSTOMS_HOLDS = frozenset({CustomsStage.HELD, CustomsStage.DUTIES_DUE, CustomsStage.INFO_REQUIRED})


def _customs(kind: str, code: str, text: str) -> tuple[CustomsStage, Reason]:
    """Customs stage from a UPS status; UPS has no customs field, so its English text decides."""
    if code in _CUSTOMS_RELEASED_CODES:
        return CustomsStage.RELEASED, Reason.NONE
    if not any(word in text for word in _CUSTOMS_WORDS):
        return CustomsStage.NONE, Reason.NONE
    if "released" in text or "cleared" in text:
        return CustomsStage.RELEASED, Reason.NONE
    if "dut" in text or "tax" in text or "payment" in text:
        return CustomsStage.DUTIES_DUE, Reason.CUSTOMS_DUTIES_UNPAID
    if "document" in text or "information" in text or "paperwork" in text or "invoice" in text:
        return CustomsStage.INFO_REQUIRED, Reason.CUSTOMS_DOCUMENTATION
    if "inspect" in text:
        return CustomsStage.HELD, Reason.CUSTOMS_INSPECTION
    if "prohibit" in text or "restricted" in text:
        return CustomsStage.HELD, Reason.CUSTOMS_PROHIBITED
    if kind == "X" or "held" in text or "hold" in text or "delay" in text:
        return CustomsStage.HELD, Reason.CUSTOMS_DELAY
    return CustomsStage.PROCESSING, Reason.NONE


def classify(kind: str, code: str = "", status_code: str = "",
             text: str = "") -> tuple[Status, Reason, CustomsStage]:
    """Map a UPS status (type I/D/X/M/MV/U/P, 2-char code, 3-digit code, text) to our model."""
    kind, code, low = kind.strip().upper(), code.strip().upper(), text.strip().lower()
    status_code = status_code.strip().zfill(3) if status_code.strip().isdigit() else ""
    if kind == "MV":
        return Status.CANCELLED, Reason.NONE, CustomsStage.NONE
    if kind == "M":
        return Status.PENDING, Reason.NONE, CustomsStage.NONE
    out_for_delivery = (code in _OUT_FOR_DELIVERY_CODES or status_code == "021"
                        or "out for delivery" in low)
    if kind == "D":
        if out_for_delivery:
            return Status.OUT_FOR_DELIVERY, Reason.NONE, CustomsStage.NONE
        if "access point" in low and "picked up" not in low:
            return Status.READY_FOR_PICKUP, Reason.NONE, CustomsStage.NONE
        return Status.DELIVERED, Reason.NONE, CustomsStage.NONE
    customs, customs_reason = _customs(kind, code, low)
    if customs in _CUSTOMS_HOLDS:
        return Status.ON_HOLD, customs_reason, customs
    if code in _DELIVERED_CODES or status_code == "011":
        return Status.DELIVERED, Reason.NONE, CustomsStage.NONE
    if out_for_delivery:
        return Status.OUT_FOR_DELIVERY, Reason.NONE, customs
    if "return" in low and ("sender" in low or "shipper" in low):
        return Status.RETURN_TO_SENDER, Reason.NONE, customs
    if "access point" in low and ("await" in low or "ready" in low or "available" in low):
        return Status.READY_FOR_PICKUP, Reason.NONE, customs
    if kind == "P" or code in _PICKUP_CODES:
        return Status.PICKED_UP, Reason.NONE, customs
    if customs is CustomsStage.RELEASED:  # e.g. the spec's own "X / SR released by customs"
        return Status.IN_TRANSIT, Reason.NONE, customs
    if kind == "X":
        for words, status, reason in _EXCEPTION_RULES:
            if any(word in low for word in words):
                return status, reason, customs
        return Status.ON_HOLD, Reason.UNKNOWN, customs
    if kind == "U":
        # "U" is a new delivery date, which may be earlier: a delay only when the text says so.
        if any(word in low for word in ("delay", " late", "reschedul", "weather")):
            reason = Reason.WEATHER_DELAY if "weather" in low else Reason.OPERATIONAL_DELAY
            return Status.DELAYED, reason, customs
        return Status.IN_TRANSIT, Reason.NONE, customs
    if kind == "I" or customs is not CustomsStage.NONE:
        return Status.IN_TRANSIT, Reason.NONE, customs
    return Status.UNKNOWN, Reason.NONE, customs


# -- Track API parsing --------------------------------------------------------------------------

_INVALID_CODES = frozenset({"150022", "151018"})
_NOT_FOUND_CODES = frozenset({"151044", "151045", "151062", "TW0001"})


def _text(value: Any) -> str:
    return str(value).strip() if value is not None else ""


def _problem(number: str, errors: Sequence[Any]) -> NumberProblem:
    first = next((e for e in errors if isinstance(e, dict)), {})
    code, message = _text(first.get("code")), _text(first.get("message"))
    low = message.lower()
    if code in _INVALID_CODES or (code not in _NOT_FOUND_CODES and "invalid" in low):
        kind = ProblemKind.INVALID
    elif "retention" in low or "no longer available" in low:
        kind = ProblemKind.EXPIRED
    else:
        kind = ProblemKind.NOT_FOUND
    return NumberProblem(number, kind, f"{code}: {message}" if code else message)


def _place(address: Mapping[str, Any]) -> tuple[str, str]:
    """('PARAMUS, NJ', 'US') from a UPS address (Track API or Track Alert shape)."""
    state = _text(address.get("stateProvince"))
    city = _text(address.get("city"))
    country = _text(address.get("countryCode") or address.get("country")).upper()
    return ", ".join(p for p in (city, state) if p), country


def _address_zone(address: Mapping[str, Any]) -> tzinfo | None:
    return zone_for(_text(address.get("stateProvince")),
                    _text(address.get("countryCode") or address.get("country")))


def _event(activity: Mapping[str, Any], fallback: tzinfo | None) -> TrackingEvent | None:
    address = (activity.get("location") or {}).get("address") or {}
    status = activity.get("status") or {}
    location, country = _place(address)
    when = _instant(activity.get("date"), activity.get("time"), activity.get("gmtDate"),
                    activity.get("gmtTime"), activity.get("gmtOffset"),
                    _address_zone(address) or fallback)
    if when is None:
        return None  # an event we cannot place in time would corrupt the order of events
    description = _text(status.get("description"))
    kind, code = _text(status.get("type")), _text(status.get("code"))
    normalized, reason, customs = classify(kind, code, _text(status.get("statusCode")), description)
    return TrackingEvent(
        timestamp=when, status=normalized, description=description, location=location,
        country=country, reason=reason, customs=customs, raw_code=code, raw_text=description,
    )


def _package_zone(package: Mapping[str, Any]) -> tzinfo | None:
    """The destination's zone, else that of the newest scan whose place we can locate."""
    for entry in package.get("packageAddress") or []:
        if isinstance(entry, dict) and _text(entry.get("type")).upper() == "DESTINATION":
            zone = _address_zone(entry.get("address") or {})
            if zone is not None:
                return zone
    for activity in package.get("activity") or []:  # newest first
        if isinstance(activity, dict):
            zone = _address_zone((activity.get("location") or {}).get("address") or {})
            if zone is not None:
                return zone
    return None


def _day_window(day: date, start: dtime | None, end: dtime | None,
                zone: tzinfo) -> tuple[datetime, datetime | None]:
    """ETA window on a day; a bare date becomes the whole day."""
    if start is not None:
        return (datetime.combine(day, start, tzinfo=zone),
                datetime.combine(day, end, tzinfo=zone) if end else None)
    if end is not None:  # commit time: "by 10:30"
        return datetime.combine(day, end, tzinfo=zone), None
    return datetime.combine(day, dtime(0), tzinfo=zone), datetime.combine(day, _DAY_END, tzinfo=zone)


def _eta(package: Mapping[str, Any], zone: tzinfo) -> tuple[datetime | None, datetime | None]:
    dates = {_text(d.get("type")).upper(): _ymd(d.get("date"))
             for d in package.get("deliveryDate") or [] if isinstance(d, dict)}
    day = dates.get("RDD") or dates.get("SDD")
    if day is None:
        return None, None
    window = package.get("deliveryTime") or {}
    kind = _text(window.get("type")).upper()
    if kind in ("EDW", "CDW", "IDW"):
        return _day_window(day, _hms(window.get("startTime")), _hms(window.get("endTime")), zone)
    if kind == "CMT":
        return _day_window(day, None, _hms(window.get("endTime")), zone)
    return _day_window(day, None, None, zone)


def _duties(package: Mapping[str, Any]) -> Money | None:
    """An unpaid amount that is not cash-on-delivery: duties/taxes the recipient must pay."""
    for payment in package.get("paymentInformation") or []:
        kinds = {k.strip().upper() for k in _text(payment.get("type")).split("/")}
        if payment.get("paid") is True or kinds & {"COD", "ICOD"}:
            continue
        try:
            amount = Decimal(_text(payment.get("amount")))
        except InvalidOperation:
            continue
        currency = _text(payment.get("currency")).upper()
        if amount > 0 and currency:
            return Money(amount, currency)
    return None


def _package_snapshot(number: str, package: Mapping[str, Any],
                      fetched_at: datetime) -> TrackingSnapshot:
    activities = [a for a in package.get("activity") or [] if isinstance(a, dict)]
    zone = _package_zone(package)
    # UPS lists the newest first; reverse, then a stable sort keeps ties in UPS's order.
    events = sorted(
        (e for e in (_event(a, zone) for a in reversed(activities)) if e is not None),
        key=lambda e: e.timestamp,
    )
    current = package.get("currentStatus") or {}
    if _text(current.get("type")) or _text(current.get("code")):
        raw_code, raw_text = _text(current.get("code")), _text(current.get("description"))
        status, reason, customs = classify(_text(current.get("type")), raw_code,
                                           _text(current.get("statusCode")), raw_text)
    elif events:
        last = events[-1]
        raw_code, raw_text = last.raw_code, last.raw_text
        status, reason, customs = last.status, last.reason, last.customs
    else:
        raw_code, raw_text = "", ""
        status, reason, customs = Status.UNKNOWN, Reason.NONE, CustomsStage.NONE
    duties = _duties(package)
    if duties is not None and customs is CustomsStage.HELD:
        customs, reason = CustomsStage.DUTIES_DUE, Reason.CUSTOMS_DUTIES_UNPAID
    eta, eta_end = (None, None)
    if status is not Status.DELIVERED:
        eta_zone = zone or (events[-1].timestamp.tzinfo if events else None) or UTC
        eta, eta_end = _eta(package, eta_zone)
    access_point = package.get("accessPointInformation") or {}
    return TrackingSnapshot(
        carrier=NAME, tracking_number=number, status=status, events=tuple(events),
        reason=reason, customs=customs, eta=eta, eta_end=eta_end, duties=duties,
        pickup_until=_ymd(access_point.get("pickupByDate")),
        service=_text((package.get("service") or {}).get("description")),
        raw_code=raw_code, raw_text=raw_text, fetched_at=fetched_at,
    )


def parse(payload: Mapping[str, Any], *, fetched_at: datetime,
          requested: Sequence[str] = ()) -> TrackingReport:
    """Turn a Track API body (200 `trackResponse`, or a 4xx `response.errors`) into a report.

    `requested` names the numbers asked for; error bodies do not repeat them.
    """
    report = TrackingReport()
    errors = (payload.get("response") or {}).get("errors") or []
    if "trackResponse" not in payload:
        for number in requested:
            report.problems[number] = _problem(number, errors)
        return report
    for shipment in (payload.get("trackResponse") or {}).get("shipment") or []:
        inquiry = _text(shipment.get("inquiryNumber"))
        packages = [p for p in shipment.get("package") or [] if isinstance(p, dict)]
        if not packages:
            number = inquiry or (requested[0] if requested else "")
            report.problems[number] = _problem(number, shipment.get("warnings") or [])
            continue
        for package in packages:
            # A one-package shipment is known by the number we asked with.
            number = (inquiry if len(packages) == 1 and inquiry
                      else _text(package.get("trackingNumber")) or inquiry)
            report.snapshots[number] = _package_snapshot(number, package, fetched_at)
    return report


# -- Track Alert (webhook) parsing --------------------------------------------------------------

def parse_alert(payload: Mapping[str, Any], *, received_at: datetime) -> TrackingSnapshot:
    """Turn one Track Alert `TrackingEventRequest` into a one-event snapshot."""
    number = _text(payload.get("trackingNumber"))
    status = payload.get("activityStatus") or {}
    address = payload.get("activityLocation") or {}
    location, country = _place(address)
    zone = zone_for(_text(address.get("stateProvince")), country)
    when = _instant(payload.get("localActivityDate"), payload.get("localActivityTime"),
                    payload.get("gmtActivityDate"), payload.get("gmtActivityTime"),
                    payload.get("gmtOffset"), zone)
    description = _text(status.get("description"))
    code = _text(status.get("code"))
    normalized, reason, customs = classify(_text(status.get("type")), code,
                                           _text(status.get("descriptionCode")), description)
    events: tuple[TrackingEvent, ...] = ()
    if when is not None:
        events = (TrackingEvent(
            timestamp=when, status=normalized, description=description, location=location,
            country=country, reason=reason, customs=customs, raw_code=code, raw_text=description,
        ),)
    eta = eta_end = None
    day = _ymd(payload.get("scheduledDeliveryDate"))
    if day is not None and normalized is not Status.DELIVERED:
        eta_zone = zone or (when.tzinfo if when is not None else None) or UTC
        eta, eta_end = _day_window(day, _hms(payload.get("deliveryStartTime")),
                                   _hms(payload.get("deliveryEndTime")), eta_zone)
    return TrackingSnapshot(
        carrier=NAME, tracking_number=number, status=normalized, events=events, reason=reason,
        customs=customs, eta=eta, eta_end=eta_end, raw_code=code, raw_text=description,
        fetched_at=received_at,
    )


def alert_payloads(body: bytes) -> list[dict[str, Any]]:
    """The Track Alert events in a webhook body; WebhookError when the shape is wrong."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise WebhookError("ups: webhook body is not JSON") from exc
    items = data if isinstance(data, list) else [data]
    for item in items:
        if (not isinstance(item, dict) or not _text(item.get("trackingNumber"))
                or not isinstance(item.get("activityStatus"), dict)):
            raise WebhookError("ups: webhook body is not a Track Alert TrackingEventRequest")
    return items


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), "")


def _chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


# -- adapter ------------------------------------------------------------------------------------

class UpsCarrier:
    """UPS Track API + Track Alert over the app's shared session."""

    name = NAME
    limits = LIMITS

    def __init__(self, session: aiohttp.ClientSession, credentials: Credentials, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._session = session_required(session)
        self._credentials = credentials
        self._base = (credentials.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._tokens = TokenCache(self._fetch_token, clock=clock)

    def recognizes(self, number: str) -> bool:
        """1Z…, 1R… (Roadie) and waybill numbers; a format check only."""
        compact = "".join(number.split()).upper()
        return any(p.fullmatch(compact) for p in _NUMBER_PATTERNS)

    async def track(self, numbers: NumberList) -> TrackingReport:
        """One Track API call per number (UPS has no batch tracking)."""
        report = TrackingReport()
        for number in dict.fromkeys(numbers):
            report.merge(await self._track_one(number))
        return report

    async def _track_one(self, number: str) -> TrackingReport:
        resp = await self._authorized(
            "GET", self._base + TRACK_PATH.format(number=quote(number, safe="")),
            params={"locale": LOCALE, "returnSignature": "false", "returnMilestones": "false",
                    "returnPOD": "false"},
        )
        if resp.status not in (200, 400, 404):
            raise CarrierError(NAME, f"unexpected HTTP {resp.status}", status=resp.status)
        body = resp.json() if resp.status == 200 else _json_or_empty(resp)
        report = parse(body, fetched_at=datetime.now(UTC), requested=(number,))
        if not report.snapshots and number not in report.problems:
            kind = ProblemKind.INVALID if resp.status == 400 else ProblemKind.NOT_FOUND
            report.problems[number] = NumberProblem(number, kind, f"HTTP {resp.status}")
        return report

    def verify_webhook(self, headers: dict[str, str], body: bytes) -> None:
        """Check the bearer credential UPS presents (constant time) and the body's shape."""
        expected = self._credentials.get("webhook_credential")
        if not expected:
            raise WebhookError("ups: no webhook credential configured; refusing pushes")
        scheme, _, given = _header(headers, "Authorization").strip().partition(" ")
        matches = hmac.compare_digest(given.strip().encode(), expected.encode())
        if scheme.lower() != "bearer" or not matches:
            raise WebhookError("ups: webhook credential does not match")
        alert_payloads(body)

    def parse_webhook(self, body: bytes) -> list[TrackingSnapshot]:
        """Snapshots from a verified Track Alert push."""
        received = datetime.now(UTC)
        return [parse_alert(item, received_at=received) for item in alert_payloads(body)]

    async def subscribe(self, numbers: NumberList, callback_url: str) -> None:
        """Subscribe 1Z/1R numbers to Track Alert for 14 days, ≤100 per request.

        Track Alert v2 delivers to the URL and credential registered in the UPS developer
        portal ("Manage Webhook Credentials"); the request carries no destination, so
        `callback_url` must be the URL registered there.
        """
        url = self._base + SUBSCRIBE_PATH
        wanted = [n for n in dict.fromkeys(numbers) if _ALERT_PATTERN.fullmatch(n)]
        if len(wanted) < len(set(numbers)):
            log.warning("ups: Track Alert takes only 1Z/1R numbers; skipped %d",
                        len(set(numbers)) - len(wanted))
        for chunk in _chunks(wanted, SUBSCRIBE_BATCH):
            resp = await self._authorized("POST", url, json_body={
                "locale": LOCALE, "countryCode": "US", "trackingNumberList": chunk,
            })
            body = _json_or_empty(resp)
            invalid = body.get("invalidTrackingNumbers") or []
            if resp.status == 200:
                if invalid:
                    log.warning("ups: Track Alert refused %d of %d numbers", len(invalid),
                                len(chunk))
                continue
            codes = [_text(e.get("code")) for e in (body.get("response") or {}).get("errors") or []
                     if isinstance(e, dict)]
            if resp.status == 400 and set(codes) <= {"VSS210", "VSS215"} and codes:
                log.warning("ups: Track Alert accepted none of %d numbers", len(chunk))
                continue
            raise CarrierError(NAME, f"subscription failed (HTTP {resp.status} {','.join(codes)})",
                               status=resp.status)

    async def _authorized(self, method: str, url: str, **kwargs: Any) -> Response:
        """Send with a bearer token; on 401 fetch a fresh token and try exactly once more."""
        try:
            return await self._send(method, url, await self._tokens.get(), **kwargs)
        except CarrierAuthError as exc:
            if exc.status != 401:
                raise
            self._tokens.invalidate()
        return await self._send(method, url, await self._tokens.get(), **kwargs)

    async def _send(self, method: str, url: str, token: str, **kwargs: Any) -> Response:
        headers = {"Authorization": f"Bearer {token}", "transId": uuid.uuid4().hex,
                   "transactionSrc": TRANSACTION_SRC, "Accept": "application/json"}
        return await request(self._session, NAME, method, url, headers=headers, **kwargs)

    async def _fetch_token(self) -> tuple[str, float]:
        client_id = self._credentials.get("client_id")
        secret = self._credentials.get("client_secret")
        if not client_id or not secret:
            raise CarrierAuthError(NAME, "UPS_CLIENT_ID / UPS_CLIENT_SECRET are not set")
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        resp = await request(
            self._session, NAME, "POST", self._base + OAUTH_PATH,
            headers={"Authorization": f"Basic {basic}"}, data={"grant_type": "client_credentials"},
        )
        if resp.status != 200:
            raise CarrierAuthError(NAME, f"token request refused (HTTP {resp.status})",
                                   status=resp.status)
        body = resp.json()
        token = _text(body.get("access_token")) if isinstance(body, dict) else ""
        if not token:
            raise CarrierError(NAME, "token response without access_token")
        try:
            lifetime = float(body.get("expires_in") or 0)  # UPS sends a string, e.g. "14399"
        except (TypeError, ValueError):
            lifetime = 0.0
        return token, lifetime


def _json_or_empty(resp: Response) -> dict[str, Any]:
    """An error body as JSON when it is JSON (gateways sometimes answer with HTML)."""
    try:
        body = json.loads(resp.body or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
