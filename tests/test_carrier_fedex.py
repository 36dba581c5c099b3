"""FedEx adapter: parse() on spec-shaped payloads, then the adapter against FakeFedex."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.validation.exceptions import ValidationError
from werkzeug.datastructures import Headers

from carriers import Carrier, PushCarrier, fedex
from carriers.model import (
    CarrierAuthError,
    CarrierError,
    Credentials,
    CustomsStage,
    ProblemKind,
    Reason,
    Status,
    TimestampPolicy,
)
from tests.fakes import carrier_fedex as fake_fedex
from tests.fakes import serve
from tests.fakes.carrier_fedex import Exchange, FakeFedex
from tests.paths import shared

FETCHED = datetime(2024, 4, 23, 18, 0, tzinfo=UTC)


def offset(hours: float) -> timezone:
    return timezone(timedelta(hours=hours))


# -- the spec ---------------------------------------------------------------------------------

@cache
def spec_dict() -> dict[str, Any]:
    return json.loads(shared("carriers", "fedex", "track-api.openapi.json").read_text())


@cache
def spec() -> OpenAPI:
    """The FedEx-published spec; it fails strict spec validation (a stray `schemes` key)."""
    return OpenAPI.from_dict(spec_dict(), config=Config(spec_validator_cls=None))


def spec_example(schema: dict[str, Any], depth: int = 0) -> Any:
    """An instance built from the spec's own per-field `example` values."""
    schemas = spec_dict()["components"]["schemas"]
    if "$ref" in schema:
        return spec_example(schemas[schema["$ref"].rsplit("/", 1)[1]], depth)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged |= spec_example(part, depth)
        return merged
    if "example" in schema and not isinstance(schema.get("example"), dict):
        return schema["example"]
    if schema.get("type") == "array" or "items" in schema:
        return [spec_example(schema["items"], depth + 1)] if depth < 12 else []
    if schema.get("type") == "object" or "properties" in schema:
        if depth >= 12:
            return {}
        return {key: spec_example(sub, depth + 1)
                for key, sub in schema.get("properties", {}).items()}
    return (schema.get("enum") or [""])[0]


def spec_example_response() -> dict[str, Any]:
    """A 200 body from the spec's examples; a track result carries data or an error, not both."""
    body = spec_example({"$ref": "#/components/schemas/TrkcResponseVO_TrackingNumber"})
    for complete in body["output"]["completeTrackResults"]:
        for result in complete["trackResults"]:
            del result["error"]
    return body


@dataclass
class SpecRequest:
    host_url: str
    path: str
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


def check_against_spec(exchange: Exchange) -> None:
    """Validate one recorded track request and (for documented statuses) its response."""
    headers = Headers(exchange.headers)
    request = SpecRequest(
        "https://apis.fedex.com", exchange.path, exchange.method.lower(), exchange.body or None,
        headers.get("Content-Type", "").split(";")[0],
        RequestParameters(query=exchange.query, header=headers),
    )
    spec().validate_request(request)
    if exchange.status == 429:
        return  # the spec documents no 429
    response_headers = Headers(list(exchange.response_headers.items()))
    spec().validate_response(request, SpecResponse(
        exchange.status, response_headers.get("Content-Type", "").split(";")[0],
        response_headers, exchange.response_body,
    ))


# -- module surface -----------------------------------------------------------------------------

def test_module_declares_its_configuration() -> None:
    assert fedex.NAME == "fedex"
    assert fedex.DEFAULT_BASE_URL == "https://apis.fedex.com"
    assert fedex.CREDENTIALS == ("client_id", "client_secret")
    assert fedex.LIMITS.batch_size == 30 and not fedex.LIMITS.supports_push
    assert fedex.TIMESTAMP_POLICY is TimestampPolicy.AWARE
    assert not hasattr(fedex.FedexCarrier, "verify_webhook")
    assert not hasattr(fedex.FedexCarrier, "subscribe")


def test_build_request_matches_the_spec_and_limit() -> None:
    body = fedex.build_request(["986578788855", "477179081230"])
    assert body == {"includeDetailedScans": True, "trackingInfo": [
        {"trackingNumberInfo": {"trackingNumber": "986578788855"}},
        {"trackingNumberInfo": {"trackingNumber": "477179081230"}},
    ]}
    with pytest.raises(ValueError):
        fedex.build_request([str(n).zfill(12) for n in range(31)])
    with pytest.raises(ValueError):
        fedex.build_request([])


