"""17TRACK Tracking API v2.2: the aggregator for carriers without a direct adapter.

J&T Express, Pos Indonesia, Hrvatska pošta and two thousand others. Flow: register numbers
(≤40 per call), then read them with gettrackinfo, or let 17TRACK push updates to the webhook
URL saved in its dashboard. Field names follow the v2.2 docs (carrier_data.md §1.7, §3.3); we
hold no recorded 17TRACK payloads.

Environment (read by the app): "17track" makes an awkward variable name, so the prefix is
SEVENTEENTRACK: SEVENTEENTRACK_API_KEY, SEVENTEENTRACK_BASE_URL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp

from carriers import session_required
from carriers.http import request
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

NAME = "17track"
ENV_PREFIX = "SEVENTEENTRACK"
DEFAULT_BASE_URL = "https://api.17track.net"
API_PATH = "/track/v2.2"
CREDENTIALS = ("api_key",)  # also the key of the webhook `sign` header
BATCH_SIZE = 40  # register / gettrackinfo accept at most 40 numbers per call (v2.2 docs)
# 17TRACK documents a request-rate limit of a few calls per second (3/s, from memory of the
# docs); quota is per registered number per month, not per day.
LIMITS = Limits(batch_size=BATCH_SIZE, per_second=3.0, supports_push=True)
# Event times come as `time_iso` (with the offset when 17TRACK knows the zone), `time_utc`, and
# `time_raw {date, time, timezone}`. Policy, in order: an ISO time with an offset is used as is;
# else `time_utc`; else `time_raw` with its timezone; else the wall clock is kept and tagged
# LOCAL_CLOCK (offset 0, named "local clock"): the digits are local time at the event location,
# the zone is unknown. Consumers recognise it with `timestamp.tzinfo is LOCAL_CLOCK` and should
# show the digits as they are instead of converting.
TIMESTAMP_POLICY = TimestampPolicy.NAIVE_LOCAL
LOCAL_CLOCK = timezone(timedelta(0), "local clock")
AUTH_HEADER = "17token"
SIGN_HEADER = "sign"

# Error codes in `code` or `rejected[].error.code` (v2 docs; community clients agree).
ALREADY_REGISTERED = -18019901
NOT_REGISTERED = -18019902
CARRIER_NOT_DETECTED = -18019903
DAILY_LIMIT = -18019907
QUOTA_EXHAUSTED = -18019908
NO_INFO_YET = -18019909
WRONG_CARRIER = -18019910
INVALID_FORMAT = -18010012
AUTH_CODES = frozenset({-18010001, -18010002, -18010004, -18010005})  # IP, key, disabled, denied
ACCOUNT_CODES = frozenset({DAILY_LIMIT, QUOTA_EXHAUSTED})  # about the account, not the number
_INVALID_CODES = frozenset({INVALID_FORMAT, WRONG_CARRIER})

_NUMBER = re.compile(r"[A-Za-z0-9]{8,40}")
_OFFSET = re.compile(r"^(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?$", re.IGNORECASE)

_MAIN = {
    "NotFound": Status.UNKNOWN,
    "InfoReceived": Status.PENDING,
    "InTransit": Status.IN_TRANSIT,
    "Expired": Status.UNKNOWN,  # no news for a long time; 17TRACK stopped looking
    "AvailableForPickup": Status.READY_FOR_PICKUP,
    "OutForDelivery": Status.OUT_FOR_DELIVERY,
    "DeliveryFailure": Status.DELIVERY_FAILED,
    "Delivered": Status.DELIVERED,
    "Exception": Status.ON_HOLD,
}

_N = CustomsStage.NONE
_SUB: dict[str, tuple[Status, Reason, CustomsStage]] = {
    "InTransit_PickedUp": (Status.PICKED_UP, Reason.NONE, _N),
    "InTransit_CustomsProcessing": (Status.IN_TRANSIT, Reason.NONE, CustomsStage.PROCESSING),
    "InTransit_CustomsReleased": (Status.IN_TRANSIT, Reason.NONE, CustomsStage.RELEASED),
    "InTransit_CustomsRequiringInformation": (
        Status.ON_HOLD, Reason.CUSTOMS_DOCUMENTATION, CustomsStage.INFO_REQUIRED),
    "DeliveryFailure_NoBody": (Status.DELIVERY_FAILED, Reason.CONSIGNEE_NOT_HOME, _N),
    "DeliveryFailure_Security": (Status.DELIVERY_FAILED, Reason.UNKNOWN, _N),
    "DeliveryFailure_Rejected": (Status.DELIVERY_FAILED, Reason.CONSIGNEE_REFUSED, _N),
    "DeliveryFailure_InvalidAddress": (Status.DELIVERY_FAILED, Reason.INCORRECT_ADDRESS, _N),
    "Exception_Other": (Status.ON_HOLD, Reason.UNKNOWN, _N),
    "Exception_Returning": (Status.RETURN_TO_SENDER, Reason.NONE, _N),
    "Exception_Returned": (Status.RETURN_TO_SENDER, Reason.NONE, _N),
    "Exception_NoBody": (Status.ON_HOLD, Reason.CONSIGNEE_NOT_HOME, _N),
    # 17TRACK: held for "security or customs reasons" — treated as a customs hold.
    "Exception_Security": (Status.ON_HOLD, Reason.CUSTOMS_INSPECTION, CustomsStage.HELD),
    "Exception_Damage": (Status.ON_HOLD, Reason.DAMAGED, _N),
    "Exception_Rejected": (Status.ON_HOLD, Reason.CONSIGNEE_REFUSED, _N),
    "Exception_Delayed": (Status.DELAYED, Reason.OPERATIONAL_DELAY, _N),
    "Exception_Lost": (Status.ON_HOLD, Reason.LOST, _N),
    "Exception_Destroyed": (Status.ON_HOLD, Reason.DAMAGED, _N),
    "Exception_Cancel": (Status.CANCELLED, Reason.NONE, _N),
}

# Milestone / event `stage` values, used when an event carries no sub_status.
_STAGE = {
    "InfoReceived": Status.PENDING,
    "PickedUp": Status.PICKED_UP,
    "Departure": Status.IN_TRANSIT,
    "Arrival": Status.IN_TRANSIT,
    "AvailableForPickup": Status.READY_FOR_PICKUP,
    "OutForDelivery": Status.OUT_FOR_DELIVERY,
    "Delivered": Status.DELIVERED,
    "Returning": Status.RETURN_TO_SENDER,
    "Returned": Status.RETURN_TO_SENDER,
}


def classify(status: str, sub_status: str = "") -> tuple[Status, Reason, CustomsStage]:
    """Our status, reason and customs stage for a 17TRACK status / sub_status pair."""
    if sub_status in _SUB:
        return _SUB[sub_status]
    main = status or sub_status.split("_", 1)[0]
    return _MAIN.get(main, Status.UNKNOWN), Reason.NONE, CustomsStage.NONE


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _iso(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        return None


def _offset(value: Any) -> timezone | None:
    match = _OFFSET.match(_text(value))
    if not match:
        return None
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
    return timezone(-delta if sign == "-" else delta)


def event_time(event: Mapping[str, Any]) -> datetime | None:
    """An event's moment, aware, following TIMESTAMP_POLICY (see above)."""
    iso = _iso(event.get("time_iso"))
    if iso is not None and iso.tzinfo is not None:
        return iso
    utc = _iso(event.get("time_utc"))
    if utc is not None:
        return utc if utc.tzinfo is not None else utc.replace(tzinfo=UTC)
    raw = event.get("time_raw")
    raw = raw if isinstance(raw, Mapping) else {}
    wall = iso
    if wall is None and _text(raw.get("date")):
        wall = _iso(f"{_text(raw.get('date'))}T{_text(raw.get('time')) or '00:00:00'}")
    if wall is None:
        return None
    return wall.replace(tzinfo=_offset(raw.get("timezone")) or LOCAL_CLOCK)


