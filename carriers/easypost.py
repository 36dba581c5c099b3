"""EasyPost Trackers: an aggregator over many carriers, with HMAC-signed `tracker.updated` pushes.

Wire format from EasyPost's own doc responses and VCR recordings of real test-mode calls
(shared/fixtures/carriers/easypost). Auth is HTTP Basic with the API key as username.

Environment (read by the app): EASYPOST_API_KEY, EASYPOST_WEBHOOK_SECRET, EASYPOST_BASE_URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import aiohttp

from carriers import session_required
from carriers.http import Response, request
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

log = logging.getLogger(__name__)

NAME = "easypost"
ENV_PREFIX = "EASYPOST"
DEFAULT_BASE_URL = "https://api.easypost.com"
CREDENTIALS = ("api_key", "webhook_secret")
# One tracker per create call. EasyPost's rate limits are dynamic (FAQ: back off on 429);
# the per-second figure is our own conservative pace, not a published number.
LIMITS = Limits(batch_size=1, per_second=5.0, supports_push=True)
# Docs (2025 tracking guide): "When enough location information is present, EasyPost assigns the
# appropriate local time zone to the event's datetime ... otherwise timestamps default to UTC."
# So an offset is real and a 'Z' means UTC. Older doc samples (2014) look like local clocks
# written with 'Z'; we follow the current documented contract.
TIMESTAMP_POLICY = TimestampPolicy.AWARE
SIGNATURE_HEADER = "X-Hmac-Signature"
SIGNATURE_PREFIX = "hmac-sha256-hex="

_NUMBER = re.compile(r"[A-Za-z0-9]{8,40}")

_STATUS = {
    "unknown": Status.UNKNOWN,
    "pre_transit": Status.PENDING,
    "in_transit": Status.IN_TRANSIT,
    "out_for_delivery": Status.OUT_FOR_DELIVERY,
    "delivered": Status.DELIVERED,
    "available_for_pickup": Status.READY_FOR_PICKUP,
    "return_to_sender": Status.RETURN_TO_SENDER,
    "failure": Status.DELIVERY_FAILED,
    "cancelled": Status.CANCELLED,
    "error": Status.UNKNOWN,  # EasyPost could not get data from the carrier; not a parcel state
}

# status_detail -> (status that replaces a vague one, reason). Values from docs.easypost.com/docs/trackers.
_DETAIL: dict[str, tuple[Status | None, Reason]] = {
    "delayed": (Status.DELAYED, Reason.OPERATIONAL_DELAY),
    "weather_delay": (Status.DELAYED, Reason.WEATHER_DELAY),
    "missorted": (Status.DELAYED, Reason.OPERATIONAL_DELAY),
    "transit_exception": (Status.ON_HOLD, Reason.UNKNOWN),
    "held": (Status.ON_HOLD, Reason.NONE),
    "awaiting_information": (Status.ON_HOLD, Reason.NONE),
    "address_correction": (None, Reason.INCORRECT_ADDRESS),
    "delivery_exception": (None, Reason.UNKNOWN),
    "refused": (None, Reason.CONSIGNEE_REFUSED),
    "damaged": (Status.ON_HOLD, Reason.DAMAGED),
    "lost": (Status.ON_HOLD, Reason.LOST),
    "return": (Status.RETURN_TO_SENDER, Reason.NONE),
    "cancelled": (Status.CANCELLED, Reason.NONE),
    "arrived_at_pickup_location": (Status.READY_FOR_PICKUP, Reason.NONE),
}
# A detail may sharpen these statuses, never a definite one such as delivered or returned.
_SHARPENABLE = frozenset({Status.PENDING, Status.IN_TRANSIT, Status.DELIVERY_FAILED, Status.UNKNOWN})

# EasyPost has no customs status: customs shows up in the carrier's words or raw codes.
_CUSTOMS_WORDS = re.compile(
    r"\b(customs|clearance|douane|zoll|aduana|dogana|shipment release)\b", re.IGNORECASE
)
_CUSTOMS_CODES = {("fedex", "CD"): (CustomsStage.HELD, Reason.CUSTOMS_DELAY)}  # FedEx: clearance delay


def _customs_from_text(text: str) -> tuple[CustomsStage, Reason]:
    """Customs stage and reason from a carrier message, or NONE when customs is not mentioned."""
    if not _CUSTOMS_WORDS.search(text):
        return CustomsStage.NONE, Reason.NONE
    lowered = text.lower()
    if any(word in lowered for word in ("release", "cleared", "complete")):
        return CustomsStage.RELEASED, Reason.NONE
    if any(word in lowered for word in ("duties", "duty", "tax", "payment", "charges")):
        return CustomsStage.DUTIES_DUE, Reason.CUSTOMS_DUTIES_UNPAID
    if any(word in lowered for word in ("information", "document", "paperwork")):
        return CustomsStage.INFO_REQUIRED, Reason.CUSTOMS_DOCUMENTATION
    if "inspection" in lowered:
        return CustomsStage.HELD, Reason.CUSTOMS_INSPECTION
    if any(word in lowered for word in ("held", "hold", "delay", "detained")):
        return CustomsStage.HELD, Reason.CUSTOMS_DELAY
    return CustomsStage.PROCESSING, Reason.NONE


def _classify(status: str, detail: str) -> tuple[Status, Reason]:
    """Our status and reason for an EasyPost status + status_detail pair."""
    ours = _STATUS.get(status, Status.UNKNOWN)
    sharper, reason = _DETAIL.get(detail, (None, Reason.NONE))
    if sharper is not None and ours in _SHARPENABLE:
        ours = sharper
    if ours is Status.DELIVERED:
        reason = Reason.NONE
    return ours, reason


def _time(value: Any) -> datetime | None:
    """An EasyPost ISO timestamp as an aware datetime (a missing zone means UTC, per the docs)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _place(location: Any) -> tuple[str, str]:
    """('CITY, ST ZIP', country) from a TrackingLocation."""
    if not isinstance(location, Mapping):
        return "", ""
    city_state = ", ".join(p for p in (_text(location.get("city")), _text(location.get("state"))) if p)
    place = " ".join(p for p in (city_state, _text(location.get("zip"))) if p)
    country = _text(location.get("country")).upper()
    return place, country if len(country) == 2 else ""