# -- parse() --------------------------------------------------------------------------------------

def test_parse_spec_examples() -> None:
    report = fedex.parse(spec_example_response(), fetched_at=FETCHED)

    snapshot = report.snapshots["123456789012"]  # the spec's example tracking number
    assert (snapshot.raw_code, snapshot.raw_text) == ("PU", "Picked up")
    # latestStatusDetail.delayDetail example: WEATHER / DELAYED
    assert (snapshot.status, snapshot.reason) == (Status.DELAYED, Reason.WEATHER_DELAY)
    assert snapshot.service == "FedEx Freight Economy."
    (event,) = snapshot.events
    assert event.timestamp == datetime(2018, 2, 2, 12, 1, tzinfo=offset(-7))
    assert event.timestamp.utcoffset() == timedelta(hours=-7)
    assert (event.raw_code, event.raw_text) == ("PU", "Picked Up")
    assert event.description == "Picked Up: Package available for clearance"
    assert event.customs is CustomsStage.PROCESSING  # at a CUSTOMS_BROKER, "clearance"
    assert (event.location, event.country) == ("SEATTLE, WA", "US")
    # TimeRange example: begins "2021-10-01T08:00:00" has no offset; it takes ends' -06:00.
    assert snapshot.eta == datetime(2021, 10, 1, 8, tzinfo=offset(-6))
    assert snapshot.eta_end == datetime(2021, 10, 15, tzinfo=offset(-6))
    assert snapshot.fetched_at == FETCHED


def _result(code: str, scans: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"latestStatusDetail": {"code": code, "derivedCode": code, "description": code},
            "scanEvents": scans, **extra}


def _body(*results: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"transactionId": "624deea6-b709-470c-8c39-4b5511281492", "output": {
        "completeTrackResults": [{"trackingNumber": n, "trackResults": [r]} for n, r in results]}}


def test_events_oldest_first_even_out_of_order() -> None:
    scans = [{"date": "2024-04-22T14:30:00-06:00", "eventType": "PU"},
             {"date": "2024-04-23T08:02:00-07:00", "eventType": "OD"},
             {"date": "2024-04-22T23:10:00-05:00", "eventType": "DP", "derivedStatusCode": "IT"},
             {"date": "", "eventType": "XX"}]
    snapshot = fedex.parse(_body(("477179081230", _result("OD", scans))),
                           fetched_at=FETCHED).snapshots["477179081230"]
    assert [e.raw_code for e in snapshot.events] == ["PU", "DP", "OD"]
    assert [e.status for e in snapshot.events] == [Status.PICKED_UP, Status.IN_TRANSIT,
                                                   Status.OUT_FOR_DELIVERY]


@pytest.mark.parametrize(("extra", "eta", "eta_end"), [
    # date-only estimate: the whole day, in the newest scan's offset
    ({"dateAndTimes": [{"type": "ESTIMATED_DELIVERY", "dateTime": "2024-04-26"}]},
     datetime(2024, 4, 26, tzinfo=offset(2)), datetime(2024, 4, 26, 23, 59, 59,
                                                       tzinfo=offset(2))),
    ({"dateAndTimes": [{"type": "ESTIMATED_DELIVERY", "dateTime": "2024-04-26T12:00:00-04:00"}]},
     datetime(2024, 4, 26, 12, tzinfo=offset(-4)), None),
    # naive dateTime (the spec's example shape) takes the newest scan's offset
    ({"dateAndTimes": [{"type": "COMMITMENT", "dateTime": "2024-04-26T10:30:00"}]},
     datetime(2024, 4, 26, 10, 30, tzinfo=offset(2)), None),
    ({"estimatedDeliveryTimeWindow": {"window": {"begins": "2024-04-26T09:00:00+02:00",
                                                 "ends": "2024-04-26T12:00:00"}},
      "dateAndTimes": [{"type": "ESTIMATED_DELIVERY", "dateTime": "2024-04-27"}]},
     datetime(2024, 4, 26, 9, tzinfo=offset(2)), datetime(2024, 4, 26, 12, tzinfo=offset(2))),
    ({"estimatedDeliveryTimeWindow": {"window": {}}}, None, None),
])
def test_eta(extra: dict[str, Any], eta: datetime | None, eta_end: datetime | None) -> None:
    scans = [{"date": "2024-04-24T06:30:00+02:00", "eventType": "AR", "derivedStatusCode": "IT"}]
    snapshot = fedex.parse(_body(("799531274483", _result("IT", scans, **extra))),
                           fetched_at=FETCHED).snapshots["799531274483"]
    assert (snapshot.eta, snapshot.eta_end) == (eta, eta_end)
    if eta is not None:
        assert eta.utcoffset() == snapshot.eta.utcoffset()  # type: ignore[union-attr]


