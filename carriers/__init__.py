"""Carrier tracking adapters and tracking-number recognition. Never imports `bot`."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import aiohttp

from carriers.model import (
    CarrierError,
    Credentials,
    Limits,
    NumberList,
    TrackingReport,
    TrackingSnapshot,
)

__all__ = ["Carrier", "PushCarrier", "CarrierError", "Credentials", "Limits", "TrackingReport"]


@runtime_checkable
class Carrier(Protocol):
    """A tracking source. `track` batches up to `limits.batch_size` numbers per request."""

    name: str  # short code, e.g. "ups", "dhl", "demo"
    limits: Limits

    def recognizes(self, number: str) -> bool:
        """Whether this carrier could own a (normalized) tracking number."""
        ...

    async def track(self, numbers: NumberList) -> TrackingReport:
        """Fetch snapshots; per-number problems are data, outages raise CarrierError."""
        ...


@runtime_checkable
class PushCarrier(Carrier, Protocol):
    """A carrier that can push updates to our webhook."""

    def verify_webhook(self, headers: dict[str, str], body: bytes) -> None:
        """Raise WebhookError when the signature or shape is wrong."""
        ...

    def parse_webhook(self, body: bytes) -> list[TrackingSnapshot]:
        """Turn a verified push into snapshots."""
        ...

    async def subscribe(self, numbers: NumberList, callback_url: str) -> None:
        """Ask the carrier to push updates for these numbers."""
        ...


def session_required(session: aiohttp.ClientSession | None) -> aiohttp.ClientSession:
    """Adapters receive the app's one shared session; fail clearly when it is missing."""
    if session is None:
        raise RuntimeError("carrier adapter needs the shared aiohttp.ClientSession")
    return session
