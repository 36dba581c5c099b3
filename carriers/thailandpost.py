"""Thailand Post Track API and its webhook product: token exchange, batches, Buddhist-Era years.

Facts from track.thailandpost.co.th/developerGuide as summarised in carrier_data.md section 1.10,
the developer-guide samples quoted in public client code, and xerodotc/thailandpost-sdk-go (MIT;
facts only): 100 barcodes per /track call (its `GetItemsLimit`), webhook pushes carrying
`Authorization: Bearer <key registered for the hook>`, push times without seconds.

Assumptions where nothing is documented: `track_count` counts barcodes and resets at midnight
Bangkok time (we stop asking once it is used up); the hook host accepts the same API key.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone
from functools import partial
from typing import Any

import aiohttp

from carriers.http import Response, TokenCache, request
from carriers.model import (
    FINAL_STATUSES,
    CarrierAuthError,
    CarrierError,
    Credentials,
    CustomsStage,
    Limits,
    NumberList,
    NumberProblem,
    ProblemKind,
    Status,
    TimestampPolicy,
    TrackingEvent,
    TrackingReport,
    TrackingSnapshot,
    WebhookError,
)

log = logging.getLogger(__name__)

NAME = "thailandpost"
DEFAULT_BASE_URL = "https://trackapi.thailandpost.co.th"
DEFAULT_HOOK_BASE_URL = "https://trackwebhook.thailandpost.co.th"
CREDENTIALS = ("api_key", "webhook_secret")
# batch_size: 100 barcodes per call (GetItemsLimit in thailandpost-sdk-go). per_day: the smaller
# track_count_limit seen in published samples (1000 and 1500); the live value replaces it.
LIMITS = Limits(batch_size=100, per_second=1.0, per_day=1000, supports_push=True)
TIMESTAMP_POLICY = TimestampPolicy.AWARE  # '+07:00' is always written; only the era varies
LANGUAGES = ("TH", "EN", "CN")
BANGKOK = timezone(timedelta(hours=7), "ICT")  # Thailand keeps no daylight-saving time
BE_OFFSET = 543
AUTH_PATH = "/post/api/v1/authenticate/token"
TRACK_PATH = "/post/api/v1/track"
HOOK_PATH = "/post/api/v1/hook"
OVERSEAS_POSTCODE = "99999"
CUSTOMS_CODE = "202"

_STATUS = {
    "101": Status.PENDING,  # preparing to post / information received
    "102": Status.PICKED_UP,  # accepted by an agent
    "103": Status.PICKED_UP,  # accepted at the counter
    "201": Status.IN_TRANSIT,
    CUSTOMS_CODE: Status.IN_TRANSIT,  # customs clearance
    "203": Status.RETURN_TO_SENDER,
    "204": Status.IN_TRANSIT,  # arrived at outward office of exchange
    "205": Status.IN_TRANSIT,  # arrived at inward office of exchange
    "206": Status.IN_TRANSIT,  # arrived at post office
    "207": Status.IN_TRANSIT,  # preparing for transport
    "301": Status.OUT_FOR_DELIVERY,
    "302": Status.READY_FOR_PICKUP,  # delivered to a pickup point
    "401": Status.DELIVERY_FAILED,
    "501": Status.DELIVERED,
}
_ERA_SPLIT = 2400  # CE years in tracking data sit far below it, BE years (CE + 543) far above
_FALLBACK_TOKEN_LIFETIME = 3600.0
_THAI_STAMP = re.compile(
    r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?\s*(Z|[+-]\d{2}:?\d{2})?$")
_S10 = re.compile(r"^[A-Z]{2}(\d{8})(\d)TH$")


@dataclass(frozen=True, slots=True)
class TrackQuota:
    """The daily track quota as Thailand Post reported it (`track_count`)."""

    day: date  # Thai calendar day, CE
    used: int
    limit: int  # 0 when the account reports none

    def allows(self, extra: int) -> bool:
        """Whether `extra` more barcodes fit in today's quota (assumed counted per barcode)."""
        return self.limit <= 0 or self.used + extra <= self.limit


def ce_year(year: int, language: str) -> int:
    """The CE year of a year written in an answer requested in `language` (TH counts in BE)."""
    buddhist = language.upper() == "TH"
    if buddhist != (year >= _ERA_SPLIT):
        # The eras cannot be confused (BE 2400 is CE 1857), so the payload wins; this happens
        # when a push subscribed in one language is read by an app now set to the other.
        log.warning("thailandpost: year %d does not match language %s; reading it as %s",
                    year, language, "CE" if buddhist else "BE")
        buddhist = not buddhist
    return year - BE_OFFSET if buddhist else year


