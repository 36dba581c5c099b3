"""Tracking-number recognition driven by the jkeen/tracking_number_data definitions.

The definitions (carriers/data/tracking_number_data, MIT) describe each courier's formats as
PCRE regexes with named groups, a check-digit algorithm, lookup tables and test numbers. This
module compiles them once, finds numbers in whatever a customer typed, validates them the way
the data says, ranks the candidates and names the Shipmate adapter that should track each one.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any

__all__ = [
    "ADAPTERS",
    "AGGREGATOR",
    "CHECKSUMS",
    "DATA_DIR",
    "Candidate",
    "Recognizer",
    "default_recognizer",
    "find_numbers",
    "luhn",
    "mod7",
    "mod10",
    "mod_37_36",
    "normalize",
    "recognize",
    "s10",
    "sum_product_with_weightings_and_modulo",
]

DATA_DIR = Path(__file__).resolve().parent / "data" / "tracking_number_data"

#: The adapter for couriers that have no adapter of their own.
AGGREGATOR = "aggregator"

#: Shipmate adapter by (courier_code, issuing country from the CountryCode group); "" = any.
ADAPTERS: Mapping[tuple[str, str], str] = {
    ("ups", ""): "ups",
    ("fedex", ""): "fedex",
    ("usps", ""): "usps",
    ("dhl", ""): "dhl",
    ("s10", "TH"): "thailandpost",
    ("s10", "NL"): "postnl",
    ("s10", "US"): "usps",
}

_DASHES = re.compile(r"[\-\u2010-\u2015\u2212\u2043\ufe58\ufe63\uff0d]")
_SEPARATORS = re.compile(r"[^0-9A-Z\s]+")
_TOKEN = re.compile(r"[0-9A-Z]+")
_SPACE_OR_DASH = re.compile(r"[\s\-\u2010-\u2015\u2212\u2043\ufe58\ufe63\uff0d]+")
_EDGE_PUNCTUATION = re.compile(r"^[^0-9A-Z]+|[^0-9A-Z]+$")


# --- check-digit algorithms (named as in the data's validation.checksum.name) -----------------


def _digit(char: str) -> int | None:
    return int(char) if len(char) == 1 and char.isascii() and char.isdigit() else None


def mod10(serial: str, check_digit: str, *, evens_multiplier: int = 1,
          odds_multiplier: int = 1, modulo: int = 10, reverse: bool = False) -> bool:
    """Weighted mod-10 by position parity (0-based); letters count as (ord - 3) % 10 (UPS)."""
    expected = _digit(check_digit)
    if expected is None:
        return False
    chars = serial[::-1] if reverse else serial
    total = 0
    for index, char in enumerate(chars):
        value = int(char) if char.isdigit() else (ord(char) - 3) % 10
        total += value * (odds_multiplier if index % 2 else evens_multiplier)
    remainder = total % modulo
    return (modulo - remainder) % modulo == expected


def luhn(serial: str, check_digit: str, *, modulo: int = 10) -> bool:
    """Luhn: double every second digit from the right, digits of products summed."""
    expected = _digit(check_digit)
    if expected is None or not serial.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(serial)):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return (modulo - total % modulo) % modulo == expected


def mod7(serial: str, check_digit: str, *, modulo: int = 7) -> bool:
    """The serial read as one number, modulo 7 (DHL Express air waybills)."""
    expected = _digit(check_digit)
    return expected is not None and serial.isdigit() and int(serial) % modulo == expected


def s10(serial: str, check_digit: str, *, weightings: Sequence[int] = (8, 6, 4, 2, 3, 5, 9, 7),
        modulo: int = 11) -> bool:
    """UPU S10: weighted sum mod 11, C = 11 - r with 10 -> 0 and 11 -> 5."""
    expected = _digit(check_digit)
    if expected is None or not serial.isdigit() or len(serial) != len(weightings):
        return False
    check = modulo - sum(int(d) * w for d, w in zip(serial, weightings, strict=True)) % modulo
    return {10: 0, 11: 5}.get(check, check) == expected


def sum_product_with_weightings_and_modulo(serial: str, check_digit: str, *,
                                           weightings: Sequence[int], modulo1: int,
                                           modulo2: int) -> bool:
    """Sum of digit x weight, then mod `modulo1`, then mod `modulo2` (FedEx Express)."""
    expected = _digit(check_digit)
    if expected is None or not serial.isdigit() or len(serial) != len(weightings):
        return False
    total = sum(int(d) * w for d, w in zip(serial, weightings, strict=True))
    return total % modulo1 % modulo2 == expected


def mod_37_36(serial: str, check_digit: str, *,
              alphabet: str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", modulo: int = 36) -> bool:
    """ISO/IEC 7064 MOD 37,36 hybrid system; the check character is drawn from `alphabet`."""
    product = modulo
    for char in serial:
        value = alphabet.find(char)
        if value < 0:
            return False
        total = (product + value) % modulo or modulo
        product = total * 2 % (modulo + 1)
    return alphabet[(modulo + 1 - product) % modulo] == check_digit


#: Check-digit functions by the name the data uses.
CHECKSUMS: Mapping[str, Callable[..., bool]] = {
    "mod10": mod10,
    "luhn": luhn,
    "mod7": mod7,
    "s10": s10,
    "sum_product_with_weightings_and_modulo": sum_product_with_weightings_and_modulo,
    "mod_37_36": mod_37_36,
}


# --- public result ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """One way to read a tracking number: courier, service, where to track it."""

    tracking_number: str
    courier_code: str
    courier_name: str
    service: str
    tracking_url: str
    details: dict[str, str] = field(hash=False)  # groups; lookups as "<Group>.<field>"
    carrier: str


# --- compiled definitions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Row:
    exact: str | None
    pattern: re.Pattern[str] | None
    fields: Mapping[str, str]

    def matches(self, value: str) -> bool:
        if self.exact is not None:
            return value == self.exact
        return self.pattern is not None and self.pattern.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class _Lookup:
    name: str
    group: str
    rows: tuple[_Row, ...]

    def find(self, groups: Mapping[str, str]) -> _Row | None:
        value = groups.get(self.group)
        if value is None:
            return None
        return next((row for row in self.rows if row.matches(value)), None)


@dataclass(frozen=True, slots=True)
class _Condition:
    group: str
    row: _Row

    def holds(self, groups: Mapping[str, str]) -> bool:
        value = groups.get(self.group)
        return value is not None and self.row.matches(value)


@dataclass(frozen=True, slots=True)
class _Partner:
    partner_id: str
    role: str  # "carrier" (the partner carries it) or "shipper" (the partner sold the label)
    match_all: tuple[_Condition, ...]
    match_any: tuple[_Condition, ...]

    def applies(self, groups: Mapping[str, str]) -> bool:
        return all(c.holds(groups) for c in self.match_all) and (
            not self.match_any or any(c.holds(groups) for c in self.match_any))


@dataclass(frozen=True, slots=True)
class _Format:
    courier_code: str
    courier_name: str
    id: str
    name: str
    regex: re.Pattern[str]  # as the data says, for the number as typed
    compact: re.Pattern[str]  # the same without its whitespace tolerance, for the number itself
    checksum: Callable[[str, str], bool] | None
    prepend_if: tuple[re.Pattern[str], str] | None
    lookups: tuple[_Lookup, ...]
    required: frozenset[str]
    partners: tuple[_Partner, ...]
    tracking_url: str
    literal_prefix: int
    widths: tuple[int, int]  # shortest and longest number, in characters
    order: int


@dataclass(frozen=True, slots=True)
class _Token:
    start: int
    end: int
    text: str

    @property
    def letters_only(self) -> bool:
        return self.text.isalpha()


@dataclass(slots=True)
class _Match:
    fmt: _Format
    segment: int
    first: int  # token indexes, inclusive
    last: int
    number: str
    groups: dict[str, str]
    found: dict[str, _Row]  # lookup name -> row

    @property
    def span(self) -> tuple[int, int, int]:
        return self.segment, self.first, self.last

    def rank(self) -> tuple[int, ...]:
        """Sort key, best first: fixed prefix, check digit, lookups hit, length, position."""
        return (-self.fmt.literal_prefix, -(self.fmt.checksum is not None), -len(self.found),
                -len(self.number), self.segment, self.first, self.fmt.order)


# --- PCRE -> Python re --------------------------------------------------------------------------


def _class_end(pattern: str, start: int) -> int:
    """Index just past the character class opening at `start` (a leading ']' is a member)."""
    i = start + (2 if pattern.startswith("[^", start) else 1)
    if pattern[i:i + 1] == "]":
        i += 1
    while pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i + 1


def _pythonize(pcre: str, *, dash_separates: bool = False) -> str:
    """Rewrite the data's PCRE for Python `re`: `(?<Name>` -> `(?P<Name>`.

    With `dash_separates`, a literal `-` (LaserShip's '…8127-1') becomes optional whitespace:
    customers' dashes turn into spaces before matching, and numbers are kept without them.
    """
    out: list[str] = []
    i = 0
    while i < len(pcre):
        char = pcre[i]
        if char == "\\":
            out.append(pcre[i:i + 2])
            i += 2
        elif char == "[":
            end = _class_end(pcre, i)
            out.append(pcre[i:end])
            i = end
        elif pcre.startswith("(?<", i) and pcre[i + 3:i + 4] not in ("=", "!"):
            out.append("(?P<")
            i += 3
        else:
            out.append(r"\s*" if char == "-" and dash_separates else char)
            i += 1
    return "".join(out)


def _without_whitespace(pattern: str) -> str:
    """The pattern for numbers without spaces: drop `\\s*`, and `\\s` inside classes."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("\\s*", i):
            i += 3
        elif pattern[i] == "\\":
            out.append(pattern[i:i + 2])
            i += 2
        elif pattern[i] == "[":
            end = _class_end(pattern, i)
            while i < end:
                step = 2 if pattern[i] == "\\" else 1
                if pattern[i:i + step] != "\\s":
                    out.append(pattern[i:i + step])
                i += step
        else:
            out.append(pattern[i])
            i += 1
    return "".join(out)


def _group_close(pattern: str, start: int) -> tuple[int, bool]:
    """Index of the ')' closing the group at `start`, and whether it has a top-level '|'."""
    depth, alternation, i = 0, False, start
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            i = _class_end(pattern, i)
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i, alternation
        elif char == "|" and depth == 1:
            alternation = True
        i += 1
    raise ValueError(f"unbalanced group in {pattern!r}")


_UNBOUNDED = 1 << 16
_LOOKAROUNDS = ("(?=", "(?!", "(?<=", "(?<!")


def _widths(pattern: str) -> tuple[int, int]:
    """Shortest and longest string the pattern can match (lookarounds and \\b take none)."""

    def alternation(i: int) -> tuple[int, int, int]:
        low, high, i = sequence(i)
        while i < len(pattern) and pattern[i] == "|":
            more_low, more_high, i = sequence(i + 1)
            low, high = min(low, more_low), max(high, more_high)
        return low, high, i

    def sequence(i: int) -> tuple[int, int, int]:
        low = high = 0
        while i < len(pattern) and pattern[i] not in "|)":
            atom_low, atom_high, i = atom(i)
            atom_low, atom_high, i = quantified(atom_low, atom_high, i)
            low, high = low + atom_low, min(high + atom_high, _UNBOUNDED)
        return low, high, i

    def atom(i: int) -> tuple[int, int, int]:
        char = pattern[i]
        if char == "(":
            zero = pattern.startswith(_LOOKAROUNDS, i)
            if zero:
                i += 3 if pattern[i + 2] in "=!" else 4
            elif pattern.startswith("(?P<", i):
                i = pattern.index(">", i) + 1
            else:
                i += 3 if pattern.startswith("(?:", i) else 1
            low, high, i = alternation(i)
            return (0, 0, i + 1) if zero else (low, high, i + 1)
        if char == "[":
            return 1, 1, _class_end(pattern, i)
        if char == "\\":
            return (0, 0, i + 2) if pattern[i + 1] in "bBAZ" else (1, 1, i + 2)
        if char in "^$":
            return 0, 0, i + 1
        return 1, 1, i + 1

    def quantified(low: int, high: int, i: int) -> tuple[int, int, int]:
        if i >= len(pattern):
            return low, high, i
        char = pattern[i]
        if char in "?*+":
            low, high = (low if char == "+" else 0), (high if char == "?" else _UNBOUNDED)
            i += 1
        elif char == "{" and re.match(r"\{\d*(,\d*)?\}", pattern[i:]):
            end = pattern.index("}", i)
            least, _, most = pattern[i + 1:end].partition(",")
            times_low = int(least or 0)
            times_high = times_low if "," not in pattern[i:end] else int(most or _UNBOUNDED)
            low, high, i = low * times_low, min(high * times_high, _UNBOUNDED), end + 1
        else:
            return low, high, i
        if pattern[i:i + 1] in ("?", "+"):  # lazy or possessive
            i += 1
        return low, high, i

    low, high, end = alternation(0)
    if end != len(pattern):
        raise ValueError(f"cannot measure {pattern!r}")
    return low, high


def _optional_at(pattern: str, index: int) -> bool:
    return pattern[index:index + 1] in ("?", "*") or pattern.startswith("{0", index)


def _literal_prefix(pattern: str) -> int:
    """How many fixed characters every match starts with (e.g. 2 for UPS '1Z')."""
    if _group_close(f"({pattern})", 0)[1]:
        return 0
    count, i = 0, 0
    while i < len(pattern):
        if pattern.startswith(r"\s*", i):
            i += 3
        elif pattern.startswith(r"\b", i):
            i += 2
        elif pattern[i] == "(":
            if pattern.startswith(_LOOKAROUNDS, i):
                break
            close, alternation = _group_close(pattern, i)
            if alternation or _optional_at(pattern, close + 1):
                break
            if pattern.startswith("(?P<", i):
                i = pattern.index(">", i) + 1
            elif pattern.startswith("(?:", i):
                i += 3
            else:
                i += 1
        elif pattern[i] == ")":
            i += 1
            if pattern.startswith("{", i):
                i = pattern.index("}", i) + 1
            elif pattern[i:i + 1] == "+":
                i += 1
        elif pattern[i].isascii() and pattern[i].isalnum() and not _optional_at(pattern, i + 1):
            count += 1
            i += 1
        else:
            break
    return count


# --- loading ----------------------------------------------------------------------------------


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _row(entry: Mapping[str, Any]) -> _Row:
    fields = {k: _text(v) for k, v in entry.items()
              if k not in ("matches", "matches_regex", "regex_group_name") and _text(v)}
    if "matches" in entry:
        return _Row(str(entry["matches"]), None, fields)
    if "matches_regex" in entry:
        return _Row(None, re.compile(_pythonize(str(entry["matches_regex"]))), fields)
    raise ValueError(f"lookup row without matches/matches_regex: {entry!r}")


def _conditions(items: Sequence[Mapping[str, Any]]) -> tuple[_Condition, ...]:
    return tuple(_Condition(str(item["regex_group_name"]), _row(item)) for item in items)


def _compile_format(courier: Mapping[str, Any], spec: Mapping[str, Any], order: int) -> _Format:
    regex = spec["regex"]
    source = "".join(regex) if isinstance(regex, list) else str(regex)
    pattern = _pythonize(source, dash_separates=True)
    where = f"{courier['courier_code']}/{spec['name']}"
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{where}: regex does not compile: {exc}") from exc

    validation: Mapping[str, Any] = spec.get("validation") or {}
    checksum: Callable[[str, str], bool] | None = None
    if validation.get("checksum"):
        params = dict(validation["checksum"])
        name = params.pop("name")
        if name not in CHECKSUMS:
            raise ValueError(f"{where}: unknown checksum {name!r}")
        checksum = partial(CHECKSUMS[name], **params)
        try:  # unknown parameters must fail at load time, not per number
            checksum("0", "0")
        except TypeError as exc:
            raise ValueError(f"{where}: checksum {name!r} parameters: {exc}") from exc
        if "CheckDigit" not in compiled.groupindex:
            raise ValueError(f"{where}: checksum without a CheckDigit group")

    prepend = (validation.get("serial_number_format") or {}).get("prepend_if")
    prepend_if = None
    if prepend:
        prepend_if = (re.compile(_pythonize(str(prepend["matches_regex"]))),
                      str(prepend["content"]))

    lookups = tuple(
        _Lookup(str(item["name"]), str(item["regex_group_name"]),
                tuple(_row(row) for row in item["lookup"]))
        for item in spec.get("additional") or ())
    required = frozenset((validation.get("additional") or {}).get("exists") or ())
    unknown = required - {lookup.name for lookup in lookups}
    if unknown:
        raise ValueError(f"{where}: validation.additional.exists names no lookup: {unknown}")

    partners = tuple(
        _Partner(str(item["partner_id"]), str(item["partner_type"]),
                 _conditions((item.get("validation") or {}).get("matches_all") or ()),
                 _conditions((item.get("validation") or {}).get("matches_any") or ()))
        for item in spec.get("partners") or ())

    return _Format(
        courier_code=str(courier["courier_code"]),
        courier_name=str(courier["name"]),
        id=str(spec.get("id") or _slug(str(spec["name"]))),
        name=str(spec["name"]),
        regex=compiled,
        compact=re.compile(_without_whitespace(pattern)),
        checksum=checksum,
        prepend_if=prepend_if,
        lookups=lookups,
        required=required,
        partners=partners,
        tracking_url=_text(spec.get("tracking_url")),
        literal_prefix=_literal_prefix(_without_whitespace(pattern)),
        widths=_widths(_without_whitespace(pattern)),
        order=order,
    )


# --- recognition ------------------------------------------------------------------------------


def _prepare(text: str) -> str:
    return _DASHES.sub(" ", unicodedata.normalize("NFKC", text).upper())


def normalize(text: str) -> str:
    """Canonical form of one number: uppercase, no spaces or dashes, no punctuation around."""
    compact = _SPACE_OR_DASH.sub("", unicodedata.normalize("NFKC", text).upper())
    return _EDGE_PUNCTUATION.sub("", compact)


def _windows(tokens: Sequence[_Token], shortest: int, longest: int) -> Iterator[tuple[int, int]]:
    """Runs of space-separated tokens that could hold one number of `shortest`..`longest` chars.

    Words are not numbers: a run may not contain a letters-only token of five or more
    letters, and one of three or four letters only as its first token (TBA, JJD, GFUS).
    """
    for first, token in enumerate(tokens):
        if token.letters_only and len(token.text) >= 5:
            continue
        chars, digits = 0, False
        for last in range(first, len(tokens)):
            current = tokens[last]
            if last > first and current.letters_only and len(current.text) >= 3:
                break
            chars += len(current.text)
            digits = digits or not current.letters_only
            if chars > longest:
                break
            if chars >= shortest and digits:
                yield first, last


class Recognizer:
    """Compiled tracking-number formats; `recognize` finds and ranks numbers in text."""

    def __init__(self, couriers: Sequence[Mapping[str, Any]]) -> None:
        formats: list[_Format] = []
        for courier in couriers:
            for spec in courier["tracking_numbers"]:
                formats.append(_compile_format(courier, spec, len(formats)))
        self._shortest = min(fmt.widths[0] for fmt in formats)
        self._longest = max(fmt.widths[1] for fmt in formats)
        # the formats worth trying on a number of each length
        self._by_length: dict[int, tuple[_Format, ...]] = {
            length: tuple(f for f in formats if f.widths[0] <= length <= f.widths[1])
            for length in range(self._shortest, self._longest + 1)}

    @classmethod
    def from_directory(cls, directory: Path = DATA_DIR) -> Recognizer:
        """Load every couriers/*.json of a tracking_number_data checkout."""
        files = sorted((directory / "couriers").glob("*.json"))
        if not files:
            raise FileNotFoundError(f"no courier definitions in {directory / 'couriers'}")
        return cls([json.loads(path.read_text(encoding="utf-8")) for path in files])

    def recognize(self, text: str) -> list[Candidate]:
        """Every reading of every number in `text`, best first; [] when there is none."""
        # readings of overlapping stretches stay (ranked lower): spacing can make either right
        matches = sorted(self._matches(text), key=_Match.rank)
        by_span: dict[tuple[int, int, int], dict[str, _Match]] = {}
        for match in matches:
            by_span.setdefault(match.span, {}).setdefault(match.fmt.id, match)
        candidates: list[Candidate] = []
        seen: set[tuple[str, str, str]] = set()
        for match in matches:
            key = (match.number, match.fmt.courier_code, match.fmt.name)
            if key not in seen:
                seen.add(key)
                candidates.append(self._candidate(match, by_span[match.span]))
        return candidates

    def find_numbers(self, text: str) -> list[str]:
        """The distinct normalized numbers in `text`, in reading order, one per stretch of text."""
        chosen = sorted(_choose(self._matches(text)), key=lambda m: m.span)
        return list(dict.fromkeys(match.number for match in chosen))

    # -- internals --

    def _matches(self, text: str) -> list[_Match]:
        found: list[_Match] = []
        for index, segment in enumerate(_SEPARATORS.split(_prepare(text))):
            tokens = [_Token(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(segment)]
            here: list[_Match] = []
            for first, last in _windows(tokens, self._shortest, self._longest):
                number = "".join(token.text for token in tokens[first:last + 1])
                window = segment[tokens[first].start:tokens[last].end]
                for fmt in self._by_length[len(number)]:
                    match = _validate(fmt, number, window, tokens, index, first, last)
                    if match is not None:
                        here.append(match)
            found.extend(_drop_fragments(_drop_merged(here), tokens, self._longest))
        return found

    def _candidate(self, match: _Match, same_span: Mapping[str, _Match]) -> Candidate:
        fmt = match.fmt
        details = dict(match.groups)
        for lookup in fmt.lookups:
            row = match.found.get(lookup.name)
            if row is not None:
                for name, value in row.fields.items():
                    details[f"{lookup.group}.{name}"] = value
        carrier = _adapter(match)
        for partner in fmt.partners:
            other = same_span.get(partner.partner_id)
            if other is None or not partner.applies(match.groups):
                continue
            details[f"partner.{partner.role}"] = other.fmt.courier_code
            details[f"partner.{partner.role}_service"] = other.fmt.name
            if partner.role == "carrier":
                carrier = _adapter(other)
        # S10's "Courier" lookup names the issuing post, which says more than "S10"
        courier = match.found.get("Courier")
        return Candidate(
            tracking_number=match.number,
            courier_code=fmt.courier_code,
            courier_name=courier.fields.get("courier", fmt.courier_name) if courier
            else fmt.courier_name,
            service=fmt.name,
            tracking_url=fmt.tracking_url.replace("%s", match.number),
            details=details,
            carrier=carrier,
        )


def _validate(fmt: _Format, number: str, window: str, tokens: Sequence[_Token], segment: int,
              first: int, last: int) -> _Match | None:
    """Check one format against a stretch of text, as the data says; None when it fails.

    The number must match the format both as typed (the data's whitespace tolerance decides
    where spaces may fall) and without spaces (the number itself, which gives the groups).
    """
    hit = fmt.compact.fullmatch(number)
    if hit is None:
        return None
    typed = hit if window == number else fmt.regex.fullmatch(window)
    if typed is None:
        return None
    groups = {name: value for name, value in hit.groupdict().items() if value}
    if fmt.checksum is not None:
        serial = groups.get("SerialNumber", "")
        if fmt.prepend_if is not None and fmt.prepend_if[0].search(serial):
            serial = fmt.prepend_if[1] + serial
        if not fmt.checksum(serial, groups.get("CheckDigit", "")):
            return None
    elif "SerialNumber" in groups:
        # without a check digit, a word typed inside the serial makes a sentence, not a number
        low, high = typed.span("SerialNumber")
        offset = tokens[first].start
        if any(token.letters_only and low <= token.start - offset < high
               for token in tokens[first + 1:last + 1]):
            return None
    found = {}
    for lookup in fmt.lookups:
        row = lookup.find(groups)
        if row is not None:
            found[lookup.name] = row
    if not fmt.required <= found.keys():
        return None
    return _Match(fmt, segment, first, last, number, groups, found)


def _choose(matches: list[_Match]) -> list[_Match]:
    """The best reading of each stretch of text: greedy by rank, overlaps dropped."""
    accepted: list[_Match] = []
    taken: set[tuple[int, int]] = set()
    for match in sorted(matches, key=_Match.rank):
        cells = [(match.segment, i) for i in range(match.first, match.last + 1)]
        if not taken.intersection(cells):
            accepted.append(match)
            taken.update(cells)
    return accepted


def _drop_merged(matches: list[_Match]) -> list[_Match]:
    """Drop check-digit-less matches that are two numbers of the same format run together."""
    valid = {(m.fmt.id, m.first, m.last) for m in matches}
    return [m for m in matches if m.fmt.checksum is not None or not any(
        (m.fmt.id, m.first, split - 1) in valid and (m.fmt.id, split, m.last) in valid
        for split in range(m.first + 1, m.last + 1))]


def _drop_fragments(matches: list[_Match], tokens: Sequence[_Token],
                    longest: int) -> list[_Match]:
    """Drop readings of part of a longer number: one with a check digit, or of the same format.

    Digits typed together belong together, so the longer reading wins when the tokens it adds
    hold digits; added letters-only tokens may be a word or a prefix, so both readings stay.
    """
    by_first: dict[int, list[_Match]] = {}
    for match in matches:
        by_first.setdefault(match.first, []).append(match)
    digits_before = [0]  # digits_before[i]: tokens before token i that hold digits
    for token in tokens:
        digits_before.append(digits_before[-1] + (not token.letters_only))

    def digits_in(first: int, last: int) -> bool:
        return last >= first and digits_before[last + 1] > digits_before[first]

    def fragment(part: _Match) -> bool:
        for first in range(part.first, -1, -1):
            if part.first - first > longest:
                return False
            for whole in by_first.get(first, ()):
                if whole.last < part.last or (whole.first, whole.last) == (part.first, part.last):
                    continue
                if whole.fmt.checksum is None and whole.fmt is not part.fmt:
                    continue
                if digits_in(whole.first, part.first - 1) or digits_in(part.last + 1, whole.last):
                    return True
        return False

    return [m for m in matches if not fragment(m)]


def _adapter(match: _Match) -> str:
    code = match.fmt.courier_code
    country = match.groups.get("CountryCode", "")
    return ADAPTERS.get((code, country)) or ADAPTERS.get((code, "")) or AGGREGATOR


@cache
def default_recognizer() -> Recognizer:
    """The recognizer for the bundled data, loaded on first use."""
    return Recognizer.from_directory(DATA_DIR)


def recognize(text: str) -> list[Candidate]:
    """Tracking-number candidates in anything a customer typed, best first; [] if none."""
    return default_recognizer().recognize(text)


def find_numbers(text: str) -> list[str]:
    """The normalized tracking numbers found in `text`, in reading order."""
    return default_recognizer().find_numbers(text)
