"""What a customer wants, from free text or a tapped button. Pure: text in, Intent out."""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class Kind(enum.StrEnum):
    """Intents the engine understands."""

    STOP = "stop"
    START = "start"
    HUMAN = "human"
    HELP = "help"
    LANGUAGE = "language"  # show the language menu
    SET_LANGUAGE = "set_language"
    NOTIFY_ON = "notify_on"
    NOTIFY_OFF = "notify_off"
    LIST_ORDERS = "list_orders"
    WHERE_IS = "where_is"  # asks about an order/parcel, maybe with references
    CHOICE = "choice"  # "2" in answer to numbered choices
    LINK = "link"  # Telegram /start <token> deep link
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Intent:
    """A parsed intent; `references` are tokens that may be order or tracking numbers."""

    kind: Kind
    arg: str = ""
    references: tuple[str, ...] = ()
    matched_locale: str = ""  # which locale's keyword matched (a language hint)


Keywords = Mapping[str, Mapping[str, Sequence[str]]]  # locale -> intent -> phrases

#: Intents tried in this order for phrase matches: the more specific first.
PHRASE_ORDER = (Kind.HUMAN, Kind.NOTIFY_OFF, Kind.NOTIFY_ON, Kind.LANGUAGE, Kind.LIST_ORDERS,
                Kind.WHERE_IS, Kind.HELP)
#: Whole-message keywords (like carrier STOP handling): the message must be just the word.
WHOLE_MESSAGE = (Kind.STOP, Kind.START)
_REFERENCE = re.compile(r"#?[A-Za-z0-9][A-Za-z0-9\-_/.]*\d[A-Za-z0-9\-_/.]*|#\d+")


def fold(text: str) -> str:
    """Case- and accent-insensitive form for matching ('Pomoć' -> 'pomoc')."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return re.sub(r"\s+", " ", stripped).strip(" .,!?;:¿¡\t\n")


def references(text: str) -> tuple[str, ...]:
    """Tokens that contain a digit and could be an order or tracking number."""
    out: list[str] = []
    for tok in _REFERENCE.findall(text):
        tok = tok.strip(".,/-_")
        if len(tok.lstrip("#")) >= 3 and tok not in out:
            out.append(tok)
    return tuple(out)


def _contains(haystack: str, phrase: str) -> bool:
    if not phrase:
        return False
    if re.search(r"[\u0E00-\u0E7F]", phrase):  # Thai has no spaces between words
        return phrase in haystack
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", haystack) is not None


def parse(text: str, keywords: Keywords, *, payload: str = "", extra_refs: Sequence[str] = (),
          has_choices: bool = False) -> Intent:
    """Classify one message. Button payloads win; then commands, keywords, references."""
    if payload:
        return from_payload(payload)
    raw = text.strip()
    if raw.startswith("/"):
        command, _, rest = raw[1:].partition(" ")
        command = command.split("@")[0].lower()
        if command == "start" and rest.strip():
            return Intent(Kind.LINK, rest.strip())
        mapped = {"start": Kind.HELP, "help": Kind.HELP, "menu": Kind.HELP, "stop": Kind.STOP,
                  "language": Kind.LANGUAGE, "orders": Kind.LIST_ORDERS, "human": Kind.HUMAN,
                  "agent": Kind.HUMAN, "notify": Kind.NOTIFY_ON, "unsubscribe": Kind.NOTIFY_OFF,
                  "resume": Kind.START}.get(command)
        if mapped:
            return Intent(mapped)
    folded = fold(raw)
    if has_choices and re.fullmatch(r"\d{1,2}", folded):
        return Intent(Kind.CHOICE, folded)
    for kind in WHOLE_MESSAGE:
        for locale, table in keywords.items():
            if folded in (fold(p) for p in table.get(kind.value, ())):
                return Intent(kind, matched_locale=locale)
    for locale, table in keywords.items():
        for name in table.get("language_names", ()):
            if folded == fold(name):
                return Intent(Kind.SET_LANGUAGE, locale, matched_locale=locale)
    refs = tuple(dict.fromkeys((*references(raw), *extra_refs)))
    for kind in PHRASE_ORDER:
        for locale, table in keywords.items():
            if any(_contains(folded, fold(p)) for p in table.get(kind.value, ())):
                if kind in (Kind.WHERE_IS, Kind.HELP) and refs:
                    return Intent(Kind.WHERE_IS, references=refs, matched_locale=locale)
                return Intent(kind, references=refs, matched_locale=locale)
    if refs:
        return Intent(Kind.WHERE_IS, references=refs)
    return Intent(Kind.UNKNOWN)


def from_payload(payload: str) -> Intent:
    """Button payloads: 'human', 'menu', 'lang', 'lang:hr', 'orders', 'order:ID', 'track:NUM',
    'notify:on', 'notify:off', 'carrier:NAME:NUM'."""
    head, _, arg = payload.partition(":")
    kinds = {"human": Kind.HUMAN, "menu": Kind.HELP, "orders": Kind.LIST_ORDERS,
             "stop": Kind.STOP, "start": Kind.START}
    if head in kinds:
        return Intent(kinds[head])
    if head == "lang":
        return Intent(Kind.SET_LANGUAGE, arg) if arg else Intent(Kind.LANGUAGE)
    if head == "notify":
        return Intent(Kind.NOTIFY_OFF if arg == "off" else Kind.NOTIFY_ON)
    if head in ("order", "track", "carrier") and arg:
        return Intent(Kind.WHERE_IS, arg=payload, references=(arg.rsplit(":", 1)[-1],))
    return Intent(Kind.UNKNOWN)
