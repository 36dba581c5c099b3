"""Thailand Post: Buddhist-Era parsing, status table, token exchange, batches, quota, webhooks."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

import aiohttp
import pytest
from aiohttp import web

from carriers import Carrier, PushCarrier
from carriers.model import (
    CarrierAuthError,
    CarrierError,
    Credentials,
    CustomsStage,
    ProblemKind,
    Status,
    TimestampPolicy,
    TrackingSnapshot,
    WebhookError,
)
from carriers.thailandpost import (
    CREDENTIALS,
    DEFAULT_BASE_URL,
    LIMITS,
    NAME,
    TIMESTAMP_POLICY,
    ThailandPostCarrier,
    TrackQuota,
    map_status,
    parse,
    parse_hook,
    parse_quota,
    thai_time,
    token_lifetime,
)
from tests.fakes import serve
from tests.fakes.carrier_thailandpost import (
    CUSTOMS_CLEARED,
    CUSTOMS_HELD,
    DELIVERED,
    LEAP_DAY,
    UNKNOWN,
    FakeScan,
    FakeThailandPost,
    s10,
)

ICT = timezone(timedelta(hours=7))
FETCHED = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def item(barcode: str, code: str, stamp: str, *, text: str = "", location: str = "บางนา",
         postcode: str = "10260", **extra: object) -> dict[str, object]:
    """One /track item in the API's shape."""
    return {"barcode": barcode, "status": code, "status_description": text or f"status {code}",
            "status_date": stamp, "location": location, "postcode": postcode,
            "delivery_status": None, "delivery_description": None, "delivery_datetime": None,
            "receiver_name": None, "signature": None, **extra}


def answer(items: dict[str, list[dict[str, object]]], *, track_date: str = "22/11/2569",
           count: int = 3, limit: int = 1500) -> dict[str, object]:
    """A /track answer."""
    return {"response": {"items": items, "track_count": {
        "track_date": track_date, "count_number": count, "track_count_limit": limit}},
        "message": "successful", "status": True}


def test_module_declarations() -> None:
    assert NAME == "thailandpost"
    assert DEFAULT_BASE_URL == "https://trackapi.thailandpost.co.th"
    assert CREDENTIALS == ("api_key", "webhook_secret")
    assert (LIMITS.batch_size, LIMITS.per_day, LIMITS.supports_push) == (100, 1000, True)
    assert TIMESTAMP_POLICY is TimestampPolicy.AWARE


# --- dates: Buddhist Era -> CE ---------------------------------------------------------------

@pytest.mark.parametrize(("text", "language", "expected"), [
    ("22/11/2569 10:15:00+07:00", "TH", datetime(2026, 11, 22, 10, 15, tzinfo=ICT)),
    ("22/11/2026 10:15:00+07:00", "EN", datetime(2026, 11, 22, 10, 15, tzinfo=ICT)),
    ("19/07/2562 18:12:26+07:00", "TH", datetime(2019, 7, 19, 18, 12, 26, tzinfo=ICT)),
    ("29/02/2567 23:59:59+07:00", "TH", datetime(2024, 2, 29, 23, 59, 59, tzinfo=ICT)),  # leap
    ("10/09/2562 10:17+07:00", "TH", datetime(2019, 9, 10, 10, 17, tzinfo=ICT)),  # push format
    ("01/01/2570 00:00:00+07:00", "TH", datetime(2026, 12, 31, 17, 0, tzinfo=UTC)),
    ("31/12/2025 23:30:00+07:00", "CN", datetime(2025, 12, 31, 16, 30, tzinfo=UTC)),
    ("30/05/2563", "TH", datetime(2020, 5, 30, tzinfo=ICT)),  # track_date
])
def test_thai_time(text: str, language: str, expected: datetime) -> None:
    when = thai_time(text, language)
    assert when == expected
    assert when.utcoffset() == timedelta(hours=7)


