"""FakeFedex: FedEx OAuth and Track API v1 (`/track/v1/trackingnumbers`) on localhost.

Bodies follow shared/fixtures/carriers/fedex/track-api.openapi.json (tests check recorded
exchanges against it). Unknown numbers come back inside a 200 as a per-result `error`, as
FedEx does. Switches: `fail_status` (429 with Retry-After, 5xx), `reject_tokens`,
`expire_tokens()`; `calls` counts requests per route, `batches` keeps each request's numbers.
"""

from __future__ import annotations

import copy
import json
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

CLIENT_ID = "fake-fedex-client-id"
CLIENT_SECRET = "fake-fedex-client-secret"

DELIVERED = "986578788855"
OUT_FOR_DELIVERY = "477179081230"
CUSTOMS_HOLD = "799531274483"
UNKNOWN = "123456789012"
MAX_NUMBERS = 30


def _errors(code: str, message: str) -> dict[str, Any]:
    return {"transactionId": str(uuid.uuid4()), "errors": [{"code": code, "message": message}]}


def _where(city: str, state: str, country: str, name: str) -> dict[str, Any]:
    place = {"city": city, "stateOrProvinceCode": state, "countryCode": country,
             "residential": False, "countryName": name}
    return {k: v for k, v in place.items() if v != ""}


def _scan(date: str, code: str, description: str, place: dict[str, Any], *,
          derived: str | None = None, location_type: str = "FEDEX_FACILITY",
          exception: tuple[str, str] = ("", ""), delay: dict[str, str] | None = None,
          ) -> dict[str, Any]:
    scan: dict[str, Any] = {
        "date": date, "eventType": code, "eventDescription": description,
        "exceptionCode": exception[0], "exceptionDescription": exception[1],
        "scanLocation": place, "locationType": location_type,
        "derivedStatusCode": derived or code, "derivedStatus": description,
    }
    if delay:
        scan["delayDetail"] = delay
    return scan


