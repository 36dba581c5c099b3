"""`shipmate demo`: everything in one process on the embedded store, with seeded customers in
four languages whose parcels move on the demo carrier, and a local chat page."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bot.config import Settings
from bot.orders import validate_order
from bot.services import Services
from bot.web import create_app, serve
from bot.worker import install_signal_handlers, run_worker
from carriers.demo import make_number

#: (order id, customer, shipments as (journey, hours already travelled), promised days from now)
PERSONAS = [
    ("HR-1001", {"name": "Ana Horvat", "phone": "+385911234567", "email": "ana@example.hr",
                 "locale": "hr", "timezone": "Europe/Zagreb"},
     {"postcode": "10000", "country": "HR"}, [(5, 39), (4, 26)], 5),
    ("ID-2002", {"name": "Budi Santoso", "phone": "+6281234567890", "email": "budi@example.co.id",
                 "locale": "id", "timezone": "Asia/Jakarta"},
     {"postcode": "12190", "country": "ID"}, [(8, 30), (3, 18)], 6),
    ("TH-3003", {"name": "Somchai Jaidee", "phone": "+66812345678", "email": "somchai@example.co.th",
                 "locale": "th", "timezone": "Asia/Bangkok"},
     {"postcode": "10110", "country": "TH"}, [(2, 34)], 4),
    ("US-4004", {"name": "Emily Carter", "phone": "+12025550143", "email": "emily@example.com",
                 "locale": "en", "timezone": "America/New_York"},
     {"postcode": "10001", "country": "US"}, [(6, 18)], 3),
]


def demo_orders(now: datetime) -> list[dict]:
    """Order payloads exactly as a shop would POST them."""
    orders = []
    for serial, (order_id, customer, address, ships, promised) in enumerate(PERSONAS, start=1):
        orders.append({
            "id": order_id, "customer": customer, "shipping_address": address,
            "shipments": [{"tracking_number": make_number(j, hours, serial * 10 + i), "carrier": "demo"}
                          for i, (j, hours) in enumerate(ships)],
            "promised_delivery_date": (now + timedelta(days=promised)).date().isoformat(),
        })
    return orders


async def seed(services: Services, now: datetime) -> list[dict]:
    """Upsert the demo orders; return the personas shown on the chat page."""
    for payload in demo_orders(now):
        order = validate_order(payload, carriers=services.tracking.carriers,
                               detect=services.tracking.detect, now=now)
        await services.orders.upsert(order)
    return [{"order": o, "name": c["name"], "phone": c["phone"], "locale": c["locale"]}
            for o, c, _a, _s, _p in PERSONAS]


async def run_demo(settings: Settings) -> None:
    """The whole product in one process; prints where to click."""
    services = await Services.create(settings)
    if services.store.embedded:
        print("Using the embedded in-process store (no REDIS_URL set): data lives only as long "
              "as this process.")
    personas = await seed(services, datetime.now(UTC))
    stop = asyncio.Event()
    install_signal_handlers(stop)
    app = create_app(services, personas=personas)
    print(f"Shipmate demo: open http://localhost:{settings.port}/ and chat as one of the seeded "
          "customers (or as a stranger). Ctrl+C stops it.")
    for p in personas:
        print(f"  {p['name']} ({p['locale']}): order {p['order']}, phone {p['phone']}")
    try:
        await asyncio.gather(serve(app, settings.host, settings.port, stop),
                             run_worker(services, stop))
    finally:
        await services.close()
