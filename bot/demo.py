"""Seed data for `shipmate demo`: customers in four languages with parcels on demo journeys."""

from __future__ import annotations

from datetime import datetime, timedelta

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
