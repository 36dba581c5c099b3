"""The demo's channel sandbox: the fake Twilio and fake Telegram behind the demo page.

The demo is built in-process exactly as `shipmate demo` builds it (bot.demo.build_demo), on the
real Redis under a test prefix, served on a real socket with the worker loops running; the page's
/demo/api routes make the fakes send signed webhooks and show what the fakes received.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot import demo as demo_module
from bot import sms
from bot.changes import ChangeKind
from bot.demo import (
    STRANGER_CHAT,
    Demo,
    DemoClock,
    build_demo,
    open_sandbox,
)
from bot.i18n import I18n
from bot.models import Address, ChannelName, OutboundMessage
from bot.store import Store
from bot.worker import run_worker
from tests.conftest import make_settings

PUBLIC = "http://localhost:8099"  # what the demo's settings say; the fakes are routed to the socket
ANA, BUDI, SOMCHAI, EMILY = "+385911234567", "+6281234567890", "+66812345678", "+12025550143"
ROOT = Path(__file__).resolve().parent.parent
WAIT = 20.0  # seconds for a reply to reach the fake (the first turn loads the language model)
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*`retry_after` will be of type:telegram.warnings.PTBDeprecationWarning")


@dataclass
class Rig:
    demo: Demo
    url: str
    http: aiohttp.ClientSession
    clock: DemoClock

    @property
    def sandbox(self) -> Any:
        assert self.demo.sandbox is not None
        return self.demo.sandbox

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with self.http.post(self.url + path, json=body) as response:
            return response.status, await response.json()

    async def get(self, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
        async with self.http.get(self.url + path, params=params) as response:
            return response.status, await response.json()

    async def send(self, channel: str, sender: str | int, text: str) -> dict[str, Any]:
        status, body = await self.post("/demo/api/send",
                                       {"channel": channel, "from": str(sender), "text": text})
        assert status == 200, body
        assert body["app_status"] == 200 and body["delivered"], body
        return body

    async def inbox(self, channel: str, to: str | int, *, after: int = 0,
                    want: int = 1) -> dict[str, Any]:
        """Poll the inbox until `want` new messages arrived after `after` (the worker is async)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while True:
            status, data = await self.get("/demo/api/inbox", channel=channel, to=str(to),
                                          after=str(after))
            assert status == 200, data
            if len(data["messages"]) >= want:
                return data
            assert loop.time() < deadline, f"no reply on {channel} to {to}: {data}"
            await asyncio.sleep(0.1)