def test_year_in_the_other_era_is_read_by_its_range(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="carriers.thailandpost"):
        assert thai_time("22/11/2569 10:15:00+07:00", "EN") == datetime(
            2026, 11, 22, 10, 15, tzinfo=ICT)
        assert thai_time("22/11/2026 10:15:00+07:00", "TH") == datetime(
            2026, 11, 22, 10, 15, tzinfo=ICT)
    assert len([r for r in caplog.records if "does not match language" in r.message]) == 2


@pytest.mark.parametrize("text", ["", "2026-11-22 10:15:00+07:00", "22/11/69 10:15"])
def test_thai_time_rejects_other_shapes(text: str) -> None:
    with pytest.raises(ValueError):
        thai_time(text, "TH")


# --- status table ----------------------------------------------------------------------------

@pytest.mark.parametrize(("code", "status", "customs"), [
    ("101", Status.PENDING, CustomsStage.NONE),
    ("102", Status.PICKED_UP, CustomsStage.NONE),
    ("103", Status.PICKED_UP, CustomsStage.NONE),
    ("201", Status.IN_TRANSIT, CustomsStage.NONE),
    ("202", Status.IN_TRANSIT, CustomsStage.PROCESSING),
    ("203", Status.RETURN_TO_SENDER, CustomsStage.NONE),
    ("204", Status.IN_TRANSIT, CustomsStage.NONE),
    ("205", Status.IN_TRANSIT, CustomsStage.NONE),
    ("206", Status.IN_TRANSIT, CustomsStage.NONE),
    ("207", Status.IN_TRANSIT, CustomsStage.NONE),
    ("301", Status.OUT_FOR_DELIVERY, CustomsStage.NONE),
    ("302", Status.READY_FOR_PICKUP, CustomsStage.NONE),
    ("401", Status.DELIVERY_FAILED, CustomsStage.NONE),
    ("501", Status.DELIVERED, CustomsStage.NONE),
    ("999", Status.UNKNOWN, CustomsStage.NONE),
])
def test_map_status(code: str, status: Status, customs: CustomsStage) -> None:
    assert map_status(code) == (status, customs)


# --- parse() ---------------------------------------------------------------------------------

def test_parse_thai_answer() -> None:
    payload = answer({
        DELIVERED: [
            item(DELIVERED, "103", "20/11/2569 14:36:00+07:00", text="รับฝาก",
                 location="สมุทรปราการ", postcode="10270"),
            item(DELIVERED, "301", "22/11/2569 09:34:54+07:00", text="อยู่ระหว่างการนำจ่าย"),
            item(DELIVERED, "501", "22/11/2569 10:15:00+07:00", text="นำจ่ายสำเร็จ",
                 delivery_status="S", delivery_description="ผู้รับได้รับสิ่งของเรียบร้อยแล้ว",
                 delivery_datetime="22/11/2569 10:15:00+07:00", receiver_name="Khun Somchai"),
        ],
        UNKNOWN: [],
    })
    report = parse(payload, fetched_at=FETCHED, language="TH",
                   barcodes=[DELIVERED, UNKNOWN, "EF000000005TH"])
    snap = report.snapshots[DELIVERED]
    assert (snap.carrier, snap.status, snap.raw_code, snap.raw_text) == (
        "thailandpost", Status.DELIVERED, "501", "นำจ่ายสำเร็จ")
    assert [e.timestamp for e in snap.events] == [
        datetime(2026, 11, 20, 14, 36, tzinfo=ICT),
        datetime(2026, 11, 22, 9, 34, 54, tzinfo=ICT),
        datetime(2026, 11, 22, 10, 15, tzinfo=ICT),
    ]
    first, last = snap.events[0], snap.events[-1]
    assert (first.location, first.country, first.status) == ("สมุทรปราการ", "TH",
                                                             Status.PICKED_UP)
    assert last.description == "นำจ่ายสำเร็จ: ผู้รับได้รับสิ่งของเรียบร้อยแล้ว"
    assert "Somchai" not in last.description  # the receiver's name is not carried along
    assert snap.fetched_at == FETCHED
    assert {k: p.kind for k, p in report.problems.items()} == {
        UNKNOWN: ProblemKind.NOT_FOUND, "EF000000005TH": ProblemKind.NOT_FOUND}


