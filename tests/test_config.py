"""Settings from environment variables: casts, validation, every problem reported at once."""

from __future__ import annotations

from datetime import time
from zoneinfo import ZoneInfo

import pytest

from bot.config import BusinessHours, ConfigError, Settings, load, require_for_web

KEY_A = "shop-key-aaaaaaaaaaaaaaaa"
KEY_B = "shop-key-bbbbbbbbbbbbbbbb"
TOKEN_ANA = "agent-ana-0123456789abcdef"
TOKEN_MARKO = "agent-marko-0123456789abcdef"


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(env)
    return info.value.problems


# ---------------------------------------------------------------- every problem at once

def test_every_bad_variable_is_reported_in_one_error() -> None:
    env = {
        "PORT": "eighty",
        "PUBLIC_BASE_URL": "ftp://shop.example.com",
        "SHOP_API_KEYS": f"{KEY_A},short",
        "AGENT_TOKENS": "ana",
        "DEFAULT_LOCALE": "de",
        "DEFAULT_TIMEZONE": "Mars/Olympus_Mons",
        "VERIFY_MAX_ATTEMPTS": "0",
        "HISTORY_TTL_DAYS": "-3",
        "DEMO_CARRIER": "maybe",
        "DEMO_CARRIER_SPEED": "fast",
        "BUSINESS_HOURS": "someday 09:00-17:00",
        # good ones in between must not hide or add problems
        "HOST": "127.0.0.1", "SHOP_NAME": "Zvjezdana trgovina",
    }
    with pytest.raises(ConfigError) as info:
        load(env)
    problems = info.value.problems
    bad = [name for name in env if name not in ("HOST", "SHOP_NAME")]
    assert len(problems) == len(bad), problems
    for name in bad:
        assert sum(p.startswith((f"{name}:", f"{name}/")) for p in problems) == 1, (
            f"{name} not reported once: {problems}")
        assert name in str(info.value)
    assert not any(p.startswith(("HOST", "SHOP_NAME")) for p in problems)
    # each problem says what was wrong, not just where
    text = "\n".join(problems)
    assert "'de'" in text and "en, id, hr, th" in text
    assert "Mars/Olympus_Mons" in text
    assert "16" in next(p for p in problems if p.startswith("SHOP_API_KEYS"))
    assert "someday" in next(p for p in problems if p.startswith("BUSINESS_HOURS"))


def test_bad_business_timezone_is_reported_with_other_problems() -> None:
    problems = problems_of({"BUSINESS_TIMEZONE": "Europe/Atlantis", "PORT": "-1"})
    assert len(problems) == 2
    assert any("BUSINESS_TIMEZONE" in p and "Europe/Atlantis" in p for p in problems)
    assert any(p.startswith("PORT") for p in problems)


@pytest.mark.parametrize(("name", "raw"), [
    ("PORT", "0"), ("PORT", "8080.5"), ("PORT", "80 80"),
    ("TRACKING_FRESH_SECONDS", "-5"), ("CONVERSATION_TTL_HOURS", "zero"),
    ("VERIFY_WINDOW_MINUTES", "0"),
    ("PUBLIC_BASE_URL", "shop.example.com"), ("PUBLIC_BASE_URL", "https://"),
    ("AGENT_TOKENS", f":{TOKEN_ANA}"), ("AGENT_TOKENS", "ana:short"),
    ("AGENT_TOKENS", f"ana:{TOKEN_ANA},marko"),
    ("DEFAULT_LOCALE", "EN"), ("DEFAULT_TIMEZONE", "Europe/Zagreb/Centre"),
    ("WEBCHAT_IMPERSONATION", "sometimes"),
])
def test_single_bad_value_names_its_variable(name: str, raw: str) -> None:
    problems = problems_of({name: raw})
    assert len(problems) == 1 and problems[0].startswith(f"{name}:"), problems


# ---------------------------------------------------------------- good values