def default_parcels() -> dict[str, dict[str, Any]]:
    """Three `TrackResult`s: delivered, out for delivery, clearance delay (documents needed)."""
    denver = _where("DENVER", "CO", "US", "United States")
    memphis = _where("MEMPHIS", "TN", "US", "United States")
    charlotte = _where("CHARLOTTE", "NC", "US", "United States")
    seattle = _where("SEATTLE", "WA", "US", "United States")
    koeln = _where("KOELN", "", "DE", "Germany")
    clearance = {"type": "CLEARANCE", "status": "DELAYED"}
    return {
        DELIVERED: {
            "trackingNumberInfo": {"trackingNumber": DELIVERED, "carrierCode": "FDXG",
                                   "trackingNumberUniqueId": f"12029~{DELIVERED}~FDEG"},
            "latestStatusDetail": {"code": "DL", "derivedCode": "DL", "statusByLocale": "Delivered",
                                   "description": "Delivered", "scanLocation": charlotte},
            "dateAndTimes": [
                {"type": "ACTUAL_DELIVERY", "dateTime": "2024-04-23T12:51:00-04:00"},
                {"type": "ACTUAL_PICKUP", "dateTime": "2024-04-22T14:30:00-06:00"},
                {"type": "SHIP", "dateTime": "2024-04-22T00:00:00-06:00"},
            ],
            "scanEvents": [
                _scan("2024-04-23T12:51:00-04:00", "DL", "Delivered", charlotte,
                      location_type="DELIVERY_LOCATION"),
                _scan("2024-04-23T07:04:00-04:00", "OD", "On FedEx vehicle for delivery",
                      charlotte, location_type="VEHICLE"),
                _scan("2024-04-22T23:10:00-05:00", "DP", "Departed FedEx hub", memphis,
                      derived="IT"),
                _scan("2024-04-22T14:30:00-06:00", "PU", "Picked up", denver,
                      location_type="PICKUP_LOCATION"),
                _scan("2024-04-22T09:12:00-06:00", "OC", "Shipment information sent to FedEx",
                      _where("", "", "US", "United States"), location_type="CUSTOMER"),
            ],
            "serviceDetail": {"type": "FEDEX_GROUND", "description": "FedEx Ground",
                              "shortDescription": "FG"},
            "deliveryDetails": {"deliveryAttempts": "0", "locationDescription": "Front Door",
                                "locationType": "RESIDENCE", "receivedByName": ""},
            "estimatedDeliveryTimeWindow": {"window": {}},
        },
        OUT_FOR_DELIVERY: {
            "trackingNumberInfo": {"trackingNumber": OUT_FOR_DELIVERY, "carrierCode": "FDXE",
                                   "trackingNumberUniqueId": f"12029~{OUT_FOR_DELIVERY}~FDEG"},
            "latestStatusDetail": {"code": "OD", "derivedCode": "OD",
                                   "statusByLocale": "On FedEx vehicle for delivery",
                                   "description": "On FedEx vehicle for delivery",
                                   "scanLocation": seattle},
            "dateAndTimes": [
                {"type": "ESTIMATED_DELIVERY", "dateTime": "2024-04-23T16:00:00-07:00"},
                {"type": "ACTUAL_PICKUP", "dateTime": "2024-04-22T14:30:00-06:00"},
            ],
            # `begins` without an offset, as in the spec's own TimeRange example.
            "estimatedDeliveryTimeWindow": {"description": "Estimated delivery window",
                                            "type": "ESTIMATED_DELIVERY",
                                            "window": {"begins": "2024-04-23T12:00:00",
                                                       "ends": "2024-04-23T16:00:00-07:00"}},
            "scanEvents": [
                _scan("2024-04-23T08:02:00-07:00", "OD", "On FedEx vehicle for delivery", seattle,
                      location_type="VEHICLE"),
                _scan("2024-04-23T05:40:00-07:00", "AR", "At local FedEx facility", seattle,
                      derived="IT", location_type="DESTINATION_FEDEX_FACILITY"),
                _scan("2024-04-22T14:30:00-06:00", "PU", "Picked up", denver,
                      location_type="PICKUP_LOCATION"),
            ],
            "serviceDetail": {"type": "FEDEX_2_DAY", "description": "FedEx 2Day",
                              "shortDescription": "2D"},
        },
        CUSTOMS_HOLD: {
            "trackingNumberInfo": {"trackingNumber": CUSTOMS_HOLD, "carrierCode": "FDXE",
                                   "trackingNumberUniqueId": f"12029~{CUSTOMS_HOLD}~FX"},
            "latestStatusDetail": {
                "code": "CD", "derivedCode": "CD", "statusByLocale": "Clearance delay",
                "description": "Clearance delay", "scanLocation": koeln,
                "ancillaryDetails": [{
                    "reason": "IN001",
                    "reasonDescription": "Import documentation is required for clearance",
                    "action": "Send the commercial invoice to FedEx clearance.",
                    "actionDescription": "Recipient must provide documentation",
                }],
                "delayDetail": clearance,
            },
            "dateAndTimes": [{"type": "ESTIMATED_DELIVERY", "dateTime": "2024-04-26"}],
            "scanEvents": [
                _scan("2024-04-24T10:15:00+02:00", "CD", "Clearance delay", koeln,
                      location_type="CUSTOMS_BROKER", delay=clearance,
                      exception=("A25", "Import documentation is required for clearance")),
                _scan("2024-04-24T06:30:00+02:00", "AR", "Arrived at FedEx location", koeln,
                      derived="IT", location_type="PORT_OF_ENTRY"),
                _scan("2024-04-22T23:00:00-05:00", "DP", "Departed FedEx hub", memphis,
                      derived="IT"),
                _scan("2024-04-22T14:30:00-06:00", "PU", "Picked up", denver,
                      location_type="PICKUP_LOCATION"),
            ],
            "serviceDetail": {"type": "INTERNATIONAL_PRIORITY",
                              "description": "FedEx International Priority",
                              "shortDescription": "IP"},
        },
    }