def _event(detail: Mapping[str, Any], source: str) -> TrackingEvent | None:
    timestamp = _time(detail.get("datetime"))
    if timestamp is None:
        return None
    message = _text(detail.get("message")) or _text(detail.get("description"))
    status, reason = _classify(_text(detail.get("status")), _text(detail.get("status_detail")))
    code = _text(detail.get("carrier_code"))
    customs, customs_reason = _CUSTOMS_CODES.get(
        (_text(detail.get("source")).lower() or source, code), _customs_from_text(message)
    )
    location, country = _place(detail.get("tracking_location"))
    return TrackingEvent(
        timestamp=timestamp,
        status=status,
        description=message,
        location=location,
        country=country,
        reason=reason if reason is not Reason.NONE else customs_reason,
        customs=customs,
        raw_code=code,
        raw_text=message,
    )


def _eta(tracker: Mapping[str, Any]) -> datetime | None:
    eta = _time(tracker.get("est_delivery_date"))
    if eta is not None:
        return eta
    carrier_detail = tracker.get("carrier_detail")
    local = carrier_detail.get("est_delivery_date_local") if isinstance(carrier_detail, Mapping) else None
    try:
        day = date.fromisoformat(local) if isinstance(local, str) else None
    except ValueError:
        day = None
    # Same convention as est_delivery_date, which writes a date-only estimate as midnight 'Z'.
    return datetime(day.year, day.month, day.day, tzinfo=UTC) if day else None


