"""UPS adapter: parse() on UPS's own payloads, then the adapter against FakeUps on localhost."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import yaml
from aiohttp import web
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.validation.exceptions import ValidationError
from werkzeug.datastructures import Headers

from carriers import Carrier, PushCarrier, ups
from carriers.model import (
    CarrierAuthError,
    CarrierError,
    Credentials,
    CustomsStage,
    Money,
    ProblemKind,
    Reason,
    Status,
    TimestampPolicy,
    WebhookError,
)
from tests.fakes import carrier_ups as fake_ups
from tests.fakes import serve
from tests.fakes.carrier_ups import Exchange, FakeUps
from tests.paths import shared

pytestmark = pytest.mark.filterwarnings("ignore:Unsupported scheme type:UserWarning")

FETCHED = datetime(2024, 4, 23, 18, 0, tzinfo=UTC)
NEW_YORK = ZoneInfo("America/New_York")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
BERLIN = ZoneInfo("Europe/Berlin")


def offset(hours: float) -> timezone:
    return timezone(timedelta(hours=hours))


# -- specs and recorded payloads ------------------------------------------------------------------

@cache
def spec(name: str) -> OpenAPI:
    """A UPS spec from shared/fixtures. Tracking.yaml has tab characters PyYAML refuses, and the
    published files fail strict spec validation (empty defaults), so load them leniently."""
    text = shared("carriers", "ups", name).read_text().replace("\t", " ")
    return OpenAPI.from_dict(yaml.safe_load(text), config=Config(spec_validator_cls=None))


@cache
def alert_examples() -> dict[str, dict[str, Any]]:
    """The Track Alert webhook examples. BaseLoader keeps every scalar a string: YAML 1.1 would
    read `descriptionCode: 021` as the octal number 17."""
    text = shared("carriers", "ups", "UPSTrackAlert.yaml").read_text()
    raw = yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506 - BaseLoader builds no objects
    examples = raw["webhooks"]["TrackingEvent"]["post"]["requestBody"]["content"][
        "application/json"]["examples"]
    return {key: value["value"] for key, value in examples.items()}


def readme_sample() -> dict[str, Any]:
    path = shared("carriers", "ups", "samples", "track_v1_details_response.readme-sample.json")
    return json.loads(path.read_text())


@dataclass
class SpecRequest:
    host_url: str
    path: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters


@dataclass
class SpecWebhookRequest:
    name: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters


@dataclass
class SpecResponse:
    status_code: int
    content_type: str
    headers: Headers
    data: bytes


def spec_for(path: str) -> OpenAPI:
    if path.startswith("/security/"):
        return spec("OAuthClientCredentials.yaml")
    if "/subscription/" in path:
        return spec("UPSTrackAlert.yaml")
    return spec("Tracking.yaml")


def check_against_spec(exchange: Exchange) -> None:
    """Validate one recorded request and (for documented statuses) its response."""
    headers = Headers(exchange.headers)
    request = SpecRequest(
        "https://onlinetools.ups.com", exchange.path, exchange.method.lower(),
        exchange.body or None, headers.get("Content-Type", "").split(";")[0],
        RequestParameters(query=exchange.query, header=headers),
    )
    api = spec_for(exchange.path)
    api.validate_request(request)
    if exchange.status == 429:
        return  # UPS documents no 429 body for these operations
    response_headers = Headers(list(exchange.response_headers.items()))
    api.validate_response(request, SpecResponse(
        exchange.status, response_headers.get("Content-Type", "").split(";")[0],
        response_headers, exchange.response_body,
    ))


def check_alert_against_spec(event: dict[str, Any]) -> None:
    headers = Headers([("User-Agent", "UPSPubSubTrackingService")])
    spec("UPSTrackAlert.yaml").validate_webhook_request(SpecWebhookRequest(
        "TrackingEvent", "post", json.dumps(event).encode(), "application/json",
        RequestParameters(header=headers),
    ))


# -- module surface -----------------------------------------------------------------------------

def test_module_declares_its_configuration() -> None:
    assert ups.NAME == "ups"
    assert ups.DEFAULT_BASE_URL == "https://onlinetools.ups.com"
    assert ups.CREDENTIALS == ("client_id", "client_secret", "webhook_credential")
    assert ups.LIMITS.batch_size == 1 and ups.LIMITS.supports_push
    assert ups.SUBSCRIBE_BATCH == 100
    assert ups.TIMESTAMP_POLICY is TimestampPolicy.NAIVE_LOCAL


@pytest.mark.parametrize(("number", "expected"), [
    ("1Z5R89390357567127", True),
    ("1z 5r8 939 0357 5671 27", True),
    ("1R12345678912345", True),
    ("1R12345678901234567890123456", True),  # the spec's own 26-char example is too short
    ("K1506235620", True),
    ("1Z5R8939035756712", False),  # one short
    ("986578788855", False),  # FedEx
    ("RB123456785GB", False),  # UPU S10
])
async def test_recognizes_ups_formats(carrier: ups.UpsCarrier, number: str,
                                     expected: bool) -> None:
    assert carrier.recognizes(number) is expected


# -- parse(): Track API payloads -----------------------------------------------------------------

def test_parse_readme_sample() -> None:
    report = ups.parse(readme_sample(), fetched_at=FETCHED)

    assert report.problems == {}
    snapshot = report.snapshots["<Inquiry Number>"]
    assert snapshot.carrier == "ups"
    assert snapshot.status is Status.DELIVERED
    assert (snapshot.raw_code, snapshot.raw_text) == ("F4", "DELIVERED")
    assert snapshot.eta is None and snapshot.fetched_at == FETCHED
    label, delivered = snapshot.events  # oldest first, although UPS lists newest first
    assert (label.raw_code, label.status) == ("MP", Status.PENDING)
    assert label.raw_text == "Shipper created a label, UPS has not received the package yet."
    assert (delivered.raw_code, delivered.status) == ("F4", Status.DELIVERED)
    assert (delivered.location, delivered.country) == ("PARAMUS, NJ", "US")
    # No GMT fields in this sample: local times are placed in New Jersey's zone (EST in January).
    assert delivered.timestamp == datetime(2022, 1, 26, 16, 30, tzinfo=NEW_YORK)
    assert delivered.timestamp.utcoffset() == timedelta(hours=-5)
    assert label.timestamp == datetime(2022, 1, 26, 15, 16, 41, tzinfo=NEW_YORK)


def test_parse_spec_status_example_released_by_customs() -> None:
    status_schema = spec("Tracking.yaml").spec / "components" / "schemas" / "Status"
    with status_schema.open() as schema:
        example = {key: prop["example"] for key, prop in schema["properties"].items()}
    assert example["code"] == "SR" and example["type"] == "X"
    payload = {"trackResponse": {"shipment": [{"inquiryNumber": "1Z5R89390357567127", "package": [
        {"trackingNumber": "1Z5R89390357567127", "currentStatus": example}]}]}}

    snapshot = ups.parse(payload, fetched_at=FETCHED).snapshots["1Z5R89390357567127"]

    assert snapshot.status is Status.IN_TRANSIT
    assert snapshot.customs is CustomsStage.RELEASED
    assert snapshot.raw_text == "Your package was released by the customs agency."


def _activity(**fields: Any) -> dict[str, Any]:
    base = {"status": {"type": "I", "code": "AR", "description": "Arrived at Facility"},
            "location": {"address": {"city": "SEATTLE", "stateProvince": "WA",
                                     "countryCode": "US"}}}
    return base | fields


def _payload(*activities: dict[str, Any], **package: Any) -> dict[str, Any]:
    return {"trackResponse": {"shipment": [{"inquiryNumber": "1Z879E930346834440", "package": [
        {"trackingNumber": "1Z879E930346834440", "activity": list(activities), **package}]}]}}


@pytest.mark.parametrize(("activity", "expected"), [
    # gmtTime unpadded ("74700" = 07:47:00 GMT), offset with a colon (Track API)
    (_activity(date="20240423", time="004700", gmtDate="20240423", gmtTime="74700",
               gmtOffset="-07:00"), datetime(2024, 4, 23, 0, 47, tzinfo=offset(-7))),
    # offset with a dot, as Track Alert writes it
    (_activity(date="20240423", time="091519", gmtDate="20240423", gmtTime="131519",
               gmtOffset="-04.00"), datetime(2024, 4, 23, 9, 15, 19, tzinfo=offset(-4))),
    # no offset: local minus GMT gives it, across midnight
    (_activity(date="20240422", time="230000", gmtDate="20240423", gmtTime="30000"),
     datetime(2024, 4, 22, 23, 0, tzinfo=offset(-4))),
    # half-hour zone
    (_activity(date="20240423", time="143000", gmtDate="20240423", gmtTime="90000"),
     datetime(2024, 4, 23, 14, 30, tzinfo=offset(5.5))),
    # local time only: the state decides (PDT in April)
    (_activity(date="20240423", time="081500"), datetime(2024, 4, 23, 8, 15, tzinfo=LOS_ANGELES)),
])
def test_activity_timestamps(activity: dict[str, Any], expected: datetime) -> None:
    (event,) = ups.parse(_payload(activity), fetched_at=FETCHED).snapshots[
        "1Z879E930346834440"].events
    assert event.timestamp == expected
    assert event.timestamp.utcoffset() == expected.utcoffset()


def test_events_sorted_by_instant_not_by_local_clock() -> None:
    # Louisville 23:00 EDT is earlier than Koeln 06:30 CEST the next morning.
    koeln = _activity(date="20240424", time="063000", gmtDate="20240424", gmtTime="43000",
                      gmtOffset="+02:00", location={"address": {"city": "KOELN",
                                                                "countryCode": "DE"}})
    louisville = _activity(date="20240422", time="230000", gmtDate="20240423", gmtTime="30000",
                           gmtOffset="-04:00")
    undated = _activity(date="", time="")
    events = ups.parse(_payload(koeln, undated, louisville), fetched_at=FETCHED).snapshots[
        "1Z879E930346834440"].events
    assert [e.timestamp.utcoffset() for e in events] == [timedelta(hours=-4), timedelta(hours=2)]


@pytest.mark.parametrize(("delivery_time", "eta", "eta_end"), [
    ({"type": "EDW", "startTime": "120000", "endTime": "160000"},
     datetime(2024, 4, 25, 12, tzinfo=LOS_ANGELES), datetime(2024, 4, 25, 16, tzinfo=LOS_ANGELES)),
    ({"type": "CMT", "endTime": "103000"}, datetime(2024, 4, 25, 10, 30, tzinfo=LOS_ANGELES), None),
    ({"type": "EOD"}, datetime(2024, 4, 25, tzinfo=LOS_ANGELES),
     datetime(2024, 4, 25, 23, 59, 59, tzinfo=LOS_ANGELES)),
])
def test_eta_in_destination_zone(delivery_time: dict[str, str], eta: datetime,
                                 eta_end: datetime | None) -> None:
    payload = _payload(
        _activity(date="20240423", time="081500"),
        deliveryDate=[{"type": "SDD", "date": "20240424"}, {"type": "RDD", "date": "20240425"}],
        deliveryTime=delivery_time,
        packageAddress=[{"type": "DESTINATION", "address": {"stateProvince": "WA",
                                                             "countryCode": "US"}}],
    )
    snapshot = ups.parse(payload, fetched_at=FETCHED).snapshots["1Z879E930346834440"]
    assert (snapshot.eta, snapshot.eta_end) == (eta, eta_end)
    assert snapshot.eta is not None and snapshot.eta.utcoffset() == timedelta(hours=-7)


@pytest.mark.parametrize(("kind", "code", "status_code", "text", "expected"), [
    ("M", "MP", "003", "Shipper created a label", (Status.PENDING, Reason.NONE, CustomsStage.NONE)),
    ("MV", "", "", "Manifest void", (Status.CANCELLED, Reason.NONE, CustomsStage.NONE)),
    ("I", "OR", "005", "Origin Scan", (Status.PICKED_UP, Reason.NONE, CustomsStage.NONE)),
    ("I", "AR", "005", "Arrived at Facility", (Status.IN_TRANSIT, Reason.NONE, CustomsStage.NONE)),
    ("I", "OT", "021", "Out For Delivery Today",
     (Status.OUT_FOR_DELIVERY, Reason.NONE, CustomsStage.NONE)),
    ("D", "F4", "011", "DELIVERED", (Status.DELIVERED, Reason.NONE, CustomsStage.NONE)),
    ("D", "KB", "011", "Delivered to UPS Access Point, awaiting customer pickup",
     (Status.READY_FOR_PICKUP, Reason.NONE, CustomsStage.NONE)),
    ("D", "FS", "011", "The package was picked up by the customer at the UPS Access Point",
     (Status.DELIVERED, Reason.NONE, CustomsStage.NONE)),
    ("X", "SR", "", "Your package was released by the customs agency.",
     (Status.IN_TRANSIT, Reason.NONE, CustomsStage.RELEASED)),
    ("I", "", "", "Your package is being processed by the customs agency",
     (Status.IN_TRANSIT, Reason.NONE, CustomsStage.PROCESSING)),
    ("X", "", "", "Your package is being held in customs. Import duties and taxes are due.",
     (Status.ON_HOLD, Reason.CUSTOMS_DUTIES_UNPAID, CustomsStage.DUTIES_DUE)),
    ("X", "", "", "Customs documentation is required from the receiver",
     (Status.ON_HOLD, Reason.CUSTOMS_DOCUMENTATION, CustomsStage.INFO_REQUIRED)),
    ("X", "", "", "The package is held for customs inspection",
     (Status.ON_HOLD, Reason.CUSTOMS_INSPECTION, CustomsStage.HELD)),
    ("X", "", "", "The receiver was not available for delivery. We'll make a second attempt.",
     (Status.DELIVERY_FAILED, Reason.CONSIGNEE_NOT_HOME, CustomsStage.NONE)),
    ("X", "", "", "Severe weather conditions have delayed delivery",
     (Status.DELAYED, Reason.WEATHER_DELAY, CustomsStage.NONE)),
    ("X", "", "", "The address is incomplete", (Status.ON_HOLD, Reason.INCORRECT_ADDRESS,
                                                CustomsStage.NONE)),
    ("X", "", "", "Returning to sender: the receiver refused the delivery",
     (Status.RETURN_TO_SENDER, Reason.NONE, CustomsStage.NONE)),
    ("U", "", "", "The delivery date has been updated",
     (Status.IN_TRANSIT, Reason.NONE, CustomsStage.NONE)),
    ("U", "", "", "Your delivery has been rescheduled due to a delay",
     (Status.DELAYED, Reason.OPERATIONAL_DELAY, CustomsStage.NONE)),
    ("P", "", "", "Pickup scan", (Status.PICKED_UP, Reason.NONE, CustomsStage.NONE)),
])
def test_classify(kind: str, code: str, status_code: str, text: str,
                  expected: tuple[Status, Reason, CustomsStage]) -> None:
    assert ups.classify(kind, code, status_code, text) == expected


@pytest.mark.parametrize(("payload", "kind", "message"), [
    ({"response": {"errors": [{"code": "151044", "message": "Tracking Information Not Found"}]}},
     ProblemKind.NOT_FOUND, "151044: Tracking Information Not Found"),
    ({"response": {"errors": [{"code": "151018", "message": "Invalid tracking number"}]}},
     ProblemKind.INVALID, "151018: Invalid tracking number"),
    # 200 with a warning instead of packages (UPS-API/api-documentation issue #198)
    ({"trackResponse": {"shipment": [{"inquiryNumber": "1Z999AA10123456784", "warnings": [
        {"code": "TW0001", "message": "Tracking Information Not Found"}]}]}},
     ProblemKind.NOT_FOUND, "TW0001: Tracking Information Not Found"),
])
def test_per_number_errors_are_data(payload: dict[str, Any], kind: ProblemKind,
                                    message: str) -> None:
    report = ups.parse(payload, fetched_at=FETCHED, requested=("1Z999AA10123456784",))
    assert report.snapshots == {}
    problem = report.problems["1Z999AA10123456784"]
    assert (problem.kind, problem.message) == (kind, message)


def test_duties_from_unpaid_payment_but_not_cod() -> None:
    held = {"type": "X", "code": "CH", "description": "Your package is being held in customs"}
    payment = {"amount": "243.5", "currency": "EUR", "paid": False}
    snapshot = ups.parse(_payload(currentStatus=held, paymentInformation=[
        payment | {"type": "COD"}, payment | {"amount": "19.90"}]),
        fetched_at=FETCHED).snapshots["1Z879E930346834440"]
    assert snapshot.duties == Money(Decimal("19.90"), "EUR")
    assert (snapshot.status, snapshot.customs) == (Status.ON_HOLD, CustomsStage.DUTIES_DUE)
    assert snapshot.reason is Reason.CUSTOMS_DUTIES_UNPAID


# -- parse_alert(): Track Alert webhook payloads ---------------------------------------------

def test_parse_alert_out_for_delivery_example() -> None:
    example = alert_examples()["1"]
    check_alert_against_spec(example)

    snapshot = ups.parse_alert(example, received_at=FETCHED)

    assert snapshot.tracking_number == "1Z204W4R0308071865"
    assert snapshot.status is Status.OUT_FOR_DELIVERY  # type I, code OT, descriptionCode 021
    (event,) = snapshot.events
    assert (event.raw_code, event.raw_text) == ("OT", "Out for Delivery")
    assert (event.location, event.country) == ("Charlotte, NC", "US")
    # No gmtOffset in the example: 09:15:19 local vs 13:15:19 GMT gives -04:00.
    assert event.timestamp == datetime(2024, 4, 23, 9, 15, 19, tzinfo=offset(-4))
    assert event.timestamp.utcoffset() == timedelta(hours=-4)
    # "end of day" on the scheduled date, in Charlotte's zone
    assert snapshot.eta == datetime(2024, 4, 23, tzinfo=NEW_YORK)
    assert snapshot.eta_end == datetime(2024, 4, 23, 23, 59, 59, tzinfo=NEW_YORK)
    assert snapshot.fetched_at == FETCHED


def test_parse_alert_delivered_example() -> None:
    example = alert_examples()["2"]
    check_alert_against_spec(example)

    snapshot = ups.parse_alert(example, received_at=FETCHED)

    assert snapshot.status is Status.DELIVERED
    assert (snapshot.raw_code, snapshot.raw_text) == ("FS", "Delivered")
    assert snapshot.events[0].timestamp == datetime(2024, 4, 23, 9, 50, 4, tzinfo=offset(-4))
    assert snapshot.eta is None


def test_parse_alert_dot_offset() -> None:
    example = alert_examples()["1"] | {"gmtOffset": "-04.00", "localActivityTime": "101519"}
    (event,) = ups.parse_alert(example, received_at=FETCHED).events
    # The stated offset wins over the (inconsistent) local time.
    assert event.timestamp == datetime(2024, 4, 23, 9, 15, 19, tzinfo=offset(-4))
    assert event.timestamp.utcoffset() == timedelta(hours=-4)


# -- the adapter against FakeUps -------------------------------------------------------------------

class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeUps:
    return FakeUps()


@pytest.fixture
async def base_url(fake: FakeUps) -> AsyncIterator[str]:
    async with serve(fake.app) as url:
        yield url


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def credentials(base_url: str, **overrides: str) -> Credentials:
    values = {"client_id": fake_ups.CLIENT_ID, "client_secret": fake_ups.CLIENT_SECRET,
              "webhook_credential": fake_ups.WEBHOOK_CREDENTIAL} | overrides
    return Credentials(base_url, values)


@pytest.fixture
def carrier(session: aiohttp.ClientSession, base_url: str, clock: FakeClock) -> ups.UpsCarrier:
    return ups.UpsCarrier(session, credentials(base_url), clock=clock)


def test_carrier_satisfies_push_protocol(carrier: ups.UpsCarrier) -> None:
    assert isinstance(carrier, Carrier) and isinstance(carrier, PushCarrier)
    assert carrier.name == "ups" and carrier.limits is ups.LIMITS


async def test_track_fake_parcels(carrier: ups.UpsCarrier, fake: FakeUps) -> None:
    report = await carrier.track([fake_ups.DELIVERED, fake_ups.OUT_FOR_DELIVERY,
                                  fake_ups.CUSTOMS_HOLD, fake_ups.UNKNOWN])

    delivered = report.snapshots[fake_ups.DELIVERED]
    assert delivered.status is Status.DELIVERED and delivered.eta is None
    assert [e.raw_code for e in delivered.events] == ["MP", "OR", "OT", "FS"]
    assert delivered.events[-1].timestamp == datetime(2024, 4, 23, 9, 50, 4, tzinfo=offset(-4))
    assert delivered.service == "UPS Ground"

    out = report.snapshots[fake_ups.OUT_FOR_DELIVERY]
    assert (out.status, out.raw_code) == (Status.OUT_FOR_DELIVERY, "OT")
    assert (out.eta, out.eta_end) == (datetime(2024, 4, 23, 12, tzinfo=LOS_ANGELES),
                                      datetime(2024, 4, 23, 16, tzinfo=LOS_ANGELES))
    arrived = next(e for e in out.events if e.raw_code == "AR")
    assert arrived.timestamp == datetime(2024, 4, 23, 0, 47, tzinfo=offset(-7))  # gmtTime "74700"

    held = report.snapshots[fake_ups.CUSTOMS_HOLD]
    assert (held.status, held.customs, held.reason) == (
        Status.ON_HOLD, CustomsStage.DUTIES_DUE, Reason.CUSTOMS_DUTIES_UNPAID)
    assert held.duties == Money(Decimal("23.80"), "EUR")
    assert (held.eta, held.eta_end) == (datetime(2024, 4, 26, tzinfo=BERLIN),
                                        datetime(2024, 4, 26, 23, 59, 59, tzinfo=BERLIN))
    assert held.events[-1].country == "DE"

    problem = report.problems[fake_ups.UNKNOWN]
    assert problem.kind is ProblemKind.NOT_FOUND
    assert fake.calls["track"] == 4  # one number per call


async def test_requests_and_responses_match_the_specs(carrier: ups.UpsCarrier,
                                                      fake: FakeUps) -> None:
    await carrier.track([fake_ups.DELIVERED, fake_ups.CUSTOMS_HOLD, fake_ups.UNKNOWN, "1Z1"])
    await carrier.subscribe([fake_ups.DELIVERED, fake_ups.OUT_FOR_DELIVERY], "https://x.test/ups")

    assert {e.status for e in fake.exchanges} == {200, 400, 404}
    for exchange in fake.exchanges:
        check_against_spec(exchange)
    track_calls = fake.exchanges_for("/track/v1/details/")
    trans_ids = [e.header("transId") for e in track_calls]
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in trans_ids)
    assert len(set(trans_ids)) == len(trans_ids)
    assert {e.header("transactionSrc") for e in track_calls} == {"shipmate"}
    assert all(e.query["locale"] == "en_US" for e in track_calls)


def test_spec_check_can_fail() -> None:
    exchange = Exchange("GET", f"/api/track/v1/details/{fake_ups.DELIVERED}", {},
                        [("Authorization", "Bearer t"), ("transactionSrc", "shipmate")],
                        b"", 200, {"Content-Type": "application/json"}, b"{}")
    with pytest.raises(ValidationError, match="transId"):
        check_against_spec(exchange)
    with pytest.raises(ValidationError):  # Track Alert wants "-04.00"
        check_alert_against_spec(alert_examples()["1"] | {"gmtOffset": "-04:00"})


async def test_invalid_number_is_a_problem(carrier: ups.UpsCarrier) -> None:
    report = await carrier.track(["1Z1"])
    assert report.problems["1Z1"].kind is ProblemKind.INVALID


async def test_token_cached_across_calls(carrier: ups.UpsCarrier, fake: FakeUps) -> None:
    await carrier.track([fake_ups.DELIVERED])
    await carrier.track([fake_ups.OUT_FOR_DELIVERY])
    assert fake.calls["token"] == 1
    token = fake.exchanges_for("/oauth/token")[0]
    assert token.header("Authorization").startswith("Basic ")
    assert token.body == b"grant_type=client_credentials"


async def test_token_refreshed_after_expiry(carrier: ups.UpsCarrier, fake: FakeUps,
                                            clock: FakeClock) -> None:
    await carrier.track([fake_ups.DELIVERED])
    clock.now += fake.token_lifetime  # past expiry (minus the cache's safety margin)
    await carrier.track([fake_ups.DELIVERED])
    assert fake.calls["token"] == 2
    first, second = (e.header("Authorization") for e in fake.exchanges_for("/details/"))
    assert first != second


async def test_server_expired_token_is_refetched_once(carrier: ups.UpsCarrier,
                                                      fake: FakeUps) -> None:
    await carrier.track([fake_ups.DELIVERED])
    fake.expire_tokens()
    report = await carrier.track([fake_ups.DELIVERED])
    assert report.snapshots[fake_ups.DELIVERED].status is Status.DELIVERED
    assert (fake.calls["token"], fake.calls["track"]) == (2, 3)


async def test_refused_token_raises_auth_error_after_one_retry(carrier: ups.UpsCarrier,
                                                               fake: FakeUps) -> None:
    fake.reject_tokens = True
    with pytest.raises(CarrierAuthError) as info:
        await carrier.track([fake_ups.DELIVERED])
    assert info.value.status == 401
    assert (fake.calls["token"], fake.calls["track"]) == (2, 2)


async def test_bad_client_secret_is_an_auth_error(session: aiohttp.ClientSession, base_url: str,
                                                  fake: FakeUps) -> None:
    carrier = ups.UpsCarrier(session, credentials(base_url, client_secret="wrong"))
    with pytest.raises(CarrierAuthError):
        await carrier.track([fake_ups.DELIVERED])
    assert fake.calls["track"] == 0


async def test_missing_credentials_are_an_auth_error(session: aiohttp.ClientSession,
                                                     base_url: str, fake: FakeUps) -> None:
    carrier = ups.UpsCarrier(session, Credentials(base_url))
    with pytest.raises(CarrierAuthError, match="UPS_CLIENT_ID"):
        await carrier.track([fake_ups.DELIVERED])
    assert fake.calls["token"] == 0


async def test_rate_limited_raises_with_retry_after(carrier: ups.UpsCarrier,
                                                    fake: FakeUps) -> None:
    fake.fail_status = 429
    with pytest.raises(CarrierError) as info:
        await carrier.track([fake_ups.DELIVERED])
    assert not isinstance(info.value, CarrierAuthError)
    assert (info.value.status, info.value.retry_after) == (429, 17.0)


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_raise_carrier_error(carrier: ups.UpsCarrier, fake: FakeUps,
                                                 status: int) -> None:
    fake.fail_status = status
    with pytest.raises(CarrierError) as info:
        await carrier.track([fake_ups.DELIVERED])
    assert info.value.status == status and info.value.retry_after is None
    for exchange in fake.exchanges:
        check_against_spec(exchange)


async def test_secrets_never_logged(carrier: ups.UpsCarrier, fake: FakeUps,
                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await carrier.track([fake_ups.DELIVERED])
    fake.reject_tokens = True
    with pytest.raises(CarrierAuthError) as info:
        await carrier.track([fake_ups.DELIVERED])
    issued = list(fake.tokens)
    for secret in (fake_ups.CLIENT_SECRET, fake_ups.WEBHOOK_CREDENTIAL, *issued):
        assert secret not in caplog.text
        assert secret not in str(info.value)


# -- Track Alert: subscribe and webhook ---------------------------------------------------------

async def test_subscribe_in_chunks_of_100(carrier: ups.UpsCarrier, fake: FakeUps) -> None:
    numbers = [f"1Z{i:016d}" for i in range(250)]
    await carrier.subscribe([*numbers, "986578788855", numbers[0]], "https://shop.test/hooks/ups")

    calls = fake.exchanges_for("/subscription/standard/package")
    sizes = [len(json.loads(e.body)["trackingNumberList"]) for e in calls]
    assert sizes == [100, 100, 50]  # the FedEx number and the duplicate are not sent
    assert fake.subscribed == set(numbers)
    assert all(json.loads(e.body)["locale"] == "en_US" for e in calls)
    for exchange in calls:
        check_against_spec(exchange)


async def test_subscribe_outage_raises(carrier: ups.UpsCarrier, fake: FakeUps) -> None:
    fake.fail_status = 503
    with pytest.raises(CarrierError):
        await carrier.subscribe([fake_ups.DELIVERED], "https://shop.test/hooks/ups")


@pytest.fixture
async def webhook(carrier: ups.UpsCarrier) -> AsyncIterator[tuple[str, list[Any]]]:
    """Our side of the webhook: verify, ack, keep what was parsed."""
    received: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            carrier.verify_webhook(dict(request.headers), body)
        except WebhookError:
            return web.Response(status=403)
        received.extend(carrier.parse_webhook(body))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hooks/ups", handle)
    async with serve(app) as url:
        yield f"{url}/hooks/ups", received


async def test_webhook_push_roundtrip(fake: FakeUps, session: aiohttp.ClientSession,
                                      webhook: tuple[str, list[Any]]) -> None:
    url, received = webhook
    event = fake.alert_for(fake_ups.OUT_FOR_DELIVERY)
    check_alert_against_spec(event)
    assert event["gmtOffset"] == "-07.00"

    assert await fake.push_alert(session, url, event) == 200

    (snapshot,) = received
    assert (snapshot.tracking_number, snapshot.status) == (fake_ups.OUT_FOR_DELIVERY,
                                                           Status.OUT_FOR_DELIVERY)
    assert snapshot.events[0].timestamp == datetime(2024, 4, 23, 8, 15, tzinfo=offset(-7))
    assert (snapshot.eta, snapshot.eta_end) == (datetime(2024, 4, 23, 12, tzinfo=LOS_ANGELES),
                                                datetime(2024, 4, 23, 16, tzinfo=LOS_ANGELES))


@pytest.mark.parametrize("credential", [
    None,
    "",
    "fake-ups-webhook-credentiaL",  # same length, last byte differs
    fake_ups.WEBHOOK_CREDENTIAL + "x",
])
async def test_webhook_push_with_wrong_credential_is_refused(
        fake: FakeUps, session: aiohttp.ClientSession, webhook: tuple[str, list[Any]],
        credential: str | None) -> None:
    url, received = webhook
    status = await fake.push_alert(session, url, fake.alert_for(fake_ups.DELIVERED),
                                   credential=credential)
    assert status == 403 and received == []


def _body(event: dict[str, Any] | None = None) -> bytes:
    return json.dumps(event or alert_examples()["2"]).encode()


@pytest.mark.parametrize(("headers", "body"), [
    ({"Authorization": f"Basic {fake_ups.WEBHOOK_CREDENTIAL}"}, _body()),
    ({"X-Api-Key": fake_ups.WEBHOOK_CREDENTIAL}, _body()),
    ({"Authorization": f"Bearer {fake_ups.WEBHOOK_CREDENTIAL}"}, b"not json"),
    ({"Authorization": f"Bearer {fake_ups.WEBHOOK_CREDENTIAL}"}, b'{"trackingNumber": "1Z"}'),
    ({"Authorization": f"Bearer {fake_ups.WEBHOOK_CREDENTIAL}"}, b"[1, 2]"),
])
def test_verify_webhook_rejects(carrier: ups.UpsCarrier, headers: dict[str, str],
                                body: bytes) -> None:
    with pytest.raises(WebhookError):
        carrier.verify_webhook(headers, body)


def test_verify_webhook_accepts_and_header_case_does_not_matter(
        carrier: ups.UpsCarrier) -> None:
    carrier.verify_webhook({"authorization": f"bearer {fake_ups.WEBHOOK_CREDENTIAL}"}, _body())
    (snapshot,) = carrier.parse_webhook(_body())
    assert snapshot.status is Status.DELIVERED


async def test_verify_webhook_without_configured_credential_refuses_everything(
        session: aiohttp.ClientSession, base_url: str) -> None:
    unconfigured = ups.UpsCarrier(session, credentials(base_url, webhook_credential=""))
    with pytest.raises(WebhookError, match="no webhook credential"):
        unconfigured.verify_webhook({"Authorization": "Bearer "}, _body())


def test_parse_webhook_accepts_a_list_and_keeps_order(carrier: ups.UpsCarrier) -> None:
    examples = alert_examples()
    body = json.dumps([examples["1"], examples["2"]]).encode()
    statuses = [s.status for s in carrier.parse_webhook(body)]
    assert statuses == [Status.OUT_FOR_DELIVERY, Status.DELIVERED]


def test_alert_without_times_has_no_events() -> None:
    event = {"trackingNumber": "1Z204W4R0308071865",
             "activityStatus": {"type": "M", "code": "MP", "description": "Order Processed"}}
    snapshot = ups.parse_alert(event, received_at=FETCHED)
    assert (snapshot.status, snapshot.events) == (Status.PENDING, ())


def test_pickup_by_date() -> None:
    snapshot = ups.parse(_payload(accessPointInformation={"pickupByDate": "20240502"}),
                         fetched_at=FETCHED).snapshots["1Z879E930346834440"]
    assert snapshot.pickup_until == date(2024, 5, 2)
