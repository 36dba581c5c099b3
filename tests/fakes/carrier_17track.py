"""A fake 17TRACK Tracking API v2.2 on localhost, plus builders for its payloads.

We hold no recorded 17TRACK traffic: bodies follow the field names documented in
carrier_data.md §1.7 and §3.3 (17TRACK v2.2 docs): `{code, data: {accepted, rejected}}`,
`track_info {latest_status, latest_event, time_metrics, milestone, tracking.providers[].events[]}`
and events with `time_iso`, `time_utc`, `time_raw {date, time, timezone}`. Carrier keys and
error messages are illustrative; error codes are the documented ones.

Supports: the `17token` header (401 otherwise), register / gettrackinfo with accepted and
rejected entries (already registered, not registered, no info yet, invalid format, carrier not
detected, quota exhausted), the 40-number limit, switchable failures (429 with Retry-After,
5xx, request-level error codes), request counting with batch sizes, and pushes signed with
sha256(body + "/" + key).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web

LIMIT = 40

# Illustrative 17TRACK carrier keys (the real list is 17TRACK's carrier catalogue).
CARRIER_KEYS = {"J&T Express": 100603, "Pos Indonesia": 11031, "Hrvatska pošta": 7031,
                "China Post": 3011}


def _offset(when: datetime) -> str:
    delta = when.utcoffset() or timedelta(0)
    sign = "-" if delta < timedelta(0) else "+"
    minutes = abs(int(delta.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def event(when: datetime, description: str, *, sub_status: str = "", stage: str = "",
          location: str = "", country: str = "", zone_known: bool = True) -> dict[str, Any]:
    """One `tracking.providers[].events[]` entry.

    `when` is the local wall clock with its zone. With zone_known=False 17TRACK does not know
    the zone: time_iso has no offset and time_utc / time_raw.timezone are null.
    """
    local = when.replace(tzinfo=None)
    known = zone_known and when.tzinfo is not None
    return {
        "time_iso": when.isoformat() if known else local.isoformat(),
        "time_utc": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if known else None,
        "time_raw": {"date": local.date().isoformat(), "time": local.time().isoformat(),
                     "timezone": _offset(when) if known else None},
        "description": description,
        "location": location,
        "stage": stage,
        "sub_status": sub_status,
        "address": {"country": country or None, "state": None, "city": location or None,
                    "street": None, "postal_code": None,
                    "coordinates": {"longitude": None, "latitude": None}},
    }


def track_info(status: str, sub_status: str, providers: list[tuple[str, list[dict[str, Any]]]], *,
               sub_status_descr: str | None = None,
               eta: tuple[str | None, str | None] | None = None) -> dict[str, Any]:
    """A `track_info` object; each provider's events are given oldest first, sent newest first."""
    everything = [e for _, events in providers for e in events]
    newest = max(everything, key=lambda e: e["time_utc"] or e["time_iso"], default=None)
    stages = ["InfoReceived", "PickedUp", "Departure", "Arrival", "AvailableForPickup",
              "OutForDelivery", "Delivered", "Returning", "Returned"]
    reached = {e["stage"]: e for e in everything if e.get("stage")}
    return {
        "shipping_info": {"shipper_address": {"country": None}, "recipient_address": {"country": None}},
        "latest_status": {"status": status, "sub_status": sub_status,
                          "sub_status_descr": sub_status_descr},
        "latest_event": newest,
        "time_metrics": {
            "days_after_order": 0, "days_of_transit": 0, "days_of_transit_done": 0,
            "days_after_last_update": 0,
            "estimated_delivery_date": {"source": "17TRACK" if eta else None,
                                        "from": eta[0] if eta else None,
                                        "to": eta[1] if eta else None},
        },
        "milestone": [
            {"key_stage": stage,
             "time_iso": reached[stage]["time_iso"] if stage in reached else None,
             "time_utc": reached[stage]["time_utc"] if stage in reached else None,
             "time_raw": reached[stage]["time_raw"] if stage in reached else
             {"date": None, "time": None, "timezone": None}}
            for stage in stages
        ],
        "tracking": {
            "providers_hash": hash(tuple(name for name, _ in providers)) & 0x7FFFFFFF,
            "providers": [
                {"provider": {"key": CARRIER_KEYS.get(name, 0), "name": name, "alias": name,
                              "tel": None, "homepage": None, "country": None},
                 "service_type": None, "latest_sync_status": "Success",
                 "latest_sync_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "events_hash": len(events), "events": list(reversed(events))}
                for name, events in providers
            ],
        },
    }


def _body(code: int, accepted: list[Any], rejected: list[Any]) -> web.Response:
    return web.json_response({"code": code, "data": {"accepted": accepted, "rejected": rejected}})


def _request_error(code: int, message: str, status: int = 200) -> web.Response:
    return web.json_response({"code": code, "data": {"errors": [{"code": code, "message": message}]}},
                             status=status)


def _rejected(number: str, code: int, message: str) -> dict[str, Any]:
    return {"number": number, "error": {"code": code, "message": message}}


class Fake17Track:
    """In-memory 17TRACK: what the carriers know, what is registered, failures to inject."""

    def __init__(self, *, api_key: str = "17tk_fake_ABCDEF0123456789", quota: int = 100) -> None:
        self.api_key = api_key
        self.quota = quota  # registrations left this month
        self.shipments: dict[str, dict[str, Any]] = {}  # number -> track_info 17TRACK can serve
        self.registered: set[str] = set()
        self.undetectable: set[str] = set()  # register answers -18019903 for these
        self.calls: list[tuple[str, list[str]]] = []  # (endpoint, numbers) per request
        self._failures: list[tuple[int, str | None]] = []
        self._refusals: list[tuple[int, int]] = []
        self.app = web.Application()
        self.app.router.add_post("/track/v2.2/register", self._register)
        self.app.router.add_post("/track/v2.2/gettrackinfo", self._gettrackinfo)

    # --- test controls -------------------------------------------------------------------

    def add(self, number: str, info: dict[str, Any]) -> None:
        """Make tracking data available for a number (served once it is registered)."""
        self.shipments[number] = info

    def fail(self, status: int, *, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next `times` requests with `status` (429 may carry Retry-After)."""
        self._failures.extend([(status, retry_after)] * times)

    def refuse(self, code: int, *, status: int = 200) -> None:
        """Answer the next request with a request-level error body `{code, data: {errors}}`."""
        self._refusals.append((code, status))

    def count(self, endpoint: str) -> int:
        """How many requests reached an endpoint ("register", "gettrackinfo")."""
        return sum(1 for e, _ in self.calls if e == endpoint)

    def batch_sizes(self, endpoint: str) -> list[int]:
        """Numbers per request, in order, for an endpoint."""
        return [len(numbers) for e, numbers in self.calls if e == endpoint]

    def push_body(self, number: str, event_name: str = "TRACKING_UPDATED") -> bytes:
        """The raw bytes 17TRACK would POST for a number."""
        info = self.shipments.get(number)
        providers = (info or {}).get("tracking", {}).get("providers") or [{}]
        data: dict[str, Any] = {"number": number,
                                "carrier": providers[0].get("provider", {}).get("key", 0),
                                "param": None, "tag": None}
        if event_name == "TRACKING_UPDATED":
            data["track_info"] = info
        return json.dumps({"event": event_name, "data": data}, ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8")

    def sign(self, body: bytes, key: str | None = None) -> str:
        """The `sign` header value for a body."""
        return hashlib.sha256(body + b"/" + (self.api_key if key is None else key).encode()).hexdigest()

    async def push(self, session: aiohttp.ClientSession, url: str, number: str, *,
                   event_name: str = "TRACKING_UPDATED", key: str | None = None,
                   body: bytes | None = None) -> int:
        """POST a signed push to url; returns the receiver's HTTP status.

        `key` signs with another key (a forgery); `body` sends other bytes under the signature
        of the genuine body (a tampered payload).
        """
        genuine = self.push_body(number, event_name)
        headers = {"Content-Type": "application/json", "sign": self.sign(genuine, key)}
        async with session.post(url, data=genuine if body is None else body, headers=headers) as resp:
            return resp.status

    # --- wire ----------------------------------------------------------------------------

    async def _numbers(self, request: web.Request, endpoint: str) -> list[str] | web.Response:
        try:
            items = await request.json()
            numbers = [str(item["number"]) for item in items]
        except (ValueError, KeyError, TypeError):
            numbers = None
        self.calls.append((endpoint, numbers or []))
        if self._failures:
            status, retry_after = self._failures.pop(0)
            return web.Response(status=status, headers={"Retry-After": retry_after} if retry_after else None)
        if self._refusals:
            code, status = self._refusals.pop(0)
            return _request_error(code, "Request refused.", status=status)
        token = request.headers.get("17token", "")
        if not hmac.compare_digest(token.encode(), self.api_key.encode()):
            return _request_error(-18010002, "Invalid access key.", status=401)
        if numbers is None:
            return _request_error(-18010013, "Submitted data is invalid.")
        if len(numbers) > LIMIT:  # code illustrative; the 40-number limit is documented
            return _request_error(-18010014, f"The number of tracking numbers exceeds {LIMIT}.")
        return numbers

    async def _register(self, request: web.Request) -> web.Response:
        numbers = await self._numbers(request, "register")
        if isinstance(numbers, web.Response):
            return numbers
        accepted, rejected = [], []
        for number in numbers:
            if not re.fullmatch(r"[A-Za-z0-9]{5,50}", number):
                rejected.append(_rejected(number, -18010012, f"The format of '{number}' is invalid."))
            elif number in self.registered:
                rejected.append(_rejected(number, -18019901,
                                          f"The tracking number '{number}' has been registered, "
                                          "don't need to repeat registration."))
            elif number in self.undetectable:
                rejected.append(_rejected(number, -18019903, "Carrier can not be detected."))
            elif self.quota <= 0:
                rejected.append(_rejected(number, -18019908, "Your quota is exhausted."))
            else:
                self.quota -= 1
                self.registered.add(number)
                providers = self.shipments.get(number, {}).get("tracking", {}).get("providers") or [{}]
                accepted.append({"origin": 1, "number": number,
                                 "carrier": providers[0].get("provider", {}).get("key", 0)})
        return _body(0, accepted, rejected)

    async def _gettrackinfo(self, request: web.Request) -> web.Response:
        numbers = await self._numbers(request, "gettrackinfo")
        if isinstance(numbers, web.Response):
            return numbers
        accepted, rejected = [], []
        for number in numbers:
            info = self.shipments.get(number)
            if number not in self.registered:
                rejected.append(_rejected(number, -18019902, f"The tracking number '{number}' does "
                                          "not register, please register first."))
            elif info is None:
                rejected.append(_rejected(number, -18019909, "No tracking information at this time."))
            else:
                key = info["tracking"]["providers"][0]["provider"]["key"] if info["tracking"]["providers"] else 0
                accepted.append({"number": number, "carrier": key, "param": None, "tag": None,
                                 "track_info": info})
        return _body(0, accepted, rejected)