def test_delivered_has_no_eta() -> None:
    result = _result("DL", [{"date": "2024-04-23T12:51:00-04:00", "eventType": "DL"}],
                     dateAndTimes=[{"type": "ESTIMATED_DELIVERY", "dateTime": "2024-04-23"}])
    snapshot = fedex.parse(_body(("986578788855", result)), fetched_at=FETCHED).snapshots[
        "986578788855"]
    assert (snapshot.status, snapshot.eta) == (Status.DELIVERED, None)


@pytest.mark.parametrize(("code", "derived", "delay", "text", "expected"), [
    ("OC", "", None, "", (Status.PENDING, Reason.NONE, CustomsStage.NONE)),
    ("PU", "", None, "", (Status.PICKED_UP, Reason.NONE, CustomsStage.NONE)),
    ("AR", "IT", None, "", (Status.IN_TRANSIT, Reason.NONE, CustomsStage.NONE)),
    ("ZZ", "IT", None, "", (Status.IN_TRANSIT, Reason.NONE, CustomsStage.NONE)),
    ("OD", "", None, "", (Status.OUT_FOR_DELIVERY, Reason.NONE, CustomsStage.NONE)),
    ("DL", "", None, "", (Status.DELIVERED, Reason.NONE, CustomsStage.NONE)),
    ("DE", "", None, "Customer not available or business closed",
     (Status.DELIVERY_FAILED, Reason.CONSIGNEE_NOT_HOME, CustomsStage.NONE)),
    ("DE", "", None, "Incorrect address", (Status.DELIVERY_FAILED, Reason.INCORRECT_ADDRESS,
                                           CustomsStage.NONE)),
    ("SE", "", None, "Package damaged", (Status.ON_HOLD, Reason.DAMAGED, CustomsStage.NONE)),
    ("SE", "", None, "", (Status.ON_HOLD, Reason.UNKNOWN, CustomsStage.NONE)),
    ("CD", "", None, "Clearance delay", (Status.ON_HOLD, Reason.CUSTOMS_DELAY,
                                         CustomsStage.HELD)),
    ("CD", "", None, "Duties and taxes are due", (Status.ON_HOLD, Reason.CUSTOMS_DUTIES_UNPAID,
                                                  CustomsStage.DUTIES_DUE)),
    ("IT", "", {"type": "CLEARANCE", "status": "DELAYED"}, "In transit",
     (Status.ON_HOLD, Reason.CUSTOMS_DELAY, CustomsStage.HELD)),
    ("CC", "IT", None, "Cleared customs", (Status.IN_TRANSIT, Reason.NONE,
                                           CustomsStage.RELEASED)),
    ("CP", "IT", None, "Clearance in progress", (Status.IN_TRANSIT, Reason.NONE,
                                                 CustomsStage.PROCESSING)),
    ("IT", "", {"type": "WEATHER", "status": "DELAYED"}, "",
     (Status.DELAYED, Reason.WEATHER_DELAY, CustomsStage.NONE)),
    ("IT", "", {"type": "OPERATIONAL", "status": "ON_TIME"}, "",
     (Status.IN_TRANSIT, Reason.NONE, CustomsStage.NONE)),
    ("DY", "", None, "", (Status.DELAYED, Reason.OPERATIONAL_DELAY, CustomsStage.NONE)),
    ("HL", "", None, "", (Status.READY_FOR_PICKUP, Reason.NONE, CustomsStage.NONE)),
    ("HP", "", None, "", (Status.READY_FOR_PICKUP, Reason.NONE, CustomsStage.NONE)),
    ("RS", "", None, "", (Status.RETURN_TO_SENDER, Reason.NONE, CustomsStage.NONE)),
    ("CA", "", None, "", (Status.CANCELLED, Reason.NONE, CustomsStage.NONE)),
    ("DL", "", {"type": "CLEARANCE", "status": "DELAYED"}, "",
     (Status.DELIVERED, Reason.NONE, CustomsStage.NONE)),
    ("", "", None, "", (Status.UNKNOWN, Reason.NONE, CustomsStage.NONE)),
])
def test_classify(code: str, derived: str, delay: dict[str, str] | None, text: str,
                  expected: tuple[Status, Reason, CustomsStage]) -> None:
    assert fedex.classify(code, derived, delay=delay, text=text) == expected


