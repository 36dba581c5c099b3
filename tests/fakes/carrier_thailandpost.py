"""A fake Thailand Post Track API (and webhook product) on localhost.

Wire format as in the developer guide's samples: `Authorization: Token <API key>` buys a
short-lived token at /authenticate/token, /track and /hook take `Authorization: Token <token>`,
answers carry `track_count`, and dates use the Buddhist Era when the request language is TH.
Unknown or expired tokens get the 401 `{"detail": ...}` of the API's token authentication.
The quota is counted per barcode and an exhausted one answers `status: false`: both are this
fake's assumptions, the guide does not say.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
from aiohttp import web

BANGKOK = timezone(timedelta(hours=7))
BE_OFFSET = 543

# code -> (Thai text as the API writes it, English text)
STATUS_TEXT = {
    "101": ("เตรียมการฝากส่ง", "Preparing for shipment"),
    "102": ("รับฝากผ่านตัวแทน", "Accepted by agent"),
    "103": ("รับฝาก", "Accepted at post office"),
    "201": ("อยู่ระหว่างการขนส่ง", "In transit"),
    "202": ("ดำเนินพิธีการศุลกากร", "Customs clearance"),
    "203": ("ส่งคืนต้นทาง", "Return to sender"),
    "204": ("ถึงที่ทำการแลกเปลี่ยนระหว่างประเทศขาออก", "Arrived at outward office of exchange"),
    "205": ("ถึงที่ทำการแลกเปลี่ยนระหว่างประเทศขาเข้า", "Arrived at inward office of exchange"),
    "206": ("ถึงที่ทำการไปรษณีย์", "Arrived at post office"),
    "207": ("เตรียมการขนส่ง", "Preparing for transport"),
    "301": ("อยู่ระหว่างการนำจ่าย", "Out for delivery"),
    "302": ("นำจ่าย ณ จุดรับสิ่งของ", "Available at pickup point"),
    "401": ("นำจ่ายไม่สำเร็จ", "Delivery unsuccessful"),
    "501": ("นำจ่ายสำเร็จ", "Delivered"),
}


def s10(prefix: str, serial: str, country: str = "TH") -> str:
    """A UPU S10 number with its check digit (weights 8,6,4,2,3,5,9,7, mod 11)."""
    total = sum(int(d) * w for d, w in zip(serial, (8, 6, 4, 2, 3, 5, 9, 7), strict=True))
    check = {10: 0, 11: 5}.get(11 - total % 11, 11 - total % 11)
    return f"{prefix}{serial}{check}{country}"


def thai_time(when: datetime, language: str, *, seconds: bool = True) -> str:
    """'DD/MM/YYYY HH:MM[:SS]+07:00' in Bangkok time; Buddhist-Era year for TH."""
    local = when.astimezone(BANGKOK)
    year = local.year + (BE_OFFSET if language == "TH" else 0)
    clock = f"{local:%H:%M:%S}" if seconds else f"{local:%H:%M}"
    return f"{local:%d/%m}/{year} {clock}+07:00"


def thai_date(day: datetime, language: str) -> str:
    """'DD/MM/YYYY' with the era of the language."""
    return thai_time(day, language)[:10]


@dataclass(frozen=True, slots=True)
class FakeScan:
    """One scan of a parcel, stored in CE and rendered per request language."""

    code: str
    when: datetime
    location: str = ""
    postcode: str = ""
    delivery_status: str | None = None
    delivery_description: str | None = None
    receiver_name: str | None = None


DELIVERED = s10("EB", "31505024")
CUSTOMS_HELD = s10("CP", "12345678")
CUSTOMS_CLEARED = s10("CP", "87654321")
LEAP_DAY = s10("RB", "11223344")
UNKNOWN = s10("EE", "99999999")


def sample_parcels() -> dict[str, list[FakeScan]]:
    """Parcels the tests rely on: a delivered one, customs held and cleared, a 29 February scan."""
    def at(*args: int) -> datetime:
        return datetime(*args, tzinfo=BANGKOK)

    return {
        DELIVERED: [
            FakeScan("103", at(2026, 11, 20, 14, 36), "สมุทรปราการ", "10270"),
            FakeScan("201", at(2026, 11, 20, 16, 31, 23), "สมุทรปราการ", "10270"),
            FakeScan("206", at(2026, 11, 22, 9, 19, 37), "จรเข้บัว", "10230"),
            FakeScan("301", at(2026, 11, 22, 9, 34, 54), "จรเข้บัว", "10230"),
            FakeScan("501", at(2026, 11, 22, 10, 15), "จรเข้บัว", "10230", "S",
                     "ผู้รับได้รับสิ่งของเรียบร้อยแล้ว", "Khun Somchai"),
        ],
        CUSTOMS_HELD: [
            FakeScan("103", at(2026, 11, 18, 10, 0), "หลักสี่", "10210"),
            FakeScan("204", at(2026, 11, 19, 8, 0), "ศป.EMS", "10020"),
            FakeScan("202", at(2026, 11, 19, 13, 5), "ศุลกากรไปรษณีย์", "10020"),
        ],
        CUSTOMS_CLEARED: [
            FakeScan("205", at(2026, 11, 17, 6, 0), "ศป.EMS", "10020"),
            FakeScan("202", at(2026, 11, 17, 11, 0), "ศุลกากรไปรษณีย์", "10020"),
            FakeScan("206", at(2026, 11, 19, 9, 0), "บางนา", "10260"),
        ],
        LEAP_DAY: [FakeScan("103", at(2024, 2, 29, 23, 59, 59), "บางรัก", "10500")],
    }


@dataclass
class FakeThailandPost:
    """Token exchange, /track, /hook and a webhook pusher, with switchable outages."""

    api_key: str = "fake-thailandpost-key"
    webhook_secret: str = "fake-thailandpost-hook-key"
    token_lifetime: timedelta = timedelta(days=30)
    track_count_limit: int = 1500
    parcels: dict[str, list[FakeScan]] = field(default_factory=sample_parcels)
    tokens: dict[str, datetime] = field(default_factory=dict)  # token -> expiry
    token_requests: int = 0
    track_requests: list[dict[str, Any]] = field(default_factory=list)
    hook_requests: list[dict[str, Any]] = field(default_factory=list)
    subscriptions: dict[str, str] = field(default_factory=dict)  # barcode -> language
    count_number: int = 0
    outage: int | None = None  # e.g. 429 or 503 for /track and /hook
    retry_after: str | None = None

    def app(self) -> web.Application:
        """The aiohttp app to hand to `tests.fakes.serve` (serves both API hosts' paths)."""
        app = web.Application()
        app.router.add_post("/post/api/v1/authenticate/token", self._token)
        app.router.add_post("/post/api/v1/track", self._track)
        app.router.add_post("/post/api/v1/hook", self._hook)
        return app

    def expire_tokens(self) -> None:
        """Make every issued token invalid on the server (clients still hold them)."""
        past = datetime.now(BANGKOK) - timedelta(seconds=1)
        self.tokens = {token: past for token in self.tokens}

    def item(self, barcode: str, scan: FakeScan, language: str) -> dict[str, Any]:
        """One scan as the API writes it."""
        thai, english = STATUS_TEXT[scan.code]
        delivered = scan.delivery_status is not None
        return {
            "barcode": barcode, "status": scan.code,
            "status_description": thai if language == "TH" else english,
            "status_date": thai_time(scan.when, language),
            "location": scan.location, "postcode": scan.postcode,
            "delivery_status": scan.delivery_status,
            "delivery_description": scan.delivery_description,
            "delivery_datetime": thai_time(scan.when, language) if delivered else None,
            "receiver_name": scan.receiver_name, "signature": None,
            "delivery_officer_name": None, "delivery_officer_tel": None,
            "office_name": None, "office_tel": None, "call_center_tel": "1545",
        }

    def hook_body(self, barcode: str, scans: Iterable[FakeScan] | None = None) -> dict[str, Any]:
        """A push for a subscribed barcode (its newest scan unless given), in its language."""
        language = self.subscriptions.get(barcode, "EN")
        chosen = list(scans) if scans is not None else self.parcels[barcode][-1:]
        return {"items": [self.item(barcode, s, language) for s in chosen],
                "track_datetime": thai_time(datetime.now(BANGKOK), language, seconds=False)}

    async def push(self, session: aiohttp.ClientSession, url: str, barcode: str, *,
                   secret: str | None = None, scans: Iterable[FakeScan] | None = None) -> int:
        """POST a push to our webhook with the bearer key; return the HTTP status we got."""
        key = self.webhook_secret if secret is None else secret
        async with session.post(url, json=self.hook_body(barcode, scans),
                                headers={"Authorization": f"Bearer {key}"}) as resp:
            await resp.read()
            return resp.status

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        if request.headers.get("Authorization") != f"Token {self.api_key}":
            return web.json_response({"detail": "Invalid token."}, status=401)
        token = secrets.token_urlsafe(24)
        expires = datetime.now(BANGKOK) + self.token_lifetime
        self.tokens[token] = expires
        return web.json_response({"expire": f"{expires:%Y-%m-%d %H:%M:%S}+07:00",
                                  "token": token})

    def _refusal(self, request: web.Request) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expires = self.tokens.get(token) if scheme == "Token" else None
        if expires is None or expires <= datetime.now(BANGKOK):
            return web.json_response({"detail": "Invalid token."}, status=401)
        if self.outage:
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return web.json_response({"detail": "Service unavailable"}, status=self.outage,
                                     headers=headers)
        return None

    def _track_count(self, language: str) -> dict[str, Any]:
        return {"track_date": thai_date(datetime.now(BANGKOK), language),
                "count_number": self.count_number, "track_count_limit": self.track_count_limit}

    async def _track(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        body = await request.json()
        self.track_requests.append(body)
        language = str(body.get("language", "TH")).upper()
        barcodes = [str(b) for b in body.get("barcode", [])]
        if self.count_number + len(barcodes) > self.track_count_limit:
            return web.json_response({"response": None, "message": "Track count limit exceeded",
                                      "status": False})
        self.count_number += len(barcodes)
        items = {b: [self.item(b, s, language) for s in self.parcels.get(b, [])]
                 for b in barcodes}
        return web.json_response({"response": {"items": items,
                                               "track_count": self._track_count(language)},
                                  "message": "successful", "status": True})

    async def _hook(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        body = await request.json()
        self.hook_requests.append(body)
        language = str(body.get("language", "TH")).upper()
        results = []
        for barcode in map(str, body.get("barcode", [])):
            known = barcode in self.parcels
            if known:
                self.subscriptions[barcode] = language
            results.append({"barcode": barcode, "status": known})
        return web.json_response({"response": {"items": results,
                                               "track_count": self._track_count(language)},
                                  "message": "successful", "status": True})