@pytest.fixture
async def rig(store: Store, i18n: I18n, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    monkeypatch.delenv(demo_module.SANDBOX_ENV, raising=False)
    clock = DemoClock()
    settings = make_settings(demo_carrier=True, demo_carrier_speed=1.0, twilio_sms_mps=50.0,
                             twilio_whatsapp_mps=50.0)
    demo = await build_demo(settings, store=store, clock=clock, i18n=i18n, public=PUBLIC)
    assert demo.sandbox is not None, demo.note
    server = TestServer(demo.app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    demo.sandbox.route_to(url)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(demo.services, stop))
    http = aiohttp.ClientSession()
    try:
        yield Rig(demo, url, http, clock)
    finally:
        stop.set()
        worker.cancel()  # no need to wait for the loops' blocking reads to time out
        await asyncio.gather(worker, return_exceptions=True)
        await http.close()
        await demo.close()  # the fakes and their clients first: the server then closes at once
        await server.close()


# ---------------------------------------------------------------- wiring


async def test_the_app_channels_point_at_the_fakes(rig: Rig, i18n: I18n) -> None:
    settings = rig.demo.services.settings
    twilio, telegram = rig.sandbox.twilio, rig.sandbox.telegram
    assert settings.twilio_api_base_url == twilio.url and settings.telegram_api_base_url == telegram.url
    assert settings.public_base_url == PUBLIC
    assert {ChannelName.SMS, ChannelName.WHATSAPP, ChannelName.TELEGRAM} <= set(rig.demo.services.channels)
    assert telegram.webhook["url"] == PUBLIC + "/webhooks/telegram"
    assert telegram.webhook["secret_token"] == settings.telegram_webhook_secret
    status, info = await rig.get("/demo/api/sandbox")
    assert status == 200 and info["can_advance"] is True
    assert [p["phone"] for p in info["personas"]] == [ANA, BUDI, SOMCHAI, EMILY]
    assert all(p["telegram_start"].startswith("/start ") for p in info["personas"])
    # an approved template for every proactive kind in every locale, registered in the fake
    templates = info["templates"]
    for locale in ("en", "id", "hr", "th"):
        assert f"agent_reply:{locale}" in templates
        assert twilio.templates[templates[f"agent_reply:{locale}"]] == i18n.render(
            "demo/whatsapp_template", locale, kind="agent_reply")
    assert twilio.templates[templates["agent_reply:hr"]].startswith("Imate novu poruku")
    assert twilio.templates[templates["duties_due:th"]].splitlines()[1] == \
        "ศุลกากรกักพัสดุไว้จนกว่าจะชำระอากรค่ะ"
    assert {f"{k.value}:{loc}" for k in ChangeKind for loc in ("en", "id", "hr", "th")} <= set(templates)


# ---------------------------------------------------------------- SMS


async def test_an_sms_reaches_the_engine_and_the_reply_shows_encoding_and_segments(rig: Rig) -> None:
    await rig.send("sms", ANA, "Bok, gdje je moja narudžba?")
    data = await rig.inbox("sms", ANA)
    [reply] = data["messages"]
    assert reply["kind"] == "message" and reply["text"]
    # a Croatian reply needs UCS-2 (č, ć, ž…): 70 characters per segment, billed accordingly
    info = sms.segments(reply["text"])
    assert (reply["encoding"], reply["segments"]) == ("UCS-2", info.segments)
    assert reply["segments"] >= 2  # long enough to need several UCS-2 segments
    [sent] = rig.sandbox.twilio.messages
    assert sent["to"] == ANA and sent["body"] == reply["text"]
    assert int(sent["num_segments"]) == reply["segments"]
    # the engine saw the message on the SMS channel, for the seeded customer
    customer = await rig.demo.services.orders.customer_for(Address(ChannelName.SMS, ANA), create=False)
    assert customer is not None
    history = await rig.demo.services.history.read(customer.id)
    assert ("inbound", "sms") in {(h["direction"], h.get("channel")) for h in history}

    await rig.send("sms", EMILY, "hello")
    [english] = (await rig.inbox("sms", EMILY))["messages"]
    assert english["encoding"] == sms.segments(english["text"]).encoding


async def test_stop_on_sms_is_answered_by_twilio_itself(rig: Rig) -> None:
    await rig.send("sms", BUDI, "STOP")
    data = await rig.inbox("sms", BUDI)
    assert data["messages"][0]["kind"] == "auto_reply"
    assert "unsubscribed" in data["messages"][0]["text"]


# ---------------------------------------------------------------- WhatsApp


async def test_whatsapp_free_text_inside_the_window_and_a_template_after_it(rig: Rig) -> None:
    await rig.send("whatsapp", EMILY, "hi")
    data = await rig.inbox("whatsapp", EMILY)
    [reply] = data["messages"]
    assert (reply["mode"], reply["content_sid"]) == ("free", None)
    assert "1. " in reply["text"]  # choices as a numbered list, not buttons
    assert data["window"]["open"] is True

    status, moved = await rig.post("/demo/api/advance", {"hours": 25})
    assert status == 200 and moved["ahead_hours"] == 25
    data = await rig.inbox("whatsapp", EMILY, want=0)
    assert data["window"]["open"] is False
    address = Address(ChannelName.WHATSAPP, EMILY)
    whatsapp = rig.demo.services.channels[ChannelName.WHATSAPP]
    assert await whatsapp.window_open(address) is False  # type: ignore[attr-defined]

    # a message the bot starts now (an agent's answer) can only go as the approved template
    await rig.demo.services.outbox.enqueue(OutboundMessage(
        idem="demo-test-agent", address=address, text="We found your parcel.", kind="agent",
        template="agent_reply", locale="en"))
    [late] = (await rig.inbox("whatsapp", EMILY, after=1))["messages"]
    templates = rig.demo.services.settings.whatsapp_templates
    assert (late["mode"], late["content_sid"]) == ("template", templates["agent_reply:en"])
    assert late["text"] == ("You have a new message from our team. Reply to this message to "
                            "read it.") and late["variables"] == {}


async def test_a_whatsapp_quick_reply_tap_reaches_the_engine(rig: Rig) -> None:
    status, body = await rig.post("/demo/api/tap", {"channel": "whatsapp", "from": EMILY,
                                                    "data": "orders", "text": "My orders"})
    assert status == 200 and body["app_status"] == 200
    [reply] = (await rig.inbox("whatsapp", EMILY))["messages"]
    assert "US-4004" in reply["text"]
    inbound = rig.sandbox.twilio.inbound[-1]
    assert (inbound["ButtonPayload"], inbound["MessageType"]) == ("orders", "interactive")


# ---------------------------------------------------------------- Telegram


async def test_telegram_reply_carries_inline_buttons_and_tapping_one_works(rig: Rig) -> None:
    _, info = await rig.get("/demo/api/sandbox")
    somchai = next(p for p in info["personas"] if p["phone"] == SOMCHAI)
    chat = somchai["telegram_chat_id"]
    await rig.send("telegram", SOMCHAI, somchai["telegram_start"])  # the shop's deep link
    [first] = (await rig.inbox("telegram", chat))["messages"]
    assert "TH-3003" in first["text"]  # linked to the order: its status, in Thai
    buttons = [b for row in first["buttons"] for b in row]
    assert buttons and all(b["text"] and b["data"] for b in buttons)
    menu = next(b for b in buttons if b["data"] == "menu")

    status, body = await rig.post("/demo/api/tap", {"channel": "telegram", "from": chat,
                                                    "data": menu["data"],
                                                    "message_id": first["message_id"]})
    assert status == 200 and body["app_status"] == 200
    [second] = (await rig.inbox("telegram", chat, after=1))["messages"]
    assert [b["data"] for row in second["buttons"] for b in row] == ["orders", "human", "lang"]
    answered = [c for c in rig.sandbox.telegram.calls if c["method"] == "answerCallbackQuery"]
    assert answered and answered[-1]["status"] == 200


async def test_a_telegram_stranger_gets_the_menu_in_their_language(rig: Rig) -> None:
    status, body = await rig.post("/demo/api/send", {"channel": "telegram",
                                                     "from": STRANGER_CHAT, "text": "/start",
                                                     "lang": "hr-HR"})
    assert status == 200 and body["app_status"] == 200
    [reply] = (await rig.inbox("telegram", STRANGER_CHAT))["messages"]
    assert reply["text"].startswith("Pozdrav!")
    assert reply["buttons"][0][0]["text"] == "Moje narudžbe"


# ---------------------------------------------------------------- bad requests


@pytest.mark.parametrize("path,body,status", [
    ("/demo/api/send", {"channel": "fax", "from": ANA, "text": "hi"}, 400),
    ("/demo/api/send", {"channel": "sms", "from": "not a number", "text": "hi"}, 400),
    ("/demo/api/send", {"channel": "sms", "from": ANA, "text": " "}, 400),
    ("/demo/api/send", {"channel": "telegram", "from": "abc", "text": "hi"}, 400),
    ("/demo/api/tap", {"channel": "sms", "from": ANA, "data": "menu"}, 400),
    ("/demo/api/tap", {"channel": "telegram", "from": 42, "data": "menu"}, 404),
    ("/demo/api/advance", {"hours": -1}, 400),
    ("/demo/api/advance", {"hours": "25"}, 400),
])
async def test_bad_sandbox_requests_are_clear_4xx(rig: Rig, path: str, body: dict[str, Any],
                                                  status: int) -> None:
    got, answer = await rig.post(path, body)
    assert got == status and answer["error"], answer


async def test_the_page_offers_the_channels(rig: Rig) -> None:
    async with rig.http.get(rig.url + "/", params={"lang": "hr"}) as response:
        page = await response.text()
    assert response.status == 200
    assert 'id="channel"' in page and "Web razgovor" in page and "/demo/api/sandbox" in page


# ---------------------------------------------------------------- without the fakes


async def test_the_sandbox_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings()
    monkeypatch.setenv(demo_module.SANDBOX_ENV, "0")
    box, same, line = await open_sandbox(settings, DemoClock())
    assert box is None and same is settings and line.startswith("Channel sandbox off")


async def test_without_the_fakes_the_demo_runs_as_before(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.delenv(demo_module.SANDBOX_ENV, raising=False)
    monkeypatch.setattr(demo_module, "ROOT", tmp_path)  # an installed package: no tests/fakes
    settings = make_settings()
    box, same, line = await open_sandbox(settings, DemoClock())
    assert box is None and same is settings
    assert line.startswith("Channel sandbox off:") and "source checkout" in line


# ---------------------------------------------------------------- the real command


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - localhost
        return response.status, json.loads(response.read() or b"null")


@pytest.mark.slow
def test_shipmate_demo_serves_health_and_the_sandbox() -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "PORT", demo_module.SANDBOX_ENV)}
    env["PYTHONUNBUFFERED"] = "1"
    shipmate = Path(sys.executable).parent / "shipmate"
    proc = subprocess.Popen([str(shipmate), "demo", "--port", str(port)], cwd=ROOT, env=env,  # noqa: S603
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or []],
                              daemon=True)
    reader.start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while not any("Channel sandbox on" in line for line in output):
            assert proc.poll() is None, "".join(output)
            assert time.monotonic() < deadline, "".join(output)
            try:
                output.append(lines.get(timeout=0.5))
            except queue.Empty:
                pass
        base = f"http://127.0.0.1:{port}"
        while True:  # the sandbox line is printed just before the server starts listening
            try:
                status, health = _http("GET", base + "/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline, "".join(output)
                time.sleep(0.2)
        assert status == 200 and health["ok"] is True
        # one SMS through the real process: the fake Twilio signs it, the worker answers
        status, sent = _http("POST", base + "/demo/api/send",
                             {"channel": "sms", "from": ANA, "text": "bok"})
        assert status == 200 and sent["app_status"] == 200
        query = urllib.parse.urlencode({"channel": "sms", "to": ANA})
        while True:
            _, inbox = _http("GET", f"{base}/demo/api/inbox?{query}")
            if inbox["messages"]:
                break
            assert time.monotonic() < deadline, inbox
            time.sleep(0.2)
        assert inbox["messages"][0]["encoding"] == "UCS-2"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