def thai_time(text: str, language: str) -> datetime:
    """'DD/MM/YYYY HH:MM[:SS]+07:00' (BE year when the language was TH) as an aware datetime."""
    match = _THAI_STAMP.match(text.strip())
    if not match:
        raise ValueError(f"unexpected Thailand Post time: {text!r}")
    day, month, year, hour, minute, second, offset = match.groups()
    # Convert the year before building the date: 29/02/2567 exists, 29 February 2567 CE does not.
    return datetime(ce_year(int(year), language), int(month), int(day), int(hour or 0),
                    int(minute or 0), int(second or 0), tzinfo=_zone(offset))


def map_status(code: str) -> tuple[Status, CustomsStage]:
    """Our status and customs stage for a Thailand Post status code."""
    customs = CustomsStage.PROCESSING if code == CUSTOMS_CODE else CustomsStage.NONE
    return _STATUS.get(code, Status.UNKNOWN), customs


def parse(payload: Any, *, fetched_at: datetime, language: str = "EN",
          barcodes: NumberList = ()) -> TrackingReport:
    """Turn a /track answer into a report; `language` is the one requested, `barcodes` those asked."""
    if not isinstance(payload, Mapping):
        raise CarrierError(NAME, f"unexpected track body: {type(payload).__name__}")
    if payload.get("status") is not True:
        raise CarrierError(NAME, f"track request refused: {payload.get('message') or 'no message'}")
    response = payload.get("response")
    items = response.get("items") if isinstance(response, Mapping) else None
    if not isinstance(items, Mapping):
        raise CarrierError(NAME, "unexpected track body: no response.items")
    report = TrackingReport()
    for barcode, raw_events in items.items():
        events = [e for e in raw_events or () if isinstance(e, Mapping)]
        if events:
            try:
                report.snapshots[barcode] = _snapshot(barcode, events, fetched_at, language)
            except ValueError as exc:  # a malformed answer is the carrier's fault: retry later
                raise CarrierError(NAME, f"unreadable events for {barcode}: {exc}") from exc
        else:
            report.problems[barcode] = NumberProblem(barcode, ProblemKind.NOT_FOUND,
                                                     "no events for this barcode")
    for barcode in barcodes:
        if barcode not in report.snapshots and barcode not in report.problems:
            report.problems[barcode] = NumberProblem(barcode, ProblemKind.NOT_FOUND,
                                                     "barcode missing from the answer")
    return report


def parse_quota(payload: Any, *, language: str = "EN") -> TrackQuota | None:
    """The `track_count` block of a /track or /hook answer, if present and readable."""
    response = payload.get("response") if isinstance(payload, Mapping) else None
    count = response.get("track_count") if isinstance(response, Mapping) else None
    if not isinstance(count, Mapping) or not count.get("track_date"):
        return None
    try:
        return TrackQuota(day=thai_time(str(count["track_date"]), language).date(),
                          used=int(count.get("count_number") or 0),
                          limit=int(count.get("track_count_limit") or 0))
    except ValueError:  # bookkeeping only: an odd block must not cost the tracking answer
        log.warning("thailandpost: unreadable track_count %r", count)
        return None


def parse_hook(payload: Any, *, fetched_at: datetime, language: str = "EN"
               ) -> list[TrackingSnapshot]:
    """Turn a webhook push (`{items: [...], track_datetime}`) into one snapshot per barcode."""
    items = payload.get("items") if isinstance(payload, Mapping) else None
    if not isinstance(items, list):
        raise ValueError("webhook body has no items list")
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for item in items:
        if isinstance(item, Mapping) and item.get("barcode"):
            grouped.setdefault(str(item["barcode"]), []).append(item)
    return [_snapshot(barcode, events, fetched_at, language) for barcode, events in grouped.items()]


