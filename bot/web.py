"""The web process: shop API, agent API, web chat, health. Errors are JSON, never a bare 500."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot import carrier_hooks
from bot.handoff import ClaimConflict
from bot.models import Address, ChannelName
from bot.notify import http_order_notifications
from bot.orders import ValidationError, validate_order
from bot.services import Services
from bot.store import is_unavailable

log = logging.getLogger(__name__)
SERVICES = web.AppKey("services", Services)
MAX_BODY = 256 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(status: int, message: str, **extra: Any) -> web.Response:
    """A JSON error body."""
    return web.json_response({"error": message, **extra}, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn unexpected failures into clear JSON errors; Redis outages into 503."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        return problem(exc.status, exc.reason)
    except Exception as exc:
        if is_unavailable(exc):
            log.error("store unavailable while serving %s", request.path)
            return problem(503, "storage temporarily unavailable, please retry")
        log.exception("unhandled error serving %s", request.path)
        return problem(500, "internal error; nothing was changed, please retry")


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, or a 400 that says why."""
    if request.content_length and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    try:
        return json.loads(await request.read() or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"malformed JSON: {exc}"}),
                                 content_type="application/json") from exc


def _bearer(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("X-Api-Key", "").strip()


def _match(given: str, secrets: list[str]) -> int:
    """Index of the matching secret (constant time over all of them), -1 when none matches."""
    found = -1
    for i, secret in enumerate(secrets):
        if hmac.compare_digest(given.encode(), secret.encode()):
            found = i
    return found


def require_shop(request: web.Request) -> None:
    """401 unless the request carries a configured shop API key."""
    keys = list(request.app[SERVICES].settings.shop_api_keys)
    if not keys or _match(_bearer(request), keys) < 0:
        raise web.HTTPUnauthorized(text=json.dumps({"error": "missing or invalid API key"}),
                                   content_type="application/json",
                                   headers={"WWW-Authenticate": "Bearer"})


def require_agent(request: web.Request) -> str:
    """The agent's name, or 401."""
    tokens = request.app[SERVICES].settings.agent_tokens
    items = list(tokens.items())
    i = _match(_bearer(request), [t for t, _ in items])
    if i < 0:
        raise web.HTTPUnauthorized(text=json.dumps({"error": "missing or invalid agent token"}),
                                   content_type="application/json",
                                   headers={"WWW-Authenticate": "Bearer"})
    return items[i][1]


# ---------------------------------------------------------------- shop API
async def put_order(request: web.Request) -> web.Response:
    require_shop(request)
    svc = request.app[SERVICES]
    payload = await read_json(request)
    try:
        order = validate_order(payload, carriers=svc.tracking.carriers, detect=svc.tracking.detect,
                               now=datetime.now(UTC))
    except ValidationError as exc:
        return problem(422, "invalid order", fields=exc.errors)
    order, created = await svc.orders.upsert(order)
    body = order.public()
    body["telegram_link_token"] = await svc.orders.link_token(order.id)
    return web.json_response(body, status=201 if created else 200)


async def get_order(request: web.Request) -> web.Response:
    require_shop(request)
    svc = request.app[SERVICES]
    order = await svc.orders.get(request.match_info["order_id"])
    if order is None:
        return problem(404, "order not found")
    body = order.public()
    body["shipments"] = [dict(s, **(await _shipment_state(svc, s["carrier"], s["tracking_number"])))
                         for s in body["shipments"]]
    return web.json_response(body)


async def _shipment_state(svc: Services, carrier: str, number: str) -> dict[str, Any]:
    view = await svc.tracking.stored(carrier, number)
    snap = view.snapshot
    return {"status": snap.status.value if snap else None,
            "customs": snap.customs.value if snap else None,
            "eta": snap.eta.isoformat() if snap and snap.eta else None,
            "checked_at": view.checked_at.isoformat() if view.checked_at else None}


# ---------------------------------------------------------------- agent API
async def agent_queue(request: web.Request) -> web.Response:
    require_agent(request)
    return web.json_response({"queue": await request.app[SERVICES].handoff.queue()})


async def agent_shift(request: web.Request) -> web.Response:
    agent = require_agent(request)
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("on_shift"), bool):
        return problem(400, "body must be {\"on_shift\": true|false}")
    await request.app[SERVICES].handoff.set_on_shift(agent, body["on_shift"])
    return web.json_response({"agent": agent, "on_shift": body["on_shift"]})