def test_events_are_sorted_oldest_first() -> None:
    payload = answer({DELIVERED: [
        item(DELIVERED, "206", "22/11/2026 09:19:37+07:00"),
        item(DELIVERED, "201", "20/11/2026 16:31:23+07:00"),
    ]})
    snap = parse(payload, fetched_at=FETCHED).snapshots[DELIVERED]
    assert [e.raw_code for e in snap.events] == ["201", "206"]


@pytest.mark.parametrize(("codes", "status", "customs"), [
    (["204", "202"], Status.IN_TRANSIT, CustomsStage.PROCESSING),
    (["205", "202", "206"], Status.IN_TRANSIT, CustomsStage.RELEASED),
    (["205", "202", "206", "501"], Status.DELIVERED, CustomsStage.NONE),
    (["103", "201"], Status.IN_TRANSIT, CustomsStage.NONE),
])
def test_customs_stage(codes: list[str], status: Status, customs: CustomsStage) -> None:
    events = [item(CUSTOMS_HELD, code, f"1{n}/11/2026 10:00:00+07:00")
              for n, code in enumerate(codes)]
    snap = parse(answer({CUSTOMS_HELD: events}), fetched_at=FETCHED).snapshots[CUSTOMS_HELD]
    assert (snap.status, snap.customs) == (status, customs)
    assert [e.customs for e in snap.events] == [
        CustomsStage.PROCESSING if code == "202" else CustomsStage.NONE for code in codes]


def test_pickup_point_and_overseas_postcode() -> None:
    payload = answer({DELIVERED: [
        item(DELIVERED, "204", "20/11/2026 08:00:00+07:00", location="Overseas",
             postcode="99999"),
        item(DELIVERED, "302", "22/11/2026 11:00:00+07:00", location="ไปรษณีย์บางนา"),
    ]})
    snap = parse(payload, fetched_at=FETCHED).snapshots[DELIVERED]
    assert (snap.status, snap.pickup_location) == (Status.READY_FOR_PICKUP, "ไปรษณีย์บางนา")
    assert [e.country for e in snap.events] == ["", "TH"]


@pytest.mark.parametrize("payload", [
    {"response": None, "message": "Track count limit exceeded", "status": False},
    {"response": {}, "message": "successful", "status": True},
    ["not", "an", "object"],
])
def test_refused_or_malformed_answer_raises(payload: object) -> None:
    with pytest.raises(CarrierError):
        parse(payload, fetched_at=FETCHED)


def test_malformed_date_is_a_carrier_error() -> None:
    payload = answer({DELIVERED: [item(DELIVERED, "501", "2026-11-22T10:15:00+07:00")]})
    with pytest.raises(CarrierError, match="unreadable"):
        parse(payload, fetched_at=FETCHED)


def test_parse_quota() -> None:
    quota = parse_quota(answer({}, track_date="30/05/2563", count=6, limit=1000), language="TH")
    assert quota == TrackQuota(date(2020, 5, 30), 6, 1000)
    assert quota.allows(994) and not quota.allows(995)
    assert TrackQuota(date(2020, 5, 30), 10, 0).allows(10_000)  # no limit reported
    assert parse_quota({"status": True, "response": {"items": {}}}) is None


def test_token_lifetime() -> None:
    now = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)  # 10:00 in Bangkok
    assert token_lifetime("2026-12-01 10:00:00+07:00", now=now) == 86400
    assert token_lifetime("2026-11-29 10:00:00+07:00", now=now) == 0
    assert token_lifetime(None, now=now) == 3600


