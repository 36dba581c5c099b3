"""Factories with defaults for order payloads."""

from __future__ import annotations

import itertools
from typing import Any

from carriers.demo import make_number

_serial = itertools.count(1)


def order_payload(order_id: str = "", *, phone: str = "+385911234567", locale: str = "hr",
                  timezone: str = "Europe/Zagreb", journey: int = 1, hours: int = 10,
                  postcode: str = "10000", email: str = "ana@example.hr", **extra: Any) -> dict:
    """A valid order on the demo carrier; override anything."""
    n = next(_serial)
    body = {
        "id": order_id or f"T-{n:04d}",
        "customer": {"name": "Ana Horvat", "phone": phone, "email": email, "locale": locale,
                     "timezone": timezone},
        "shipping_address": {"postcode": postcode, "country": "HR"},
        "shipments": [{"tracking_number": make_number(journey, hours, n % 10000), "carrier": "demo"}],
    }
    body.update(extra)
    return body
