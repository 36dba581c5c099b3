"""FedEx adapter: Track API v1 (`POST /track/v1/trackingnumbers`, ≤30 numbers) over OAuth.

`build_request` and `parse` are pure; `FedexCarrier` adds a token cache and one POST per batch.
FedEx writes ISO-8601 times with an offset; the few fields that come without one (some
`dateAndTimes`, a window's `begins`) borrow the offset of their partner or of the newest scan.
FedEx push (Advanced Integrated Visibility webhooks) is a paid product, so this adapter polls.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, tzinfo
from datetime import time as dtime
from typing import Any

import aiohttp

from carriers import session_required
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
)

NAME = "fedex"
DEFAULT_BASE_URL = "https://apis.fedex.com"
CREDENTIALS = ("client_id", "client_secret")
# 30 numbers per request (spec); 1,400 transactions / 10 s per project (FedEx support FAQ).
LIMITS = Limits(batch_size=30, per_second=140.0, per_day=None, supports_push=False)
TIMESTAMP_POLICY = TimestampPolicy.AWARE

OAUTH_PATH = "/oauth/token"
TRACK_PATH = "/track/v1/trackingnumbers"
LOCALE = "en_US"  # reason texts are matched as English below
_NUMBER_LENGTHS = frozenset({12, 15, 20, 22, 34})

# -- status -----------------------------------------------------------------------------------

_STATUS_BY_CODE: dict[str, Status] = {
    "OC": Status.PENDING,
    "PU": Status.PICKED_UP, "PX": Status.PICKED_UP,
    **dict.fromkeys(
        "IT IX AR AF DP FD SF AA AC AO AX CH EA EO LO OF PF PL PM TR CC CP DS".split(),
        Status.IN_TRANSIT),
    "OD": Status.OUT_FOR_DELIVERY, "ED": Status.OUT_FOR_DELIVERY, "AD": Status.OUT_FOR_DELIVERY,
    "DL": Status.DELIVERED,
    "DE": Status.DELIVERY_FAILED,
    "SE": Status.ON_HOLD, "CD": Status.ON_HOLD,
    "HL": Status.READY_FOR_PICKUP, "HP": Status.READY_FOR_PICKUP,
    "RS": Status.RETURN_TO_SENDER,
    "CA": Status.CANCELLED,
    "DY": Status.DELAYED, "DD": Status.DELAYED, "PD": Status.DELAYED,
}
_CUSTOMS_HOLDS = frozenset({CustomsStage.HELD, CustomsStage.DUTIES_DUE, CustomsStage.INFO_REQUIRED})
_SETTLED = frozenset({Status.DELIVERED, Status.CANCELLED, Status.RETURN_TO_SENDER})
_MOVING = frozenset({Status.PICKED_UP, Status.IN_TRANSIT, Status.UNKNOWN, Status.DELAYED})

# (words, reason) for exceptions and delays; first match wins.
_REASON_RULES: tuple[tuple[tuple[str, ...], Reason], ...] = (
    (("weather", "storm", "snow", "flood", "hurricane"), Reason.WEATHER_DELAY),
    (("refused",), Reason.CONSIGNEE_REFUSED),
    (("not available", "not home", "no one", "nobody"), Reason.CONSIGNEE_NOT_HOME),
    (("business closed",), Reason.BUSINESS_CLOSED),
    (("address",), Reason.INCORRECT_ADDRESS),
    (("damage",), Reason.DAMAGED),
    (("lost", "unable to locate"), Reason.LOST),
)


def _customs(code: str, delay_type: str, text: str,
             location_type: str) -> tuple[CustomsStage, Reason]:
    """Customs stage from scan code, delayDetail.type=CLEARANCE, reason texts, location type."""
    if code == "CC":  # cleared customs
        return CustomsStage.RELEASED, Reason.NONE
    clearance = code == "CD" or delay_type == "CLEARANCE"
    if clearance or any(w in text for w in ("customs", "clearance", "broker", "duties", "duty")):
        if "released" in text or "cleared" in text:
            return CustomsStage.RELEASED, Reason.NONE
        if "dut" in text or "tax" in text:
            return CustomsStage.DUTIES_DUE, Reason.CUSTOMS_DUTIES_UNPAID
        if "document" in text or "information" in text or "paperwork" in text:
            return CustomsStage.INFO_REQUIRED, Reason.CUSTOMS_DOCUMENTATION
        if "inspect" in text:
            return CustomsStage.HELD, Reason.CUSTOMS_INSPECTION
        if clearance:
            return CustomsStage.HELD, Reason.CUSTOMS_DELAY
        return CustomsStage.PROCESSING, Reason.NONE
    if code == "CP" or location_type == "CUSTOMS_BROKER":
        return CustomsStage.PROCESSING, Reason.NONE
    return CustomsStage.NONE, Reason.NONE


def classify(code: str, derived: str = "", *, delay: Mapping[str, Any] | None = None,
             text: str = "", location_type: str = "") -> tuple[Status, Reason, CustomsStage]:
    """Map a FedEx status/scan (code, derived code, delayDetail, reason text) to our model."""
    code, derived = code.strip().upper(), derived.strip().upper()
    delay = delay or {}
    delay_type = str(delay.get("type") or "").upper()
    low = text.lower()
    status = _STATUS_BY_CODE.get(code) or _STATUS_BY_CODE.get(derived) or Status.UNKNOWN
    customs, reason = _customs(code, delay_type, low, location_type.upper())
    if status in _SETTLED:
        return status, Reason.NONE, CustomsStage.NONE
    if customs in _CUSTOMS_HOLDS:
        return Status.ON_HOLD, reason, customs
    if customs is not CustomsStage.NONE and status is Status.UNKNOWN:
        status = Status.IN_TRANSIT
    delayed = str(delay.get("status") or "").upper() == "DELAYED"
    if delayed and status in _MOVING:
        # The structured delay type beats free text.
        reason = Reason.WEATHER_DELAY if delay_type == "WEATHER" else Reason.OPERATIONAL_DELAY
        return Status.DELAYED, reason, customs
    if status in (Status.DELIVERY_FAILED, Status.ON_HOLD, Status.DELAYED):
        fallback = Reason.OPERATIONAL_DELAY if status is Status.DELAYED else Reason.UNKNOWN
        reason = next((r for words, r in _REASON_RULES if any(w in low for w in words)),
                      fallback)
    return status, reason, customs


# -- time -------------------------------------------------------------------------------------

def _iso(value: Any, fallback: tzinfo | None) -> tuple[datetime | None, bool]:
    """(aware datetime, date_only) from a FedEx ISO string; naive times take `fallback`."""
    text = str(value or "").strip()
    if not text:
        return None, False
    try:
        if "T" not in text and len(text) == 10:
            return datetime.combine(date.fromisoformat(text), dtime(0),
                                    tzinfo=fallback or UTC), True
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None, False
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=fallback or UTC)
    return parsed, False


def _whole_day(start: datetime) -> tuple[datetime, datetime]:
    return start, start.replace(hour=23, minute=59, second=59, microsecond=0)


def _eta(result: Mapping[str, Any],
         fallback: tzinfo | None) -> tuple[datetime | None, datetime | None]:
    window = ((result.get("estimatedDeliveryTimeWindow") or {}).get("window")) or {}
    # A window half without an offset takes its partner's (the spec's own example has one).
    begins, _ = _iso(window.get("begins"), _aware_zone(window.get("ends")) or fallback)
    ends, _ = _iso(window.get("ends"), _aware_zone(window.get("begins")) or fallback)
    if begins is not None:
        return begins, ends
    by_type = {str(d.get("type") or "").upper(): d.get("dateTime")
               for d in result.get("dateAndTimes") or [] if isinstance(d, dict)}
    for kind in ("ESTIMATED_DELIVERY", "APPOINTMENT_DELIVERY", "COMMITMENT"):
        when, date_only = _iso(by_type.get(kind), fallback)
        if when is not None:
            return _whole_day(when) if date_only else (when, None)
    return (ends, None) if ends is not None else (None, None)


def _aware_zone(value: Any) -> tzinfo | None:
    try:
        return datetime.fromisoformat(str(value or "").strip()).tzinfo
    except ValueError:
        return None


# -- parsing ----------------------------------------------------------------------------------

def _text(value: Any) -> str:
    return str(value).strip() if value is not None else ""


def _place(address: Mapping[str, Any]) -> tuple[str, str]:
    city, state = _text(address.get("city")), _text(address.get("stateOrProvinceCode"))
    return ", ".join(p for p in (city, state) if p), _text(address.get("countryCode")).upper()


def _problem(number: str, error: Mapping[str, Any]) -> NumberProblem:
    code, message = _text(error.get("code")), _text(error.get("message"))
    # e.g. TRACKING.TRACKINGNUMBER.NOTFOUND / TRACKING.TRACKINGNUMBER.INVALID / NOT.FOUND.ERROR
    kind = ProblemKind.INVALID if "INVALID" in code.upper() else ProblemKind.NOT_FOUND
    return NumberProblem(number, kind, f"{code}: {message}" if code else message)


def _event(scan: Mapping[str, Any], fallback: tzinfo | None) -> TrackingEvent | None:
    when, _ = _iso(scan.get("date"), fallback)
    if when is None:
        return None
    location, country = _place(scan.get("scanLocation") or {})
    description = _text(scan.get("eventDescription"))
    exception = _text(scan.get("exceptionDescription"))
    code = _text(scan.get("eventType"))
    status, reason, customs = classify(
        code, _text(scan.get("derivedStatusCode")), delay=scan.get("delayDetail"),
        text=f"{description} {exception}", location_type=_text(scan.get("locationType")),
    )
    return TrackingEvent(
        timestamp=when, status=status,
        description=f"{description}: {exception}" if exception else description,
        location=location, country=country, reason=reason, customs=customs,
        raw_code=code, raw_text=description,
    )


def _result_snapshot(number: str, result: Mapping[str, Any],
                     fetched_at: datetime) -> TrackingSnapshot:
    scans = [s for s in result.get("scanEvents") or [] if isinstance(s, dict)]
    # The newest scan that carries an offset stands in for scans that do not.
    fallback = next((z for z in (_aware_zone(s.get("date")) for s in scans) if z), None)
    events = sorted(
        (e for e in (_event(s, fallback) for s in reversed(scans)) if e is not None),
        key=lambda e: e.timestamp,
    )
    latest = result.get("latestStatusDetail") or {}
    ancillary = " ".join(
        f"{_text(a.get('reasonDescription'))} {_text(a.get('actionDescription'))}"
        for a in latest.get("ancillaryDetails") or [] if isinstance(a, dict)
    )
    raw_code = _text(latest.get("code"))
    raw_text = _text(latest.get("description") or latest.get("statusByLocale"))
    if raw_code or latest.get("derivedCode"):
        status, reason, customs = classify(
            raw_code, _text(latest.get("derivedCode")), delay=latest.get("delayDetail"),
            text=f"{raw_text} {ancillary}",
        )
    elif events:
        status, reason, customs = events[-1].status, events[-1].reason, events[-1].customs
        raw_code, raw_text = events[-1].raw_code, events[-1].raw_text
    else:
        status, reason, customs = Status.UNKNOWN, Reason.NONE, CustomsStage.NONE
    eta = eta_end = None
    if status is not Status.DELIVERED:
        eta, eta_end = _eta(result, fallback)
    pickup_location = ""
    if status is Status.READY_FOR_PICKUP:
        pickup_location = _place(latest.get("scanLocation") or {})[0]
    return TrackingSnapshot(
        carrier=NAME, tracking_number=number, status=status, events=tuple(events),
        reason=reason, customs=customs, eta=eta, eta_end=eta_end,
        pickup_location=pickup_location,
        service=_text((result.get("serviceDetail") or {}).get("description")),
        raw_code=raw_code, raw_text=raw_text, fetched_at=fetched_at,
    )


def _newest(snapshot: TrackingSnapshot) -> datetime:
    return snapshot.events[-1].timestamp if snapshot.events else datetime.min.replace(tzinfo=UTC)


def parse(payload: Mapping[str, Any], *, fetched_at: datetime,
          requested: Sequence[str] = ()) -> TrackingReport:
    """Turn a `trackingnumbers` body (200 `output`, or an `errors` body) into a report.

    `requested` names the numbers asked for; an error body for the whole request applies to
    each of them.
    """
    report = TrackingReport()
    output = payload.get("output")
    if not isinstance(output, dict):
        error = next((e for e in payload.get("errors") or [] if isinstance(e, dict)), {})
        for number in requested:
            report.problems[number] = _problem(number, error)
        return report
    for complete in output.get("completeTrackResults") or []:
        results = [r for r in complete.get("trackResults") or [] if isinstance(r, dict)]
        number = _text(complete.get("trackingNumber")) or next(
            (_text((r.get("trackingNumberInfo") or {}).get("trackingNumber")) for r in results),
            "")
        good = [r for r in results if not r.get("error")]
        if good:
            # Reused numbers return several results; the one with the newest scan is current.
            report.snapshots[number] = max(
                (_result_snapshot(number, r, fetched_at) for r in good), key=_newest)
        else:
            error = next((r["error"] for r in results if isinstance(r.get("error"), dict)), {})
            report.problems[number] = _problem(number, error)
    return report


def build_request(numbers: Sequence[str]) -> dict[str, Any]:
    """The `Full_Schema_Tracking_Numbers` body for up to 30 numbers."""
    if not 0 < len(numbers) <= LIMITS.batch_size:
        raise ValueError(f"fedex tracks 1..{LIMITS.batch_size} numbers per request")
    return {
        "includeDetailedScans": True,
        "trackingInfo": [{"trackingNumberInfo": {"trackingNumber": n}} for n in numbers],
    }


def _chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


# -- adapter ------------------------------------------------------------------------------------

class FedexCarrier:
    """FedEx Track API over the app's shared session (polling only)."""

    name = NAME
    limits = LIMITS

    def __init__(self, session: aiohttp.ClientSession, credentials: Credentials, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._session = session_required(session)
        self._credentials = credentials
        self._base = (credentials.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._tokens = TokenCache(self._fetch_token, clock=clock)

    def recognizes(self, number: str) -> bool:
        """12/15/20/22/34 digits; a format check only (full recognition lives elsewhere)."""
        compact = "".join(number.split())
        return compact.isdigit() and compact.isascii() and len(compact) in _NUMBER_LENGTHS

    async def track(self, numbers: NumberList) -> TrackingReport:
        """Track in batches of 30; numbers FedEx leaves out come back as NOT_FOUND."""
        report = TrackingReport()
        for chunk in _chunks(list(dict.fromkeys(numbers)), LIMITS.batch_size):
            resp = await self._authorized(self._base + TRACK_PATH, build_request(chunk))
            if resp.status == 200:
                part = parse(resp.json(), fetched_at=datetime.now(UTC), requested=chunk)
            elif resp.status == 404:
                part = parse(_json_or_empty(resp), fetched_at=datetime.now(UTC),
                             requested=chunk)
            else:
                codes = ",".join(_text(e.get("code")) for e in
                                 _json_or_empty(resp).get("errors") or [] if isinstance(e, dict))
                raise CarrierError(NAME, f"HTTP {resp.status} {codes}".strip(),
                                   status=resp.status)
            for number in chunk:
                if number not in part.snapshots and number not in part.problems:
                    part.problems[number] = NumberProblem(number, ProblemKind.NOT_FOUND,
                                                          "missing from the response")
            report.merge(part)
        return report

    async def _authorized(self, url: str, body: dict[str, Any]) -> Response:
        """POST with a bearer token; on 401 fetch a fresh token and try exactly once more."""
        try:
            return await self._send(url, body, await self._tokens.get())
        except CarrierAuthError as exc:
            if exc.status != 401:
                raise
            self._tokens.invalidate()
        return await self._send(url, body, await self._tokens.get())

    async def _send(self, url: str, body: dict[str, Any], token: str) -> Response:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                   "x-customer-transaction-id": str(uuid.uuid4()), "x-locale": LOCALE}
        return await request(self._session, NAME, "POST", url, headers=headers, json_body=body)

    async def _fetch_token(self) -> tuple[str, float]:
        client_id = self._credentials.get("client_id")
        secret = self._credentials.get("client_secret")
        if not client_id or not secret:
            raise CarrierAuthError(NAME, "FEDEX_CLIENT_ID / FEDEX_CLIENT_SECRET are not set")
        resp = await request(
            self._session, NAME, "POST", self._base + OAUTH_PATH,
            data={"grant_type": "client_credentials", "client_id": client_id,
                  "client_secret": secret},
        )
        if resp.status != 200:
            raise CarrierAuthError(NAME, f"token request refused (HTTP {resp.status})",
                                   status=resp.status)
        body = resp.json()
        token = _text(body.get("access_token")) if isinstance(body, dict) else ""
        if not token:
            raise CarrierError(NAME, "token response without access_token")
        try:
            lifetime = float(body.get("expires_in") or 0)
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
