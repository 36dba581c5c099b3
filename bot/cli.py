"""`shipmate` command line: web, worker, demo, import-orders, outbox tools, check-config."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from bot import config
from bot.config import ConfigError, Settings
from bot.orders import ValidationError, validate_order
from bot.services import Services
from bot.web import create_app, serve
from bot.worker import install_signal_handlers, run_worker

log = logging.getLogger("shipmate")
DEMO_SPEED = 120.0  # demo parcels: one real minute is two journey hours


def _settings(**overrides: object) -> Settings:
    try:
        return config.load(**overrides)
    except ConfigError as exc:
        print(f"shipmate: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def _web(settings: Settings) -> None:
    config.require_for_web(settings)
    services = await Services.create(settings)
    stop = asyncio.Event()
    install_signal_handlers(stop)
    log.info("web listening on %s:%s", settings.host, settings.port)
    try:
        await serve(create_app(services), settings.host, settings.port, stop)
    finally:
        await services.close()


async def _worker(settings: Settings) -> None:
    services = await Services.create(settings)
    stop = asyncio.Event()
    install_signal_handlers(stop)
    log.info("worker started")
    try:
        await run_worker(services, stop)
    finally:
        await services.close()


def _read_orders(path: Path) -> object:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        print(f"shipmate: cannot read {path}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


async def _import(settings: Settings, data: object) -> int:
    items = data if isinstance(data, list) else [data]
    services = await Services.create(settings)
    failed = 0
    try:
        now = datetime.now(UTC)
        validated = []
        for i, payload in enumerate(items):
            try:
                validated.append(validate_order(payload, carriers=services.tracking.carriers,
                                                detect=services.tracking.detect, now=now))
            except ValidationError as exc:
                failed += 1
                for e in exc.errors:
                    print(f"order #{i} ({payload.get('id', '?') if isinstance(payload, dict) else '?'})"
                          f": {e['field']}: {e['message']}", file=sys.stderr)
        if failed:
            print(f"shipmate: {failed} invalid order(s); nothing was imported", file=sys.stderr)
            return 1
        for order in validated:
            _, created = await services.orders.upsert(order)
            print(f"{'created' if created else 'updated'} {order.id}")
    finally:
        await services.close()
    return 0


async def _dead(settings: Settings, replay: str | None) -> int:
    services = await Services.create(settings)
    try:
        if replay:
            ok = await services.outbox.replay(replay)
            print("replayed" if ok else f"no dead letter {replay}")
            return 0 if ok else 1
        for entry_id, fields in await services.outbox.dead_letters():
            print(f"{entry_id}  {fields.get('address', '')}  code={fields.get('code', '')}  "
                  f"{fields.get('error', '')}")
    finally:
        await services.close()
    return 0


def _telegram_set_webhook(settings: Settings) -> int:
    from telegram.error import TelegramError

    from bot.channels.telegram import set_webhook

    try:
        info = asyncio.run(set_webhook(settings))
    except (ValueError, TelegramError) as exc:
        print(f"shipmate: could not set the Telegram webhook: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=2, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `shipmate` console script."""
    parser = argparse.ArgumentParser(prog="shipmate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("web", help="serve webhooks, the shop and agent APIs and health")
    sub.add_parser("worker", help="process inbound messages and send the outbox")
    demo = sub.add_parser("demo", help="everything in one process with the embedded store")
    demo.add_argument("--port", type=int, default=None)
    imp = sub.add_parser("import-orders", help="upsert orders from a JSON file (one or a list)")
    imp.add_argument("file", type=Path)
    dead = sub.add_parser("dead-letters", help="list dead-lettered outbound messages")
    dead.add_argument("--replay", metavar="ENTRY_ID", help="put one back in the outbox")
    ledger = sub.add_parser("ledger", help="show an order's notification ledger")
    ledger.add_argument("order_id")
    ledger.add_argument("--json", action="store_true", help="print JSON")
    sub.add_parser("check-config", help="validate the environment and exit")
    sub.add_parser("telegram-set-webhook",
                   help="register PUBLIC_BASE_URL/webhooks/telegram with the secret token")
    args = parser.parse_args(argv)

    if args.command == "demo":
        overrides: dict[str, object] = {"demo_carrier": True, "webchat_impersonation": True}
        if args.port:
            overrides["port"] = args.port
        if "DEMO_CARRIER_SPEED" not in os.environ:
            overrides["demo_carrier_speed"] = DEMO_SPEED
        settings = _settings(**overrides)
    else:
        settings = _settings()
    _logging(settings.log_level)
    if args.command == "check-config":
        try:
            config.require_for_web(settings)
        except ConfigError as exc:
            print(f"shipmate: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        print("configuration OK")
        return
    if args.command == "web":
        try:
            asyncio.run(_web(settings))
        except ConfigError as exc:
            print(f"shipmate: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    elif args.command == "worker":
        asyncio.run(_worker(settings))
    elif args.command == "demo":
        from bot.demo import run_demo

        asyncio.run(run_demo(settings))
    elif args.command == "import-orders":
        raise SystemExit(asyncio.run(_import(settings, _read_orders(args.file))))
    elif args.command == "telegram-set-webhook":
        raise SystemExit(_telegram_set_webhook(settings))
    elif args.command == "ledger":
        from bot.notify import cli_ledger

        raise SystemExit(asyncio.run(cli_ledger(settings, args.order_id, as_json=args.json)))
    elif args.command == "dead-letters":
        raise SystemExit(asyncio.run(_dead(settings, args.replay)))