def test_good_values_are_cast() -> None:
    s = load({
        "REDIS_URL": "redis://cache:6379/2", "SHIPMATE_KEY_PREFIX": "shop7",
        "HOST": "127.0.0.1", "PORT": "9000",
        "PUBLIC_BASE_URL": "https://bot.shop.example.com/",
        "SHOP_API_KEYS": f" {KEY_A} , {KEY_B},",
        "AGENT_TOKENS": f"ana:{TOKEN_ANA}, marko:{TOKEN_MARKO}",
        "DEFAULT_LOCALE": "th", "DEFAULT_TIMEZONE": "Asia/Bangkok",
        "SHOP_NAME": "ร้านค้า", "CONVERSATION_TTL_HOURS": "2", "HISTORY_TTL_DAYS": "3",
        "VERIFY_MAX_ATTEMPTS": "4", "VERIFY_WINDOW_MINUTES": "10",
        "TRACKING_FRESH_SECONDS": "90", "DEMO_CARRIER": "yes", "DEMO_CARRIER_SPEED": "60",
        "WEBCHAT_IMPERSONATION": "off", "LOG_LEVEL": "debug",
        "UPS_CLIENT_ID": "ups-id", "FEDEX_API_KEY": "fx", "THAILANDPOST_TOKEN": "tp",
        "UNRELATED": "x", "AWS_SECRET": "y",
    })
    assert s.redis_url == "redis://cache:6379/2" and s.key_prefix == "shop7"
    assert s.port == 9000 and isinstance(s.port, int)
    assert s.host == "127.0.0.1"
    assert s.public_base_url == "https://bot.shop.example.com"
    assert s.shop_api_keys == (KEY_A, KEY_B)
    assert dict(s.agent_tokens) == {TOKEN_ANA: "ana", TOKEN_MARKO: "marko"}
    assert s.default_locale == "th" and s.default_timezone == "Asia/Bangkok"
    assert s.zone == ZoneInfo("Asia/Bangkok")
    assert s.shop_name == "ร้านค้า"
    assert (s.conversation_ttl, s.history_ttl, s.verify_window) == (7200, 3 * 86400, 600)
    assert s.verify_max_attempts == 4 and s.tracking_fresh_seconds == 90
    assert s.demo_carrier is True and s.demo_carrier_speed == 60.0
    assert isinstance(s.demo_carrier_speed, float)
    assert s.webchat_impersonation is False
    assert s.log_level == "DEBUG"
    assert dict(s.carrier_env) == {"UPS_CLIENT_ID": "ups-id", "FEDEX_API_KEY": "fx",
                                   "THAILANDPOST_TOKEN": "tp"}
    # business hours default to mon-fri 09-17 in the shop's timezone
    assert s.business_hours == BusinessHours(frozenset(range(5)), time(9), time(17),
                                             ZoneInfo("Asia/Bangkok"))


def test_defaults_and_empty_values() -> None:
    s = load({"PORT": "", "DEFAULT_LOCALE": "", "REDIS_URL": ""})
    d = Settings()
    assert s.port == d.port == 8080
    assert s.default_locale == "en" and s.redis_url is None  # empty means "not set"
    assert s.shop_api_keys == () and dict(s.agent_tokens) == {}
    assert s.business_hours is not None and s.business_hours.tz == ZoneInfo("UTC")
    assert s.business_hours.days == frozenset(range(5))


@pytest.mark.parametrize(("raw", "value"), [
    ("1", True), ("true", True), ("TRUE", True), ("on", True), ("Yes", True),
    ("0", False), ("false", False), ("no", False), ("Off", False),
])
def test_boolean_spellings(raw: str, value: bool) -> None:
    assert load({"DEMO_CARRIER": raw}).demo_carrier is value


def test_business_timezone_overrides_the_shop_timezone() -> None:
    s = load({"DEFAULT_TIMEZONE": "Asia/Jakarta", "BUSINESS_TIMEZONE": "Europe/Zagreb",
              "BUSINESS_HOURS": "sat,sun 10:00-14:00"})
    assert s.default_timezone == "Asia/Jakarta"
    assert s.business_hours is not None
    assert s.business_hours.tz == ZoneInfo("Europe/Zagreb")
    assert s.business_hours.days == frozenset({5, 6})