def test_customs_broker_location_means_customs_processing() -> None:
    assert fedex.classify("AR", "IT", location_type="CUSTOMS_BROKER") == (
        Status.IN_TRANSIT, Reason.NONE, CustomsStage.PROCESSING)


@pytest.mark.parametrize(("error", "kind"), [
    ({"code": "TRACKING.TRACKINGNUMBER.NOTFOUND",
      "message": "Tracking number cannot be found."}, ProblemKind.NOT_FOUND),
    ({"code": "TRACKING.TRACKINGNUMBER.INVALID", "message": "Invalid tracking number."},
     ProblemKind.INVALID),
])
def test_per_number_errors_are_data(error: dict[str, str], kind: ProblemKind) -> None:
    body = _body(("123456789012", {"trackingNumberInfo": {"trackingNumber": "123456789012"},
                                   "error": error}))
    report = fedex.parse(body, fetched_at=FETCHED)
    assert report.snapshots == {}
    problem = report.problems["123456789012"]
    assert problem.kind is kind and problem.message.startswith(error["code"])


def test_404_body_from_the_spec_marks_every_requested_number() -> None:
    responses = spec_dict()["paths"]["/track/v1/trackingnumbers"]["post"]["responses"]
    body = responses["404"]["content"]["application/json"]["example"]
    report = fedex.parse(body, fetched_at=FETCHED, requested=["123456789012", "986578788855"])
    assert {n: p.kind for n, p in report.problems.items()} == {
        "123456789012": ProblemKind.NOT_FOUND, "986578788855": ProblemKind.NOT_FOUND}
    assert report.problems["123456789012"].message.startswith("NOT.FOUND.ERROR")


def test_duplicate_results_pick_the_newest() -> None:
    old = _result("DL", [{"date": "2019-01-02T10:00:00-05:00", "eventType": "DL"}])
    new = _result("IT", [{"date": "2024-04-22T10:00:00-05:00", "eventType": "AR",
                          "derivedStatusCode": "IT"}])
    body = {"output": {"completeTrackResults": [
        {"trackingNumber": "123456789012", "trackResults": [old, new]}]}}
    snapshot = fedex.parse(body, fetched_at=FETCHED).snapshots["123456789012"]
    assert snapshot.status is Status.IN_TRANSIT


# -- the adapter against FakeFedex ---------------------------------------------------------------

class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeFedex:
    return FakeFedex()


@pytest.fixture
async def base_url(fake: FakeFedex) -> AsyncIterator[str]:
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
    values = {"client_id": fake_fedex.CLIENT_ID,
              "client_secret": fake_fedex.CLIENT_SECRET} | overrides
    return Credentials(base_url, values)


@pytest.fixture
def carrier(session: aiohttp.ClientSession, base_url: str,
            clock: FakeClock) -> fedex.FedexCarrier:
    return fedex.FedexCarrier(session, credentials(base_url), clock=clock)


@pytest.mark.parametrize(("number", "expected"), [
    ("986578788855", True),  # Express, 12
    ("041441760228964", True),  # Ground, 15
    ("00012345000000000027", True),  # SSCC-18 with its 00 prefix, 20
    ("9611020987654312345672", True),  # Ground 96, 22
    ("1001921334250001000300779017972697", True),  # 34
    ("9866 5787 8885", True),  # spaces are ignored
    ("9866 5787 885", False),  # 11 digits
    ("1Z5R89390357567127", False),
    ("９８６５７８７８８８５５", False),  # full-width digits
])
async def test_recognizes_fedex_formats(carrier: fedex.FedexCarrier, number: str,
                                        expected: bool) -> None:
    assert carrier.recognizes(number) is expected


