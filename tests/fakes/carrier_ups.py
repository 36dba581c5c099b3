"""FakeUps: UPS OAuth, Track API v1 and Track Alert v2 on localhost, in UPS's wire format.

Shapes follow the fixtures in shared/fixtures/carriers/ups (Tracking.yaml, UPSTrackAlert.yaml,
OAuthClientCredentials.yaml); tests check recorded exchanges against those specs. Switches:
`fail_status` (429 with Retry-After, 5xx), `reject_tokens`, `expire_tokens()`; `calls` counts
requests per route. `push_alert()` plays UPS calling our webhook with the bearer credential.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

CLIENT_ID = "fake-ups-client-id"
CLIENT_SECRET = "fake-ups-client-secret"
WEBHOOK_CREDENTIAL = "fake-ups-webhook-credential"

DELIVERED = "1Z5R89390357567127"
OUT_FOR_DELIVERY = "1Z879E930346834440"
CUSTOMS_HOLD = "1Z410E7W0392751591"
UNKNOWN = "1Z999AA10123456784"

_ALERT_NUMBER = re.compile(r"(1Z[0-9A-Z]{16}|1R[0-9A-Z]{14}|1R[0-9A-Z]{26})")


def _errors(code: str, message: str) -> dict[str, Any]:
    return {"response": {"errors": [{"code": code, "message": message}]}}


def _activity(kind: str, code: str, description: str, status_code: str, local: tuple[str, str],
              gmt: tuple[str, str, str] | None, city: str = "", state: str = "",
              country: str = "US", postal: str = "") -> dict[str, Any]:
    address = {k: v for k, v in (("city", city), ("stateProvince", state), ("postalCode", postal),
                                 ("countryCode", country), ("country", country)) if v}
    activity: dict[str, Any] = {
        "location": {"address": address, "slic": "0761"},
        "status": {"type": kind, "description": description, "code": code,
                   "statusCode": status_code},
        "date": local[0], "time": local[1],
    }
    if gmt:
        activity.update(gmtDate=gmt[0], gmtTime=gmt[1], gmtOffset=gmt[2])
    return activity


def default_parcels() -> dict[str, dict[str, Any]]:
    """Three Track API `Package`s: delivered, out for delivery, held in customs (duties due)."""
    origin = {"type": "ORIGIN", "name": "SHOP",
              "address": {"city": "ATLANTA", "stateProvince": "GA", "countryCode": "US"}}
    return {
        DELIVERED: {
            "trackingNumber": DELIVERED,
            "currentStatus": {"type": "D", "code": "FS", "description": "Delivered",
                              "simplifiedTextDescription": "Delivered", "statusCode": "011"},
            "activity": [
                _activity("D", "FS", "DELIVERED", "011", ("20240423", "095004"),
                          ("20240423", "135004", "-04:00"), "CHARLOTTE", "NC", postal="28209"),
                _activity("I", "OT", "Out For Delivery Today", "021", ("20240423", "071356"),
                          ("20240423", "111356", "-04:00"), "CHARLOTTE", "NC"),
                _activity("I", "OR", "Origin Scan", "005", ("20240422", "183000"),
                          ("20240422", "223000", "-04:00"), "ATLANTA", "GA"),
                _activity("M", "MP", "Shipper created a label, UPS has not received the package "
                          "yet. ", "003", ("20240422", "101500"), ("20240422", "141500", "-04:00")),
            ],
            "deliveryDate": [{"type": "DEL", "date": "20240423"}],
            "deliveryTime": {"type": "DEL", "endTime": "095004"},
            "deliveryInformation": {"location": "Front Door", "receivedBy": ""},
            "packageAddress": [origin, {"type": "DESTINATION", "name": "CUSTOMER", "address": {
                "city": "CHARLOTTE", "stateProvince": "NC", "countryCode": "US"}}],
            "service": {"code": "003", "description": "UPS Ground", "levelCode": "003"},
            "packageCount": 1,
        },
        OUT_FOR_DELIVERY: {
            "trackingNumber": OUT_FOR_DELIVERY,
            "currentStatus": {"type": "I", "code": "OT", "description": "Out For Delivery Today",
                              "simplifiedTextDescription": "Out for Delivery",
                              "statusCode": "021"},
            "activity": [
                _activity("I", "OT", "Out For Delivery Today", "021", ("20240423", "081500"),
                          ("20240423", "151500", "-07:00"), "SEATTLE", "WA"),
                # UPS writes gmtTime unpadded: "74700" is 07:47:00 GMT (00:47 in Seattle).
                _activity("I", "AR", "Arrived at Facility", "005", ("20240423", "004700"),
                          ("20240423", "74700", "-07:00"), "SEATTLE", "WA"),
                _activity("M", "MP", "Shipper created a label, UPS has not received the package "
                          "yet. ", "003", ("20240421", "090000"), ("20240421", "130000", "-04:00")),
            ],
            "deliveryDate": [{"type": "SDD", "date": "20240423"}],
            "deliveryTime": {"type": "EDW", "startTime": "120000", "endTime": "160000"},
            "packageAddress": [origin, {"type": "DESTINATION", "name": "CUSTOMER", "address": {
                "city": "SEATTLE", "stateProvince": "WA", "countryCode": "US"}}],
            "service": {"code": "002", "description": "UPS 2nd Day Air", "levelCode": "002"},
            "packageCount": 1,
        },
        CUSTOMS_HOLD: {
            "trackingNumber": CUSTOMS_HOLD,
            # UPS's customs activity codes are not in the public spec: the code is illustrative,
            # the English text is what adapters read.
            "currentStatus": {"type": "X", "code": "CH",
                              "description": "Your package is being held in customs. Import "
                                             "duties and taxes are due.",
                              "statusCode": "007"},
            "activity": [
                _activity("X", "CH", "Your package is being held in customs. Import duties and "
                          "taxes are due.", "007", ("20240424", "101500"),
                          ("20240424", "81500", "+02:00"), "KOELN", country="DE"),
                _activity("I", "IP", "Import Scan", "005", ("20240424", "063000"),
                          ("20240424", "43000", "+02:00"), "KOELN", country="DE"),
                _activity("I", "DP", "Departed from Facility", "005", ("20240422", "230000"),
                          ("20240423", "30000", "-04:00"), "LOUISVILLE", "KY"),
                _activity("M", "MP", "Shipper created a label, UPS has not received the package "
                          "yet. ", "003", ("20240422", "101500"), ("20240422", "141500", "-04:00")),
            ],
            "deliveryDate": [{"type": "SDD", "date": "20240426"}],
            "paymentInformation": [{"amount": "23.80", "currency": "EUR", "paid": False,
                                    "id": "3S35571M1L381K5O0P316L0M1R2E6H14"}],
            "packageAddress": [origin, {"type": "DESTINATION", "name": "CUSTOMER", "address": {
                "city": "BERLIN", "countryCode": "DE"}}],
            "service": {"code": "065", "description": "UPS Worldwide Saver", "levelCode": "065"},
            "packageCount": 1,
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
class FakeUps:
    """The fake UPS: set switches on it, read `calls`/`exchanges` back. Serve `.app`."""

    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    token_lifetime: int = 14399
    parcels: dict[str, dict[str, Any]] = field(default_factory=default_parcels)
    fail_status: int | None = None  # 429 / 500 / 503 for the API routes
    retry_after: str | None = "17"
    reject_tokens: bool = False
    tokens: dict[str, float] = field(default_factory=dict)  # token -> monotonic expiry
    calls: Counter[str] = field(default_factory=Counter)
    exchanges: list[Exchange] = field(default_factory=list)
    subscribed: set[str] = field(default_factory=set)
    app: web.Application = field(init=False)

    def __post_init__(self) -> None:
        self.app = web.Application(middlewares=[self._record])
        self.app.router.add_post("/security/v1/oauth/token", self._token)
        self.app.router.add_get("/api/track/v1/details/{inquiryNumber}", self._track)
        self.app.router.add_post("/api/track/{version}/subscription/{type}/package",
                                 self._subscribe)

    def expire_tokens(self) -> None:
        """Every issued token is now expired (UPS answers 401 until a new one is fetched)."""
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
            return web.json_response(_errors("10400", "Invalid/Missing grant type"), status=400)
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = password = ""
        if scheme != "Basic" or (user, password) != (self.client_id, self.client_secret):
            return web.json_response(_errors("10401", "ClientId is Invalid"), status=401)
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.monotonic() + self.token_lifetime
        return web.json_response({
            "token_type": "Bearer", "issued_at": str(int(time.time() * 1000)),
            "client_id": self.client_id, "access_token": token, "scope": "",
            "expires_in": str(self.token_lifetime), "refresh_count": "0", "status": "approved",
        })

    def _refuse(self, request: web.Request) -> web.Response | None:
        """401 for a missing/bad/expired token, then the switchable outage."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.tokens or self.reject_tokens:
            return web.json_response(_errors("250002", "Invalid Authentication Information."),
                                     status=401)
        if self.tokens[token] <= time.monotonic():
            return web.json_response(_errors("251004", "Bearer Token expired (oauth)"),
                                     status=401)
        if self.fail_status == 429:
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return web.json_response(_errors("10429", "Too Many Requests"), status=429,
                                     headers=headers)
        if self.fail_status is not None:
            return web.json_response(_errors("10004", "Something went wrong while processing "
                                             "your request, please try again later"),
                                     status=self.fail_status)
        return None

    async def _track(self, request: web.Request) -> web.Response:
        self.calls["track"] += 1
        refused = self._refuse(request)
        if refused is not None:
            return refused
        if not request.headers.get("transId") or not request.headers.get("transactionSrc"):
            return web.json_response(_errors("VSS002", "Missing transId or transactionSrc"),
                                     status=400)
        number = request.match_info["inquiryNumber"].upper()
        if not 7 <= len(number) <= 34:
            return web.json_response(_errors("151018", "Invalid tracking number"), status=400)
        package = self.parcels.get(number)
        if package is None:
            return web.json_response(_errors("151044", "Tracking Information Not Found"),
                                     status=404)
        return web.json_response({"trackResponse": {"shipment": [
            {"inquiryNumber": number, "package": [copy.deepcopy(package)]},
        ]}})

    async def _subscribe(self, request: web.Request) -> web.Response:
        self.calls["subscribe"] += 1
        refused = self._refuse(request)
        if refused is not None:
            return refused
        if request.match_info["type"] not in ("standard", "enhanced"):
            return web.json_response(_errors("VSS930", "Type is missing or invalid"), status=400)
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.json_response(_errors("VSS110", "Subscription request is empty"),
                                     status=400)
        if not body.get("locale"):
            return web.json_response(_errors("VSS300", "Locale is required."), status=400)
        numbers = body.get("trackingNumberList")
        if not numbers:
            return web.json_response(_errors("VSS200", "Tracking Number List is required."),
                                     status=400)
        if len(numbers) > 100:
            return web.json_response(_errors("VSS220", "You have submitted over 100 tracking "
                                             "numbers which is not allowed."), status=400)
        valid = [n for n in numbers if _ALERT_NUMBER.fullmatch(str(n))]
        invalid = [str(n) for n in numbers if n not in valid]
        if not valid:
            return web.json_response(
                {"invalidTrackingNumbers": invalid,
                 **_errors("VSS210", "The Subscription request should have at least one valid "
                           "tracking number.")}, status=400)
        self.subscribed.update(valid)
        return web.json_response({"validTrackingNumbers": valid,
                                  "invalidTrackingNumbers": invalid})

    def alert_for(self, number: str) -> dict[str, Any]:
        """A Track Alert `TrackingEventRequest` for a parcel's newest activity."""
        package = self.parcels[number]
        newest = package["activity"][0]
        status, address = newest["status"], newest["location"]["address"]
        gmt_offset = newest.get("gmtOffset", "+00:00").replace(":", ".")  # Track Alert: "-04.00"
        event: dict[str, Any] = {
            "trackingNumber": number,
            "localActivityDate": newest["date"], "localActivityTime": newest["time"],
            "activityLocation": {k: v for k, v in (
                ("city", address.get("city")), ("stateProvince", address.get("stateProvince")),
                ("postalCode", address.get("postalCode")), ("country", address.get("countryCode")),
            ) if v},
            "activityStatus": {"type": status["type"], "code": status["code"],
                               "description": status["description"].strip(),
                               "descriptionCode": status["statusCode"]},
            "gmtActivityDate": newest["gmtDate"], "gmtActivityTime": newest["gmtTime"].zfill(6),
            "gmtOffset": gmt_offset,
        }
        for entry in package.get("deliveryDate", []):
            if entry["type"] == "SDD":
                event["scheduledDeliveryDate"] = entry["date"]
            if entry["type"] == "DEL":
                event["actualDeliveryDate"] = entry["date"]
                event["actualDeliveryTime"] = package["deliveryTime"]["endTime"]
        window = package.get("deliveryTime", {})
        if window.get("type") in ("EDW", "CDW", "IDW"):
            event.update(deliveryStartTime=window["startTime"], deliveryEndTime=window["endTime"],
                         deliveryTimeDescription="estimated delivery window")
        return event

    async def push_alert(self, session: aiohttp.ClientSession, url: str,
                         event: dict[str, Any], *, credential: str | None = WEBHOOK_CREDENTIAL,
                         ) -> int:
        """POST a Track Alert event to our webhook the way UPS does; returns the HTTP status."""
        headers = {"User-Agent": "UPSPubSubTrackingService", "x-api-key": self.client_id,
                   "Content-Type": "application/json"}
        if credential is not None:
            headers["Authorization"] = f"Bearer {credential}"
        async with session.post(url, data=json.dumps(event).encode(), headers=headers) as resp:
            return resp.status
