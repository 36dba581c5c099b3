"""Wires the parts together once per process: one Redis client, one HTTP session."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp

from bot.channels import Channel
from bot.channels.webchat import WebchatChannel
from bot.config import Settings
from bot.consent import Consent
from bot.delivery import Delivery
from bot.engine import Engine
from bot.handoff import Handoff
from bot.history import History
from bot.i18n import I18n
from bot.models import ChannelName
from bot.notify import Notifier
from bot.orders import Orders
from bot.outbox import Outbox
from bot.schedule import Cadence, Scheduler
from bot.store import Store
from bot.tracking import Tracking
from carriers import Carrier
from carriers.demo import DemoCarrier
from carriers.registry import configured, push_ready

log = logging.getLogger(__name__)


def build_carriers(settings: Settings, session: aiohttp.ClientSession,
                   clock: Callable[[], datetime]) -> dict[str, Carrier]:
    """The carriers this deployment tracks with (demo plus every configured adapter)."""
    carriers: dict[str, Carrier] = {}
    if settings.demo_carrier:
        carriers["demo"] = DemoCarrier(epoch=clock(), speed=settings.demo_carrier_speed, clock=clock)
    carriers.update(configured(settings.carrier_env, session))
    return carriers


def build_channels(settings: Settings, store: Store, session: aiohttp.ClientSession,
                   clock: Callable[[], datetime], delivery: Delivery) -> dict[ChannelName, Channel]:
    """The messaging channels this deployment has credentials for."""
    channels: dict[ChannelName, Channel] = {}
    if settings.twilio_enabled:
        from bot.channels import twilio

        channels.update(twilio.build(settings, store, session, clock, delivery=delivery))
    if settings.telegram_enabled:
        from bot.channels import telegram

        channels.update(telegram.build(settings, store, session, clock))
    return channels


@dataclass
class Services:
    """Everything a web or worker process uses."""

    settings: Settings
    store: Store
    session: aiohttp.ClientSession
    i18n: I18n
    orders: Orders
    tracking: Tracking
    handoff: Handoff
    history: History
    outbox: Outbox
    consent: Consent
    engine: Engine
    webchat: WebchatChannel
    delivery: Delivery
    scheduler: Scheduler
    notifier: Notifier
    channels: dict[ChannelName, Channel] = field(default_factory=dict)

    @classmethod
    async def create(cls, settings: Settings, *, store: Store | None = None,
                     carriers: Mapping[str, Carrier] | None = None,
                     extra_channels: Mapping[ChannelName, Channel] | None = None,
                     clock: Callable[[], datetime] | None = None,
                     i18n: I18n | None = None) -> Services:
        """Open connections and build every part."""
        clock = clock or (lambda: datetime.now(UTC))
        store = store or Store.connect(settings.redis_url, settings.key_prefix)
        await store.ping()
        session = aiohttp.ClientSession()
        i18n = i18n or I18n()
        if carriers is None:
            carriers = build_carriers(settings, session, clock)
        orders = Orders(store, verify_max_attempts=settings.verify_max_attempts,
                        verify_window=settings.verify_window,
                        conversation_ttl=settings.conversation_ttl)
        tracking = Tracking(store, carriers, fresh_seconds=settings.tracking_fresh_seconds,
                            clock=clock, budgets=settings.carrier_budgets)
        scheduler = Scheduler(
            store, tracking, push=push_ready(settings.carrier_env),
            callback_base=settings.public_base_url,
            cadences={"demo": Cadence().scaled(1 / settings.demo_carrier_speed)},
            stop_after_days=settings.tracking_stop_after_days,
            delivered_grace_hours=settings.tracking_delivered_grace_hours, clock=clock)
        orders.shipment_hooks.append(scheduler.track_shipment)
        handoff = Handoff(store, settings.business_hours, clock=clock,
                          conversation_ttl=settings.conversation_ttl)
        history = History(store, settings.history_ttl)
        webchat = WebchatChannel(store, clock)
        consent = Consent(store)
        delivery = Delivery(store, consent=consent, clock=clock)
        channels: dict[ChannelName, Channel] = {ChannelName.WEBCHAT: webchat}
        if extra_channels is None:
            extra_channels = build_channels(settings, store, session, clock, delivery)
        channels.update(extra_channels)
        outbox = Outbox(store, channels)
        outbox.add_outcome_hook(delivery.record_sent)
        engine = Engine(store=store, settings=settings, i18n=i18n, orders=orders,
                        tracking=tracking, handoff=handoff, history=history, outbox=outbox,
                        consent=consent, limits={n: c.limits for n, c in channels.items()},
                        clock=clock)
        notifier = Notifier(store, settings, i18n, orders, outbox, consent, handoff, clock,
                            history=history, tracking=tracking)
        tracking.listeners.append(notifier.on_changes)
        outbox.add_outcome_hook(notifier.on_outcome)
        delivery.listeners.append(notifier.on_delivery)
        return cls(settings, store, session, i18n, orders, tracking, handoff, history, outbox,
                   consent, engine, webchat, delivery, scheduler, notifier, channels)

    async def pump(self, consumer: str = "pump", rounds: int = 50) -> None:
        """Process inbound and outbound queues until both are idle (demo and tests)."""
        for _ in range(rounds):
            n = await self.engine.process_once(consumer)
            n += await self.outbox.process_once(consumer)
            if n == 0:
                return

    async def close(self) -> None:
        """Close channel clients, the HTTP session and the Redis pool."""
        for channel in self.channels.values():
            close = getattr(channel, "close", None)
            if close is not None:
                await close()
        await self.session.close()
        await self.store.close()