def _event(raw: Mapping[str, Any]) -> TrackingEvent | None:
    timestamp = event_time(raw)
    if timestamp is None:
        return None
    sub_status, stage = _text(raw.get("sub_status")), _text(raw.get("stage"))
    if sub_status:
        status, reason, customs = classify("", sub_status)
    else:
        status, reason, customs = _STAGE.get(stage, Status.UNKNOWN), Reason.NONE, CustomsStage.NONE
    address = raw.get("address") if isinstance(raw.get("address"), Mapping) else {}
    location = _text(raw.get("location")) or ", ".join(
        p for p in (_text(address.get("city")), _text(address.get("state"))) if p
    )
    country = _text(address.get("country")).upper()
    description = _text(raw.get("description"))
    return TrackingEvent(
        timestamp=timestamp,
        status=status,
        description=description,
        location=location,
        country=country if len(country) == 2 else "",
        reason=reason,
        customs=customs,
        raw_code=sub_status or stage,
        raw_text=description,
    )


def _events(track_info: Mapping[str, Any]) -> tuple[list[TrackingEvent], list[str]]:
    """Events of every provider (origin and destination carrier), oldest first; provider names."""
    tracking = track_info.get("tracking") if isinstance(track_info.get("tracking"), Mapping) else {}
    providers = tracking.get("providers") if isinstance(tracking.get("providers"), list) else []
    events: dict[tuple[datetime, str], TrackingEvent] = {}
    names: list[str] = []
    for provider in providers:
        if not isinstance(provider, Mapping):
            continue
        about = provider.get("provider") if isinstance(provider.get("provider"), Mapping) else {}
        name = _text(about.get("name")) or _text(about.get("alias"))
        if name and name not in names:
            names.append(name)
        for raw in provider.get("events") or []:
            event = _event(raw) if isinstance(raw, Mapping) else None
            if event is not None:  # both carriers often repeat the hand-over scan
                events.setdefault((event.timestamp, event.description), event)
    return sorted(events.values(), key=lambda e: e.timestamp), names