def _tracker(tracker: Mapping[str, Any], fetched_at: datetime) -> TrackingSnapshot | NumberProblem:
    """One EasyPost Tracker object as a snapshot, or a problem when the carrier has nothing."""
    number = _text(tracker.get("tracking_code"))
    status_code = _text(tracker.get("status"))
    detail = _text(tracker.get("status_detail"))
    carrier = _text(tracker.get("carrier"))
    raw_details = tracker.get("tracking_details")
    details = [d for d in raw_details if isinstance(d, Mapping)] if isinstance(raw_details, list) else []
    events = sorted(
        (e for e in (_event(d, carrier.lower()) for d in details) if e is not None),
        key=lambda e: e.timestamp,
    )
    if not events and status_code in ("unknown", "error", ""):
        kind = ProblemKind.EXPIRED if detail == "expired" else ProblemKind.NOT_FOUND
        return NumberProblem(number, kind, f"EasyPost has no tracking information ({status_code or 'no status'})")
    status, reason = _classify(status_code, detail)
    last = events[-1] if events else None
    customs = last.customs if last and status is not Status.DELIVERED else CustomsStage.NONE
    if reason is Reason.NONE and customs is not CustomsStage.NONE and last is not None:
        reason = last.reason
    carrier_detail = tracker.get("carrier_detail")
    service = _text(carrier_detail.get("service")) if isinstance(carrier_detail, Mapping) else ""
    return TrackingSnapshot(
        carrier=NAME,
        tracking_number=number,
        status=status,
        events=tuple(events),
        reason=reason,
        customs=customs,
        eta=_eta(tracker),
        pickup_location=last.location if last and status is Status.READY_FOR_PICKUP else "",
        service=" ".join(p for p in (carrier, service) if p),  # the carrier EasyPost asked, and its service
        raw_code="/".join(p for p in (status_code, detail) if p),
        raw_text=last.raw_text if last else "",
        fetched_at=fetched_at,
    )


