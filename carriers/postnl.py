"""PostNL ShippingStatus v2: one barcode per GET, times in Amsterdam wall-clock without a zone.

Payload facts come from recorded responses (firstred/postnl-api-php, MIT) and PostNL's published
T&T status-code table; see shared/research/carrier_data.md section 1.9.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timezone
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import aiohttp

from carriers.http import request
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
)

NAME = "postnl"
DEFAULT_BASE_URL = "https://api.postnl.nl"
CREDENTIALS = ("api_key",)
# One barcode per status call (the endpoint takes it in the path). PostNL asks integrators to
# poll sparingly and to stop on not-found; it publishes no per-second figure, so we take one.
LIMITS = Limits(batch_size=1, per_second=1.0, per_day=None, supports_push=False)
TIMESTAMP_POLICY = TimestampPolicy.NAIVE_LOCAL
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
STATUS_PATH = "/shipment/v2/status/barcode/{barcode}"

# PostNL's T&T status codes (Status.StatusCode) -> our status, reason, customs stage.
_STATUS: dict[str, tuple[Status, Reason, CustomsStage]] = {
    "1": (Status.PENDING, Reason.NONE, CustomsStage.NONE),  # Zending voorgemeld
    "2": (Status.PICKED_UP, Reason.NONE, CustomsStage.NONE),  # in ontvangst genomen
    "3": (Status.PICKED_UP, Reason.NONE, CustomsStage.NONE),  # afgehaald (collected)
    "4": (Status.PENDING, Reason.NONE, CustomsStage.NONE),  # niet afgehaald (not collected)
    "13": (Status.PENDING, Reason.NONE, CustomsStage.NONE),  # voorgemeld, nog niet aangenomen
    "14": (Status.CANCELLED, Reason.NONE, CustomsStage.NONE),  # definitief niet aangenomen
    "15": (Status.ON_HOLD, Reason.LOST, CustomsStage.NONE),  # manco collectie
    "18": (Status.ON_HOLD, Reason.LOST, CustomsStage.NONE),  # definitief manco
    "19": (Status.ON_HOLD, Reason.UNKNOWN, CustomsStage.NONE),  # zending afgekeurd
    "5": (Status.IN_TRANSIT, Reason.NONE, CustomsStage.NONE),  # gesorteerd
    "6": (Status.DELAYED, Reason.OPERATIONAL_DELAY, CustomsStage.NONE),  # niet gesorteerd
    "16": (Status.ON_HOLD, Reason.LOST, CustomsStage.NONE),  # manco sortering
    "21": (Status.ON_HOLD, Reason.NONE, CustomsStage.NONE),  # zending in voorraad
    "7": (Status.OUT_FOR_DELIVERY, Reason.NONE, CustomsStage.NONE),  # in distributieproces
    "8": (Status.DELIVERY_FAILED, Reason.NONE, CustomsStage.NONE),  # niet afgeleverd
    "9": (Status.IN_TRANSIT, Reason.NONE, CustomsStage.PROCESSING),  # bij douane
    "17": (Status.ON_HOLD, Reason.LOST, CustomsStage.NONE),  # manco distributie
    "20": (Status.IN_TRANSIT, Reason.NONE, CustomsStage.PROCESSING),  # in inklaringsproces
    "11": (Status.DELIVERED, Reason.NONE, CustomsStage.NONE),  # afgeleverd
    "12": (Status.READY_FOR_PICKUP, Reason.NONE, CustomsStage.NONE),  # op afhaallocatie
    "22": (Status.DELIVERED, Reason.NONE, CustomsStage.NONE),  # afgehaald van postkantoor
    "23": (Status.PICKED_UP, Reason.NONE, CustomsStage.NONE),  # afhaalopdracht gecollecteerd
}
_NOT_APPLICABLE = "99"
# An unknown StatusCode still has a phase: 1 Collectie, 2 Sortering, 3 Distributie, 4 Afgeleverd.
_PHASE = {"1": Status.PENDING, "2": Status.IN_TRANSIT, "3": Status.IN_TRANSIT,
          "4": Status.DELIVERED}
# Event codes -> the status code PostNL's event table files them under. Only needed when no
# status entry shares the event's timestamp; '01A'/'01B' are left out on purpose: the recordings
# use '01B' both for "received" and for "delivered".
_EVENT_STATUS = {"A01": "1", "A71": "1", "B01": "2", "B04": "3", "J01": "5", "J05": "7",
                 "J55": "7", "I01": "11"}

_BARCODE_3S = re.compile(r"^3S[A-Z]{4}\d{7,11}$")
_S10 = re.compile(r"^[A-Z]{2}(\d{8})(\d)NL$")
_LOCAL_STAMP = re.compile(
    r"^(\d{2})-(\d{2})-(\d{4}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$")


def local_time(text: str) -> datetime:
    """A PostNL time ('DD-MM-YYYY HH:MM:SS[.fff]' or ISO, no zone) read as Amsterdam time.

    The result carries the fixed UTC offset in force then: zoneinfo times inside the repeated
    autumn hour compare unequal to every other zone (PEP 495), fixed offsets do not. Times in
    the repeated hour read as its first (summer-time) pass and times in the skipped spring hour
    keep the winter offset; PostNL gives no way to tell.
    """
    match = _LOCAL_STAMP.match(text.strip())
    if match:
        day, month, year, hour, minute, second, fraction = match.groups()
        micro = int((fraction or "0").ljust(6, "0"))
        when = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                        micro, tzinfo=AMSTERDAM)
    else:
        when = datetime.fromisoformat(text.strip())
        if when.tzinfo is not None:
            return when
        when = when.replace(tzinfo=AMSTERDAM)
    offset = when.utcoffset()
    assert offset is not None  # a zoneinfo zone always has one
    return when.replace(tzinfo=timezone(offset))


def map_status(status_code: str, phase_code: str = "") -> tuple[Status, Reason, CustomsStage]:
    """Our status, reason and customs stage for a PostNL StatusCode (falling back to its phase)."""
    if status_code in _STATUS:
        return _STATUS[status_code]
    return _PHASE.get(phase_code, Status.UNKNOWN), Reason.NONE, CustomsStage.NONE


def parse(payload: Any, *, fetched_at: datetime, barcode: str = "") -> TrackingReport:
    """Turn a ShippingStatus v2 body (status, or `updatedshipments` list) into a report.

    `barcode` is the number asked for: a body without shipments becomes its NOT_FOUND problem,
    and a single shipment is filed under it.
    """
    try:
        return _parse(payload, fetched_at, barcode)
    except ValueError as exc:  # a malformed time: the carrier's fault, retry later
        raise CarrierError(NAME, f"unreadable ShippingStatus body: {exc}") from exc


def _parse(payload: Any, fetched_at: datetime, barcode: str) -> TrackingReport:
    report = TrackingReport()
    if isinstance(payload, list):  # /{customernumber}/updatedshipments
        for item in payload:
            snap = _updated_snapshot(item, fetched_at)
            report.snapshots[snap.tracking_number] = snap
        return report
    if not isinstance(payload, Mapping):
        raise CarrierError(NAME, f"unexpected ShippingStatus body: {type(payload).__name__}")
    root = payload.get("CompleteStatus", payload.get("CurrentStatus"))
    if not isinstance(root, Mapping):
        raise CarrierError(NAME, "unexpected ShippingStatus body: no CompleteStatus/CurrentStatus")
    shipments = [s for s in _as_list(root.get("Shipment")) if isinstance(s, Mapping)]
    if not shipments:
        if barcode:
            report.problems[barcode] = NumberProblem(
                barcode, ProblemKind.NOT_FOUND, _warning_text(payload) or "no shipment found")
        return report
    for shipment in shipments:
        snap = _snapshot(shipment, fetched_at)
        key = barcode if barcode and len(shipments) == 1 else snap.tracking_number
        report.snapshots[key] = snap
    return report


class PostnlCarrier:
    """PostNL ShippingStatus v2 (poll only: PostNL offers no push for this API)."""

    name = NAME
    limits = LIMITS

    def __init__(self, session: aiohttp.ClientSession, credentials: Credentials) -> None:
        self._session = session
        self._base = (credentials.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._api_key = credentials.get("api_key")

    def recognizes(self, number: str) -> bool:
        """PostNL 3S barcodes and UPU S10 numbers issued by PostNL (ending in NL)."""
        number = number.upper()
        return bool(_BARCODE_3S.match(number)) or _is_s10(number)

    async def track(self, numbers: NumberList) -> TrackingReport:
        """One GET per barcode; not-found and rejected barcodes come back as problems."""
        report = TrackingReport()
        for number in numbers:
            report.merge(await self._track_one(number))
        return report

    async def _track_one(self, number: str) -> TrackingReport:
        url = self._base + STATUS_PATH.format(barcode=quote(number, safe=""))
        resp = await request(self._session, NAME, "GET", url,
                             headers={"apikey": self._api_key, "Accept": "application/json"},
                             params={"detail": "true", "language": "EN"})
        if resp.status == 404:
            return _problem(number, ProblemKind.NOT_FOUND, "HTTP 404")
        if resp.status >= 400:
            return _problem(number, ProblemKind.INVALID, f"rejected by PostNL (HTTP {resp.status})")
        return parse(resp.json(), fetched_at=_now(), barcode=number)


def _snapshot(shipment: Mapping[str, Any], fetched_at: datetime) -> TrackingSnapshot:
    current = _as_mapping(shipment.get("Status"))
    history = [_as_mapping(s) for s in _as_list(shipment.get("OldStatus"))]
    code, phase = _text(current.get("StatusCode")), _text(current.get("PhaseCode"))
    raw_text = _text(current.get("StatusDescription"))
    if code == _NOT_APPLICABLE:  # "not applicable": the last meaningful entry tells more
        meaningful = [s for s in history + [current] if _meaningful(s)]
        if meaningful:
            latest = max(meaningful, key=lambda s: local_time(_text(s.get("TimeStamp"))))
            code, phase = _text(latest.get("StatusCode")), _text(latest.get("PhaseCode"))
            raw_text = _text(latest.get("StatusDescription"))
    status, reason, customs = map_status(code, phase)
    expectation = _as_mapping(shipment.get("Expectation"))
    eta_from, eta_to = _text(expectation.get("ETAFrom")), _text(expectation.get("ETATo"))
    return TrackingSnapshot(
        carrier=NAME,
        tracking_number=_text(shipment.get("Barcode")) or _text(shipment.get("MainBarcode")),
        status=status,
        events=_events(shipment.get("Event"), history + [current]),
        reason=reason,
        customs=customs,
        eta=local_time(eta_from) if eta_from else None,
        eta_end=local_time(eta_to) if eta_to else None,
        service=_text(shipment.get("ProductDescription")),
        raw_code=code,
        raw_text=raw_text,
        fetched_at=fetched_at,
    )


def _events(raw: Any, statuses: Iterable[Mapping[str, Any]]) -> tuple[TrackingEvent, ...]:
    # A status entry stamped with the same second as an event is the status that event set.
    by_time = {_text(s.get("TimeStamp")): _text(s.get("StatusCode"))
               for s in statuses if _meaningful(s)}
    events = []
    for item in _as_list(raw):
        event = _as_mapping(item)
        stamp, code = _text(event.get("TimeStamp")), _text(event.get("Code"))
        if not stamp:
            continue
        status_code = by_time.get(stamp) or _EVENT_STATUS.get(code, "")
        status, reason, customs = (map_status(status_code) if status_code
                                   else (Status.UNKNOWN, Reason.NONE, CustomsStage.NONE))
        description = _text(event.get("Description"))
        events.append(TrackingEvent(
            timestamp=local_time(stamp), status=status, description=description,
            reason=reason, customs=customs, raw_code=code, raw_text=description))
    # PostNL lists events newest first. Reverse instead of sorting by time: the list order is
    # PostNL's own, and a recorded J01 'sorted' scan carries a stamp a day before it happened.
    return tuple(reversed(events))


def _updated_snapshot(item: Any, fetched_at: datetime) -> TrackingSnapshot:
    item = _as_mapping(item)
    current = _as_mapping(item.get("Status"))
    code, phase = _text(current.get("StatusCode")), _text(current.get("PhaseCode"))
    status, reason, customs = map_status(code, phase)
    stamp = _text(current.get("Timestamp")) or _text(current.get("TimeStamp"))
    text = _text(current.get("StatusDescription"))
    events = ((TrackingEvent(timestamp=local_time(stamp), status=status, description=text,
                             reason=reason, customs=customs, raw_code=code, raw_text=text),)
              if stamp else ())
    return TrackingSnapshot(carrier=NAME, tracking_number=_text(item.get("Barcode")),
                            status=status, events=events, reason=reason, customs=customs,
                            raw_code=code, raw_text=text, fetched_at=fetched_at)


def _meaningful(status: Mapping[str, Any]) -> bool:
    return bool(_text(status.get("TimeStamp"))) and _text(status.get("StatusCode")) not in (
        "", _NOT_APPLICABLE)


def _warning_text(payload: Mapping[str, Any]) -> str:
    for warning in _as_list(payload.get("Warnings")):
        message = _text(_as_mapping(warning).get("Message"))
        if message:
            return message
    return ""


def _text(value: Any) -> str:
    """PostNL writes empty elements as `{}`; those and None read as ''."""
    if value is None or isinstance(value, Mapping | list):
        return ""
    return str(value).strip()


def _as_list(value: Any) -> list[Any]:
    """PostNL sends a lone element as an object and several as an array."""
    if value is None or value == {}:
        return []
    return list(value) if isinstance(value, list) else [value]


def _as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _is_s10(number: str) -> bool:
    match = _S10.match(number)
    if not match:
        return False
    serial, check = match.groups()
    total = sum(int(d) * w for d, w in zip(serial, (8, 6, 4, 2, 3, 5, 9, 7), strict=True))
    expected = 11 - total % 11
    return {10: 0, 11: 5}.get(expected, expected) == int(check)


def _problem(number: str, kind: ProblemKind, message: str) -> TrackingReport:
    return TrackingReport(problems={number: NumberProblem(number, kind, message)})


def _now() -> datetime:
    return datetime.now(UTC)