@dataclass
class Exchange:
    """One request the fake answered, kept for assertions and spec checks."""

    method: str
    path: str
    query: dict[str, str]
    headers: list[tuple[str, str]]
    body: bytes
    status: int
    response_headers: dict[str, str]
    response_body: bytes

    def header(self, name: str) -> str:
        """A request header, case-insensitively ('' when absent)."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), "")


@dataclass
class FakeFedex:
    """The fake FedEx: set switches on it, read `calls`/`batches`/`exchanges`. Serve `.app`."""

    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    token_lifetime: int = 3599
    parcels: dict[str, dict[str, Any]] = field(default_factory=default_parcels)
    fail_status: int | None = None  # 429 / 500 / 503 for the track route
    retry_after: str | None = "12"
    reject_tokens: bool = False
    tokens: dict[str, float] = field(default_factory=dict)  # token -> monotonic expiry
    calls: Counter[str] = field(default_factory=Counter)
    batches: list[list[str]] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    app: web.Application = field(init=False)

    def __post_init__(self) -> None:
        self.app = web.Application(middlewares=[self._record])
        self.app.router.add_post("/oauth/token", self._token)
        self.app.router.add_post("/track/v1/trackingnumbers", self._track)

    def expire_tokens(self) -> None:
        """Every issued token is now expired (FedEx answers 401 until a new one is fetched)."""
        for token in self.tokens:
            self.tokens[token] = 0.0

    def exchanges_for(self, route: str) -> list[Exchange]:
        """Recorded exchanges whose path contains `route`."""
        return [e for e in self.exchanges if route in e.path]

    @web.middleware
    async def _record(self, request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
        body = await request.read()
        response = await handler(request)
        assert isinstance(response, web.Response)
        self.exchanges.append(Exchange(
            request.method, request.path, dict(request.query), list(request.headers.items()),
            body, response.status, dict(response.headers), bytes(response.body or b""),
        ))
        return response

    async def _token(self, request: web.Request) -> web.Response:
        self.calls["token"] += 1
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return web.json_response(_errors("BAD.REQUEST.ERROR", "Missing or invalid "
                                             "grant_type."), status=400)
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id,
                                                                  self.client_secret):
            return web.json_response(_errors("NOT.AUTHORIZED.ERROR", "The given client "
                                             "credentials were not valid. Please modify your "
                                             "request and try again."), status=401)
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.monotonic() + self.token_lifetime
        return web.json_response({"access_token": token, "token_type": "bearer",
                                  "expires_in": self.token_lifetime, "scope": "CXS"})

    async def _track(self, request: web.Request) -> web.Response:
        self.calls["track"] += 1
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token not in self.tokens or self.reject_tokens:
            return web.json_response(_errors("NOT.AUTHORIZED.ERROR", "Access token invalid. "
                                             "Please modify your request and try again."),
                                     status=401)
        if self.tokens[token] <= time.monotonic():
            return web.json_response(_errors("NOT.AUTHORIZED.ERROR", "Access token expired. "
                                             "Please modify your request and try again."),
                                     status=401)
        if self.fail_status == 429:
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return web.json_response(_errors("TOO.MANY.REQUESTS.ERROR", "We have received too "
                                             "many requests in a short duration."), status=429,
                                     headers=headers)
        if self.fail_status is not None:
            return web.json_response(_errors("SERVICE.UNAVAILABLE.ERROR", "The service is "
                                             "currently unavailable."), status=self.fail_status)
        try:
            body = json.loads(await request.read())
            numbers = [str(i["trackingNumberInfo"]["trackingNumber"]) for i in body["trackingInfo"]]
        except (ValueError, KeyError, TypeError):
            return web.json_response(_errors("TRACKING.TRACKINGNUMBER.EMPTY",
                                             "Please provide tracking number."), status=400)
        if not numbers or len(numbers) > MAX_NUMBERS:
            return web.json_response(_errors("TRACKING.TRACKINGINFO.LIMIT",
                                             "Maximum limit is 30 tracking numbers."), status=400)
        self.batches.append(numbers)
        return web.json_response({
            "transactionId": str(uuid.uuid4()),
            "customerTransactionId": request.headers.get("x-customer-transaction-id", ""),
            "output": {"completeTrackResults": [self._result(n) for n in numbers]},
        })

    def _result(self, number: str) -> dict[str, Any]:
        parcel = self.parcels.get(number)
        if parcel is not None:
            return {"trackingNumber": number, "trackResults": [copy.deepcopy(parcel)]}
        return {"trackingNumber": number, "trackResults": [{
            "trackingNumberInfo": {"trackingNumber": number, "trackingNumberUniqueId": ""},
            "error": {"code": "TRACKING.TRACKINGNUMBER.NOTFOUND",
                      "message": "Tracking number cannot be found. Please correct the tracking "
                                 "number and try again."},
        }]}
