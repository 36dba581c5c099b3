"""Settings, read once from environment variables with explicit casts.

Every problem is collected and reported together, so an operator fixes them in one go.
"""

from __future__ import annotations

import json
import math
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
    # Twilio (SMS + WhatsApp)
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_auth_token_secondary: str = ""  # accepted on webhooks during token rotation
    twilio_api_base_url: str = "https://api.twilio.com"
    twilio_sms_from: str = ""  # E.164 sender, or use a messaging service
    twilio_whatsapp_from: str = ""  # E.164 WhatsApp sender (without the whatsapp: prefix)
    twilio_messaging_service_sid: str = ""
    twilio_sms_mps: float = 1.0  # messages (segments) per second per sender
    twilio_whatsapp_mps: float = 10.0
    whatsapp_templates: Mapping[str, str] = field(default_factory=dict)  # "kind:locale" -> HX sid
    # Telegram
    telegram_bot_token: str = ""
    telegram_api_base_url: str = "https://api.telegram.org"
    telegram_webhook_secret: str = ""
    telegram_bot_username: str = ""
    telegram_mps: float = 30.0
    telegram_per_chat_mps: float = 1.0

    # tracking schedule
    carrier_budgets: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    tracking_stop_after_days: int = 30  # no carrier update for this long: stop polling
    tracking_delivered_grace_hours: int = 48  # keep checking a delivered parcel this long
    # notifications
    quiet_hours: tuple[time, time] = (time(21, 0), time(8, 0))  # customer's local time
    notify_max_per_shipment_per_day: int = 6
    notify_collapse_seconds: int = 300  # changes within this window become one message
    handoff_on_trouble: bool = False  # lost/damaged/returned/customs documents open a handoff

    @property
    def twilio_enabled(self) -> bool:
        """Whether SMS/WhatsApp through Twilio are configured."""
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    @property
    def telegram_enabled(self) -> bool:
        """Whether the Telegram channel is configured."""
        return bool(self.telegram_bot_token)

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

    def positive_float(raw: str) -> float:
        n = float(raw)
        if not math.isfinite(n) or n <= 0:
            raise ValueError(f"must be a positive number, got {raw!r}")
        return n

    def log_level(raw: str) -> str:
        level = raw.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {raw!r}")
        return level

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
    take("DEMO_CARRIER_SPEED", "demo_carrier_speed", positive_float)
    take("WEBCHAT_IMPERSONATION", "webchat_impersonation", _bool)
    take("LOG_LEVEL", "log_level", log_level)

    def e164(raw: str) -> str:
        if not re.fullmatch(r"\+[1-9]\d{6,14}", raw):
            raise ValueError(f"must be an E.164 number such as +15005550006, got {raw!r}")
        return raw

    def templates(raw: str) -> dict[str, str]:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"must be a JSON object: {exc}") from exc
        if not isinstance(data, dict) or not all(
                isinstance(k, str) and re.fullmatch(r"[a-z_]+:(en|id|hr|th)", k)
                and isinstance(v, str) and re.fullmatch(r"HX[0-9a-fA-F]{32}", v)
                for k, v in data.items()):
            raise ValueError('must map "kind:locale" to a Content SID, e.g. '
                             '{"shipped:hr": "HX0123456789abcdef0123456789abcdef"}')
        return data

    def secret_token(raw: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_\-]{16,256}", raw):
            raise ValueError("16-256 characters of A-Z a-z 0-9 _ -")
        return raw

    take("TWILIO_ACCOUNT_SID", "twilio_account_sid", str)
    take("TWILIO_AUTH_TOKEN", "twilio_auth_token", str)
    take("TWILIO_AUTH_TOKEN_SECONDARY", "twilio_auth_token_secondary", str)
    take("TWILIO_API_BASE_URL", "twilio_api_base_url", url)
    take("TWILIO_SMS_FROM", "twilio_sms_from", e164)
    take("TWILIO_WHATSAPP_FROM", "twilio_whatsapp_from", e164)
    take("TWILIO_MESSAGING_SERVICE_SID", "twilio_messaging_service_sid", str)
    take("TWILIO_SMS_MPS", "twilio_sms_mps", positive_float)
    take("TWILIO_WHATSAPP_MPS", "twilio_whatsapp_mps", positive_float)
    take("WHATSAPP_TEMPLATES", "whatsapp_templates", templates)
    take("TELEGRAM_BOT_TOKEN", "telegram_bot_token", str)
    take("TELEGRAM_API_BASE_URL", "telegram_api_base_url", url)
    take("TELEGRAM_WEBHOOK_SECRET", "telegram_webhook_secret", secret_token)
    take("TELEGRAM_BOT_USERNAME", "telegram_bot_username", str)
    take("TELEGRAM_MPS", "telegram_mps", positive_float)
    take("TELEGRAM_PER_CHAT_MPS", "telegram_per_chat_mps", positive_float)
    if env.get("TWILIO_ACCOUNT_SID") or env.get("TWILIO_AUTH_TOKEN"):
        for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
            if not env.get(name):
                problems.append(f"{name}: required when Twilio is configured")
        if not (env.get("TWILIO_SMS_FROM") or env.get("TWILIO_WHATSAPP_FROM")
                or env.get("TWILIO_MESSAGING_SERVICE_SID")):
            problems.append("TWILIO_SMS_FROM / TWILIO_WHATSAPP_FROM / TWILIO_MESSAGING_SERVICE_SID: "
                            "set at least one sender")
    if env.get("TELEGRAM_BOT_TOKEN") and not env.get("TELEGRAM_WEBHOOK_SECRET"):
        problems.append("TELEGRAM_WEBHOOK_SECRET: required with TELEGRAM_BOT_TOKEN "
                        "(Telegram sends it on every webhook call)")

    def budgets(raw: str) -> dict[str, dict[str, float]]:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"must be a JSON object: {exc}") from exc
        if not isinstance(data, dict) or not all(
                isinstance(v, dict) and set(v) <= {"per_second", "per_day"}
                and all(isinstance(n, int | float) and n > 0 for n in v.values())
                for v in data.values()):
            raise ValueError('expected e.g. {"dhl": {"per_second": 1, "per_day": 250}}')
        return data

    def quiet(raw: str) -> tuple[time, time]:
        m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", raw)
        if not m:
            raise ValueError(f"expected e.g. '21:00-08:00', got {raw!r}")
        return time(int(m.group(1)), int(m.group(2))), time(int(m.group(3)), int(m.group(4)))

    take("CARRIER_BUDGETS", "carrier_budgets", budgets)
    take("TRACKING_STOP_AFTER_DAYS", "tracking_stop_after_days", positive_int)
    take("TRACKING_DELIVERED_GRACE_HOURS", "tracking_delivered_grace_hours", positive_int)
    take("QUIET_HOURS", "quiet_hours", quiet)
    take("NOTIFY_MAX_PER_SHIPMENT_PER_DAY", "notify_max_per_shipment_per_day", positive_int)
    take("NOTIFY_COLLAPSE_SECONDS", "notify_collapse_seconds", positive_int)
    take("HANDOFF_ON_TROUBLE", "handoff_on_trouble", _bool)

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