class ThailandPostCarrier:
    """Thailand Post tracking with webhook push (`PushCarrier`)."""

    name = NAME

    def __init__(self, session: aiohttp.ClientSession, credentials: Credentials, *,
                 language: str = "EN", hook_base_url: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if language.upper() not in LANGUAGES:
            raise ValueError(f"Thailand Post answers in {', '.join(LANGUAGES)}, not {language!r}")
        self.language = language.upper()
        self.limits = LIMITS
        self.quota: TrackQuota | None = None
        self._session = session
        self._api_key = credentials.get("api_key")
        self._webhook_secret = credentials.get("webhook_secret")
        self._base = (credentials.base_url or DEFAULT_BASE_URL).rstrip("/")
        # The hook product lives on its own host; a non-default base URL (a proxy or a fake)
        # is taken to serve both.
        default_hook = DEFAULT_HOOK_BASE_URL if self._base == DEFAULT_BASE_URL else self._base
        self._hook_base = (hook_base_url or default_hook).rstrip("/")
        self._tokens = {base: TokenCache(partial(self._fetch_token, base), clock=clock)
                        for base in {self._base, self._hook_base}}

    def recognizes(self, number: str) -> bool:
        """UPU S10 numbers issued by Thailand Post (ending in TH, valid check digit)."""
        return _is_s10(number.upper())

    async def track(self, numbers: NumberList) -> TrackingReport:
        """Up to `limits.batch_size` barcodes per call; unknown barcodes come back as problems."""
        report = TrackingReport()
        size = self.limits.batch_size
        for start in range(0, len(numbers), size):
            chunk = list(numbers[start:start + size])
            self._check_quota(len(chunk))
            resp = await self._post(self._base, TRACK_PATH, {
                "status": "all", "language": self.language, "barcode": chunk})
            payload = resp.json()
            quota = parse_quota(payload, language=self.language)
            if quota is not None:
                self._note_quota(quota)
            report.merge(parse(payload, fetched_at=datetime.now(UTC), language=self.language,
                               barcodes=chunk))
        return report

    def verify_webhook(self, headers: dict[str, str], body: bytes) -> None:
        """Check the bearer key Thailand Post sends with each push, in constant time.

        Assumption (no signature scheme is documented): the push carries
        `Authorization: Bearer <key>`, the key registered with the hook in Thailand Post's
        developer portal, which we keep as `webhook_secret`.
        """
        if not self._webhook_secret:
            raise WebhookError("thailandpost: no webhook secret configured")
        scheme, _, given = _header(headers, "Authorization").strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), self._webhook_secret.encode()):
            raise WebhookError("thailandpost: webhook bearer key mismatch")
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise WebhookError("thailandpost: webhook body is not JSON") from exc
        if not isinstance(payload, Mapping) or not isinstance(payload.get("items"), list):
            raise WebhookError("thailandpost: webhook body has no items list")

    def parse_webhook(self, body: bytes) -> list[TrackingSnapshot]:
        """Snapshots from a verified push (written in the language we subscribed with)."""
        try:
            return parse_hook(json.loads(body), fetched_at=datetime.now(UTC),
                              language=self.language)
        except ValueError as exc:
            raise WebhookError(f"thailandpost: unreadable webhook: {exc}") from exc

    async def subscribe(self, numbers: NumberList, callback_url: str) -> None:
        """Register barcodes with the hook product (previous statuses included).

        Thailand Post pushes to the one URL registered for the account in its portal, so
        `callback_url` is not sent; it has to match that registration.
        """
        size = self.limits.batch_size
        for start in range(0, len(numbers), size):
            chunk = list(numbers[start:start + size])
            resp = await self._post(self._hook_base, HOOK_PATH, {
                "status": "all", "language": self.language, "barcode": chunk,
                "req_previous_status": True})
            payload = resp.json()
            if not isinstance(payload, Mapping) or payload.get("status") is not True:
                message = payload.get("message") if isinstance(payload, Mapping) else None
                raise CarrierError(NAME, f"hook request refused: {message or 'no message'}")
            response = payload.get("response")
            items = response.get("items") if isinstance(response, Mapping) else None
            refused = [str(i.get("barcode")) for i in items or ()
                       if isinstance(i, Mapping) and i.get("status") is False]
            if refused:
                log.warning("thailandpost: hook refused %d barcode(s): %s (pushes expected at %s)",
                            len(refused), ", ".join(refused), callback_url)

    async def _post(self, base: str, path: str, body: Mapping[str, Any]) -> Response:
        tokens = self._tokens[base]
        token = await tokens.get()  # a refused API key raises CarrierAuthError right here
        try:
            resp = await self._send(base + path, token, body)
        except CarrierAuthError:
            # A cached token can be revoked or expire early on the server: fetch once more.
            tokens.invalidate()
            resp = await self._send(base + path, await tokens.get(), body)
        if resp.status >= 400:
            raise CarrierError(NAME, f"HTTP {resp.status} from {path}", status=resp.status)
        return resp

    async def _send(self, url: str, token: str, body: Mapping[str, Any]) -> Response:
        return await request(self._session, NAME, "POST", url, json_body=body,
                             headers={"Authorization": f"Token {token}"})

    async def _fetch_token(self, base: str) -> tuple[str, float]:
        resp = await request(self._session, NAME, "POST", base + AUTH_PATH,
                             headers={"Authorization": f"Token {self._api_key}"})
        if resp.status >= 400:
            raise CarrierError(NAME, f"token request failed (HTTP {resp.status})",
                               status=resp.status)
        body = resp.json()
        token = body.get("token") if isinstance(body, Mapping) else None
        if not token:
            raise CarrierError(NAME, "token answer without a token")
        return str(token), token_lifetime(body.get("expire"), now=datetime.now(UTC))

    def _check_quota(self, count: int) -> None:
        now = datetime.now(BANGKOK)
        if self.quota and self.quota.day == now.date() and not self.quota.allows(count):
            midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(),
                                        tzinfo=BANGKOK)
            raise CarrierError(NAME, f"daily track quota used ({self.quota.used}/"
                                     f"{self.quota.limit})",
                               retry_after=(midnight - now).total_seconds())

    def _note_quota(self, quota: TrackQuota) -> None:
        self.quota = quota
        if quota.limit > 0 and quota.limit != self.limits.per_day:
            self.limits = replace(self.limits, per_day=quota.limit)


