"""Escalation to human agents: race-safe ownership, a silent bot, and the agent API."""

from __future__ import annotations

import asyncio

import pytest

from bot.services import Services
from tests.conftest import agent_headers, make_settings
from tests.driver import Chat
from tests.test_conversations import add_order


@pytest.mark.parametrize("text", ["talk to a human please", "bisa bicara dengan orang asli?",
                                  "želim razgovarati s nekim", "ขอคุยกับเจ้าหน้าที่"])
async def test_asking_for_a_person_in_any_language_escalates(services, chat_factory, text):
    await services.handoff.set_on_shift("ana", True)
    chat = await chat_factory()
    replies = await chat.say(text)
    assert len(replies) == 1
    assert await services.handoff.owner(await chat.customer_id()) == "queue"
    queue = await services.handoff.queue()
    assert [q["conversation_id"] for q in queue] == [await chat.customer_id()]
    assert queue[0]["reason"] == "customer_asked"


async def test_two_not_understood_turns_escalate(services, chat_factory):
    await services.handoff.set_on_shift("ana", True)
    chat = await chat_factory()
    assert "didn't understand" in await chat.text("blorp")
    assert "asked a colleague" in await chat.text("zzzz qqq")
    assert (await services.handoff.details(await chat.customer_id()))["reason"] == "bot_stuck"


async def test_understood_turn_resets_the_counter(services, chat_factory):
    chat = await chat_factory()
    await chat.say("blorp")
    await chat.say("help")
    assert "didn't understand" in await chat.text("blorp")
    assert await services.handoff.owner(await chat.customer_id()) == "bot"


async def test_queue_position_with_croatian_plural(services, chat_factory):
    await services.handoff.set_on_shift("ana", True)
    texts = []
    for _ in range(6):
        chat = await chat_factory()
        texts.append(await chat.text("želim razgovarati s nekim"))
    assert "Vi ste sljedeći na redu" in texts[0]
    assert "Ispred Vas je 1 osoba" in texts[1]
    assert "Ispred Vas su 2 osobe" in texts[2]
    assert "Ispred Vas je 5 osoba" in texts[5]


async def test_off_shift_tells_opening_hours_in_the_customers_timezone(services, chat_factory, clock):
    await add_order(services, order_id="TH-9", phone="+66812345678", locale="th",
                    timezone="Asia/Bangkok")
    clock.advance(days=5)  # Saturday 2026-11-28
    chat = await chat_factory("+66812345678")
    text = await chat.text("ขอคุยกับเจ้าหน้าที่")
    assert "นอกเวลาทำการ" in text
    # Monday 09:00 in Zagreb is 15:00 in Bangkok, with a Buddhist-era year
    assert "30 พฤศจิกายน พ.ศ. 2569, 15:00" in text


async def test_within_hours_but_nobody_on_shift_counts_as_closed(services, chat_factory):
    chat = await chat_factory()
    assert "offline right now" in await chat.text("agent")


async def test_bot_stays_silent_under_concurrent_messages(services, chat_factory):
    await services.handoff.set_on_shift("ana", True)
    chat = await chat_factory()
    messages = ["help"] * 5 + ["talk to a human"] + ["where is my order?"] * 10
    for i, text in enumerate(messages):
        await services.engine.receive(services.webchat.parse(chat.session, text, message_id=f"c{i}"))
    # three workers drain the inbound stream at once
    await asyncio.gather(*[services.engine.process_once(f"w{i}", count=4) for i in range(3)])
    await services.pump()
    history = await services.history.read(await chat.customer_id())
    inbound = [h for h in history if h["direction"] == "inbound"]
    assert len(inbound) == len(messages)
    bot = [h for h in history if h["sender"] == "bot"]
    handoffs = [h for h in bot if "asked a colleague" in h["text"]]
    assert len(handoffs) == 1
    # nothing from the bot after the handoff message, although messages kept coming
    last_bot = max(i for i, h in enumerate(history) if h["sender"] == "bot")
    assert history[last_bot]["text"] == handoffs[0]["text"]
    assert any(h["direction"] == "inbound" for h in history[last_bot + 1:])
    replies = await chat.replies()
    assert sum("asked a colleague" in r["text"] for r in replies) == 1


async def test_ownership_holds_across_processes(services, store, clock, i18n, chat_factory):
    other = await Services.create(make_settings(), store=store,
                                  carriers=services.tracking.carriers, clock=clock, i18n=i18n)
    try:
        chat = await chat_factory()
        await chat.say("agent")
        cid = await chat.customer_id()
        await other.handoff.claim(cid, "ana")  # another process claims
        msg = services.webchat.parse(chat.session, "are you there?", message_id="x1")
        await other.engine.receive(msg)
        await other.pump()  # the other process handles the turn: silent
        await services.pump()
        assert await chat.replies() == []
        assert (await services.history.read(cid))[-1]["text"] == "are you there?"
    finally:
        await other.session.close()


