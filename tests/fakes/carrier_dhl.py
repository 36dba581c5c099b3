"""FakeDhl: DHL Shipment Tracking – Unified (and its Push API) on localhost.

Tracking follows `dpdhl_tracking-unified-api_1.3.1.openapi.json`: `GET /track/shipments` with
the `DHL-API-Key` header, a Shipments body, 404 `application/problem+json` for unknown numbers,
401 problem for a wrong key, a daily quota (429 after N calls per UTC day, `Retry-After` until
00:00 GMT, as DHL's support pages describe), switchable 429/5xx and request counting.

Push has no spec in our fixtures; the fake follows DHL's public Postman/Bruno collections and
independent client code: `POST /tracking/push/v1/subscription` stores the hook and its
`ApiKeyAuthentication` header/token, `send_validation()` posts `subscription.validate` with a
hook secret, `POST /tracking/push/v1/subscription/{id}` with `DHL-API-Hook-Secret` activates,
and `push()` posts `subscription.push` messages carrying that header/token.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web

API_KEY = "fake-dhl-api-key"
CUSTOMS_DUTIES = "7777777770"  # Express, held until duties are paid
CUSTOMS_INSPECTION = "5555555555"  # Express, the spec's own customs-inspection texts
OUT_FOR_DELIVERY = "00340434292135100179"  # Parcel DE, the spec's default trackingNumber
DELIVERED = "00340434292135100186"

_PROBLEM = "application/problem+json"
_SERVICES = {"express", "parcel-de", "ecommerce", "dgf", "parcel-uk", "post-de", "sameday",
             "freight", "parcel-nl", "parcel-pl", "dsc"}


def _place(country: str, locality: str, postal: str | None = None) -> dict[str, Any]:
    address: dict[str, Any] = {"countryCode": country, "addressLocality": locality}
    if postal:
        address["postalCode"] = postal
    return {"address": address}


def _ev(timestamp: str, code: str, status: str, place: dict[str, Any],
        **extra: str) -> dict[str, Any]:
    return {"timestamp": timestamp, "location": place, "statusCode": code, "status": status,
            **extra}


def default_shipments() -> dict[str, dict[str, Any]]:
    """Shipment bodies (events newest first, like Express answers)."""
    leipzig = _place("DE", "LEIPZIG - GERMANY", "04435")
    heathrow = _place("GB", "LONDON-HEATHROW - UK")
    duties_status = _ev(
        # Express data comes without a zone: local time in Leipzig.
        "2025-03-04T10:15:00", "transit", "Shipment on hold", leipzig,
        description="Clearance event",
        remark="Duties and taxes of EUR 23.50 are due from the receiver before the shipment "
               "can be released.",
        nextSteps="Pay online at https://payments.fake-dhl.test/7777777770 to release the "
                  "shipment.",
    )
    bonn = _place("DE", "Bonn", "53113")
    return {
        CUSTOMS_DUTIES: {
            "id": CUSTOMS_DUTIES,
            "service": "express",
            "origin": _place("GB", "LONDON - UK"),
            "destination": _place("DE", "BERLIN - GERMANY"),
            "status": duties_status,
            "estimatedTimeOfDelivery": "2025-03-06",
            "estimatedTimeOfDeliveryRemark": "By End of Day",
            "details": {"product": {"productName": "EXPRESS WORLDWIDE"},
                        "totalNumberOfPieces": 1, "pieceIds": ["JD014600006281230704"]},
            "events": [
                duties_status,
                _ev("2025-03-03T09:00:00", "transit", "Customs status updated", leipzig),
                _ev("2025-03-03T05:30:00", "transit",
                    "Arrived at DHL Sort Facility LEIPZIG - GERMANY", leipzig),
                _ev("2025-03-02T22:05:00", "transit", "Processed at LONDON-HEATHROW - UK",
                    heathrow),
                _ev("2025-03-02T16:40:00", "transit", "Shipment picked up",
                    _place("GB", "LONDON - UK")),
            ],
        },
        CUSTOMS_INSPECTION: {
            "id": CUSTOMS_INSPECTION,
            "service": "express",
            "origin": _place("CN", "SHENZHEN - CHINA MAINLAND"),
            "destination": _place("NL", "AMSTERDAM - NETHERLANDS"),
            "status": _ev("2025-03-04T08:02:00+01:00", "transit", "Shipment on hold",
                          _place("NL", "AMSTERDAM - NETHERLANDS", "1043 AG"),
                          description="Customs clearance status updated",
                          remark="The shipment is pending completion of customs inspection.",
                          nextSteps="The status will be updated following customs inspection."),
            "events": [
                _ev("2025-03-02T19:45:00+08:00", "transit", "Shipment picked up",
                    _place("CN", "SHENZHEN - CHINA MAINLAND")),
            ],
        },
        OUT_FOR_DELIVERY: {
            "id": OUT_FOR_DELIVERY,
            "service": "parcel-de",
            "origin": _place("DE", "Hamburg"),
            "destination": _place("DE", "Bonn", "53113"),
            "status": _ev("2025-03-05T07:42:00+01:00", "transit",
                          "The shipment has been loaded onto the delivery vehicle", bonn,
                          description="The shipment has been loaded onto the delivery vehicle"),
            "estimatedTimeOfDelivery": "2025-03-05T10:00:00+01:00",
            "estimatedDeliveryTimeFrame": {"estimatedFrom": "2025-03-05T10:00:00+01:00",
                                           "estimatedThrough": "2025-03-05T13:00:00+01:00"},
            "details": {"product": {"productName": "DHL PAKET"}},
            "events": [
                _ev("2025-03-05T07:42:00+01:00", "transit",
                    "The shipment has been loaded onto the delivery vehicle", bonn,
                    description="The shipment has been loaded onto the delivery vehicle"),
                _ev("2025-03-04T21:12:00+01:00", "transit",
                    "The shipment has been processed in the parcel center",
                    _place("DE", "Köln")),
                _ev("2025-03-03T18:01:00+01:00", "pre-transit",
                    "The instruction data for this shipment have been provided by the sender "
                    "to DHL electronically", _place("DE", "Hamburg")),
            ],
        },
        DELIVERED: {
            "id": DELIVERED,
            "service": "parcel-de",
            "destination": _place("DE", "Bonn", "53113"),
            "status": _ev("2025-03-05T11:21:00+01:00", "delivered",
                          "The shipment has been delivered to the recipient", bonn),
            "details": {"product": {"productName": "DHL PAKET"},
                        "proofOfDelivery": {"timestamp": "2025-03-05T11:21:00+01:00",
                                            "signed": {"name": "J. Doe"}}},
            "events": [
                _ev("2025-03-05T11:21:00+01:00", "delivered",
                    "The shipment has been delivered to the recipient", bonn),
                _ev("2025-03-05T07:40:00+01:00", "transit",
                    "The shipment has been loaded onto the delivery vehicle", bonn),
            ],
        },
    }


def _utc_today() -> date:
    return datetime.now(UTC).date()


def _problem(status: int, title: str, detail: str, instance: str = "") -> web.Response:
    body: dict[str, Any] = {"title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    return web.json_response(body, status=status, content_type=_PROBLEM,
                             headers={"Content-Language": "en"})


@dataclass
class Exchange:
    """One request/response pair as it went over the wire."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int = 0
    response_body: bytes = b""
    response_type: str = ""


