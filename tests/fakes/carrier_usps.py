"""FakeUsps: USPS OAuth 2.0 v3, Tracking 3.2 and Subscriptions-Tracking 3.2 on localhost.

Speaks the wire format of the USPS specs in shared/fixtures/carriers/usps: JSON token grants
with expiring bearer tokens, `POST /tracking/v3r2/tracking` with 1-35 numbers answering 200,
207 multi-status (or a 404 ErrorMessage for a single unknown number), 401 with
`WWW-Authenticate`, switchable 429 (with `Retry-After`) and 5xx, request counting, and signed
Subscriptions-Tracking callbacks (`X-HMAC` = Base64(HMAC-SHA256(secret, timestamp + payload)),
`payload` being a JSON string). Every exchange is recorded so tests can check it against the spec.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

CLIENT_ID = "fake-usps-client-id"
CLIENT_SECRET = "fake-usps-client-secret"
OUT_FOR_DELIVERY = "9400100000000000000001"
DELIVERED = "9400100000000000000002"
CUSTOMS_DUTIES = "CP123456785US"

_JSON = "application/json"
_RESOURCE_PATHS = ("/tracking/v3r2/tracking", "/subscriptions-tracking/v3r2/subscriptions")
_NUMBER = re.compile(r"[A-Za-z0-9]{4,34}")


def _event(code: str | None, text: str, local: str, gmt: str, offset: str, city: str,
           state: str | None, zip_code: str | None, country: str) -> dict[str, Any]:
    event = {"eventType": text, "eventTimestamp": local, "GMTTimestamp": gmt,
             "GMTOffset": offset, "eventCity": city, "eventCountry": country}
    if code:
        event["eventCode"] = code
    if state:
        event["eventState"] = state
    if zip_code:
        event["eventZIPCode"] = zip_code
    return event


def default_parcels() -> dict[str, dict[str, Any]]:
    """TrackingDetail bodies (events newest first, as USPS sends them)."""
    return {
        OUT_FOR_DELIVERY: {
            "trackingNumber": OUT_FOR_DELIVERY,
            "mailClass": "Priority Mail<SUP>&reg;</SUP>",
            "mailClassCode": "PM",
            "mailType": "DM",
            "originCity": "ORLANDO", "originState": "FL", "originZIPCode": "32801",
            "destinationCity": "DETROIT", "destinationState": "MI", "destinationZIPCode": "48226",
            "destinationCountry": "US",
            "status": "Out for Delivery",
            "statusCategory": "Out for Delivery",
            "statusSummary": "Your item is out for delivery on February 7, 2025 at 8:10 am in "
                             "DETROIT, MI 48226.",
            "deliveryDateExpectation": {
                "expectedDeliveryDate": "2025-02-07",
                "predictedDeliveryDate": "2025-02-07",
                "predictedDeliveryWindowStartTime": "12:15pm",
                "predictedDeliveryWindowEndTime": "3:15pm",
            },
            "trackingEvents": [
                _event("OF", "Out for Delivery", "2025-02-07T08:10:00-05:00",
                       "2025-02-07T13:10:00Z", "-5:00", "DETROIT", "MI", "48226", "US"),
                _event("07", "Arrived at Post Office", "2025-02-07T05:32:00-05:00",
                       "2025-02-07T10:32:00Z", "-5:00", "DETROIT", "MI", "48226", "US"),
                _event("10", "Arrived at USPS Regional Facility", "2025-02-06T22:15:00-05:00",
                       "2025-02-07T03:15:00Z", "-5:00", "DETROIT MI DISTRIBUTION CENTER", "MI",
                       None, "US"),
                _event("03", "USPS in possession of item", "2025-02-05T14:03:00-05:00",
                       "2025-02-05T19:03:00Z", "-5:00", "ORLANDO", "FL", "32801", "US"),
                _event("MA", "Shipping Label Created, USPS Awaiting Item",
                       "2025-02-04T09:00:00-05:00", "2025-02-04T14:00:00Z", "-5:00", "ORLANDO",
                       "FL", "32801", "US"),
            ],
        },
        DELIVERED: {
            "trackingNumber": DELIVERED,
            "mailClass": "Priority Mail<SUP>&reg;</SUP>",
            "mailType": "DM",
            "destinationCity": "LOS ANGELES", "destinationState": "CA",
            "destinationZIPCode": "90012",
            "status": "Delivered, Front Door/Porch",
            "statusCategory": "Delivered",
            "statusSummary": "Your item was delivered at the front door or porch at 12:55 pm on "
                             "February 10, 2025 in LOS ANGELES, CA 90012.",
            "trackingEvents": [
                _event("01", "Delivered, Front Door/Porch", "2025-02-10T12:55:00-08:00",
                       "2025-02-10T20:55:00Z", "-8:00", "LOS ANGELES", "CA", "90012", "US"),
                _event("OF", "Out for Delivery", "2025-02-10T07:02:00-08:00",
                       "2025-02-10T15:02:00Z", "-8:00", "LOS ANGELES", "CA", "90012", "US"),
                _event("03", "USPS in possession of item", "2025-02-07T16:20:00-05:00",
                       "2025-02-07T21:20:00Z", "-5:00", "NEW YORK", "NY", "10001", "US"),
            ],
        },
        CUSTOMS_DUTIES: {
            "trackingNumber": CUSTOMS_DUTIES,
            "mailClass": "Priority Mail International<SUP>&reg;</SUP>",
            "mailType": "International Outbound",
            "destinationCity": "LONDON", "destinationCountry": "GB",
            "status": "Held in Customs",
            "statusCategory": "Alert",
            "statusSummary": "Your item is being held in customs in LONDON, UNITED KINGDOM.",
            "trackingEvents": [
                # USPS relays partner events for international items; no Pub 199 code is sent.
                _event(None, "Held in Customs - Import duties and taxes of GBP 12.40 due from "
                             "the addressee", "2025-02-12T09:40:00+00:00",
                       "2025-02-12T09:40:00Z", "0:00", "LONDON", None, None, "GB"),
                _event(None, "Customs Clearance", "2025-02-11T18:05:00+00:00",
                       "2025-02-11T18:05:00Z", "0:00", "LONDON", None, None, "GB"),
                _event("10", "Processed Through Facility", "2025-02-09T02:10:00-05:00",
                       "2025-02-09T07:10:00Z", "-5:00", "ISC NEW YORK NY(USPS)", "NY", None,
                       "US"),
                _event("03", "USPS in possession of item", "2025-02-08T11:00:00-05:00",
                       "2025-02-08T16:00:00Z", "-5:00", "NEW YORK", "NY", "10001", "US"),
            ],
        },
    }


def _error(status: int, message: str, title: str = "", detail: str = "") -> dict[str, Any]:
    """The spec's ErrorMessage shape."""
    error: dict[str, Any] = {"code": str(status), "message": message}
    if title or detail:
        error["errors"] = [{"status": str(status), "code": f"{status:04d}",
                            "title": title or message, "detail": detail or message}]
    return {"apiVersion": "v3r2", "error": error}


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
class FakeUsps:
    """The fake's state; `app()` serves it. Tokens expire on the fake's `clock`."""

    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    token_lifetime: int = 28799  # USPS: eight hours minus a second
    clock: Callable[[], float] = time.monotonic
    parcels: dict[str, dict[str, Any]] = field(default_factory=default_parcels)
    calls: Counter[str] = field(default_factory=Counter)
    exchanges: list[Exchange] = field(default_factory=list)
    tracked: list[list[str]] = field(default_factory=list)  # numbers per tracking request
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry on `clock`
    refuse_all_tokens: bool = False
    _failure: _Failure | None = None

    # --- switches ---------------------------------------------------------------------------

    def fail(self, status: int, *, retry_after: str | None = None,
             times: int | None = None) -> None:
        """Answer resource calls with `status` (e.g. 429, 503), `times` times or until recover()."""
        self._failure = _Failure(status, retry_after, times)

    def recover(self) -> None:
        """Stop failing."""
        self._failure = None

    def revoke_tokens(self) -> None:
        """Forget every issued token, as after a key rotation: the next call gets a 401."""
        self.tokens.clear()

    # --- the app ----------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp app to run with tests.fakes.serve()."""
        app = web.Application(middlewares=[self._record])
        app.router.add_post("/oauth2/v3/token", self._token)
        app.router.add_post("/tracking/v3r2/tracking", self._track)
        app.router.add_post("/subscriptions-tracking/v3r2/subscriptions", self._subscribe)
        return app

    @web.middleware
    async def _record(self, req: web.Request, handler: Any) -> web.StreamResponse:
        exchange = Exchange(req.method, req.path, dict(req.query), dict(req.headers),
                            await req.read())
        self.exchanges.append(exchange)
        self.calls[req.path] += 1
        failure = self._failure
        if failure is not None and req.path in _RESOURCE_PATHS:
            if failure.times is not None:
                failure.times -= 1
                if failure.times <= 0:
                    self._failure = None
            headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
            resp: web.StreamResponse = web.json_response(
                _error(failure.status, "Too Many Requests" if failure.status == 429
                       else "Service Unavailable"), status=failure.status, headers=headers)
        else:
            resp = await handler(req)
        exchange.status = resp.status
        exchange.response_body = resp.body if isinstance(resp, web.Response) else b""
        exchange.response_type = resp.content_type
        return resp

    async def _token(self, req: web.Request) -> web.Response:
        if req.content_type == _JSON:
            try:
                form = json.loads(await req.read())
            except ValueError:
                form = None
        else:
            form = dict(await req.post())
        if not isinstance(form, dict) or form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type",
                                      "error_description": "client_credentials only"}, status=400)
        good = hmac.compare_digest(str(form.get("client_id", "")), self.client_id) and \
            hmac.compare_digest(str(form.get("client_secret", "")), self.client_secret)
        if not good:
            return web.json_response(
                {"error": "invalid_client", "error_description": "Client authentication failed"},
                status=401, headers={"WWW-Authenticate": 'Bearer realm="https://api.usps.com"'})
        token = "fake-usps." + secrets.token_urlsafe(24)
        self.tokens[token] = self.clock() + self.token_lifetime
        return web.json_response({
            "access_token": token,
            "token_type": "Bearer",
            "issued_at": int(time.time() * 1000),
            "expires_in": self.token_lifetime,
            "status": "approved",
            "scope": "tracking subscriptions-tracking",
            "issuer": "api.usps.com",
            "client_id": self.client_id,
            "application_name": "Shipmate fake",
        })

    def _unauthorized(self, req: web.Request) -> web.Response | None:
        header = req.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        expiry = self.tokens.get(token)
        if self.refuse_all_tokens or expiry is None or self.clock() >= expiry:
            return web.json_response(
                _error(401, "Unauthorized", "Invalid or expired token",
                       "The access token is missing, invalid or has expired."),
                status=401, headers={"WWW-Authenticate": 'Bearer realm="https://api.usps.com"'})
        return None

    async def _track(self, req: web.Request) -> web.Response:
        if (denied := self._unauthorized(req)) is not None:
            return denied
        try:
            body = json.loads(await req.read())
        except ValueError:
            body = None
        if not _valid_request(body):
            return web.json_response(
                _error(400, "Bad Request", "Invalid tracking request",
                       "Send an array of 1-35 {trackingNumber, mailingDate?, "
                       "destinationZIPCode?} objects."), status=400)
        numbers = [item["trackingNumber"] for item in body]
        self.tracked.append(numbers)
        known = [copy.deepcopy(self.parcels[n]) for n in numbers if n in self.parcels]
        if len(known) == len(numbers):
            return web.json_response(known)
        if len(numbers) == 1:
            return web.json_response(_error(404, _NOT_FOUND), status=404)
        items = []
        for n in numbers:
            if n in self.parcels:
                items.append({"statusCode": "200", **copy.deepcopy(self.parcels[n])})
            else:
                items.append({"statusCode": "404", "trackingNumber": n, **_error(404, _NOT_FOUND)})
        return web.json_response(items, status=207)

    async def _subscribe(self, req: web.Request) -> web.Response:
        if (denied := self._unauthorized(req)) is not None:
            return denied
        try:
            body = json.loads(await req.read())
        except ValueError:
            body = None
        problem = _subscription_problem(body)
        if problem:
            return web.json_response(_error(400, "Bad Request", "Invalid subscription", problem),
                                     status=400)
        subscription_id = secrets.token_hex(8)
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        stored = {**body, "subscriptionId": subscription_id, "status": "ENABLED",
                  "creationTimestamp": now, "statusChangeTimestamp": now}
        self.subscriptions[subscription_id] = stored
        location = f"/subscriptions-tracking/v3r2/subscriptions/{subscription_id}"
        return web.json_response(stored, status=201,
                                 headers={"Location": location, "ETag": secrets.token_hex(20)})

    # --- pushes -----------------------------------------------------------------------------

    def callback(self, number: str, *, subscription_id: str = "12345678",
                 timestamp: str | None = None) -> dict[str, Any]:
        """A Subscriptions-Tracking notification body for one parcel (payload as a JSON string)."""
        detail = copy.deepcopy(self.parcels[number])
        return {
            "subscriptionId": subscription_id,
            "subscriptionType": "TRACKING",
            "timestamp": timestamp or datetime.now(UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "payload": json.dumps(detail, separators=(",", ":")),
        }

    async def send_webhook(self, session: aiohttp.ClientSession, url: str, number: str, *,
                           secret: str | None = None, tamper: bool = False,
                           signature: str | None = None) -> int:
        """POST a signed notification for `number` to `url`; returns the HTTP status.

        The secret defaults to the one registered for the number's subscription. `tamper`
        changes the payload after signing; `signature` replaces the computed X-HMAC.
        """
        sub = next((s for s in self.subscriptions.values()
                    if s["filterProperties"].get("trackingNumber") == number), None)
        message = self.callback(number, subscription_id=sub["subscriptionId"] if sub else "1")
        key = secret if secret is not None else (sub["secret"] if sub else "")
        digest = hmac.new(key.encode(), (message["timestamp"] + message["payload"]).encode(),
                          hashlib.sha256).digest()
        x_hmac = signature if signature is not None else base64.b64encode(digest).decode()
        if tamper:
            message["payload"] = message["payload"].replace('"status":"', '"status":"Delivered ')
        async with session.post(url, data=json.dumps(message).encode(),
                                headers={"Content-Type": _JSON, "X-HMAC": x_hmac}) as resp:
            return resp.status


_NOT_FOUND = ("The tracking number may be incorrect or the status update is not yet available. "
              "Please verify your tracking number and try again later.")


def _valid_request(body: Any) -> bool:
    if not isinstance(body, list) or not 1 <= len(body) <= 35:
        return False
    for item in body:
        if not isinstance(item, dict) or not set(item) <= {"trackingNumber", "mailingDate",
                                                           "destinationZIPCode"}:
            return False
        if not isinstance(item.get("trackingNumber"), str) or not _NUMBER.fullmatch(
                item["trackingNumber"]):
            return False
    return True


def _subscription_problem(body: Any) -> str:
    if not isinstance(body, dict):
        return "body must be a JSON object"
    url = body.get("listenerURL")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 200:
        return "listenerURL must be a URL of at most 200 characters"
    if not isinstance(body.get("secret"), str) or len(body["secret"]) != 32:
        return "secret must be 32 characters"
    admins = body.get("adminNotification")
    if not isinstance(admins, list) or not 1 <= len(admins) <= 3 or not all(
            isinstance(a, dict) and "@" in str(a.get("email", "")) for a in admins):
        return "adminNotification needs 1-3 e-mail addresses"
    filters = body.get("filterProperties")
    if not isinstance(filters, dict) or not (filters.get("trackingNumber") or filters.get("MID")):
        return "filterProperties needs a trackingNumber or MID"
    allowed = {"ALL_UPDATES", "DELIVERY_ACTIVITY", "PACKAGE_DELAYED"}
    if not set(filters.get("trackingEventTypes", ["ALL_UPDATES"])) <= allowed:
        return "unknown trackingEventTypes"
    return ""