async def test_agent_api_claim_race_reply_note_and_hand_back(services, chat_factory, client):
    await add_order(services, order_id="HR-20", journey=5, hours=43)
    await services.handoff.set_on_shift("ana", True)
    chat = await chat_factory("+385911234567")
    await chat.say("HR-20")
    await chat.say("razgovor s osobom")
    cid = await chat.customer_id()

    assert (await client.get("/api/v1/agent/queue")).status == 401
    queue = await (await client.get("/api/v1/agent/queue", headers=agent_headers("ana"))).json()
    assert [q["conversation_id"] for q in queue["queue"]] == [cid]

    ana, marko = await asyncio.gather(
        client.post(f"/api/v1/agent/conversations/{cid}/claim", headers=agent_headers("ana")),
        client.post(f"/api/v1/agent/conversations/{cid}/claim", headers=agent_headers("marko")))
    assert sorted([ana.status, marko.status]) == [200, 409]
    winner = "ana" if ana.status == 200 else "marko"
    loser = "marko" if winner == "ana" else "ana"
    assert (await (await client.get("/api/v1/agent/queue", headers=agent_headers("ana"))).json())["queue"] == []

    view = await (await client.get(f"/api/v1/agent/conversations/{cid}",
                                   headers=agent_headers(winner))).json()
    assert view["owner"] == f"agent:{winner}"
    assert [h["text"] for h in view["history"] if h["direction"] == "inbound"] == ["HR-20", "razgovor s osobom"]
    assert view["orders"][0]["id"] == "HR-20"
    assert view["orders"][0]["shipments"][0]["customs"] == "duties_due"

    denied = await client.post(f"/api/v1/agent/conversations/{cid}/reply", json={"text": "hi"},
                               headers=agent_headers(loser))
    assert denied.status == 409
    sent = await client.post(f"/api/v1/agent/conversations/{cid}/reply",
                             json={"text": "Dobar dan, provjeravam carinu.", "idempotency_key": "r1"},
                             headers=agent_headers(winner))
    assert sent.status == 202
    again = await client.post(f"/api/v1/agent/conversations/{cid}/reply",
                              json={"text": "Dobar dan, provjeravam carinu.", "idempotency_key": "r1"},
                              headers=agent_headers(winner))
    assert again.status == 202
    note = await client.post(f"/api/v1/agent/conversations/{cid}/note",
                             json={"text": "duties 23.40 EUR, customer informed"},
                             headers=agent_headers(winner))
    assert note.status == 201
    await services.pump()
    delivered = await chat.replies()
    assert [m["text"] for m in delivered] == [f"{winner}: Dobar dan, provjeravam carinu."]

    released = await client.post(f"/api/v1/agent/conversations/{cid}/release",
                                 headers=agent_headers(winner))
    assert released.status == 200
    await services.pump()
    assert "automatskim asistentom" in (await chat.replies())[0]["text"]
    assert "Narudžba HR-20" in await chat.text("HR-20")  # the bot answers again
    history = await services.history.read(cid)
    assert any(h["direction"] == "note" and h["agent"] == winner for h in history)


async def test_agent_api_validation(services, client, chat_factory):
    chat = await chat_factory()
    await chat.say("agent")
    cid = await chat.customer_id()
    h = agent_headers("ana")
    assert (await client.post(f"/api/v1/agent/conversations/{cid}/reply", json={"text": ""},
                              headers=h)).status == 400
    assert (await client.post("/api/v1/agent/conversations/nope/claim", headers=h)).status == 404
    assert (await client.post(f"/api/v1/agent/conversations/{cid}/release", headers=h)).status == 409
    assert (await client.post("/api/v1/agent/shift", json={"on_shift": "yes"}, headers=h)).status == 400
    ok = await client.post("/api/v1/agent/shift", json={"on_shift": True}, headers=h)
    assert (await ok.json()) == {"agent": "ana", "on_shift": True}


async def test_web_chat_endpoints(services, client):
    resp = await client.post("/webchat/api/sessions", json={})
    session = (await resp.json())["session"]
    assert (await client.post("/webchat/api/messages", json={"session": session, "text": ""})).status == 400
    assert (await client.post("/webchat/api/messages", json={"session": "nope", "text": "hi"})).status == 404
    posted = await client.post("/webchat/api/messages", json={"session": session, "text": "help", "id": "w1"})
    assert posted.status == 202 and (await posted.json())["accepted"] is True
    dup = await client.post("/webchat/api/messages", json={"session": session, "text": "help", "id": "w1"})
    assert (await dup.json())["accepted"] is False
    await services.pump()
    got = await (await client.get(f"/webchat/api/messages?session={session}&after=0")).json()
    assert len(got["messages"]) == 1 and got["messages"][0]["buttons"]
    page = await client.get("/")
    assert page.status == 200 and "Test Shop" in await page.text()
    assert (await client.get("/healthz")).status == 200


async def test_chat_as_unknown_phone_is_rejected(client):
    resp = await client.post("/webchat/api/sessions", json={"phone": "+385990000000"})
    assert resp.status == 404


_ = Chat  # the driver type used by chat_factory
