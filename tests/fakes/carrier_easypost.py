"""A fake EasyPost API on localhost that answers with EasyPost's own recorded bodies.

Trackers are copies of `trackers-retrieve.json` (EasyPost/examples, MIT) with extra tracking
details for the test-mode codes EZ1000000001…EZ7000000007; pushes use the Event envelope of
`fixtures/event-body.json` and are signed like EasyPost signs them: HMAC-SHA256 keyed with the
NFKD-normalised webhook secret, header `X-Hmac-Signature: hmac-sha256-hex=<hex>`.

Supports: Basic auth (401 for a wrong key), tracker create-or-get (201 new / 200 existing),
retrieve by id (404 when unknown), webhook list/create, switchable failures (429 with
Retry-After, 5xx), request counting, and signed pushes to one URL or to every webhook.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import unicodedata
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from tests.paths import shared

EXAMPLES = shared("carriers", "easypost", "examples")
TRACKER_TEMPLATE: dict[str, Any] = json.loads(
    (EXAMPLES / "docs__responses__trackers__trackers-retrieve.json").read_text("utf-8")
)
EVENT_TEMPLATE: dict[str, Any] = json.loads(
    (EXAMPLES / "fixtures__event-body.json").read_text("utf-8")
)

# (status, status_detail, message, datetime, (city, state, zip)) continuing the template's
# two USPS pre_transit details (2025-04-09/10). Messages are USPS wording.
_ORIGIN = ("NORTH HOUSTON", "TX", "77315")
_DEST = ("CHARLESTON", "SC", "29407")
_ROUTE = [
    ("in_transit", "arrived_at_facility", "Arrived at USPS Regional Origin Facility",
     "2025-04-11T03:02:17Z", _ORIGIN),
    ("in_transit", "departed_facility", "Departed USPS Regional Facility",
     "2025-04-11T20:45:17Z", _ORIGIN),
    ("in_transit", "arrived_at_destination", "Arrived at USPS Regional Destination Facility",
     "2025-04-13T06:12:17Z", _DEST),
    ("out_for_delivery", "out_for_delivery", "Out for Delivery",
     "2025-04-14T12:31:17Z", ("CHARLESTON", "SC", "29401")),
]
_DELIVERED = ("delivered", "arrived_at_destination", "Delivered, In/At Mailbox",
              "2025-04-14T18:40:17Z", ("CHARLESTON", "SC", "29401"))
_RETURNED = ("return_to_sender", "return", "Return to Sender Processed",
             "2025-04-14T09:10:17Z", _DEST)
_FAILED = ("failure", "delivery_exception", "Delivery Attempted - No Access to Delivery Location",
           "2025-04-14T16:02:17Z", ("CHARLESTON", "SC", "29401"))

# EasyPost test mode: the code decides the synthetic history. EZ1 (pre_transit) and EZ4
# (delivered) are confirmed by fixtures; the rest follows carrier_data.md §1.5 (from memory).
TEST_CODES: dict[str, list[tuple[Any, ...]] | None] = {
    "EZ1000000001": [],
    "EZ2000000002": _ROUTE[:3],
    "EZ3000000003": _ROUTE[:4],
    "EZ4000000004": [*_ROUTE, _DELIVERED],
    "EZ5000000005": [*_ROUTE[:3], _RETURNED],
    "EZ6000000006": [*_ROUTE, _FAILED],
    "EZ7000000007": None,  # status unknown, no details
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tracking_detail(status: str, status_detail: str, message: str, when: str,
                    place: tuple[str | None, str | None, str | None] = (None, None, None), *,
                    carrier_code: str = "", source: str = "USPS",
                    country: str | None = None) -> dict[str, Any]:
    """A TrackingDetail in EasyPost's shape (as in trackers-retrieve.json)."""
    city, state, zip_code = place
    return {
        "object": "TrackingDetail", "message": message, "description": "",
        "status": status, "status_detail": status_detail, "datetime": when,
        "source": source, "carrier_code": carrier_code,
        "tracking_location": {"object": "TrackingLocation", "city": city, "state": state,
                              "country": country, "zip": zip_code},
        "est_delivery_date": None,
    }


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "errors": []}},
                             status=status, headers=headers)