def test_carrier_is_a_pull_only_carrier(carrier: fedex.FedexCarrier) -> None:
    assert isinstance(carrier, Carrier)
    assert not isinstance(carrier, PushCarrier)
    assert carrier.name == "fedex" and carrier.limits is fedex.LIMITS


async def test_track_fake_parcels(carrier: fedex.FedexCarrier, fake: FakeFedex) -> None:
    report = await carrier.track([fake_fedex.DELIVERED, fake_fedex.OUT_FOR_DELIVERY,
                                  fake_fedex.CUSTOMS_HOLD, fake_fedex.UNKNOWN])

    assert fake.batches == [[fake_fedex.DELIVERED, fake_fedex.OUT_FOR_DELIVERY,
                             fake_fedex.CUSTOMS_HOLD, fake_fedex.UNKNOWN]]
    delivered = report.snapshots[fake_fedex.DELIVERED]
    assert delivered.status is Status.DELIVERED and delivered.eta is None
    assert [e.raw_code for e in delivered.events] == ["OC", "PU", "DP", "OD", "DL"]
    assert delivered.events[-1].timestamp == datetime(2024, 4, 23, 12, 51, tzinfo=offset(-4))
    assert delivered.service == "FedEx Ground"

    out = report.snapshots[fake_fedex.OUT_FOR_DELIVERY]
    assert out.status is Status.OUT_FOR_DELIVERY
    assert (out.eta, out.eta_end) == (datetime(2024, 4, 23, 12, tzinfo=offset(-7)),
                                      datetime(2024, 4, 23, 16, tzinfo=offset(-7)))

    held = report.snapshots[fake_fedex.CUSTOMS_HOLD]
    assert (held.status, held.customs, held.reason) == (
        Status.ON_HOLD, CustomsStage.INFO_REQUIRED, Reason.CUSTOMS_DOCUMENTATION)
    assert (held.raw_code, held.raw_text) == ("CD", "Clearance delay")
    assert held.events[-1].customs is CustomsStage.INFO_REQUIRED
    assert held.events[-1].country == "DE"
    assert (held.eta, held.eta_end) == (datetime(2024, 4, 26, tzinfo=offset(2)),
                                        datetime(2024, 4, 26, 23, 59, 59, tzinfo=offset(2)))

    assert report.problems[fake_fedex.UNKNOWN].kind is ProblemKind.NOT_FOUND


async def test_requests_and_responses_match_the_spec(carrier: fedex.FedexCarrier,
                                                     fake: FakeFedex) -> None:
    await carrier.track([fake_fedex.DELIVERED, fake_fedex.OUT_FOR_DELIVERY,
                         fake_fedex.CUSTOMS_HOLD, fake_fedex.UNKNOWN])
    await carrier.track([fake_fedex.DELIVERED])

    tracks = fake.exchanges_for("/track/v1/")
    assert len(tracks) == 2
    for exchange in tracks:
        check_against_spec(exchange)
    ids = [e.header("x-customer-transaction-id") for e in tracks]
    assert all(ids) and len(set(ids)) == 2
    assert {e.header("x-locale") for e in tracks} == {"en_US"}
    # The token endpoint is not in the fixture specs: check the form by hand.
    (token,) = fake.exchanges_for("/oauth/token")
    assert parse_qs(token.body.decode()) == {
        "grant_type": ["client_credentials"], "client_id": [fake_fedex.CLIENT_ID],
        "client_secret": [fake_fedex.CLIENT_SECRET]}


def test_spec_check_can_fail() -> None:
    body = json.dumps({"trackingInfo": [{"trackingNumberInfo": {}}]}).encode()
    exchange = Exchange("POST", "/track/v1/trackingnumbers", {},
                        [("Authorization", "Bearer t"), ("Content-Type", "application/json")],
                        body, 200, {"Content-Type": "application/json"}, b"{}")
    with pytest.raises(ValidationError):
        check_against_spec(exchange)


