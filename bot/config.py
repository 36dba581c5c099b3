"""Settings, read once from environment variables with explicit casts.

Every problem is collected and reported together, so an operator fixes them in one go.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SUPPORTED_LOCALES = ("en", "id", "hr", "th")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ConfigError(Exception):
    """Configuration is invalid; `problems` lists every one of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """When agents are on shift: weekday set plus daily opening and closing time."""

    days: frozenset[int]  # 0 = Monday
    opens: time
    closes: time
    tz: ZoneInfo

    @classmethod
    def parse(cls, spec: str, tz: ZoneInfo) -> BusinessHours:
        """Parse 'mon-fri 09:00-17:00' (days: ranges or commas)."""
        m = re.fullmatch(r"\s*([a-z,\-]+)\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", spec.lower())
        if not m:
            raise ValueError(f"expected e.g. 'mon-fri 09:00-17:00', got {spec!r}")
        days: set[int] = set()
        for part in m.group(1).split(","):
            ends = part.split("-")
            if not all(e in WEEKDAYS for e in ends) or len(ends) > 2:
                raise ValueError(f"unknown weekday in {part!r}")
            a, b = WEEKDAYS.index(ends[0]), WEEKDAYS.index(ends[-1])
            days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
        opens = time(int(m.group(2)), int(m.group(3)))
        closes = time(int(m.group(4)), int(m.group(5)))
        if opens >= closes:
            raise ValueError("opening time must be before closing time")
        return cls(frozenset(days), opens, closes, tz)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the processes need, typed."""

    redis_url: str | None = None
    key_prefix: str = "shipmate"
    host: str = "0.0.0.0"  # noqa: S104 - a server binds all interfaces by default
    port: int = 8080
    public_base_url: str = "http://localhost:8080"
    shop_api_keys: tuple[str, ...] = ()
    agent_tokens: Mapping[str, str] = field(default_factory=dict)  # token -> agent name
    default_locale: str = "en"
    default_timezone: str = "UTC"
    shop_name: str = "Shipmate Demo Shop"
    business_hours: BusinessHours | None = None
    conversation_ttl: int = 72 * 3600
    history_ttl: int = 90 * 86400
    verify_max_attempts: int = 5
    verify_window: int = 3600
    tracking_fresh_seconds: int = 300
    demo_carrier: bool = False
    demo_carrier_speed: float = 1.0
    webchat_impersonation: bool = False
    log_level: str = "INFO"
    carrier_env: Mapping[str, str] = field(default_factory=dict)  # raw carrier env vars

    @property
    def zone(self) -> ZoneInfo:
        """The shop's default timezone."""
        return ZoneInfo(self.default_timezone)


def _bool(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


def load(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build Settings from the environment; raise ConfigError listing every problem."""
    env = os.environ if env is None else env
    problems: list[str] = []
    values: dict[str, object] = {}

    def take(name: str, attr: str, cast, default=None) -> None:  # type: ignore[no-untyped-def]
        raw = env.get(name)
        if raw is None or raw == "":
            if default is not None:
                values[attr] = default
            return
        try:
            values[attr] = cast(raw)
        except (ValueError, ZoneInfoNotFoundError) as exc:
            problems.append(f"{name}: {exc}")

    def positive_int(raw: str) -> int:
        n = int(raw)
        if n <= 0:
            raise ValueError(f"must be a positive whole number, got {raw!r}")
        return n

    def locale(raw: str) -> str:
        if raw not in SUPPORTED_LOCALES:
            raise ValueError(f"must be one of {', '.join(SUPPORTED_LOCALES)}, got {raw!r}")
        return raw

    def zone(raw: str) -> str:
        try:
            ZoneInfo(raw)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA timezone {raw!r}") from exc
        return raw

    def url(raw: str) -> str:
        if not re.match(r"^https?://[^/\s]+", raw):
            raise ValueError(f"must be an http(s) URL, got {raw!r}")
        return raw.rstrip("/")

    def keys(raw: str) -> tuple[str, ...]:
        items = tuple(k.strip() for k in raw.split(",") if k.strip())
        if any(len(k) < 16 for k in items):
            raise ValueError("every key must be at least 16 characters")
        return items

    def agents(raw: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in raw.split(","))):
            name, sep, token = item.partition(":")
            if not sep or not name or len(token) < 16:
                raise ValueError("expected 'name:token,...' with tokens of 16+ characters")
            out[token] = name
        return out

    take("REDIS_URL", "redis_url", str)
    take("SHIPMATE_KEY_PREFIX", "key_prefix", str)
    take("HOST", "host", str)
    take("PORT", "port", positive_int)
    take("PUBLIC_BASE_URL", "public_base_url", url)
    take("SHOP_API_KEYS", "shop_api_keys", keys)
    take("AGENT_TOKENS", "agent_tokens", agents)
    take("DEFAULT_LOCALE", "default_locale", locale)
    take("DEFAULT_TIMEZONE", "default_timezone", zone)
    take("SHOP_NAME", "shop_name", str)
    take("CONVERSATION_TTL_HOURS", "conversation_ttl", lambda r: positive_int(r) * 3600)
    take("HISTORY_TTL_DAYS", "history_ttl", lambda r: positive_int(r) * 86400)
    take("VERIFY_MAX_ATTEMPTS", "verify_max_attempts", positive_int)
    take("VERIFY_WINDOW_MINUTES", "verify_window", lambda r: positive_int(r) * 60)
    take("TRACKING_FRESH_SECONDS", "tracking_fresh_seconds", positive_int)
    take("DEMO_CARRIER", "demo_carrier", _bool)
    take("DEMO_CARRIER_SPEED", "demo_carrier_speed", float)
    take("WEBCHAT_IMPERSONATION", "webchat_impersonation", _bool)
    take("LOG_LEVEL", "log_level", lambda r: r.upper())

    tz_name = str(values.get("default_timezone", "UTC"))
    hours_raw = env.get("BUSINESS_HOURS", "mon-fri 09:00-17:00")
    hours_tz = env.get("BUSINESS_TIMEZONE", tz_name)
    try:
        values["business_hours"] = BusinessHours.parse(hours_raw, ZoneInfo(zone(hours_tz)))
    except ValueError as exc:
        problems.append(f"BUSINESS_HOURS/BUSINESS_TIMEZONE: {exc}")

    values["carrier_env"] = {k: v for k, v in env.items() if _is_carrier_var(k)}
    values.update(overrides)
    if problems:
        raise ConfigError(problems)
    return Settings(**values)  # type: ignore[arg-type]


CARRIER_ENV_PREFIXES = ("UPS_", "FEDEX_", "USPS_", "DHL_", "EASYPOST_", "SEVENTEENTRACK_",
                        "POSTNL_", "THAILANDPOST_")


def _is_carrier_var(name: str) -> bool:
    return name.startswith(CARRIER_ENV_PREFIXES)


def require_for_web(settings: Settings) -> None:
    """The web process serves the shop and agent APIs: insist on their secrets."""
    problems = []
    if not settings.shop_api_keys:
        problems.append("SHOP_API_KEYS: required (comma-separated keys of 16+ characters)")
    if not settings.agent_tokens:
        problems.append("AGENT_TOKENS: required ('name:token,...')")
    if problems:
        raise ConfigError(problems)
