"""Shared fixtures. The suite talks to a real Redis and fails loudly when it is unreachable."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from bot import config
from bot.i18n import I18n
from bot.services import Services
from bot.store import Store
from carriers.demo import DemoCarrier
from tests.driver import Chat, Clock

REDIS_URL = os.environ.get("SHIPMATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SHOP_KEY = "shop-key-0123456789abcdef"
AGENT_TOKENS = {"ana": "agent-ana-0123456789abcdef", "marko": "agent-marko-0123456789abcdef"}


def pytest_sessionstart(session: pytest.Session) -> None:
    """No silent fallback: without the real Redis the suite stops with one clear message."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.exceptions.RedisError as exc:
        pytest.exit(f"the test suite needs a real Redis at {REDIS_URL} ({exc}); start one with: "
                    "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' "
                    "--appendonly no", returncode=3)


#: Every test's keys start with this run's prefix; one scan at the end removes them all
#: (a scan per test would cost O(keyspace) each time on a busy shared Redis).
RUN_PREFIX = f"test-{uuid.uuid4().hex[:8]}"


def pytest_sessionfinish(session: pytest.Session) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        batch = []
        for key in client.scan_iter(match=f"{RUN_PREFIX}-*", count=5000):
            batch.append(key)
            if len(batch) >= 1000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    except redis.exceptions.RedisError:
        pass  # nothing to clean if Redis went away
    finally:
        client.close()


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    """A Store on the real Redis under a unique key prefix (removed at the end of the run)."""
    s = Store.connect(REDIS_URL, f"{RUN_PREFIX}-{uuid.uuid4().hex[:8]}")
    yield s
    await s.close()


@pytest.fixture
def clock() -> Clock:
    """A controllable clock, Monday 2026-11-23 10:00 Zagreb (inside business hours)."""
    return Clock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))


@pytest.fixture(scope="session")
def i18n() -> I18n:
    return I18n(strict=True)


def make_settings(**overrides: object) -> config.Settings:
    env = {
        "SHOP_API_KEYS": SHOP_KEY,
        "AGENT_TOKENS": ",".join(f"{n}:{t}" for n, t in AGENT_TOKENS.items()),
        "DEFAULT_TIMEZONE": "Europe/Zagreb", "BUSINESS_HOURS": "mon-fri 09:00-17:00",
        "SHOP_NAME": "Test Shop", "WEBCHAT_IMPERSONATION": "true",
    }
    return config.load(env, **overrides)


@pytest.fixture
async def services(store: Store, clock: Clock, i18n: I18n) -> AsyncIterator[Services]:
    """The whole app on real Redis, with the demo carrier on the test clock."""
    demo = DemoCarrier(epoch=clock.now - timedelta(hours=0), speed=1.0, clock=clock)
    svc = await Services.create(make_settings(), store=store, carriers={"demo": demo},
                                clock=clock, i18n=i18n)
    yield svc
    await svc.session.close()


@pytest.fixture
async def chat_factory(services: Services):  # type: ignore[no-untyped-def]
    async def open_chat(phone: str = "") -> Chat:
        return await Chat.open(services, phone)
    return open_chat



@pytest.fixture
async def client(services: Services):  # type: ignore[no-untyped-def]
    """An HTTP client for the web app (shop API, agent API, web chat) on a real socket."""
    from aiohttp.test_utils import TestClient, TestServer

    from bot.web import create_app

    async with TestClient(TestServer(create_app(services))) as c:
        yield c


def shop_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {SHOP_KEY}"}


def agent_headers(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {AGENT_TOKENS[name]}"}
