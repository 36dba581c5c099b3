"""The carrier registry: which adapters env configures, push readiness, the variable list."""

from __future__ import annotations

import subprocess
import sys

import aiohttp
import pytest

from bot.config import CARRIER_ENV_PREFIXES
from carriers import Carrier, PushCarrier
from carriers.registry import (
    ADAPTERS,
    configured,
    env_vars,
    missing,
    prefixes,
    push_ready,
)
from tests.fakes import serve
from tests.fakes.carrier_dhl import API_KEY, OUT_FOR_DELIVERY, FakeDhl


def polling_env(name: str) -> dict[str, str]:
    adapter = ADAPTERS[name]
    return {adapter.var(c): f"{name}-{c}-value" for c in adapter.required}


def full_env(name: str) -> dict[str, str]:
    adapter = ADAPTERS[name]
    env = polling_env(name)
    for cred in adapter.push_credentials:
        env[adapter.var(cred)] = "x" * 32 if cred == "webhook_secret" else f"{name}-{cred}"
    return env


async def test_nothing_configured_means_no_adapters():
    async with aiohttp.ClientSession() as session:
        assert configured({}, session) == {}
        assert configured({"UNRELATED": "1", "DHL_BASE_URL": "http://x"}, session) == {}


@pytest.mark.parametrize("name", sorted(ADAPTERS))
async def test_each_adapter_builds_from_its_polling_credentials(name):
    async with aiohttp.ClientSession() as session:
        carriers = configured(polling_env(name), session)
    assert list(carriers) == [name]
    carrier = carriers[name]
    assert isinstance(carrier, Carrier) and carrier.name == name
    assert carrier.limits == ADAPTERS[name].limits


@pytest.mark.parametrize("name", sorted(ADAPTERS))
async def test_a_missing_credential_leaves_the_adapter_out_and_says_which(name):
    env = polling_env(name)
    dropped = sorted(env)[0]
    del env[dropped]
    async with aiohttp.ClientSession() as session:
        assert name not in configured(env, session)
    if env:  # adapters with a single credential have nothing left to notice
        assert missing(env)[name] == [dropped]


def test_push_needs_the_webhook_credentials_too():
    env = {**polling_env("dhl"), **polling_env("usps"), **polling_env("17track"),
           **polling_env("fedex")}
    assert push_ready(env) == {"17track"}  # 17TRACK signs pushes with the API key itself
    env.update(full_env("dhl"))
    env["USPS_WEBHOOK_SECRET"] = "y" * 32
    assert push_ready(env) == {"17track", "dhl"}  # USPS also needs USPS_ADMIN_EMAIL
    env["USPS_ADMIN_EMAIL"] = "ops@shop.example"
    assert push_ready(env) == {"17track", "dhl", "usps"}
    assert "fedex" not in push_ready({**env, **full_env("fedex")})  # polling only


async def test_push_ready_adapters_are_push_carriers():
    env: dict[str, str] = {}
    for name in ADAPTERS:
        env.update(full_env(name))
    async with aiohttp.ClientSession() as session:
        carriers = configured(env, session)
    for name in push_ready(env):
        assert isinstance(carriers[name], PushCarrier), name


async def test_base_url_comes_from_env():
    fake = FakeDhl()
    async with serve(fake.app()) as base, aiohttp.ClientSession() as session:
        carriers = configured({"DHL_API_KEY": API_KEY, "DHL_BASE_URL": base + "/"}, session)
        report = await carriers["dhl"].track([OUT_FOR_DELIVERY])
    assert OUT_FOR_DELIVERY in report.snapshots
    assert fake.calls["/track/shipments"] == 1


async def test_adapter_options_and_their_errors():
    env = {"THAILANDPOST_API_KEY": "k", "THAILANDPOST_LANGUAGE": "th"}
    async with aiohttp.ClientSession() as session:
        assert configured(env, session)["thailandpost"].language == "TH"
        with pytest.raises(ValueError, match="THAILANDPOST_"):
            configured({**env, "THAILANDPOST_LANGUAGE": "klingon"}, session)


def test_env_vars_list_every_variable_once():
    listed = env_vars()
    names = [v.name for v in listed]
    assert len(names) == len(set(names))
    for expected in ("DHL_API_KEY", "DHL_WEBHOOK_SECRET", "DHL_BASE_URL", "UPS_CLIENT_ID",
                     "UPS_WEBHOOK_CREDENTIAL", "USPS_ADMIN_EMAIL", "SEVENTEENTRACK_API_KEY",
                     "EASYPOST_WEBHOOK_SECRET", "POSTNL_API_KEY", "THAILANDPOST_LANGUAGE",
                     "FEDEX_CLIENT_SECRET"):
        assert expected in names
    assert {v.role for v in listed} == {"required", "push", "base_url", "option"}
    assert all(v.name.startswith(prefixes()) for v in listed)


def test_settings_collect_every_carrier_variable():
    # bot.config copies variables with these prefixes into Settings.carrier_env
    assert set(prefixes()) <= set(CARRIER_ENV_PREFIXES)


def test_carriers_never_import_bot():
    code = ("import sys, carriers.registry; "
            "sys.exit(any(m == 'bot' or m.startswith('bot.') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