@dataclass
class _Failure:
    status: int
    retry_after: str | None
    times: int | None


@dataclass
class FakeDhl:
    """The fake's state; `app()` serves it. The quota day is `today()` (UTC)."""

    api_key: str = API_KEY
    daily_quota: int = 250
    today: Callable[[], date] = field(default_factory=lambda: _utc_today)
    shipments: dict[str, dict[str, Any]] = field(default_factory=default_shipments)
    calls: Counter[str] = field(default_factory=Counter)
    exchanges: list[Exchange] = field(default_factory=list)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    base_url: str = ""  # set by the test after serve(), used for `self` links
    _quota_day: date | None = None
    _quota_used: int = 0
    _failure: _Failure | None = None

    def fail(self, status: int, *, retry_after: str | None = None,
             times: int | None = None) -> None:
        """Answer API calls with `status` (e.g. 429, 503), `times` times or until recover()."""
        self._failure = _Failure(status, retry_after, times)

    def recover(self) -> None:
        """Stop failing."""
        self._failure = None

    def quota_left(self) -> int:
        """Tracking calls left today."""
        return self.daily_quota - (self._quota_used if self._quota_day == self.today() else 0)

    def app(self) -> web.Application:
        """The aiohttp app to run with tests.fakes.serve()."""
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/track/shipments", self._track)
        app.router.add_post("/tracking/push/v1/subscription", self._subscribe)
        app.router.add_post("/tracking/push/v1/subscription/{id}", self._activate)
        return app

    @web.middleware
    async def _record(self, req: web.Request, handler: Any) -> web.StreamResponse:
        exchange = Exchange(req.method, req.path, dict(req.query), dict(req.headers),
                            await req.read())
        self.exchanges.append(exchange)
        self.calls[req.path] += 1
        failure = self._failure
        if failure is not None:
            if failure.times is not None:
                failure.times -= 1
                if failure.times <= 0:
                    self._failure = None
            resp: web.StreamResponse = _problem(failure.status, "Service failure",
                                                f"Simulated HTTP {failure.status}")
            if failure.retry_after:
                resp.headers["Retry-After"] = failure.retry_after
        elif req.headers.get("DHL-API-Key") != self.api_key:
            resp = _problem(401, "Unauthorized", "Invalid or missing API key (DHL-API-Key).")
        else:
            resp = await handler(req)
        exchange.status = resp.status
        exchange.response_body = resp.body if isinstance(resp, web.Response) else b""
        exchange.response_type = resp.content_type
        return resp

    async def _track(self, req: web.Request) -> web.Response:
        day = self.today()
        if self._quota_day != day:
            self._quota_day, self._quota_used = day, 0
        if self._quota_used >= self.daily_quota:
            midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
            wait = max(1, int((midnight - datetime.now(UTC)).total_seconds()))
            resp = _problem(429, "Too Many Requests", "Daily quota exceeded.")
            resp.headers["Retry-After"] = str(wait)
            return resp
        self._quota_used += 1
        number = req.query.get("trackingNumber", "")
        service = req.query.get("service")
        if not number or (service is not None and service not in _SERVICES):
            return _problem(400, "Bad Request", "trackingNumber is required; service must be "
                            "one of the documented services.")
        shipment = self.shipments.get(number)
        if shipment is None:
            return _problem(404, "No result found", "No shipment with given tracking number found.",
                            f"/shipment/{number}")
        return web.json_response({"shipments": [copy.deepcopy(shipment)]},
                                 headers={"Content-Language": "en"})

    async def _subscribe(self, req: web.Request) -> web.Response:
        try:
            body = json.loads(await req.read())
        except ValueError:
            body = None
        problem = _subscription_problem(body)
        if problem:
            return _problem(400, "Bad Request", problem)
        subscription_id = secrets.token_hex(8)
        self.subscriptions[subscription_id] = {**body, "id": subscription_id, "active": False,
                                               "hookSecret": secrets.token_urlsafe(24)}
        return web.json_response(
            {"id": subscription_id, "self": self._self(subscription_id)}, status=201)

    async def _activate(self, req: web.Request) -> web.Response:
        sub = self.subscriptions.get(req.match_info["id"])
        if sub is None:
            return _problem(404, "Not Found", "Unknown subscription.")
        given = req.headers.get("DHL-API-Hook-Secret", "")
        if not secrets.compare_digest(given, sub["hookSecret"]):
            return _problem(403, "Forbidden", "DHL-API-Hook-Secret does not match.")
        sub["active"] = True
        return web.Response(status=204)

    def _self(self, subscription_id: str) -> str:
        return f"{self.base_url}/tracking/push/v1/subscription/{subscription_id}"

    # --- pushes to the subscriber's hook ------------------------------------------------------

    async def _post_hook(self, session: aiohttp.ClientSession, sub: dict[str, Any],
                         message: dict[str, Any], token: str | None) -> int:
        auth = sub["hook"].get("authentication") or {}
        headers = {"Content-Type": "application/json"}
        if auth.get("header"):
            headers[auth["header"]] = auth.get("token", "") if token is None else token
        async with session.post(sub["hook"]["uri"], data=json.dumps(message).encode(),
                                headers=headers) as resp:
            return resp.status

    async def send_validation(self, session: aiohttp.ClientSession, subscription_id: str, *,
                              token: str | None = None) -> int:
        """Post `subscription.validate` (with the hook secret) to the subscription's hook."""
        sub = self.subscriptions[subscription_id]
        message = {"scope": "subscription.validate", "self": self._self(subscription_id),
                   "secret": sub["hookSecret"]}
        return await self._post_hook(session, sub, message, token)

    async def push(self, session: aiohttp.ClientSession, number: str, *,
                   token: str | None = None) -> int:
        """Push the current shipment to the active subscription that covers `number`.

        `token` replaces the registered header token (to forge a push).
        """
        sub = next(s for s in self.subscriptions.values()
                   if number in s.get("shipmentIDs", ()) and s["active"])
        message = {"scope": "subscription.push", "self": self._self(sub["id"]),
                   "shipments": [copy.deepcopy(self.shipments[number])]}
        return await self._post_hook(session, sub, message, token)


def _subscription_problem(body: Any) -> str:
    if not isinstance(body, dict):
        return "body must be a JSON object"
    hook = body.get("hook")
    if not isinstance(hook, dict) or not str(hook.get("uri", "")).startswith(("http://",
                                                                               "https://")):
        return "hook.uri must be a URL"
    auth = hook.get("authentication")
    if auth is not None and (not isinstance(auth, dict)
                             or auth.get("type") != "ApiKeyAuthentication"
                             or not auth.get("header") or not auth.get("token")):
        return "hook.authentication must be ApiKeyAuthentication with header and token"
    if body.get("type") not in ("Shipment", "Account") or not body.get("service"):
        return "type must be Shipment or Account, and service is required"
    events = body.get("events")
    if not isinstance(events, list) or not events:
        return "events must be a non-empty list"
    if body["type"] == "Shipment":
        ids = body.get("shipmentIDs")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 10 or not all(
                isinstance(i, str) and i for i in ids):
            return "shipmentIDs must list 1-10 tracking numbers"
    return ""