async def agent_conversation(request: web.Request) -> web.Response:
    require_agent(request)
    svc = request.app[SERVICES]
    cid = request.match_info["cid"]
    customer = await svc.orders.customer(cid)
    if customer is None:
        return problem(404, "conversation not found")
    orders = []
    for order in await svc.orders.for_customer(cid):
        body = order.public()
        body["shipments"] = [dict(s, **(await _shipment_state(svc, s["carrier"], s["tracking_number"])))
                             for s in body["shipments"]]
        orders.append(body)
    return web.json_response({
        "conversation_id": cid, "owner": await svc.handoff.owner(cid),
        "handoff": await svc.handoff.details(cid),
        "customer": {"name": customer.name, "phone": customer.phone, "email": customer.email,
                     "locale": customer.locale, "addresses": customer.addresses},
        "history": await svc.history.read(cid), "orders": orders,
        "consent": await svc.consent.get(cid),
    })


async def agent_claim(request: web.Request) -> web.Response:
    agent = require_agent(request)
    svc = request.app[SERVICES]
    cid = request.match_info["cid"]
    if await svc.orders.customer(cid) is None:
        return problem(404, "conversation not found")
    try:
        await svc.handoff.claim(cid, agent)
    except ClaimConflict as exc:
        return problem(409, str(exc), owner=exc.owner)
    return web.json_response({"conversation_id": cid, "owner": f"agent:{agent}"})


async def agent_reply(request: web.Request) -> web.Response:
    agent = require_agent(request)
    svc = request.app[SERVICES]
    body = await read_json(request)
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip() or len(text) > 4000:
        return problem(400, "body must be {\"text\": \"1-4000 characters\"}")
    idem = str(body.get("idempotency_key") or uuid.uuid4().hex)
    if not re.fullmatch(r"[A-Za-z0-9_\-:.]{1,100}", idem):
        return problem(400, "idempotency_key: 1-100 letters, digits, _ - : .")
    try:
        out = await svc.engine.agent_reply(request.match_info["cid"], agent, text.strip(),
                                           idem=f"agent:{idem}")
    except ClaimConflict as exc:
        return problem(409, str(exc), owner=exc.owner)
    except LookupError as exc:
        return problem(404, str(exc))
    return web.json_response({"queued": True, "idempotency_key": out.idem}, status=202)


async def agent_note(request: web.Request) -> web.Response:
    agent = require_agent(request)
    svc = request.app[SERVICES]
    body = await read_json(request)
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip() or len(text) > 4000:
        return problem(400, "body must be {\"text\": \"1-4000 characters\"}")
    cid = request.match_info["cid"]
    if await svc.orders.customer(cid) is None:
        return problem(404, "conversation not found")
    entry = await svc.history.add(cid, direction="note", sender="agent", agent=agent,
                                  text=text.strip(), kind="note")
    return web.json_response({"id": entry}, status=201)


async def agent_release(request: web.Request) -> web.Response:
    agent = require_agent(request)
    svc = request.app[SERVICES]
    cid = request.match_info["cid"]
    try:
        await svc.engine.hand_back(cid, agent, idem=f"handback:{cid}:{uuid.uuid4().hex[:8]}")
    except ClaimConflict as exc:
        return problem(409, str(exc), owner=exc.owner)
    return web.json_response({"conversation_id": cid, "owner": "bot"})


