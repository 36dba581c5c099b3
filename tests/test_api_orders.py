"""Shop API: authenticated, idempotent upsert with precise errors and nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys

from bot.orders import validate_order
from carriers.demo import make_number
from tests.conftest import REDIS_URL, shop_headers
from tests.factories import order_payload


async def test_rejects_missing_or_wrong_key(client):
    body = order_payload("K-1")
    for headers in ({}, {"Authorization": "Bearer nope-nope-nope-nope"}, {"X-Api-Key": "x"}):
        resp = await client.post("/api/v1/orders", json=body, headers=headers)
        assert resp.status == 401
        assert (await resp.json())["error"] == "missing or invalid API key"
    assert (await client.get("/api/v1/orders/K-1", headers=shop_headers())).status == 404


async def test_create_then_idempotent_update(client, services):
    body = order_payload("K-2", promised_delivery_date="2026-12-01")
    first = await client.post("/api/v1/orders", json=body, headers=shop_headers())
    assert first.status == 201
    created = await first.json()
    again = await client.post("/api/v1/orders", json=body, headers=shop_headers())
    assert again.status == 200
    assert (await again.json()) == created  # same payload, same state (updated_at unchanged)
    got = await client.get("/api/v1/orders/K-2", headers=shop_headers())
    data = await got.json()
    assert data["customer"]["phone"] == "+385911234567"
    assert data["shipments"][0]["carrier"] == "demo"
    assert data["promised_delivery_date"] == "2026-12-01"
    # one customer, reachable by SMS and WhatsApp on the order's phone
    orders = await services.orders.for_customer((await services.orders.get("K-2")).customer_id)
    assert [o.id for o in orders] == ["K-2"]


async def test_update_moves_shipment_and_customer_indexes(client, services):
    body = order_payload("K-3")
    await client.post("/api/v1/orders", json=body, headers=shop_headers())
    old_number = body["shipments"][0]["tracking_number"]
    body["shipments"] = [{"tracking_number": make_number(2, 5, 4242), "carrier": "demo"}]
    body["customer"]["phone"] = "+385981112223"
    resp = await client.post("/api/v1/orders", json=body, headers=shop_headers())
    assert resp.status == 200
    assert await services.orders.orders_for_shipment("demo", old_number) == []
    assert [o.id for o in await services.orders.orders_for_shipment("demo", make_number(2, 5, 4242))] == ["K-3"]


async def test_every_invalid_field_is_named_and_nothing_is_written(client, services):
    bad = {
        "id": "",
        "customer": {"name": "", "phone": "0911234567", "email": "not-an-email",
                     "telegram": "x", "locale": "de", "timezone": "Mars/Olympus", "age": 3},
        "shipments": [{"tracking_number": "??"}, {"tracking_number": "ZZ9999999999ZZ"},
                      {"tracking_number": make_number(1, 1, 1), "carrier": "pigeon"}],
        "promised_delivery_date": "tomorrow",
        "colour": "red",
    }
    resp = await client.post("/api/v1/orders", json=bad, headers=shop_headers())
    assert resp.status == 422
    fields = {e["field"] for e in (await resp.json())["fields"]}
    assert fields == {
        "id", "colour", "customer.name", "customer.phone", "customer.email", "customer.telegram",
        "customer.locale", "customer.timezone", "customer.age", "shipments[0].tracking_number",
        "shipments[1].carrier", "shipments[2].carrier", "promised_delivery_date",
    }
    assert await services.store.scan_prefix(f"{services.store.keys.prefix}:*") == []


async def test_half_valid_order_writes_nothing(client, services):
    body = order_payload("K-4")
    body["shipments"].append({"tracking_number": "NOPE"})
    resp = await client.post("/api/v1/orders", json=body, headers=shop_headers())
    assert resp.status == 422
    assert await services.orders.get("K-4") is None
    assert await services.store.scan_prefix(f"{services.store.keys.prefix}:*") == []


async def test_malformed_json_and_wrong_shapes(client):
    resp = await client.post("/api/v1/orders", data=b"{not json", headers=shop_headers())
    assert resp.status == 400
    assert "malformed JSON" in (await resp.json())["error"]
    resp = await client.post("/api/v1/orders", json=[1, 2], headers=shop_headers())
    assert resp.status == 422
    assert (await resp.json())["fields"] == [{"field": "", "message": "body must be a JSON object"}]


async def test_carrier_is_detected_when_absent(services):
    body = order_payload("K-5")
    del body["shipments"][0]["carrier"]
    order = validate_order(body, carriers=services.tracking.carriers,
                           detect=services.tracking.detect, now=services.tracking.clock())
    assert order.shipments[0].carrier == "demo"


async def test_e164_is_required_exactly(services):
    for phone in ("+385 91 123 4567", "385911234567", "+38591"):
        body = order_payload("K-6", phone=phone)
        try:
            validate_order(body, carriers=services.tracking.carriers,
                           detect=services.tracking.detect, now=services.tracking.clock())
        except Exception as exc:  # noqa: BLE001 - asserting on the type below
            assert "customer.phone" in str(exc)
        else:
            raise AssertionError(f"{phone} accepted")


def test_cli_import_orders(tmp_path, store):
    good = [order_payload("CLI-1"), order_payload("CLI-2")]
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(good))
    env = {"REDIS_URL": REDIS_URL, "SHIPMATE_KEY_PREFIX": store.keys.prefix, "DEMO_CARRIER": "1",
           "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "bot", "import-orders", str(path)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["created", "CLI-1", "created", "CLI-2"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([order_payload("CLI-3"), {"id": "CLI-4"}]))
    run = subprocess.run([sys.executable, "-m", "bot", "import-orders", str(bad)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "customer: required" in run.stderr and "nothing was imported" in run.stderr