def test_parse_hook_groups_by_barcode() -> None:
    payload = {"items": [
        item(DELIVERED, "301", "22/11/2569 09:34+07:00"),
        item(CUSTOMS_HELD, "202", "22/11/2569 09:40+07:00"),
        item(DELIVERED, "501", "22/11/2569 10:15+07:00"),
    ], "track_datetime": "22/11/2569 10:16+07:00"}
    snaps = {s.tracking_number: s for s in parse_hook(payload, fetched_at=FETCHED,
                                                      language="TH")}
    assert snaps[DELIVERED].status is Status.DELIVERED
    assert snaps[DELIVERED].last_event is not None
    assert snaps[DELIVERED].last_event.timestamp == datetime(2026, 11, 22, 10, 15, tzinfo=ICT)
    assert snaps[CUSTOMS_HELD].customs is CustomsStage.PROCESSING


# --- the adapter against the fake ------------------------------------------------------------

@dataclass
class FakeClock:
    """A monotonic clock the test moves by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    fake: FakeThailandPost
    url: str
    session: aiohttp.ClientSession
    clock: FakeClock

    def carrier(self, *, language: str = "EN", api_key: str | None = None,
                webhook_secret: str | None = None) -> ThailandPostCarrier:
        values = {"api_key": self.fake.api_key if api_key is None else api_key,
                  "webhook_secret": (self.fake.webhook_secret if webhook_secret is None
                                     else webhook_secret)}
        return ThailandPostCarrier(self.session, Credentials(self.url, values),
                                   language=language, clock=self.clock)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    fake = FakeThailandPost()
    async with serve(fake.app()) as url, aiohttp.ClientSession() as session:
        yield Rig(fake, url, session, FakeClock())


async def test_track_in_english(rig: Rig) -> None:
    report = await rig.carrier().track([DELIVERED, UNKNOWN])
    snap = report.snapshots[DELIVERED]
    assert snap.status is Status.DELIVERED
    assert snap.last_event is not None
    assert snap.last_event.timestamp == datetime(2026, 11, 22, 10, 15, tzinfo=ICT)
    assert snap.last_event.raw_text == "Delivered"
    assert report.problems[UNKNOWN].kind is ProblemKind.NOT_FOUND
    assert rig.fake.track_requests == [
        {"status": "all", "language": "EN", "barcode": [DELIVERED, UNKNOWN]}]


async def test_track_in_thai_converts_buddhist_years(rig: Rig) -> None:
    english = (await rig.carrier().track([DELIVERED])).snapshots[DELIVERED]
    thai = (await rig.carrier(language="TH").track([DELIVERED, LEAP_DAY])).snapshots
    assert rig.fake.track_requests[-1]["language"] == "TH"
    assert [e.timestamp for e in thai[DELIVERED].events] == [
        e.timestamp for e in english.events]
    assert thai[DELIVERED].last_event is not None
    assert thai[DELIVERED].last_event.raw_text == "นำจ่ายสำเร็จ"
    assert thai[LEAP_DAY].events[0].timestamp == datetime(2024, 2, 29, 23, 59, 59, tzinfo=ICT)


async def test_customs_parcels(rig: Rig) -> None:
    snaps = (await rig.carrier().track([CUSTOMS_HELD, CUSTOMS_CLEARED])).snapshots
    assert (snaps[CUSTOMS_HELD].status, snaps[CUSTOMS_HELD].customs, snaps[CUSTOMS_HELD].raw_code
            ) == (Status.IN_TRANSIT, CustomsStage.PROCESSING, "202")
    assert snaps[CUSTOMS_CLEARED].customs is CustomsStage.RELEASED


async def test_token_is_cached_and_refreshed_before_expiry(rig: Rig) -> None:
    rig.fake.token_lifetime = timedelta(hours=1)
    carrier = rig.carrier()
    await carrier.track([DELIVERED])
    await carrier.track([DELIVERED])
    assert rig.fake.token_requests == 1
    rig.clock.now += 3600 - 30  # inside the refresh margin
    await carrier.track([DELIVERED])
    assert rig.fake.token_requests == 2
    assert len(rig.fake.track_requests) == 3


async def test_token_revoked_on_the_server_is_fetched_again(rig: Rig) -> None:
    carrier = rig.carrier()
    await carrier.track([DELIVERED])
    rig.fake.expire_tokens()
    report = await carrier.track([DELIVERED])
    assert report.snapshots[DELIVERED].status is Status.DELIVERED
    assert rig.fake.token_requests == 2


async def test_refused_api_key_is_an_auth_error(rig: Rig) -> None:
    with pytest.raises(CarrierAuthError) as info:
        await rig.carrier(api_key="wrong").track([DELIVERED])
    assert info.value.status == 401
    assert rig.fake.token_requests == 1 and not rig.fake.track_requests


async def test_token_refused_twice_is_an_auth_error(rig: Rig) -> None:
    rig.fake.token_lifetime = timedelta(seconds=-1)  # every token is dead on arrival
    with pytest.raises(CarrierAuthError):
        await rig.carrier().track([DELIVERED])
    assert rig.fake.token_requests == 2


async def test_rate_limit_carries_retry_after(rig: Rig) -> None:
    rig.fake.outage, rig.fake.retry_after = 429, "12"
    with pytest.raises(CarrierError) as info:
        await rig.carrier().track([DELIVERED])
    assert not isinstance(info.value, CarrierAuthError)
    assert (info.value.status, info.value.retry_after) == (429, 12.0)


async def test_server_error_is_a_carrier_error(rig: Rig) -> None:
    rig.fake.outage = 502
    with pytest.raises(CarrierError) as info:
        await rig.carrier().track([DELIVERED])
    assert (info.value.status, info.value.retry_after) == (502, None)


async def test_batches_of_one_hundred_and_quota_tracking(rig: Rig) -> None:
    numbers = [s10("EE", f"{n:08d}") for n in range(230)]
    carrier = rig.carrier()
    report = await carrier.track(numbers)
    assert [len(r["barcode"]) for r in rig.fake.track_requests] == [100, 100, 30]
    assert len(report.problems) == 230 and not report.snapshots
    assert rig.fake.token_requests == 1
    assert carrier.quota is not None
    assert (carrier.quota.used, carrier.quota.limit) == (230, 1500)
    assert carrier.limits.per_day == 1500  # the live figure replaces the default


async def test_used_up_quota_is_not_spent_again(rig: Rig) -> None:
    rig.fake.track_count_limit = 3
    carrier = rig.carrier()
    await carrier.track([DELIVERED, CUSTOMS_HELD, CUSTOMS_CLEARED])
    with pytest.raises(CarrierError, match="quota") as info:
        await carrier.track([DELIVERED])
    assert len(rig.fake.track_requests) == 1
    assert info.value.retry_after is not None and 0 < info.value.retry_after <= 86400


async def test_quota_refusal_by_the_server(rig: Rig) -> None:
    rig.fake.count_number = rig.fake.track_count_limit
    with pytest.raises(CarrierError, match="Track count limit exceeded"):
        await rig.carrier().track([DELIVERED])


@pytest.mark.parametrize(("number", "expected"), [
    (DELIVERED, True),
    ("EB315050240TH", True),
    ("EB315050241TH", False),  # wrong check digit
    (s10("EB", "31505024", "NL"), False),
    ("3SABCD1234567", False),
])
def test_recognizes(rig: Rig, number: str, expected: bool) -> None:
    assert rig.carrier().recognizes(number) is expected


def test_is_a_push_carrier(rig: Rig) -> None:
    carrier = rig.carrier()
    assert isinstance(carrier, Carrier) and isinstance(carrier, PushCarrier)
    with pytest.raises(ValueError):
        rig.carrier(language="FR")


# --- webhooks --------------------------------------------------------------------------------

def receiver(carrier: ThailandPostCarrier, got: list[TrackingSnapshot]
             ) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Our side of the webhook: verify, then parse (what the bot's handler does)."""
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            carrier.verify_webhook(dict(request.headers), body)
        except WebhookError:
            return web.Response(status=401)
        got.extend(carrier.parse_webhook(body))
        return web.Response(status=200)
    return handle


