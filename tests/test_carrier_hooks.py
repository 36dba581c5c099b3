"""Carrier webhooks: signed pushes from the carrier fakes, through the route, into ingest."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web

from bot.carrier_hooks import routes
from bot.changes import Change, ChangeKind
from bot.store import Store
from bot.tracking import Tracking
from carriers.demo import DemoCarrier
from carriers.dhl import DhlCarrier
from carriers.easypost import EasypostCarrier
from carriers.model import Credentials
from carriers.usps import UspsCarrier
from tests.driver import Clock
from tests.fakes import serve
from tests.fakes.carrier_dhl import API_KEY as DHL_KEY
from tests.fakes.carrier_dhl import OUT_FOR_DELIVERY as DHL_OFD
from tests.fakes.carrier_dhl import FakeDhl
from tests.fakes.carrier_easypost import FakeEasyPost, tracking_detail
from tests.fakes.carrier_usps import CLIENT_ID, CLIENT_SECRET, FakeUsps
from tests.fakes.carrier_usps import OUT_FOR_DELIVERY as USPS_OFD

USPS_SECRET = "usps-webhook-secret-0123456789ab"  # exactly 32 characters, as USPS requires
DHL_TOKEN = "dhl-hook-token-0123456789"


@dataclass
class Hooked:
    """Our webhook route served on localhost, with a listener recording what it hears."""

    tracking: Tracking
    base: str
    session: aiohttp.ClientSession
    heard: list[list[ChangeKind]] = field(default_factory=list)

    def url(self, carrier: str) -> str:
        return f"{self.base}/webhooks/carriers/{carrier}"

    async def on_order(self, carrier: str, number: str) -> None:
        store = self.tracking.store
        await store.sadd(store.keys.shipment_orders(carrier, number), f"ORD-{number[-4:]}")

    async def post(self, carrier: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
        async with self.session.post(self.url(carrier), data=body, headers=headers) as resp:
            return resp.status, await resp.json()


@asynccontextmanager
async def hooked(store: Store, now: datetime, make_carriers) -> AsyncIterator[Hooked]:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as session:
        tracking = Tracking(store, make_carriers(session), clock=Clock(now))
        app = web.Application()
        app.router.add_routes(routes(tracking))
        async with serve(app) as base:
            h = Hooked(tracking, base, session)

            async def listener(changes: Sequence[Change]) -> None:
                h.heard.append([c.kind for c in changes])

            tracking.listeners.append(listener)
            yield h


# ----------------------------------------------------------------------------- EasyPost

EZ = "EZ2000000002"
EZ_NOW = datetime(2025, 4, 14, 13, 0, tzinfo=UTC)


@asynccontextmanager
async def easypost(store: Store) -> AsyncIterator[tuple[Hooked, FakeEasyPost, EasypostCarrier]]:
    fake = FakeEasyPost()
    async with serve(fake.app) as api:
        made: dict[str, EasypostCarrier] = {}

        def carriers(session: aiohttp.ClientSession) -> dict:
            made["easypost"] = EasypostCarrier(session, Credentials(api, {
                "api_key": fake.api_key, "webhook_secret": fake.webhook_secret}))
            return dict(made)

        async with hooked(store, EZ_NOW, carriers) as h:
            carrier = made["easypost"]
            await h.on_order("easypost", EZ)
            report = await carrier.track([EZ])  # EasyPost now has a tracker for it
            await h.tracking.ingest("easypost", EZ, report.snapshots[EZ])
            h.heard.clear()
            yield h, fake, carrier


def out_for_delivery(fake: FakeEasyPost) -> None:
    fake.update(EZ, tracking_detail("out_for_delivery", "out_for_delivery", "Out for Delivery",
                                    "2025-04-14T12:31:17Z", ("CHARLESTON", "SC", "29401")))


async def test_signed_push_reaches_listeners_once(store):
    async with easypost(store) as (h, fake, _):
        out_for_delivery(fake)
        assert await fake.push(h.session, h.url("easypost"), EZ) == 200
        assert h.heard == [[ChangeKind.OUT_FOR_DELIVERY]]
        # EasyPost retries, or sends the same tracker state in a new Event: nothing new
        assert await fake.push(h.session, h.url("easypost"), EZ) == 200
        assert h.heard == [[ChangeKind.OUT_FOR_DELIVERY]]
        view = await h.tracking.stored("easypost", EZ)
        assert view.snapshot is not None and view.snapshot.status.value == "out_for_delivery"


async def test_forged_or_tampered_push_is_refused_before_parsing(store):
    async with easypost(store) as (h, fake, _):
        out_for_delivery(fake)
        assert await fake.push(h.session, h.url("easypost"), EZ, secret="not the secret") == 403
        assert await fake.push(h.session, h.url("easypost"), EZ,
                               body=b'{"object": "Event", "tampered": true}') == 403
        status, body = await h.post("easypost", b"{}", {"Content-Type": "application/json"})
        assert status == 403 and "error" in body
        assert h.heard == []
        assert (await h.tracking.stored("easypost", EZ)).snapshot.status.value == "in_transit"


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"object": "Event", "result": 42}',
                                  b'{"object": "Event", "result": {"tracking_details": 7}}'])
async def test_malformed_but_signed_push_is_a_400_never_a_500(store, body):
    async with easypost(store) as (h, fake, _):
        status, answer = await h.post("easypost", body, {"X-Hmac-Signature": fake.sign(body)})
        assert status in (400, 200), answer  # 200 only when nothing in it names a shipment
        assert status != 500
        assert h.heard == []


async def test_push_about_a_shipment_we_do_not_track_is_acknowledged_and_dropped(store):
    async with easypost(store) as (h, fake, carrier):
        await carrier.track(["EZ3000000003"])  # exists at EasyPost, on no order of ours
        body = fake.event_body("EZ3000000003")
        status, answer = await h.post("easypost", body, {"X-Hmac-Signature": fake.sign(body)})
        assert status == 200 and answer["ignored"] == 1 and answer["ingested"] == 0
        assert (await h.tracking.stored("easypost", "EZ3000000003")).snapshot is None


async def test_a_failing_listener_asks_the_carrier_to_retry(store):
    async with easypost(store) as (h, fake, _):
        calls = 0

        async def flaky(changes: Sequence[Change]) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("outbox unavailable")

        h.tracking.listeners.insert(0, flaky)
        out_for_delivery(fake)
        assert await fake.push(h.session, h.url("easypost"), EZ) == 503
        assert h.heard == []
        assert await fake.push(h.session, h.url("easypost"), EZ) == 200
        assert h.heard == [[ChangeKind.OUT_FOR_DELIVERY]]


async def test_unknown_and_poll_only_carriers_have_no_webhook(store):
    def carriers(session: aiohttp.ClientSession) -> dict:
        return {"demo": DemoCarrier(epoch=EZ_NOW)}

    async with hooked(store, EZ_NOW, carriers) as h:
        assert (await h.post("demo", b"{}", {}))[0] == 404
        assert (await h.post("nosuchcarrier", b"{}", {}))[0] == 404


# ----------------------------------------------------------------------------- USPS

async def test_usps_subscription_callback_signed_with_x_hmac(store):
    fake = FakeUsps()
    async with serve(fake.app()) as api:
        def carriers(session: aiohttp.ClientSession) -> dict:
            return {"usps": UspsCarrier(session, Credentials(api, {
                "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                "webhook_secret": USPS_SECRET, "admin_email": "ops@shop.example"}))}

        now = datetime(2025, 2, 7, 14, 0, tzinfo=UTC)
        async with hooked(store, now, carriers) as h:
            await h.tracking.carriers["usps"].subscribe([USPS_OFD], h.url("usps"))
            await h.on_order("usps", USPS_OFD)
            assert await fake.send_webhook(h.session, h.url("usps"), USPS_OFD) == 200
            assert h.heard == [[ChangeKind.OUT_FOR_DELIVERY]]
            assert await fake.send_webhook(h.session, h.url("usps"), USPS_OFD) == 200
            assert h.heard == [[ChangeKind.OUT_FOR_DELIVERY]]
            assert await fake.send_webhook(h.session, h.url("usps"), USPS_OFD,
                                           secret="x" * 32) == 403
            assert await fake.send_webhook(h.session, h.url("usps"), USPS_OFD,
                                           tamper=True) == 403
            assert len(h.heard) == 1


# ----------------------------------------------------------------------------- DHL

async def test_dhl_handshake_then_pushes(store):
    fake = FakeDhl()
    async with serve(fake.app()) as api:
        fake.base_url = api

        def carriers(session: aiohttp.ClientSession) -> dict:
            return {"dhl": DhlCarrier(session, Credentials(api, {
                "api_key": DHL_KEY, "webhook_secret": DHL_TOKEN}), min_interval=0)}

        now = datetime(2025, 3, 5, 8, 0, tzinfo=UTC)
        async with hooked(store, now, carriers) as h:
            await h.tracking.carriers["dhl"].subscribe([DHL_OFD], h.url("dhl"))
            [subscription] = list(fake.subscriptions)
            assert await fake.send_validation(h.session, subscription, token="forged") == 403
            assert fake.subscriptions[subscription]["active"] is False
            assert await fake.send_validation(h.session, subscription) == 200
            assert fake.subscriptions[subscription]["active"] is True
            await h.on_order("dhl", DHL_OFD)
            assert await fake.push(h.session, DHL_OFD) == 200
            assert await fake.push(h.session, DHL_OFD) == 200
            assert h.heard == [[ChangeKind.OUT_FOR_DELIVERY]]
            assert await fake.push(h.session, DHL_OFD, token="forged") == 403
            status, body = await h.post("dhl", json.dumps({"scope": "subscription.validate"})
                                        .encode(), {"X-Shipmate-Token": DHL_TOKEN})
            assert status == 400 and "handshake" in body["error"]