def test_overrides_win_over_the_environment() -> None:
    s = load({"PORT": "9000", "DEMO_CARRIER": "false"}, port=7000, demo_carrier=True)
    assert s.port == 7000 and s.demo_carrier is True


def test_config_error_message_lists_each_problem() -> None:
    err = ConfigError(["PORT: bad", "DEFAULT_LOCALE: bad"])
    assert str(err).splitlines() == ["invalid configuration:", "  - PORT: bad",
                                     "  - DEFAULT_LOCALE: bad"]


@pytest.mark.parametrize("raw", ["0", "-2", "nan"])
def test_demo_carrier_speed_must_be_positive(raw: str) -> None:
    problems = problems_of({"DEMO_CARRIER_SPEED": raw})
    assert len(problems) == 1 and problems[0].startswith("DEMO_CARRIER_SPEED:")


def test_unknown_log_level_is_a_config_problem() -> None:
    problems = problems_of({"LOG_LEVEL": "loud"})
    assert len(problems) == 1 and problems[0].startswith("LOG_LEVEL:")


# ---------------------------------------------------------------- business hours

ZG = ZoneInfo("Europe/Zagreb")


@pytest.mark.parametrize(("spec", "days", "opens", "closes"), [
    ("mon-fri 09:00-17:00", {0, 1, 2, 3, 4}, time(9), time(17)),
    ("sat,sun 10:00-14:00", {5, 6}, time(10), time(14)),
    ("fri-mon 08:30-12:15", {4, 5, 6, 0}, time(8, 30), time(12, 15)),
    ("sun-tue 9:00-9:01", {6, 0, 1}, time(9), time(9, 1)),
    ("mon,wed-thu,sat 07:00-19:30", {0, 2, 3, 5}, time(7), time(19, 30)),
    ("  Mon-Sun   00:00 - 23:59 ", set(range(7)), time(0), time(23, 59)),
    ("wed-wed 10:00-11:00", {2}, time(10), time(11)),
])
def test_business_hours_parse(spec: str, days: set[int], opens: time, closes: time) -> None:
    hours = BusinessHours.parse(spec, ZG)
    assert hours.days == frozenset(days)
    assert (hours.opens, hours.closes, hours.tz) == (opens, closes, ZG)


@pytest.mark.parametrize(("spec", "message"), [
    ("someday 09:00-17:00", "unknown weekday"),
    ("mon-fry 09:00-17:00", "unknown weekday"),
    ("mon--fri 09:00-17:00", "unknown weekday"),
    ("mon-wed-fri 09:00-17:00", "weekday"),
    (",mon 09:00-17:00", "unknown weekday"),
    ("mon-fri 17:00-09:00", "before closing"),
    ("mon-fri 09:00-09:00", "before closing"),
    ("mon-fri", "expected"),
    ("09:00-17:00", "expected"),
    ("mon-fri 9-17", "expected"),
    ("mon-fri 25:00-26:00", "hour"),
    ("mon-fri 09:75-17:00", "minute"),
    ("", "expected"),
])
def test_business_hours_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BusinessHours.parse(spec, ZG)


# ---------------------------------------------------------------- web secrets

def test_require_for_web_lists_both_missing_secrets() -> None:
    with pytest.raises(ConfigError) as info:
        require_for_web(load({}))
    assert len(info.value.problems) == 2
    assert info.value.problems[0].startswith("SHOP_API_KEYS")
    assert info.value.problems[1].startswith("AGENT_TOKENS")


def test_require_for_web_names_only_what_is_missing() -> None:
    with pytest.raises(ConfigError) as info:
        require_for_web(load({"SHOP_API_KEYS": KEY_A}))
    assert [p.split(":")[0] for p in info.value.problems] == ["AGENT_TOKENS"]
    with pytest.raises(ConfigError) as info:
        require_for_web(load({"AGENT_TOKENS": f"ana:{TOKEN_ANA}"}))
    assert [p.split(":")[0] for p in info.value.problems] == ["SHOP_API_KEYS"]
    require_for_web(load({"SHOP_API_KEYS": KEY_A, "AGENT_TOKENS": f"ana:{TOKEN_ANA}"}))
