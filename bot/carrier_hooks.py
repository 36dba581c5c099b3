"""Carrier pushes: POST /webhooks/carriers/{name} -> verify -> parse -> Tracking.ingest.

The signature is checked on the raw body before anything reads it (403 when it fails).
A verified body that cannot be parsed is a 400; an unknown or non-push carrier a 404. DHL's
`subscription.validate` handshake is answered here. Pushes are idempotent: a replayed push
finds its changes already reported (their keys are remembered) and reports nothing new.
Pushes about shipments we do not track are acknowledged and dropped.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from bot.tracking import ListenerError, Tracking
from carriers import PushCarrier
from carriers.model import CarrierError, WebhookError

log = logging.getLogger(__name__)

PATH = "/webhooks/carriers/{name}"
MAX_BODY = 1024 * 1024  # carriers batch several shipments in one push


def _answer(status: int, **body: Any) -> web.Response:
    return web.json_response(body, status=status)


def _tracking(parts: Any) -> Tracking:
    """Services (anything with `.tracking`) or a Tracking itself."""
    tracking = getattr(parts, "tracking", parts)
    if not isinstance(tracking, Tracking):
        raise TypeError("carrier_hooks.routes needs Services or a Tracking")
    return tracking


def routes(parts: Any) -> list[web.RouteDef]:
    """The carrier webhook route, bound to `parts` (Services, or a Tracking)."""
    tracking = _tracking(parts)

    async def receive(request: web.Request) -> web.Response:
        return await handle(tracking, request)

    return [web.post(PATH, receive)]


async def handle(tracking: Tracking, request: web.Request) -> web.Response:
    """One carrier push. Never a 500: every failure has its own status."""
    name = request.match_info["name"]
    carrier = tracking.carriers.get(name)
    if carrier is None or not isinstance(carrier, PushCarrier):
        return _answer(404, error=f"no push-capable carrier named {name!r} is configured")
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _answer(413, error="body too large")
    body = await request.read()
    if len(body) > MAX_BODY:
        return _answer(413, error="body too large")
    try:
        carrier.verify_webhook(dict(request.headers), body)
    except WebhookError as exc:
        log.warning("carrier %s: push refused: %s", name, exc)
        return _answer(403, error="webhook verification failed")
    except Exception as exc:  # an adapter choking on garbage while checking it
        log.warning("carrier %s: push could not be verified: %r", name, exc)
        return _answer(403, error="webhook verification failed")
    handshake = getattr(carrier, "handshake", None)
    if handshake is not None:
        try:
            if await handshake(body):
                log.info("carrier %s: push subscription activated", name)
                return _answer(200, ok=True, handshake=True)
        except WebhookError as exc:
            return _answer(400, error=f"malformed handshake: {exc}")
        except CarrierError as exc:
            log.warning("carrier %s: activating the push subscription failed: %s", name, exc)
            return _answer(503, error="could not activate the subscription; retry later")
    try:
        snapshots = carrier.parse_webhook(body)
    except (WebhookError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("carrier %s: malformed push: %s", name, exc)
        return _answer(400, error="malformed push payload")
    now = tracking.clock()
    ingested = ignored = changes = 0
    for snapshot in snapshots:
        number = snapshot.tracking_number
        if not number or not await tracking.known(name, number):
            ignored += 1
            continue
        try:
            changes += len(await tracking.ingest(name, number, snapshot, now))
        except ListenerError:
            return _answer(503, error="could not process the update; retry later")
        ingested += 1
    log.debug("carrier %s push: %d ingested, %d ignored, %d change(s)", name, ingested,
              ignored, changes)
    return _answer(200, ok=True, ingested=ingested, ignored=ignored, changes=changes)