def token_lifetime(expire: Any, *, now: datetime) -> float:
    """Seconds until a token's `expire` ('YYYY-MM-DD HH:MM:SS+07:00'); a guess when unreadable."""
    try:
        when = datetime.fromisoformat(str(expire).strip())
    except ValueError:
        return _FALLBACK_TOKEN_LIFETIME
    if when.tzinfo is None:
        when = when.replace(tzinfo=BANGKOK)
    return max(0.0, (when - now).total_seconds())


def _snapshot(barcode: str, raw: list[Mapping[str, Any]], fetched_at: datetime,
              language: str) -> TrackingSnapshot:
    events = sorted((_event(item, language) for item in raw), key=lambda e: e.timestamp)
    latest = events[-1]
    if latest.raw_code == CUSTOMS_CODE:
        customs = CustomsStage.PROCESSING
    elif latest.status not in FINAL_STATUSES and any(e.raw_code == CUSTOMS_CODE for e in events):
        customs = CustomsStage.RELEASED  # a later scan after customs means it came out again
    else:
        customs = CustomsStage.NONE
    return TrackingSnapshot(
        carrier=NAME, tracking_number=barcode, status=latest.status, events=tuple(events),
        customs=customs,
        pickup_location=latest.location if latest.status is Status.READY_FOR_PICKUP else "",
        raw_code=latest.raw_code, raw_text=latest.raw_text, fetched_at=fetched_at)


def _event(item: Mapping[str, Any], language: str) -> TrackingEvent:
    code = _text(item.get("status"))
    status, customs = map_status(code)
    text = _text(item.get("status_description"))
    detail = _text(item.get("delivery_description"))
    postcode = _text(item.get("postcode"))
    return TrackingEvent(
        timestamp=thai_time(_text(item.get("status_date")), language),
        status=status,
        description=f"{text}: {detail}" if detail else text,
        location=_text(item.get("location")),
        country="" if postcode == OVERSEAS_POSTCODE else "TH",
        customs=customs,
        raw_code=code,
        raw_text=text,
    )


def _zone(offset: str | None) -> timezone:
    if not offset:
        return BANGKOK
    if offset == "Z":
        return UTC
    sign = -1 if offset[0] == "-" else 1
    digits = offset[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), "")


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _is_s10(number: str) -> bool:
    match = _S10.match(number)
    if not match:
        return False
    serial, check = match.groups()
    total = sum(int(d) * w for d, w in zip(serial, (8, 6, 4, 2, 3, 5, 9, 7), strict=True))
    expected = 11 - total % 11
    return {10: 0, 11: 5}.get(expected, expected) == int(check)