async def test_31_numbers_take_two_requests(carrier: fedex.FedexCarrier,
                                            fake: FakeFedex) -> None:
    numbers = [f"7{i:011d}" for i in range(31)]
    report = await carrier.track([*numbers, numbers[0]])
    assert [len(b) for b in fake.batches] == [30, 1]
    assert fake.calls["track"] == 2 and fake.calls["token"] == 1
    assert set(report.problems) == set(numbers)
    assert all(p.kind is ProblemKind.NOT_FOUND for p in report.problems.values())


async def test_token_cached_across_calls(carrier: fedex.FedexCarrier, fake: FakeFedex) -> None:
    await carrier.track([fake_fedex.DELIVERED])
    await carrier.track([fake_fedex.OUT_FOR_DELIVERY])
    assert fake.calls["token"] == 1


async def test_token_refreshed_after_expiry(carrier: fedex.FedexCarrier, fake: FakeFedex,
                                            clock: FakeClock) -> None:
    await carrier.track([fake_fedex.DELIVERED])
    clock.now += fake.token_lifetime
    await carrier.track([fake_fedex.DELIVERED])
    assert fake.calls["token"] == 2
    first, second = (e.header("Authorization") for e in fake.exchanges_for("/track/v1/"))
    assert first != second


async def test_server_expired_token_is_refetched_once(carrier: fedex.FedexCarrier,
                                                      fake: FakeFedex) -> None:
    await carrier.track([fake_fedex.DELIVERED])
    fake.expire_tokens()
    report = await carrier.track([fake_fedex.DELIVERED])
    assert report.snapshots[fake_fedex.DELIVERED].status is Status.DELIVERED
    assert (fake.calls["token"], fake.calls["track"]) == (2, 3)
    for exchange in fake.exchanges_for("/track/v1/"):
        check_against_spec(exchange)  # the 401 body too


async def test_refused_token_raises_auth_error_after_one_retry(carrier: fedex.FedexCarrier,
                                                               fake: FakeFedex) -> None:
    fake.reject_tokens = True
    with pytest.raises(CarrierAuthError) as info:
        await carrier.track([fake_fedex.DELIVERED])
    assert info.value.status == 401
    assert (fake.calls["token"], fake.calls["track"]) == (2, 2)


async def test_bad_client_secret_is_an_auth_error(session: aiohttp.ClientSession,
                                                  base_url: str, fake: FakeFedex) -> None:
    carrier = fedex.FedexCarrier(session, credentials(base_url, client_secret="wrong"))
    with pytest.raises(CarrierAuthError):
        await carrier.track([fake_fedex.DELIVERED])
    assert fake.calls["track"] == 0


async def test_rate_limited_raises_with_retry_after(carrier: fedex.FedexCarrier,
                                                    fake: FakeFedex) -> None:
    fake.fail_status = 429
    with pytest.raises(CarrierError) as info:
        await carrier.track([fake_fedex.DELIVERED])
    assert not isinstance(info.value, CarrierAuthError)
    assert (info.value.status, info.value.retry_after) == (429, 12.0)


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_raise_carrier_error(carrier: fedex.FedexCarrier, fake: FakeFedex,
                                                 status: int) -> None:
    fake.fail_status = status
    with pytest.raises(CarrierError) as info:
        await carrier.track([fake_fedex.DELIVERED])
    assert info.value.status == status and info.value.retry_after is None


async def test_bad_request_raises_with_fedex_code(carrier: fedex.FedexCarrier,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    original = fedex.build_request

    def oversized(numbers: list[str]) -> dict[str, Any]:
        body = original(numbers)
        body["trackingInfo"] *= 31
        return body

    monkeypatch.setattr(fedex, "build_request", oversized)
    with pytest.raises(CarrierError, match="TRACKING.TRACKINGINFO.LIMIT") as info:
        await carrier.track([fake_fedex.DELIVERED])
    assert info.value.status == 400


async def test_secrets_never_logged(carrier: fedex.FedexCarrier, fake: FakeFedex,
                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await carrier.track([fake_fedex.DELIVERED])
    fake.reject_tokens = True
    with pytest.raises(CarrierAuthError) as info:
        await carrier.track([fake_fedex.DELIVERED])
    for secret in (fake_fedex.CLIENT_SECRET, *fake.tokens):
        assert secret not in caplog.text
        assert secret not in str(info.value)
