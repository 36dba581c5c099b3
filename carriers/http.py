"""The thin I/O shared by every carrier adapter: one request helper and an OAuth token cache.

Errors are mapped by meaning: 401/403 -> CarrierAuthError, 429/5xx/network -> CarrierError
(retryable, with `retry_after` when the carrier sent `Retry-After`). 404 and other 4xx are
returned to the adapter, which knows whether they mean "number not found".
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from carriers.model import CarrierAuthError, CarrierError

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=20, connect=5)


@dataclass(frozen=True, slots=True)
class Response:
    """A carrier HTTP response, read fully."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON; a malformed body is a carrier fault (retryable)."""
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise CarrierError("http", f"malformed JSON body (HTTP {self.status})") from exc


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


async def request(
    session: aiohttp.ClientSession,
    carrier: str,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    json_body: Any = None,
    data: Any = None,
    auth: aiohttp.BasicAuth | None = None,
    timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - passed to aiohttp
) -> Response:
    """Send one request; raise CarrierError for outages and CarrierAuthError for 401/403."""
    try:
        async with session.request(
            method, url, headers=headers, params=params, json=json_body, data=data,
            auth=auth, timeout=timeout,
        ) as resp:
            body = await resp.read()
            result = Response(resp.status, dict(resp.headers), body)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise CarrierError(carrier, f"network error: {type(exc).__name__}") from exc
    if result.status in (401, 403):
        raise CarrierAuthError(carrier, f"credentials refused (HTTP {result.status})",
                               status=result.status)
    if result.status == 429 or result.status >= 500:
        raise CarrierError(
            carrier, f"HTTP {result.status}",
            retry_after=retry_after_seconds(result.headers.get("Retry-After")),
            status=result.status,
        )
    return result


class TokenCache:
    """Caches a short-lived bearer token per adapter; refreshes before expiry, one at a time."""

    def __init__(self, fetch: Callable[[], Awaitable[tuple[str, float]]],
                 *, margin: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch  # returns (token, lifetime seconds)
        self._margin = margin
        self._clock = clock
        self._token = ""
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        """A valid token, fetching a new one when needed."""
        async with self._lock:
            if not self._token or self._clock() >= self._expires - self._margin:
                token, lifetime = await self._fetch()
                self._token, self._expires = token, self._clock() + lifetime
            return self._token

    def invalidate(self) -> None:
        """Forget the token (e.g. after a 401), so the next call fetches a fresh one."""
        self._token = ""