@pytest.mark.parametrize("language", ["EN", "TH"])
async def test_subscribe_then_push(rig: Rig, language: str,
                                   caplog: pytest.LogCaptureFixture) -> None:
    carrier = rig.carrier(language=language)
    got: list[TrackingSnapshot] = []
    app = web.Application()
    app.router.add_post("/hooks/thailandpost", receiver(carrier, got))
    async with serve(app) as ours:
        callback = ours + "/hooks/thailandpost"
        with caplog.at_level(logging.WARNING, logger="carriers.thailandpost"):
            await carrier.subscribe([DELIVERED, UNKNOWN], callback)
        assert rig.fake.hook_requests == [{"status": "all", "language": language,
                                           "barcode": [DELIVERED, UNKNOWN],
                                           "req_previous_status": True}]
        assert rig.fake.subscriptions == {DELIVERED: language}
        assert UNKNOWN in caplog.text
        assert await rig.fake.push(rig.session, callback, DELIVERED) == 200
        assert await rig.fake.push(rig.session, callback, DELIVERED, secret="forged") == 401
    assert len(got) == 1
    assert (got[0].tracking_number, got[0].status) == (DELIVERED, Status.DELIVERED)
    assert got[0].events[0].timestamp == datetime(2026, 11, 22, 10, 15, tzinfo=ICT)


