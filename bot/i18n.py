"""Languages: Jinja2 templates + Babel catalogs, locale choice, dates/money in the customer's zone.

Catalogs are read from `locales/<lang>/LC_MESSAGES/messages.po` and compiled in memory at
start, so there is no build step. Each locale gets its own Jinja environment with its
translations installed (never a global `install()` in an async server).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import phonenumbers
from babel import Locale
from babel.dates import format_date, format_datetime, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency
from babel.support import NullTranslations, Translations

from bot.config import SUPPORTED_LOCALES
from bot.models import Button
from carriers.model import Money

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "templates"
LOCALES_DIR = ROOT / "locales"

#: The locale of the current turn (set once per turn, read by formatting helpers and logs).
current_locale: ContextVar[str] = ContextVar("current_locale", default="en")

#: Currencies whose minor units are not used in everyday prices (Babel's CLDR says 2 for IDR).
NO_MINOR_UNITS = frozenset({"IDR", "JPY", "KRW", "VND", "CLP", "ISK"})

#: Phone country -> locale for the countries we speak.
COUNTRY_LOCALE = {"ID": "id", "HR": "hr", "TH": "th", "BA": "hr", "RS": "hr", "ME": "hr"}

#: Detector labels folded into our locales (hr/bs/sr are nearly indistinguishable on short text).
DETECTED_ALIASES = {"hr": "hr", "bs": "hr", "sr": "hr", "id": "id", "ms": "id", "en": "en", "th": "th"}


#: Templates write `{{ br }}` on its own line for a blank line; other blank lines are dropped,
#: so lines holding only block tags leave no trace.
PARAGRAPH = "\ue000"  # a private-use character: never whitespace, never real text


def tidy(text: str) -> str:
    """Drop blank lines and trailing spaces, turn paragraph marks into one blank line."""
    lines = [line.rstrip() for line in text.splitlines()]
    kept = [("" if line.strip() == PARAGRAPH else line) for line in lines if line.strip()]
    out = "\n".join(kept).replace(PARAGRAPH, "")
    return re.sub(r"\n{3,}", "\n\n", out).strip()


class MissingTranslation(LookupError):
    """A template used a string that has no translation in a shipped catalog."""


def load_catalog(locale: str, locales_dir: Path = LOCALES_DIR) -> Translations | NullTranslations:
    """Compile every locales/<locale>/LC_MESSAGES/*.po in memory into one catalog.

    Several files per language let features keep their strings apart (messages.po for chat
    replies, notifications.po, channels.po); a msgid must not appear in two files.
    """
    files = sorted((locales_dir / locale / "LC_MESSAGES").glob("*.po"))
    if not files:
        return NullTranslations()
    merged = None
    for po in files:
        with po.open("rb") as fh:
            catalog = read_po(fh, locale=locale)
        if merged is None:
            merged = catalog
            continue
        for message in catalog:
            if message.id:
                merged[message.id] = message
    buf = io.BytesIO()
    write_mo(buf, merged, use_fuzzy=False)
    buf.seek(0)
    return Translations(buf)


class StrictTranslations:
    """Wraps a catalog and raises on a msgid it does not contain (used by the test suite)."""

    def __init__(self, inner: Translations | NullTranslations, locale: str) -> None:
        self.inner, self.locale = inner, locale
        self.known = getattr(inner, "_catalog", {})

    def gettext(self, message: str) -> str:
        if self.locale != "en" and not self.known.get(message):
            raise MissingTranslation(f"[{self.locale}] no translation for {message!r}")
        return self.inner.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        if self.locale != "en" and not self.known.get((singular, 0)):
            raise MissingTranslation(f"[{self.locale}] no translation for {singular!r}")
        return self.inner.ngettext(singular, plural, n)


def _zone(ctx: Mapping[str, Any]) -> tzinfo:
    tz = ctx.get("tz")
    return ZoneInfo(tz) if isinstance(tz, str) else (tz or ZoneInfo("UTC"))


def fmt_date(value: date | datetime, locale: str, tz: tzinfo) -> str:
    """A date as the customer reads it; Thai uses Buddhist-era years (BE = CE + 543)."""
    if isinstance(value, datetime):
        value = value.astimezone(tz).date()
    if locale == "th":
        return f"{format_date(value, 'd MMMM', locale='th')} พ.ศ. {value.year + 543}"
    return format_date(value, "long" if locale != "en" else "EEE d MMM yyyy", locale=locale)


def fmt_datetime(value: datetime, locale: str, tz: tzinfo) -> str:
    """Date and time in the customer's timezone."""
    local = value.astimezone(tz)
    return f"{fmt_date(local, locale, tz)}, {format_time(local, 'HH:mm', locale=locale)}"


def fmt_time(value: datetime, locale: str, tz: tzinfo) -> str:
    """Just the clock time in the customer's timezone."""
    return format_time(value.astimezone(tz), "HH:mm", locale=locale)


def fmt_weekday(value: datetime, locale: str, tz: tzinfo) -> str:
    """Weekday name (e.g. for 'on Tuesday')."""
    return format_datetime(value.astimezone(tz), "EEEE", locale=locale)


def fmt_money(value: Money, locale: str) -> str:
    """Money in the customer's locale; rupiah and friends without decimals."""
    if value.currency in NO_MINOR_UNITS:
        pattern = Locale.parse(locale).currency_formats["standard"].pattern
        pattern = re.sub(r"\.0+", "", pattern)
        return format_currency(Decimal(value.amount).quantize(Decimal(1)), value.currency,
                               format=pattern, locale=locale, currency_digits=False)
    return format_currency(value.amount, value.currency, locale=locale)


class I18n:
    """Renders templates in a locale and channel; owns the catalogs and keyword tables."""

    def __init__(self, templates_dir: Path = TEMPLATES_DIR, locales_dir: Path = LOCALES_DIR,
                 *, strict: bool = False) -> None:
        self.templates_dir = templates_dir
        self.locales_dir = locales_dir
        self.strict = strict
        self._envs: dict[str, jinja2.Environment] = {}
        for locale in SUPPORTED_LOCALES:
            self._envs[locale] = self._build_env(locale)

    def _build_env(self, locale: str) -> jinja2.Environment:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.templates_dir)),
            extensions=["jinja2.ext.i18n"],
            autoescape=False,  # noqa: S701 - chat text, not HTML
            undefined=jinja2.StrictUndefined,
            trim_blocks=False, lstrip_blocks=True, keep_trailing_newline=False,
        )
        catalog = load_catalog(locale, self.locales_dir)
        trans = StrictTranslations(catalog, locale) if self.strict else catalog
        env.install_gettext_translations(trans, newstyle=True)  # type: ignore[attr-defined]

        @jinja2.pass_context
        def _date(ctx, value):  # type: ignore[no-untyped-def]
            return fmt_date(value, locale, _zone(ctx))

        @jinja2.pass_context
        def _datetime(ctx, value):  # type: ignore[no-untyped-def]
            return fmt_datetime(value, locale, _zone(ctx))

        @jinja2.pass_context
        def _time(ctx, value):  # type: ignore[no-untyped-def]
            return fmt_time(value, locale, _zone(ctx))

        @jinja2.pass_context
        def _weekday(ctx, value):  # type: ignore[no-untyped-def]
            return fmt_weekday(value, locale, _zone(ctx))

        env.filters.update(date=_date, datetime=_datetime, time=_time, weekday=_weekday,
                           money=lambda v: fmt_money(v, locale))
        env.globals.update(locale=locale, br=PARAGRAPH)
        return env

    def template_names(self) -> list[str]:
        """Every template a person may read (macros excluded)."""
        return sorted(
            str(p.relative_to(self.templates_dir)) for p in self.templates_dir.rglob("*.j2")
            if not p.name.startswith("_")
        )

    def render(self, template: str, locale: str, channel: str = "", /, **ctx: Any) -> str:
        """Render a template (channel override first: `<channel>/<template>.j2`), trimmed."""
        env = self._envs.get(locale) or self._envs["en"]
        candidates = [f"{channel}/{template}.j2", f"{template}.j2"] if channel else [f"{template}.j2"]
        return tidy(env.select_template(candidates).render(**ctx))

    def offer(self, text: str, buttons: list[Button], max_buttons: int, locale: str,
              channel: str = "", tz: str = "UTC") -> tuple[str, list[Button], dict[str, str]]:
        """Fit choices to a channel: as buttons when it carries that many, else numbered in the
        text (SMS, WhatsApp without templates). Returns (text, buttons, {"1": payload, ...}) —
        the engine keeps the numbers in the dialog so a typed "2" picks that choice."""
        if len(buttons) <= max_buttons:
            return text, buttons, {}
        numbered = buttons[:9]
        text += "\n\n" + self.render("choices", locale, channel, tz=tz,
                                      choices=[b.label for b in numbered])
        return text, [], {str(i + 1): b.payload for i, b in enumerate(numbered)}

    def label(self, key: str, locale: str, arg: str = "") -> str:
        """A button label from templates/_buttons.j2."""
        env = self._envs.get(locale) or self._envs["en"]
        module = env.get_template("_buttons.j2").make_module()
        return tidy(str(module.label(key, arg)))

    @cached_property
    def keywords(self) -> dict[str, dict[str, list[str]]]:
        """Intent keywords per locale (locales/<lang>/keywords.json)."""
        out: dict[str, dict[str, list[str]]] = {}
        for locale in SUPPORTED_LOCALES:
            path = self.locales_dir / locale / "keywords.json"
            out[locale] = json.loads(path.read_text("utf-8")) if path.exists() else {}
        return out


@dataclass(frozen=True, slots=True)
class LocaleInputs:
    """What we know when choosing a turn's language (DESIGN.md locale chain)."""

    explicit: str = ""
    order_locale: str = ""
    channel_hint: str = ""
    text: str = ""
    phone: str = ""
    default: str = "en"


def normalize_tag(tag: str) -> str:
    """'hr-HR' -> 'hr', 'ms' -> 'id'; '' when we do not speak it."""
    base = tag.replace("_", "-").split("-")[0].lower()
    base = {"ms": "id", "in": "id", "bs": "hr", "sr": "hr"}.get(base, base)
    return base if base in SUPPORTED_LOCALES else ""


def detect_language(text: str, *, threshold: float = 0.8) -> str:
    """Our locale for `text` when the detector is confident, else ''."""
    if re.search(r"[\u0E00-\u0E7F]", text):
        return "th"
    words = re.findall(r"[^\W\d_]{2,}", text)
    if len(words) < 3:
        return ""  # 'ok', a tracking number or one word: not enough to tell
    buckets: dict[str, float] = {}
    for lang, prob in _identifier().rank(text):
        bucket = DETECTED_ALIASES.get(lang, lang)
        buckets[bucket] = buckets.get(bucket, 0.0) + float(prob)
    best, prob = max(buckets.items(), key=lambda kv: kv[1])
    return best if prob >= threshold and best in SUPPORTED_LOCALES else ""


_IDENT: Any = None


def _identifier() -> Any:
    global _IDENT
    if _IDENT is None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        _IDENT = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        _IDENT.set_languages(["en", "id", "ms", "hr", "bs", "sr", "th", "sl", "nl", "de", "tl"])
    return _IDENT


def phone_locale(phone: str) -> str:
    """Locale suggested by an E.164 number's country, '' when unknown."""
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(phone))
    except phonenumbers.NumberParseException:
        return ""
    return COUNTRY_LOCALE.get(region or "", "")


def choose_locale(inputs: LocaleInputs) -> str:
    """explicit -> order -> channel hint -> confident detection -> phone country -> default."""
    for candidate in (inputs.explicit, inputs.order_locale, normalize_tag(inputs.channel_hint)):
        if candidate in SUPPORTED_LOCALES:
            return candidate
    return detect_language(inputs.text) or phone_locale(inputs.phone) or inputs.default
