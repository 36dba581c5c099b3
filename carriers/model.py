"""Carrier-neutral tracking model: one small status vocabulary, reasons, customs stages.

Every adapter turns its provider's payload into these types. Timestamps are always
timezone-aware; the carrier's raw code and text are kept beside the normalized values.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any


class Status(enum.StrEnum):
    """Normalized shipment status (see DESIGN.md, 'Domain words')."""

    PENDING = "pending"  # label created / info received
    PICKED_UP = "picked_up"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    READY_FOR_PICKUP = "ready_for_pickup"
    DELIVERED = "delivered"
    DELIVERY_FAILED = "delivery_failed"
    DELAYED = "delayed"
    ON_HOLD = "on_hold"
    RETURN_TO_SENDER = "return_to_sender"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


#: Statuses after which a shipment needs no more tracking (apart from a grace period).
FINAL_STATUSES = frozenset({Status.DELIVERED, Status.CANCELLED})


class Reason(enum.StrEnum):
    """Why a shipment is where it is (Karrio-style incident reasons, trimmed)."""

    NONE = ""
    CUSTOMS_INSPECTION = "customs_inspection"
    CUSTOMS_DUTIES_UNPAID = "customs_duties_unpaid"
    CUSTOMS_DOCUMENTATION = "customs_documentation"
    CUSTOMS_DELAY = "customs_delay"
    CUSTOMS_PROHIBITED = "customs_prohibited"
    CONSIGNEE_NOT_HOME = "consignee_not_home"
    CONSIGNEE_REFUSED = "consignee_refused"
    INCORRECT_ADDRESS = "incorrect_address"
    BUSINESS_CLOSED = "business_closed"
    WEATHER_DELAY = "weather_delay"
    OPERATIONAL_DELAY = "operational_delay"
    DAMAGED = "damaged"
    LOST = "lost"
    UNKNOWN = "unknown"


class CustomsStage(enum.StrEnum):
    """Where a parcel is in customs. NONE means customs is not (or no longer) involved."""

    NONE = ""
    PROCESSING = "processing"  # presented to / being processed by customs
    HELD = "held"  # held: inspection or documents
    DUTIES_DUE = "duties_due"  # held until the recipient pays duties/taxes
    INFO_REQUIRED = "info_required"  # documents or information needed from the recipient
    RELEASED = "released"


class TimestampPolicy(enum.StrEnum):
    """How a carrier writes times (declared per adapter, see carrier_data.md)."""

    AWARE = "aware"  # ISO-8601 with a real offset
    NAIVE_LOCAL = "naive_local"  # no zone: local time at the event location
    MISLABELED_Z = "mislabeled_z"  # 'Z' suffix although the clock is local


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in a currency (ISO 4217)."""

    amount: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class TrackingEvent:
    """One scan or status event, carrier-neutral and timezone-aware."""

    timestamp: datetime
    status: Status
    description: str = ""
    location: str = ""
    country: str = ""  # ISO 3166-1 alpha-2 when known
    reason: Reason = Reason.NONE
    customs: CustomsStage = CustomsStage.NONE
    raw_code: str = ""
    raw_text: str = ""

    def __post_init__(self) -> None:
        if self.timestamp.tzinfo is None or self.timestamp.utcoffset() is None:
            raise ValueError(f"naive timestamp in TrackingEvent: {self.timestamp!r}")


@dataclass(frozen=True, slots=True)
class TrackingSnapshot:
    """What a carrier said about one parcel at one moment."""

    carrier: str
    tracking_number: str
    status: Status
    events: tuple[TrackingEvent, ...] = ()  # oldest first
    reason: Reason = Reason.NONE
    customs: CustomsStage = CustomsStage.NONE
    eta: datetime | None = None  # aware; start of the window when a window is given
    eta_end: datetime | None = None
    duties: Money | None = None
    payment_url: str = ""  # the carrier's own duties payment page, when given
    pickup_location: str = ""
    pickup_until: date | None = None
    service: str = ""
    raw_code: str = ""
    raw_text: str = ""
    fetched_at: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("eta", "eta_end", "fetched_at"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"naive {name} in TrackingSnapshot: {value!r}")

    @property
    def last_event(self) -> TrackingEvent | None:
        """The newest event, if any."""
        return self.events[-1] if self.events else None

    def with_fetched_at(self, when: datetime) -> TrackingSnapshot:
        """A copy stamped with the time we fetched it."""
        return replace(self, fetched_at=when)


class ProblemKind(enum.StrEnum):
    """Per-number problems a carrier reports as data (not outages)."""

    NOT_FOUND = "not_found"
    INVALID = "invalid"
    EXPIRED = "expired"  # carrier no longer keeps data for it


@dataclass(frozen=True, slots=True)
class NumberProblem:
    """A carrier answered, but had nothing usable for this number."""

    tracking_number: str
    kind: ProblemKind
    message: str = ""


@dataclass(slots=True)
class TrackingReport:
    """The outcome of one `track()` call: snapshots and per-number problems."""

    snapshots: dict[str, TrackingSnapshot] = field(default_factory=dict)
    problems: dict[str, NumberProblem] = field(default_factory=dict)

    def merge(self, other: TrackingReport) -> None:
        """Fold another report (e.g. a later batch) into this one."""
        self.snapshots.update(other.snapshots)
        self.problems.update(other.problems)


class CarrierError(Exception):
    """The carrier could not be asked (outage, 5xx, 429, network). Retry later.

    `retry_after` (seconds) is set when the carrier said how long to wait.
    """

    def __init__(self, carrier: str, message: str, *, retry_after: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(f"{carrier}: {message}")
        self.carrier = carrier
        self.retry_after = retry_after
        self.status = status


class CarrierAuthError(CarrierError):
    """Credentials were refused (401/403). Not fixed by retrying soon."""


class WebhookError(Exception):
    """A carrier webhook failed verification or could not be parsed."""


@dataclass(frozen=True, slots=True)
class Limits:
    """A carrier API's limits, declared as data."""

    batch_size: int = 1
    per_second: float = 1.0
    per_day: int | None = None
    supports_push: bool = False


@dataclass(frozen=True, slots=True)
class Credentials:
    """What an adapter needs to talk to its API: base URL and secrets (from env)."""

    base_url: str
    values: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str, default: str = "") -> str:
        """One credential value."""
        return self.values.get(name, default)


Headers = Mapping[str, str]
JsonBody = Any
NumberList = Sequence[str]
