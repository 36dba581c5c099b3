"""A fake PostNL ShippingStatus v2 server on localhost.

It answers with the recorded PostNL responses (shared/fixtures/carriers/postnl, MIT) for their
barcodes, with generated bodies of the same shape for added ones, and with PostNL's recorded
"No shipment found" body for anything else. An unknown `apikey` gets the API gateway's 401.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from tests.paths import shared

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
STATUS_RECORDINGS = ("completestatus.http", "completestatus2.http", "completestatus3.http",
                     "currentstatus.http", "currentstatus2.http", "currentstatus3.http")
NOT_FOUND_RECORDING = "nocurrentshipments.http"


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded HTTP response: status, headers, raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


def recording(name: str) -> Path:
    """Path of a recorded PostNL ShippingStatus v2 response."""
    return shared("carriers", "postnl", "shippingstatus_v2", name)


def load_recorded(path: Path) -> Recorded:
    """Read a `.http` recording: status line, headers, blank line, body."""
    raw = path.read_bytes().replace(b"\r\n", b"\n")
    head, _, body = raw.partition(b"\n\n")
    status_line, *header_lines = head.decode("latin-1").split("\n")
    headers = dict(line.split(": ", 1) for line in header_lines if ": " in line)
    return Recorded(int(status_line.split()[1]), headers, body.strip())


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """What the fake received (the API key itself is not kept)."""

    barcode: str
    query: Mapping[str, str]
    had_apikey: bool


@dataclass
class FakePostnl:
    """PostNL's status endpoint with switchable outages and request counting."""

    api_key: str = "fake-postnl-key"
    answers: dict[str, Recorded] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    requests: list[SeenRequest] = field(default_factory=list)
    outage: int | None = None  # e.g. 429 or 503: every call fails with it
    retry_after: str | None = None  # sent with the outage when set

    def add_recorded(self, name: str) -> str:
        """Serve a recorded status response for its own barcode; return that barcode."""
        answer = load_recorded(recording(name))
        root = answer.json().get("CompleteStatus") or answer.json().get("CurrentStatus")
        barcode = root["Shipment"]["Barcode"]
        self.answers[barcode] = answer
        return barcode

    def add_shipment(self, barcode: str, *, status: tuple[str, str, str, str],
                     events: Iterable[tuple[str, str, datetime]] = (),
                     eta: tuple[datetime, datetime] | None = None,
                     status_at: datetime | None = None) -> dict[str, Any]:
        """Serve a generated CompleteStatus body.

        `status` is (StatusCode, StatusDescription, PhaseCode, PhaseDescription), stamped
        `status_at` (default now); events are (Code, Description, aware time) and are written
        newest first, as PostNL does.
        """
        ordered = sorted(events, key=lambda e: e[2], reverse=True)
        body = {"CompleteStatus": {"Shipment": {
            "MainBarcode": barcode, "Barcode": barcode,
            "ShipmentAmount": "1", "ShipmentCounter": "1",
            "ProductCode": "003085", "ProductDescription": "Standard shipment",
            "Reference": {},
            "Event": [{"Code": code, "Description": text, "DestinationLocationCode": {},
                       "LocationCode": "888888", "RouteCode": {}, "RouteName": {},
                       "TimeStamp": postnl_time(when)} for code, text, when in ordered],
            "Expectation": ({"ETAFrom": eta[0].astimezone(AMSTERDAM).strftime("%Y-%m-%dT%H:%M:%S"),
                             "ETATo": eta[1].astimezone(AMSTERDAM).strftime("%Y-%m-%dT%H:%M:%S")}
                            if eta else {}),
            "Status": {"TimeStamp": postnl_time(status_at or datetime.now(AMSTERDAM)), "StatusCode": status[0],
                       "StatusDescription": status[1], "PhaseCode": status[2],
                       "PhaseDescription": status[3]},
        }}}
        self.answers[barcode] = Recorded(200, {"Content-Type": "application/json"},
                                         json.dumps(body).encode())
        return body

    def app(self) -> web.Application:
        """The aiohttp app to hand to `tests.fakes.serve`."""
        app = web.Application()
        app.router.add_get("/shipment/v2/status/barcode/{barcode}", self._status)
        return app

    async def _status(self, request: web.Request) -> web.Response:
        barcode = request.match_info["barcode"]
        self.hits[barcode] += 1
        self.requests.append(SeenRequest(barcode, dict(request.query),
                                         "apikey" in request.headers))
        if request.headers.get("apikey") != self.api_key:
            return web.json_response({"fault": {
                "faultstring": "Invalid ApiKey",
                "detail": {"errorcode": "oauth.v2.InvalidApiKey"}}}, status=401)
        if self.outage:
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return web.json_response({"fault": {"faultstring": "Service unavailable"}},
                                     status=self.outage, headers=headers)
        answer = self.answers.get(barcode) or load_recorded(recording(NOT_FOUND_RECORDING))
        return web.Response(status=answer.status, body=answer.body, headers={
            "Content-Type": answer.headers.get("Content-Type", "application/json")})


def postnl_time(when: datetime) -> str:
    """PostNL's zone-less 'DD-MM-YYYY HH:MM:SS' in Amsterdam wall-clock time."""
    return when.astimezone(AMSTERDAM).strftime("%d-%m-%Y %H:%M:%S")
