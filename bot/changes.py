"""What changed between two snapshots of a shipment: the news worth telling a customer.

Detection is pure: (previous snapshot, new snapshot, context, now) -> [Change]. Each change
carries a stable `key` so the same news is reported (and announced) once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from carriers.model import CustomsStage, Money, Reason, Status


class ChangeKind(enum.StrEnum):
    """Kinds of news; notification templates are named after these."""

    SHIPPED = "shipped"  # first scan after the label: picked up / in transit
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERY_FAILED = "delivery_failed"  # failed attempt
    READY_FOR_PICKUP = "ready_for_pickup"
    DELIVERED = "delivered"
    DELAYED = "delayed"  # carrier says delayed, or the ETA slipped later
    CUSTOMS_HELD = "customs_held"  # entered customs hold / inspection / documents needed
    DUTIES_DUE = "duties_due"  # customs wants duties paid (amount when given)
    CUSTOMS_CLEARED = "customs_cleared"
    STALLED = "stalled"  # no scan for too long for the stage
    RETURN_TO_SENDER = "return_to_sender"
    EXCEPTION = "exception"  # lost, damaged, cancelled and other trouble


@dataclass(frozen=True, slots=True)
class Change:
    """One piece of news about a shipment."""

    kind: ChangeKind
    carrier: str
    tracking_number: str
    key: str  # stable id: the same news always has the same key
    status: Status
    previous_status: Status | None
    occurred_at: datetime  # when the carrier event happened (aware)
    reason: Reason = Reason.NONE
    customs: CustomsStage = CustomsStage.NONE
    eta: datetime | None = None
    previous_eta: datetime | None = None
    duties: Money | None = None
    payment_url: str = ""
    pickup_location: str = ""
    location: str = ""
