"""Tracking-number recognition (carriers.numbers) against the bundled tracking_number_data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carriers import numbers
from carriers.numbers import (
    AGGREGATOR,
    Candidate,
    Recognizer,
    find_numbers,
    luhn,
    mod7,
    mod10,
    mod_37_36,
    normalize,
    recognize,
    s10,
    sum_product_with_weightings_and_modulo,
)
from tests.paths import SHARED_FIXTURES

COURIER_FILES = sorted((numbers.DATA_DIR / "couriers").glob("*.json"))


def _couriers() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in COURIER_FILES:
        yield path, json.loads(path.read_text(encoding="utf-8"))


def _test_numbers(kind: str) -> list[Any]:
    cases = []
    for path, courier in _couriers():
        for spec in courier["tracking_numbers"]:
            for number in spec["test_numbers"][kind]:
                cases.append(pytest.param(
                    courier["courier_code"], spec["name"], number,
                    id=f"{path.stem}/{spec['name']}/{number.strip()}"))
    return cases


VALID = _test_numbers("valid")
INVALID = _test_numbers("invalid")


def _readings(text: str) -> list[tuple[str, str]]:
    return [(c.courier_code, c.service) for c in recognize(text)]


def _only(text: str, courier_code: str) -> Candidate:
    found = [c for c in recognize(text) if c.courier_code == courier_code]
    assert len(found) == 1, recognize(text)
    return found[0]


# --- the walk: every test number of every format in the data ----------------------------------


def test_walk_covers_every_courier_file_and_format() -> None:
    assert COURIER_FILES, "carriers/data/tracking_number_data/couriers is empty"
    walked = {(values[0], values[1]) for values in (case.values for case in VALID)}
    for _path, courier in _couriers():
        for spec in courier["tracking_numbers"]:
            assert (courier["courier_code"], spec["name"]) in walked


@pytest.mark.parametrize(("courier_code", "service", "number"), VALID)
def test_valid_test_number_is_recognised_as_its_format(courier_code: str, service: str,
                                                       number: str) -> None:
    found = [c for c in recognize(number)
             if (c.courier_code, c.service) == (courier_code, service)]
    assert found, f"{number!r} not recognised as {courier_code}/{service}: {_readings(number)}"
    candidate = found[0]
    assert candidate.tracking_number == normalize(number)
    # the normalized number is recognised the same way on its own
    assert (courier_code, service) in _readings(candidate.tracking_number)


@pytest.mark.parametrize(("courier_code", "service", "number"), INVALID)
def test_invalid_test_number_is_not_recognised_as_its_format(courier_code: str, service: str,
                                                             number: str) -> None:
    assert (courier_code, service) not in _readings(number)


# --- free text --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected", "courier_code"), [
    ("my parcel is 1z 999 aa1 01 2345 6784 thx", ["1Z999AA10123456784"], "ups"),
    ("Tracking: 1Z999AA10123456784.", ["1Z999AA10123456784"], "ups"),
    ("(1Z999AA10123456784)", ["1Z999AA10123456784"], "ups"),
    ("where is 9400-1112-0108-0805-4830-16 ??", ["9400111201080805483016"], "usps"),
    ("rb 123 456 785 gb please", ["RB123456785GB"], "s10"),
    ("fedex said 0414 4176 0228 964, still nothing", ["041441760228964"], "fedex"),
    ("\uff11\uff3a\uff19\uff19\uff19\uff21\uff21\uff11\uff10\uff11\uff12\uff13\uff14"
     "\uff15\uff16\uff17\uff18\uff14", ["1Z999AA10123456784"], "ups"),
    ("GM2951173225174494 ok?", ["GM2951173225174494"], "dhl"),
    ("lasership 1LS7119013618127-1", ["1LS71190136181271"], "lasership"),
])
def test_numbers_are_found_in_free_text(text: str, expected: list[str],
                                        courier_code: str) -> None:
    assert find_numbers(text) == expected
    assert recognize(text)[0].courier_code == courier_code
    assert recognize(text)[0].tracking_number == expected[0]


def test_several_numbers_come_back_in_reading_order() -> None:
    text = "first RB123456785GB, then 1Z999AA10123456784 and 986578788855"
    assert find_numbers(text) == ["RB123456785GB", "1Z999AA10123456784", "986578788855"]


@pytest.mark.parametrize("text", [
    "",
    "hello, where is my order?",
    "call me at 555-123-4567",
    "order #12345 placed 2024-05-01",
    "arrives in 12 days ok thx",
    "1Z999AA10123456785",  # check digit off by one
    "RB123456786GB",
])
def test_text_without_a_valid_number_gives_nothing(text: str) -> None:
    assert recognize(text) == []
    assert find_numbers(text) == []


@pytest.mark.parametrize(("text", "expected"), [
    (" 1z-999 aa1 01 2345 6784. ", "1Z999AA10123456784"),
    ("(rb123456785gb)", "RB123456785GB"),
    ("1ls7119013618127-1", "1LS71190136181271"),
    ("9400\u20131112\u20130108", "940011120108"),
    ("\uff11\uff3a\uff19", "1Z9"),
])
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


# --- S10 and adapter mapping ------------------------------------------------------------------


def test_s10_lookups_name_country_post_and_service() -> None:
    candidate = _only("RB123456785GB", "s10")
    assert candidate.tracking_number == "RB123456785GB"
    assert candidate.service == "S10"
    assert "Royal Mail" in candidate.courier_name
    assert candidate.details["CountryCode"] == "GB"
    assert candidate.details["CountryCode.country"] == "Great Britain"
    assert "Royal Mail" in candidate.details["CountryCode.courier"]
    assert candidate.details["CountryCode.courier_url"].startswith("http")
    assert candidate.details["ServiceType"] == "RB"
    assert candidate.details["ServiceType.name"] == "Letter Post Registered"
    assert candidate.details["SerialNumber"] == "12345678"
    assert candidate.details["CheckDigit"] == "5"
    assert candidate.tracking_url == ""  # the data has no S10 tracking page
    assert candidate.carrier == AGGREGATOR


@pytest.mark.parametrize("number", ["RB123456785XX", "RB123456785ZZ"])
def test_s10_with_an_unknown_country_is_rejected(number: str) -> None:
    assert "s10" not in {c.courier_code for c in recognize(number)}


@pytest.mark.parametrize(("number", "carrier", "post"), [
    ("EE123456785TH", "thailandpost", "Thailand Post"),
    ("ee 123 456 785 th", "thailandpost", "Thailand Post"),
    ("CP123456785NL", "postnl", "PostNL"),
    ("RB123456785US", "usps", "United States Postal Service"),
    ("RB123456785CV", AGGREGATOR, "Correios de Cabo Verde"),
])
def test_s10_items_go_to_the_issuing_posts_adapter(number: str, carrier: str,
                                                   post: str) -> None:
    candidate = _only(number, "s10")
    assert candidate.carrier == carrier
    assert candidate.courier_name == post


@pytest.mark.parametrize(("number", "courier_code", "carrier"), [
    ("1Z999AA10123456784", "ups", "ups"),
    ("986578788855", "fedex", "fedex"),
    ("9400111206206406260787", "usps", "usps"),
    ("3318810025", "dhl", "dhl"),
    ("TBA502887274000", "amazon", AGGREGATOR),
    ("0073938000549297", "canada_post", AGGREGATOR),
    ("JJD0002257639032011", "yodel", AGGREGATOR),
])
def test_couriers_map_to_shipmate_adapters(number: str, courier_code: str, carrier: str) -> None:
    best = recognize(number)[0]
    assert (best.courier_code, best.carrier) == (courier_code, carrier)


# --- ranking ----------------------------------------------------------------------------------


def test_a_fixed_prefix_and_check_digit_outrank_a_loose_format() -> None:
    # "MY" is also a DHL eCommerce prefix; the UPS reading must come first
    readings = _readings("here's my 1Z999AA10123456784")
    assert readings[0] == ("ups", "UPS")
    assert ("dhl", "DHL E-Commerce") in readings


def test_a_check_digit_outranks_a_format_without_one() -> None:
    # an S10 number with a TH/LX shape also fits DHL eCommerce, which has no check digit
    assert _readings("LX123456785TH")[:2] == [("s10", "S10"), ("dhl", "DHL E-Commerce")]


def test_a_typed_prefix_outranks_a_check_digit_on_the_digits_alone() -> None:
    readings = _readings("TBA 000000000000")
    assert readings[0] == ("amazon", "Amazon Logistics")
    assert ("fedex", "FedEx Express (12)") in readings
    assert find_numbers("TBA 000000000000") == ["TBA000000000000"]


def test_part_of_a_longer_number_is_not_a_candidate() -> None:
    candidates = recognize("0414 4176 0228 964")
    assert {c.tracking_number for c in candidates} == {"041441760228964"}
    assert candidates[0].service == "FedEx Ground"


def test_two_numbers_of_a_loose_format_are_not_run_together() -> None:
    assert find_numbers("GM2951173225174494 GM2951173225174495") == [
        "GM2951173225174494", "GM2951173225174495"]


def test_candidates_are_deduplicated() -> None:
    candidates = recognize("1Z999AA10123456784 or 1Z999AA10123456784?")
    assert len(candidates) == 1
    assert find_numbers("1Z999AA10123456784 or 1z 999 aa1 01 2345 6784") == [
        "1Z999AA10123456784"]


# --- tracking URL -----------------------------------------------------------------------------


def test_tracking_url_is_filled_in() -> None:
    ups = _only("1z999aa10123456784", "ups")
    assert ups.tracking_url == (
        "https://wwwapps.ups.com/WebTracking/track?track=yes&trackNums=1Z999AA10123456784")
    fedex = recognize("986578788855")[0]
    assert fedex.tracking_url.endswith("tracknumbers=986578788855")
    assert "%s" not in fedex.tracking_url


def test_service_type_lookup_in_details() -> None:
    ups = _only("1ZXX3150YW44070023", "ups")
    assert ups.details["ServiceType"] == "YW"
    assert ups.details["ServiceType.name"] == "UPS SurePost - Delivered by the USPS"
    assert ups.details["ShipperId"] == "XX3150"


# --- checksum algorithms ----------------------------------------------------------------------


@pytest.mark.parametrize(("check", "serial", "digit", "params", "ok"), [
    # UPS 1Z999AA10123456784: letters count as (ord - 3) % 10
    (mod10, "999AA1012345678", "4", {"evens_multiplier": 1, "odds_multiplier": 2}, True),
    (mod10, "999AA1012345678", "5", {"evens_multiplier": 1, "odds_multiplier": 2}, False),
    # FedEx Ground 041441760228964
    (mod10, "04144176022896", "4", {"evens_multiplier": 1, "odds_multiplier": 3}, True),
    # USPS IMpb, weighted from the right
    (mod10, "940011120620640626078", "7",
     {"evens_multiplier": 3, "odds_multiplier": 1, "reverse": True}, True),
    (luhn, "7992739871", "3", {}, True),  # the textbook Luhn example
    (luhn, "7992739871", "4", {}, False),
    (mod7, "331881002", "5", {}, True),  # DHL 3318810025
    (mod7, "331881002", "6", {}, False),
    (s10, "12345678", "5", {}, True),  # RB123456785GB
    (s10, "12345678", "6", {}, False),
    (s10, "00000000", "5", {}, True),  # remainder 0: C = 11 -> 5
    (s10, "00004000", "0", {}, True),  # remainder 1: C = 10 -> 0
    (sum_product_with_weightings_and_modulo, "98657878885", "5",
     {"weightings": [3, 1, 7, 3, 1, 7, 3, 1, 7, 3, 1], "modulo1": 11, "modulo2": 10}, True),
    (sum_product_with_weightings_and_modulo, "99657878885", "5",
     {"weightings": [3, 1, 7, 3, 1, 7, 3, 1, 7, 3, 1], "modulo1": 11, "modulo2": 10}, False),
    (mod_37_36, "09980000020033", "F", {}, True),  # DPD
    (mod_37_36, "09980000020034", "D", {}, True),
    (mod_37_36, "008182709980000020033350276", "C", {}, True),
    (mod_37_36, "09980000020033", "D", {}, False),
])
def test_checksum_vectors(check: Any, serial: str, digit: str, params: dict[str, Any],
                          ok: bool) -> None:
    assert check(serial, digit, **params) is ok


def test_every_checksum_named_in_the_data_is_implemented() -> None:
    named = {spec["validation"]["checksum"]["name"]
             for _path, courier in _couriers() for spec in courier["tracking_numbers"]
             if (spec.get("validation") or {}).get("checksum")}
    assert named <= set(numbers.CHECKSUMS)


# --- loading ----------------------------------------------------------------------------------


def _format(name: str, regex: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "id": name.lower().replace(" ", "_"), "regex": regex, "validation": {},
            "test_numbers": {"valid": [], "invalid": []}, **extra}


def test_definitions_load_once() -> None:
    assert numbers.default_recognizer() is numbers.default_recognizer()


def test_unknown_checksum_parameters_fail_at_load() -> None:
    spec = _format("X", r"(?<SerialNumber>[0-9]{9})(?<CheckDigit>[0-9])",
                   validation={"checksum": {"name": "mod7", "modulo": 7, "bogus": 1}})
    with pytest.raises(ValueError, match="bogus"):
        Recognizer([{"name": "X", "courier_code": "x", "tracking_numbers": [spec]}])


def test_partners_decide_who_carries_the_number() -> None:
    shipper = _format(
        "Fast Post", r"\s*(?<ApplicationIdentifier>9\s*2\s*)(?<SerialNumber>([0-9]\s*){10})",
        partners=[{"partner_id": "postal_92", "partner_type": "carrier",
                   "validation": {"matches_all": [
                       {"regex_group_name": "ApplicationIdentifier", "matches": "92"}]}},
                  {"partner_id": "postal_92", "partner_type": "reseller",
                   "validation": {"matches_any": [
                       {"regex_group_name": "SerialNumber", "matches_regex": "0+"}]}}])
    carrier = _format("Postal 92", r"\s*9\s*2\s*(?<SerialNumber>([0-9]\s*){10})",
                      partners=[{"partner_id": "fast_post", "partner_type": "shipper"}])
    recognizer = Recognizer([
        {"name": "Fast", "courier_code": "fedex", "tracking_numbers": [shipper]},
        {"name": "Postal", "courier_code": "usps", "tracking_numbers": [carrier]},
    ])
    readings = {c.courier_code: c for c in recognizer.recognize("92 1234567890")}
    assert readings["fedex"].carrier == "usps"
    assert readings["fedex"].details["partner.carrier"] == "usps"
    assert readings["fedex"].details["partner.carrier_service"] == "Postal 92"
    assert "partner.reseller" not in readings["fedex"].details  # matches_any did not hold
    assert readings["usps"].carrier == "usps"
    assert readings["usps"].details["partner.shipper"] == "fedex"


def test_bundled_data_is_an_unchanged_copy_with_license_and_sources() -> None:
    data = numbers.DATA_DIR
    assert (data / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    assert "b79ce4bfc04519ef4bc85bf7c6f321795aadf3d3" in (data / "SOURCES.md").read_text(
        encoding="utf-8")
    json.loads((data / "glossary.json").read_text(encoding="utf-8"))
    upstream = SHARED_FIXTURES / "carriers" / "tracking_number_data"
    if not upstream.exists():
        pytest.skip("shared fixtures not beside the checkout")
    for source in [upstream / "LICENSE", upstream / "glossary.json",
                   *sorted((upstream / "couriers").glob("*.json"))]:
        copy = data / source.relative_to(upstream)
        assert copy.read_bytes() == source.read_bytes(), copy