# ---------------------------------------------------------------- web chat
async def chat_page(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    locale = request.query.get("lang", svc.settings.default_locale)
    html = svc.i18n.render("web/chat", locale if locale in ("en", "id", "hr", "th") else "en",
                           shop=svc.settings.shop_name, tz="UTC",
                           impersonation=svc.settings.webchat_impersonation,
                           personas=request.app.get(PERSONAS, []))
    return web.Response(text=html, content_type="text/html")


PERSONAS = web.AppKey("personas", list)


async def chat_session(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    body = await read_json(request) or {}
    phone = body.get("phone", "") if isinstance(body, dict) else ""
    if phone and not svc.settings.webchat_impersonation:
        return problem(403, "chatting as a phone number is only allowed in the demo")
    session = await svc.webchat.open_session(phone)
    if phone:
        customer = await svc.orders.customer_for(Address(ChannelName.SMS, phone), create=False)
        if customer is None:
            return problem(404, "no customer with that phone")
        await svc.orders.link(Address(ChannelName.WEBCHAT, session), customer)
    return web.json_response({"session": session}, status=201)


async def chat_post(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    body = await read_json(request)
    if not isinstance(body, dict):
        return problem(400, "body must be a JSON object")
    session, text, payload = body.get("session"), body.get("text", ""), body.get("payload", "")
    if not isinstance(session, str) or await svc.webchat.session(session) is None:
        return problem(404, "unknown or expired session")
    if not isinstance(text, str) or not isinstance(payload, str) or not (text.strip() or payload):
        return problem(400, "send text (1-4096 characters) or a button payload")
    if len(text) > 4096 or len(payload) > 64:
        return problem(400, "text too long (4096) or payload too long (64)")
    message = svc.webchat.parse(session, text.strip(), payload, message_id=str(body.get("id") or ""),
                                locale_hint=str(body.get("lang") or ""))
    accepted = await svc.engine.receive(message)
    return web.json_response({"accepted": accepted, "id": message.provider_id}, status=202)


async def chat_poll(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    session = request.query.get("session", "")
    try:
        after = int(request.query.get("after", "0"))
    except ValueError:
        return problem(400, "after must be a whole number")
    if await svc.webchat.session(session) is None:
        return problem(404, "unknown or expired session")
    return web.json_response({"messages": await svc.webchat.inbox(session, after)})


async def health(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    try:
        await svc.store.ping()
    except Exception as exc:
        if is_unavailable(exc):
            return problem(503, "redis unreachable")
        raise
    return web.json_response({"ok": True, "embedded_store": svc.store.embedded})


async def serve(app: web.Application, host: str, port: int, stop: asyncio.Event) -> None:
    """Run an aiohttp app until `stop` is set."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def create_app(services: Services, *, personas: list[dict] | None = None) -> web.Application:
    """The aiohttp application for the web process (and the demo)."""
    app = web.Application(middlewares=[errors], client_max_size=MAX_BODY)
    app[SERVICES] = services
    app[PERSONAS] = personas or []
    app.router.add_get("/healthz", health)
    app.router.add_post("/api/v1/orders", put_order)
    app.router.add_get("/api/v1/orders/{order_id}", get_order)
    app.router.add_get("/api/v1/orders/{order_id}/notifications", http_order_notifications)
    app.router.add_get("/api/v1/agent/queue", agent_queue)
    app.router.add_post("/api/v1/agent/shift", agent_shift)
    app.router.add_get("/api/v1/agent/conversations/{cid}", agent_conversation)
    app.router.add_post("/api/v1/agent/conversations/{cid}/claim", agent_claim)
    app.router.add_post("/api/v1/agent/conversations/{cid}/reply", agent_reply)
    app.router.add_post("/api/v1/agent/conversations/{cid}/note", agent_note)
    app.router.add_post("/api/v1/agent/conversations/{cid}/release", agent_release)
    app.router.add_routes(carrier_hooks.routes(services))
    for channel in services.channels.values():
        routes = getattr(channel, "routes", None)  # channels with webhooks declare their routes
        if routes is not None:
            app.router.add_routes(routes())
    app.router.add_get("/", chat_page)
    app.router.add_post("/webchat/api/sessions", chat_session)
    app.router.add_post("/webchat/api/messages", chat_post)
    app.router.add_get("/webchat/api/messages", chat_poll)
    return app