class FakeEasyPost:
    """In-memory EasyPost: trackers, webhooks, failures to inject, and a request log."""

    def __init__(self, *, api_key: str = "EZTK_fake_0123456789abcdef", webhook_secret: str = "sécret") -> None:
        self.api_key = api_key
        self.webhook_secret = webhook_secret  # used by push() when no webhook was created
        self.trackers: dict[str, dict[str, Any]] = {}  # trk_ id -> Tracker JSON
        self.webhooks: list[dict[str, Any]] = []
        self.webhook_secrets: dict[str, str] = {}  # hook_ id -> secret (never returned by the API)
        self.invalid_codes: set[str] = set()  # create answers 422 for these
        self.calls: list[tuple[str, str]] = []  # (method, path) of every request
        self._failures: list[tuple[int, str | None]] = []
        self.app = web.Application(middlewares=[self._gate()])
        self.app.router.add_post("/v2/trackers", self._create)
        self.app.router.add_get("/v2/trackers/{id}", self._retrieve)
        self.app.router.add_get("/v2/webhooks", self._list_webhooks)
        self.app.router.add_post("/v2/webhooks", self._create_webhook)

    # --- test controls -------------------------------------------------------------------

    def fail(self, status: int, *, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next `times` requests with `status` (429 may carry Retry-After)."""
        self._failures.extend([(status, retry_after)] * times)

    def count(self, method: str, path_prefix: str = "") -> int:
        """How many requests with this method (and path prefix) arrived."""
        return sum(1 for m, p in self.calls if m == method and p.startswith(path_prefix))

    def seed(self, tracker: dict[str, Any]) -> str:
        """Store a recorded Tracker payload as if EasyPost already had it; returns its id."""
        stored = copy.deepcopy(tracker)
        stored.setdefault("id", f"trk_{uuid.uuid4().hex}")
        self.trackers[stored["id"]] = stored
        return stored["id"]

    def find(self, code: str) -> dict[str, Any] | None:
        """The tracker for a tracking code, if one exists."""
        return next((t for t in self.trackers.values() if t.get("tracking_code") == code), None)

    def delete(self, code: str) -> None:
        """Remove a tracker server-side (as DELETE /v2/trackers/:id would)."""
        tracker = self.find(code)
        if tracker is not None:
            del self.trackers[tracker["id"]]

    def update(self, code: str, detail: dict[str, Any], *, est_delivery_date: str | None = None) -> str:
        """Append a TrackingDetail, move the tracker's status with it; returns the old status."""
        tracker = self.find(code)
        if tracker is None:
            raise KeyError(code)
        previous = tracker["status"]
        tracker["tracking_details"].append(detail)
        tracker["status"], tracker["status_detail"] = detail["status"], detail["status_detail"]
        tracker["updated_at"] = _now()
        if est_delivery_date is not None:
            tracker["est_delivery_date"] = est_delivery_date
        return previous

    def event_body(self, code: str, *, previous_status: str | None = None,
                   description: str = "tracker.updated") -> bytes:
        """The raw bytes EasyPost would POST: an Event wrapping the current Tracker."""
        tracker = self.find(code)
        if tracker is None:
            raise KeyError(code)
        event = copy.deepcopy(EVENT_TEMPLATE)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        event.update(
            id=f"evt_{uuid.uuid4().hex}", description=description, mode=tracker.get("mode", "test"),
            previous_attributes={"status": previous_status} if previous_status else {},
            created_at=stamp, updated_at=stamp, user_id="user_fake", result=copy.deepcopy(tracker),
        )
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def sign(self, body: bytes, secret: str | None = None) -> str:
        """The X-Hmac-Signature value for a body."""
        key = unicodedata.normalize("NFKD", self.webhook_secret if secret is None else secret)
        return "hmac-sha256-hex=" + hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()

    async def push(self, session: aiohttp.ClientSession, url: str, code: str, *,
                   previous_status: str | None = None, secret: str | None = None,
                   body: bytes | None = None) -> int:
        """POST a signed tracker.updated Event to url; returns the receiver's HTTP status.

        `secret` signs with another secret (a forgery); `body` sends other bytes under the
        signature of the genuine body (a tampered payload).
        """
        genuine = self.event_body(code, previous_status=previous_status)
        headers = {"Content-Type": "application/json", "X-Hmac-Signature": self.sign(genuine, secret)}
        async with session.post(url, data=genuine if body is None else body, headers=headers) as resp:
            return resp.status

    async def deliver(self, session: aiohttp.ClientSession, code: str, *,
                      previous_status: str | None = None) -> list[int]:
        """Send the Event to every enabled webhook, each signed with its own secret."""
        return [
            await self.push(session, hook["url"], code, previous_status=previous_status,
                            secret=self.webhook_secrets.get(hook["id"], ""))
            for hook in self.webhooks if not hook.get("disabled_at")
        ]

    # --- wire ----------------------------------------------------------------------------

    def _gate(self) -> Any:
        @web.middleware
        async def gate(request: web.Request, handler: Any) -> web.StreamResponse:
            self.calls.append((request.method, request.path))
            if self._failures:
                status, retry_after = self._failures.pop(0)
                if status == 429:
                    return _error(429, "RATE_LIMITED", "Too many requests, please slow down.",
                                  {"Retry-After": retry_after} if retry_after else None)
                return _error(status, "INTERNAL_SERVER_ERROR", "We're sorry, something went wrong.")
            try:
                login = aiohttp.BasicAuth.decode(request.headers.get("Authorization", "")).login
            except ValueError:
                login = ""
            if not hmac.compare_digest(login.encode(), self.api_key.encode()):
                return _error(401, "APIKEY.INACTIVE", "This api key is no longer active. Please use "
                              "a different api key or reactivate this key.")
            return await handler(request)

        return gate

    def _new_tracker(self, code: str) -> dict[str, Any]:
        tracker = copy.deepcopy(TRACKER_TEMPLATE)
        tracker_id = f"trk_{uuid.uuid4().hex}"
        tracker.update(id=tracker_id, tracking_code=code, created_at=_now(), updated_at=_now(),
                       public_url=f"https://track.easypost.com/fake/{tracker_id}")
        history = TEST_CODES.get(code)
        if history is None:  # the carrier has nothing for it (yet)
            tracker.update(status="unknown", status_detail="unknown", tracking_details=[],
                           est_delivery_date=None)
        else:
            for status, detail, message, when, place in history:
                tracker["tracking_details"].append(tracking_detail(status, detail, message, when, place))
            last = tracker["tracking_details"][-1]
            tracker["status"], tracker["status_detail"] = last["status"], last["status_detail"]
        self.trackers[tracker_id] = tracker
        return tracker

    async def _create(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            code = body["tracker"]["tracking_code"]
        except (ValueError, KeyError, TypeError):
            return _error(422, "PARAMETER.REQUIRED", "Missing required parameter: tracking_code.")
        if code in self.invalid_codes:
            # The exact code string for this case is not in our recordings; the adapter reads
            # only the HTTP status and the message.
            return _error(422, "TRACKER.CREATE.ERROR",
                          f"Unable to create tracker: '{code}' could not be matched to a carrier.")
        existing = self.find(code)
        if existing is not None:  # EasyPost dedupes by tracking_code (+carrier) for 3 months
            return web.json_response(existing, status=200)
        return web.json_response(self._new_tracker(code), status=201)

    async def _retrieve(self, request: web.Request) -> web.Response:
        tracker = self.trackers.get(request.match_info["id"])
        if tracker is None:
            return _error(404, "NOT_FOUND", "The requested resource could not be found.")
        return web.json_response(tracker)

    async def _list_webhooks(self, request: web.Request) -> web.Response:
        return web.json_response({"webhooks": self.webhooks})

    async def _create_webhook(self, request: web.Request) -> web.Response:
        try:
            spec = (await request.json())["webhook"]
            url = spec["url"]
        except (ValueError, KeyError, TypeError):
            return _error(422, "PARAMETER.REQUIRED", "Missing required parameter: url.")
        hook = {"id": f"hook_{uuid.uuid4().hex}", "object": "Webhook", "mode": "test", "url": url,
                "created_at": _now(), "disabled_at": None, "custom_headers": spec.get("custom_headers", [])}
        self.webhooks.append(hook)
        self.webhook_secrets[hook["id"]] = spec.get("webhook_secret") or ""
        return web.json_response(hook, status=201)