def _trackers(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Tracker objects in a Tracker, a tracker list/batch, or an Event wrapping a Tracker."""
    if isinstance(payload.get("trackers"), list):
        return [t for t in payload["trackers"] if isinstance(t, Mapping)]
    result = payload.get("result")
    if payload.get("object") == "Event":
        return _trackers(result) if isinstance(result, Mapping) else []
    if payload.get("object") == "Tracker" or ("tracking_code" in payload and "status" in payload):
        return [payload]
    return []


def parse(payload: Any, *, fetched_at: datetime) -> TrackingReport:
    """Translate an EasyPost Tracker, tracker list, or tracker Event into a report (no I/O)."""
    report = TrackingReport()
    if not isinstance(payload, Mapping):
        return report
    for tracker in _trackers(payload):
        result = _tracker(tracker, fetched_at)
        if isinstance(result, NumberProblem):
            report.problems[result.tracking_number] = result
        else:
            report.snapshots[result.tracking_number] = result
    return report


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), "")


def _error_message(response: Response) -> str:
    try:
        body = response.json()
    except CarrierError:
        body = None
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        return f"{_text(error.get('message'))} ({_text(error.get('code'))})".strip()
    return f"HTTP {response.status}"


class EasypostCarrier:
    """EasyPost Trackers: create-or-get per number, retrieve by id, signed webhook pushes."""

    name = NAME
    limits = LIMITS
    timestamp_policy = TIMESTAMP_POLICY

    def __init__(self, session: aiohttp.ClientSession, credentials: Credentials) -> None:
        self._session = session_required(session)
        self._credentials = credentials
        self._base = (credentials.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._ids: dict[str, str] = {}  # tracking number -> trk_ id, so refreshes are plain GETs
        self._webhook_urls: set[str] = set()

    def recognizes(self, number: str) -> bool:
        """Aggregators take any plausible number; ranking carriers happens elsewhere."""
        return bool(_NUMBER.fullmatch(number))

    async def track(self, numbers: NumberList) -> TrackingReport:
        """Create-or-get a tracker per number (GET by id once known); problems are data."""
        report = TrackingReport()
        for number in dict.fromkeys(numbers):
            report.merge(await self._track_one(number))
        return report

    async def subscribe(self, numbers: NumberList, callback_url: str) -> None:
        """Make sure a signed webhook points at callback_url, then create the trackers."""
        await self._ensure_webhook(callback_url)
        for number in dict.fromkeys(numbers):
            if number in self._ids:
                continue
            response = await self._call("POST", "/v2/trackers", {"tracker": {"tracking_code": number}})
            if response.status < 400:
                self._remember(number, response)
            else:
                log.warning("easypost: no tracker for %s: %s", number, _error_message(response))

    def verify_webhook(self, headers: dict[str, str], body: bytes) -> None:
        """Check `X-Hmac-Signature: hmac-sha256-hex=…` (HMAC-SHA256 keyed by the NFKD secret)."""
        secret = self._credentials.get("webhook_secret")
        if not secret:
            raise WebhookError("easypost: no webhook_secret configured; refusing unsigned pushes")
        given = _header(headers, SIGNATURE_HEADER).strip()
        if not given:
            raise WebhookError(f"easypost: missing {SIGNATURE_HEADER} header")
        key = unicodedata.normalize("NFKD", secret).encode("utf-8")
        expected = SIGNATURE_PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.lower().encode("utf-8"), expected.encode("utf-8")):
            raise WebhookError("easypost: webhook signature mismatch")

    def parse_webhook(self, body: bytes) -> list[TrackingSnapshot]:
        """Snapshots from a verified Event push (non-tracker events give none)."""
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise WebhookError("easypost: webhook body is not JSON") from exc
        if not isinstance(payload, Mapping) or payload.get("object") != "Event":
            raise WebhookError("easypost: webhook body is not an Event")
        return list(parse(payload, fetched_at=datetime.now(UTC)).snapshots.values())

    async def _track_one(self, number: str) -> TrackingReport:
        tracker_id = self._ids.get(number)
        if tracker_id:
            response = await self._call("GET", f"/v2/trackers/{tracker_id}")
            if response.status != 404:
                return self._report(number, response)
            self._ids.pop(number, None)  # deleted on EasyPost's side: create it again
        response = await self._call("POST", "/v2/trackers", {"tracker": {"tracking_code": number}})
        return self._report(number, response)

    def _report(self, number: str, response: Response) -> TrackingReport:
        if response.status == 402:  # billing problem: account-wide, not about this number
            raise CarrierError(NAME, "payment required (HTTP 402)", status=402)
        if response.status >= 400:
            kind = ProblemKind.NOT_FOUND if response.status == 404 else ProblemKind.INVALID
            problem = NumberProblem(number, kind, _error_message(response))
            return TrackingReport(problems={number: problem})
        tracker = response.json()
        if not isinstance(tracker, Mapping):
            raise CarrierError(NAME, f"unexpected tracker body (HTTP {response.status})")
        self._remember(number, response, tracker)
        result = _tracker(tracker, datetime.now(UTC))
        # Key by the number we were asked about, even if EasyPost normalised its spelling.
        if isinstance(result, NumberProblem):
            return TrackingReport(problems={number: replace(result, tracking_number=number)})
        return TrackingReport(snapshots={number: replace(result, tracking_number=number)})

    def _remember(self, number: str, response: Response, tracker: Any = None) -> None:
        tracker = response.json() if tracker is None else tracker
        tracker_id = tracker.get("id") if isinstance(tracker, Mapping) else None
        if isinstance(tracker_id, str) and tracker_id.startswith("trk_"):
            self._ids[number] = tracker_id

    async def _ensure_webhook(self, callback_url: str) -> None:
        if callback_url in self._webhook_urls:
            return
        secret = self._credentials.get("webhook_secret")
        if not secret:
            raise CarrierAuthError(NAME, "webhook_secret is not configured; pushes could not be verified")
        listing = (await self._call("GET", "/v2/webhooks")).json()
        hooks = listing.get("webhooks") if isinstance(listing, Mapping) else None
        if not any(
            isinstance(h, Mapping) and h.get("url") == callback_url and not h.get("disabled_at")
            for h in hooks or []
        ):
            created = await self._call(
                "POST", "/v2/webhooks", {"webhook": {"url": callback_url, "webhook_secret": secret}}
            )
            if created.status >= 400:
                raise CarrierError(NAME, f"webhook not created: {_error_message(created)}",
                                   status=created.status)
        self._webhook_urls.add(callback_url)

    async def _call(self, method: str, path: str, json_body: Any = None) -> Response:
        api_key = self._credentials.get("api_key")
        if not api_key:
            raise CarrierAuthError(NAME, "api_key is not configured")
        # HTTP Basic with the key as username and no password, built by hand: aiohttp's
        # BasicAuth helper is deprecated and its replacement is not in every supported version.
        token = base64.b64encode(f"{api_key}:".encode()).decode("ascii")
        return await request(
            self._session, NAME, method, self._base + path,
            headers={"Authorization": f"Basic {token}"}, json_body=json_body,
        )