def _eta(track_info: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    metrics = track_info.get("time_metrics")
    estimate = metrics.get("estimated_delivery_date") if isinstance(metrics, Mapping) else None
    if not isinstance(estimate, Mapping):
        return None, None
    start = event_time({"time_iso": estimate.get("from")})
    end = event_time({"time_iso": estimate.get("to")})
    return (start, end) if start is not None else (end, None)


def _item(item: Mapping[str, Any], fetched_at: datetime) -> TrackingSnapshot | NumberProblem | None:
    """One accepted gettrackinfo entry (or push `data`) as a snapshot or a problem."""
    number = _text(item.get("number"))
    info = item.get("track_info")
    if not number or not isinstance(info, Mapping):
        return None  # e.g. register's accepted entries, TRACKING_STOPPED pushes
    latest = info.get("latest_status") if isinstance(info.get("latest_status"), Mapping) else {}
    main, sub_status = _text(latest.get("status")), _text(latest.get("sub_status"))
    events, providers = _events(info)
    if main == "NotFound" and not events:
        kind = ProblemKind.INVALID if sub_status == "NotFound_InvalidCode" else ProblemKind.NOT_FOUND
        return NumberProblem(number, kind, _text(latest.get("sub_status_descr")) or sub_status or main)
    status, reason, customs = classify(main, sub_status)
    eta, eta_end = _eta(info)
    last = events[-1] if events else None
    return TrackingSnapshot(
        carrier=NAME,
        tracking_number=number,
        status=status,
        events=tuple(events),
        reason=reason,
        customs=customs,
        eta=eta,
        eta_end=eta_end,
        pickup_location=last.location if last and status is Status.READY_FOR_PICKUP else "",
        service=" → ".join(providers),  # the carriers 17TRACK read, in its order
        raw_code=sub_status or main,
        raw_text=_text(latest.get("sub_status_descr")) or (last.description if last else ""),
        fetched_at=fetched_at,
    )


def _rejected(payload: Any) -> list[tuple[str, int, str]]:
    data = payload.get("data") if isinstance(payload, Mapping) else None
    rejected = data.get("rejected") if isinstance(data, Mapping) else None
    found = []
    for entry in rejected if isinstance(rejected, list) else []:
        error = entry.get("error") if isinstance(entry, Mapping) else None
        number = _text(entry.get("number")) if isinstance(entry, Mapping) else ""
        if number and isinstance(error, Mapping) and isinstance(error.get("code"), int):
            found.append((number, error["code"], _text(error.get("message"))))
    return found


def rejections(payload: Any) -> dict[str, int]:
    """`rejected` entries of a register / gettrackinfo response: number -> error code."""
    return {number: code for number, code, _ in _rejected(payload)}


def _problem(number: str, code: int, message: str) -> NumberProblem | None:
    if code == ALREADY_REGISTERED or code in ACCOUNT_CODES or code in AUTH_CODES:
        return None
    kind = ProblemKind.INVALID if code in _INVALID_CODES else ProblemKind.NOT_FOUND
    return NumberProblem(number, kind, f"{message} ({code})" if message else str(code))


def parse(payload: Any, *, fetched_at: datetime) -> TrackingReport:
    """Translate a gettrackinfo/register response or a webhook push into a report (no I/O)."""
    report = TrackingReport()
    if not isinstance(payload, Mapping):
        return report
    data = payload.get("data")
    if "event" in payload:  # push: {"event": "TRACKING_UPDATED", "data": {number, track_info…}}
        items = [data] if isinstance(data, Mapping) else []
    else:
        accepted = data.get("accepted") if isinstance(data, Mapping) else None
        items = [i for i in accepted if isinstance(i, Mapping)] if isinstance(accepted, list) else []
    for item in items:
        result = _item(item, fetched_at)
        if isinstance(result, NumberProblem):
            report.problems[result.tracking_number] = result
        elif result is not None:
            report.snapshots[result.tracking_number] = result
    for number, code, message in _rejected(payload):
        problem = _problem(number, code, message)
        if problem is not None:
            report.problems[number] = problem
    return report


def _batches(numbers: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(numbers), BATCH_SIZE):
        yield list(numbers[start:start + BATCH_SIZE])


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), "")


