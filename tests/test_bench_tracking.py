"""The fleet benchmark runs end to end on a tiny fleet and prints both columns."""

from __future__ import annotations

import re

from bench import tracking_fleet

ROWS = [
    "carrier lookups per shipment-day",
    "API requests per shipment-day",
    "out-for-delivery delay median (h:mm)",
    "out-for-delivery delay p95 (h:mm)",
    "customs delay median (h:mm)",
    "customs delay p95 (h:mm)",
    "events never seen",
]


def test_tiny_fleet_prints_both_columns_and_the_scheduler_calls_less(capsys):
    assert tracking_fleet.main(["--shipments", "120", "--days", "1", "--workers", "1",
                                "--by-journey"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tracking fleet: 120 shipments starting over 1 days")
    header = out.splitlines()[1]
    assert "scheduler" in header and "fixed 2h poll" in header
    values: dict[str, tuple[str, str]] = {}
    for row in ROWS:
        m = re.search(rf"^{re.escape(row)}\s+(\S+)\s+(\S+)$", out, re.M)
        assert m, f"row missing: {row}\n{out}"
        values[row] = (m.group(1), m.group(2))
    ours, fixed = (float(v) for v in values["carrier lookups per shipment-day"])
    assert 0 < ours < fixed
    for row in ROWS[2:6]:
        assert all(re.fullmatch(r"\d+:\d\d", v) for v in values[row]), values[row]
    assert values["events never seen"] == ("0", "0")
    assert "customs_th" in out  # the per-journey table