async def test_push_of_a_customs_scan(rig: Rig) -> None:
    carrier = rig.carrier(language="TH")
    await carrier.subscribe([CUSTOMS_HELD], "https://bot.example/hooks/thailandpost")
    body = rig.fake.hook_body(CUSTOMS_HELD)
    raw = json.dumps(body).encode()
    carrier.verify_webhook({"authorization": f"Bearer {rig.fake.webhook_secret}"}, raw)
    [snap] = carrier.parse_webhook(raw)
    assert (snap.status, snap.customs) == (Status.IN_TRANSIT, CustomsStage.PROCESSING)
    assert snap.events[0].timestamp == datetime(2026, 11, 19, 13, 5, tzinfo=ICT)


@pytest.mark.parametrize(("headers", "body", "secret"), [
    ({}, b'{"items": []}', None),
    ({"Authorization": "Bearer forged"}, b'{"items": []}', None),
    ({"Authorization": "Token fake-thailandpost-hook-key"}, b'{"items": []}', None),
    ({"Authorization": "Bearer fake-thailandpost-hook-key"}, b"not json", None),
    ({"Authorization": "Bearer fake-thailandpost-hook-key"}, b'{"foo": 1}', None),
    ({"Authorization": "Bearer "}, b'{"items": []}', ""),  # no secret configured
])
def test_verify_webhook_rejects(rig: Rig, headers: dict[str, str], body: bytes,
                                secret: str | None) -> None:
    with pytest.raises(WebhookError):
        rig.carrier(webhook_secret=secret).verify_webhook(headers, body)


def test_unreadable_push_is_a_webhook_error(rig: Rig) -> None:
    with pytest.raises(WebhookError):
        rig.carrier().parse_webhook(b'{"items": [{"barcode": "EB315050240TH", '
                                    b'"status": "501", "status_date": "yesterday"}]}')


async def test_hook_outage_is_a_carrier_error(rig: Rig) -> None:
    rig.fake.outage = 503
    with pytest.raises(CarrierError) as info:
        await rig.carrier().subscribe([DELIVERED], "https://bot.example/hooks/thailandpost")
    assert info.value.status == 503


def test_fake_scan_is_stored_in_ce() -> None:
    scan = FakeScan("501", datetime(2026, 11, 22, 10, 15, tzinfo=ICT))
    assert FakeThailandPost().item(DELIVERED, scan, "TH")["status_date"] == (
        "22/11/2569 10:15:00+07:00")