class SeventeenTrackCarrier:
    """17TRACK v2.2: register then gettrackinfo in batches of 40; pushes signed with the API key."""

    name = NAME
    limits = LIMITS
    timestamp_policy = TIMESTAMP_POLICY

    def __init__(self, session: aiohttp.ClientSession, credentials: Credentials) -> None:
        self._session = session_required(session)
        self._credentials = credentials
        self._base = (credentials.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._registered: set[str] = set()  # numbers 17TRACK already tracks for this key

    def recognizes(self, number: str) -> bool:
        """Aggregators take any plausible number; ranking carriers happens elsewhere."""
        return bool(_NUMBER.fullmatch(number))

    async def track(self, numbers: NumberList) -> TrackingReport:
        """Register unknown numbers, then read all; per-number rejections become problems."""
        wanted = list(dict.fromkeys(numbers))
        report = await self._register([n for n in wanted if n not in self._registered])
        fetched, lost = await self._gettrackinfo([n for n in wanted if n not in report.problems])
        for number in lost:
            fetched.problems.pop(number, None)
        report.merge(fetched)
        if lost:  # 17TRACK dropped the registration (deleted or expired): register once more
            self._registered.difference_update(lost)
            retry = await self._register(lost)
            report.merge(retry)
            again, _ = await self._gettrackinfo([n for n in lost if n not in retry.problems])
            report.merge(again)
        return report

    async def subscribe(self, numbers: NumberList, callback_url: str) -> None:
        """Register the numbers; 17TRACK pushes to the webhook URL saved in its dashboard.

        The v2.2 API has no per-number callback, so `callback_url` cannot be sent; the dashboard
        setting must point at it.
        """
        report = await self._register([n for n in dict.fromkeys(numbers) if n not in self._registered])
        for problem in report.problems.values():
            log.warning("17track: %s not registered: %s", problem.tracking_number, problem.message)

    def verify_webhook(self, headers: dict[str, str], body: bytes) -> None:
        """Check the `sign` header: hex SHA-256 of the raw body + "/" + the API key.

        The scheme is from carrier_data.md §1.7, written from memory of the v2.2 docs ("from
        memory; confirm"): check it against the live docs before relying on it in production.
        """
        key = self._credentials.get("api_key")
        if not key:
            raise WebhookError("17track: no api_key configured; cannot check pushes")
        given = _header(headers, SIGN_HEADER).strip()
        if not given:
            raise WebhookError(f"17track: missing {SIGN_HEADER} header")
        expected = hashlib.sha256(body + b"/" + key.encode("utf-8")).hexdigest()
        if not hmac.compare_digest(given.lower().encode("utf-8"), expected.encode("utf-8")):
            raise WebhookError("17track: webhook signature mismatch")

    def parse_webhook(self, body: bytes) -> list[TrackingSnapshot]:
        """Snapshots from a verified push (TRACKING_STOPPED gives none)."""
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise WebhookError("17track: webhook body is not JSON") from exc
        if not isinstance(payload, Mapping) or not isinstance(payload.get("data"), Mapping):
            raise WebhookError("17track: webhook body has no data object")
        return list(parse(payload, fetched_at=datetime.now(UTC)).snapshots.values())

    async def _register(self, numbers: list[str]) -> TrackingReport:
        report = TrackingReport()
        for batch in _batches(numbers):
            body = await self._post("register", batch)
            codes = rejections(body)
            self._registered.update(n for n in batch if n not in codes or codes[n] == ALREADY_REGISTERED)
            report.merge(parse(body, fetched_at=datetime.now(UTC)))
        return report

    async def _gettrackinfo(self, numbers: list[str]) -> tuple[TrackingReport, list[str]]:
        report, lost = TrackingReport(), []
        for batch in _batches(numbers):
            body = await self._post("gettrackinfo", batch)
            report.merge(parse(body, fetched_at=datetime.now(UTC)))
            lost += [n for n, code in rejections(body).items() if code == NOT_REGISTERED]
        return report, lost

    async def _post(self, endpoint: str, numbers: list[str]) -> Mapping[str, Any]:
        key = self._credentials.get("api_key")
        if not key:
            raise CarrierAuthError(NAME, "api_key is not configured")
        response = await request(
            self._session, NAME, "POST", f"{self._base}{API_PATH}/{endpoint}",
            headers={AUTH_HEADER: key}, json_body=[{"number": n} for n in numbers],
        )
        if response.status >= 400:  # 17TRACK: 404 means a wrong URL, not an unknown number
            raise CarrierError(NAME, f"{endpoint}: HTTP {response.status}", status=response.status)
        body = response.json()
        if not isinstance(body, Mapping):
            raise CarrierError(NAME, f"{endpoint}: unexpected body")
        code = body.get("code", 0)
        if code in AUTH_CODES:
            raise CarrierAuthError(NAME, f"{endpoint}: access refused ({code})")
        if code != 0:
            raise CarrierError(NAME, f"{endpoint}: error {code}")
        account = sorted({c for c in rejections(body).values() if c in ACCOUNT_CODES})
        if account:
            raise CarrierError(NAME, f"{endpoint}: tracking quota or daily limit reached ({account[0]})")
        return body
