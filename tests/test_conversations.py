"""End-to-end conversations pushed through the web chat channel into the real engine."""

from __future__ import annotations

import pytest

from bot.models import Address, ChannelName
from bot.orders import validate_order
from carriers.demo import make_number
from tests.factories import order_payload


async def add_order(services, **kw) -> str:
    body = order_payload(**kw)
    order = validate_order(body, carriers=services.tracking.carriers,
                           detect=services.tracking.detect, now=services.tracking.clock())
    await services.orders.upsert(order)
    return body["shipments"][0]["tracking_number"]


async def test_owner_gets_live_details_in_croatian(services, chat_factory):
    await add_order(services, order_id="HR-1", journey=5, hours=43)
    chat = await chat_factory("+385911234567")
    text = await chat.text("Gdje je moja narudžba HR-1?")
    assert "Narudžba HR-1" in text
    assert "zadržano na carini, treba platiti carinu" in text
    assert "23,40\xa0€" in text  # Croatian money format (Babel puts a no-break space)
    assert "https://track.example.com/demo/" in text and "Nikada ne tražimo plaćanje" in text
    assert "23. studenoga 2026." in text  # Croatian date, genitive month


async def test_thai_customer_sees_buddhist_era_dates(services, chat_factory):
    await add_order(services, order_id="TH-1", phone="+66812345678", locale="th",
                    timezone="Asia/Bangkok", journey=2, hours=37)
    chat = await chat_factory("+66812345678")
    text = await chat.text("พัสดุ TH-1 อยู่ไหน")
    assert "คำสั่งซื้อ TH-1" in text
    assert "พ.ศ. 2569" in text and "2026" not in text
    assert "฿1,250.00" in text


async def test_indonesian_rupiah_has_no_decimals(services, chat_factory):
    await add_order(services, order_id="ID-1", phone="+6281234567890", locale="id",
                    timezone="Asia/Jakarta", journey=8, hours=37)
    chat = await chat_factory("+6281234567890")
    text = await chat.text("di mana pesanan ID-1")
    assert "Rp185.000" in text and "Rp185.000,00" not in text


async def test_where_is_my_order_without_number_uses_the_senders_orders(services, chat_factory):
    await add_order(services, order_id="HR-2", journey=1, hours=24)
    chat = await chat_factory("+385911234567")
    assert "u dostavi" in await chat.text("gdje mi je paket?")  # out for delivery
    await add_order(services, order_id="HR-3", journey=1, hours=2)
    replies = await chat.say("gdje mi je paket?")
    assert "Imate 2 narudžbe:" in replies[0]["text"]  # Croatian plural 'few'
    assert {b["payload"] for b in replies[0]["buttons"]} == {"order:HR-2", "order:HR-3"}
    assert "Narudžba HR-3" in "\n".join(m["text"] for m in await chat.say(payload="order:HR-3"))


async def test_track_by_tracking_number_and_unknown_numbers(services, chat_factory):
    chat = await chat_factory()
    number = make_number(6, 21, 77)
    text = await chat.text(f"track {number.lower()} please")
    assert "out for delivery" in text and number in text
    missing = make_number(9, 5, 1)  # journey 9: the carrier has never heard of it
    assert "could not find tracking information" in await chat.text(missing)


async def test_stranger_sees_only_coarse_status_until_second_factor(services, chat_factory):
    await add_order(services, order_id="HR-4", journey=5, hours=43, postcode="10 000")
    stranger = await chat_factory()
    text = await stranger.text("Where is order HR-4?")
    assert "Order HR-4: on hold" in text
    assert "23" not in text and "track.example.com" not in text  # no details, no links
    assert "postcode or the email address" in text
    assert "1 try left" not in await stranger.text("99999")
    text = await stranger.text("10000")  # the postcode, typed without the space
    assert "held by customs, duties to pay" in text and "€23.40" in text
    # once verified, the order stays visible for this conversation
    assert "€23.40" in await stranger.text("where is HR-4")


async def test_email_is_a_second_factor_too(services, chat_factory):
    await add_order(services, order_id="HR-5", journey=1, hours=10, email="Ana@Example.hr")
    stranger = await chat_factory()
    await stranger.say("order HR-5")
    assert "Last update" in await stranger.text("ana@example.HR")


async def test_wrong_guesses_are_limited_per_sender(services, chat_factory):
    await add_order(services, order_id="HR-6", journey=1, hours=10)
    stranger = await chat_factory()
    await stranger.say("order HR-6")
    texts = [await stranger.text(f"1234{i}") for i in range(5)]
    assert "4 tries left" in texts[0] and "1 try left" in texts[3]
    assert "For your security" in texts[4]
    # the right answer no longer helps while locked, and lookups are refused
    assert "For your security" in await stranger.text("10000")
    assert "For your security" in await stranger.text("order HR-6")


async def test_wrong_guesses_are_limited_per_order_across_senders(services, chat_factory):
    await add_order(services, order_id="HR-7", journey=1, hours=10)
    for i in range(5):
        guesser = await chat_factory()
        await guesser.say("order HR-7")
        await guesser.say(f"5555{i}")
    fresh = await chat_factory()
    assert "For your security" in await fresh.text("order HR-7")


async def test_order_numbers_cannot_be_enumerated(services, chat_factory):
    stranger = await chat_factory()
    for i in range(5):
        assert "could not find an order" in await stranger.text(f"order X{1000 + i}")
    await add_order(services, order_id="X2000", journey=1, hours=10)
    assert "For your security" in await stranger.text("order X2000")


async def test_multi_turn_asks_for_the_missing_reference(services, chat_factory):
    await add_order(services, order_id="HR-8", journey=1, hours=10)
    stranger = await chat_factory()
    assert "send me your order number" in await stranger.text("where is my parcel?")
    dialog = await services.store.get_json(services.store.keys.dialog(await stranger.customer_id()))
    assert dialog["awaiting"] == "reference"
    assert services.settings.conversation_ttl - 5 <= await services.store.ttl(
        services.store.keys.dialog(await stranger.customer_id())) <= services.settings.conversation_ttl
    assert "Order HR-8" in await stranger.text("HR-8")


async def test_list_orders_and_none(services, chat_factory):
    await add_order(services, order_id="HR-9", journey=1, hours=10)
    owner = await chat_factory("+385911234567")
    assert "Imate 1 narudžbu:" in await owner.text("moje narudžbe")
    stranger = await chat_factory()
    assert "could not find orders linked to this chat" in await stranger.text("my orders")


async def test_language_change_by_text_and_button(services, chat_factory):
    await add_order(services, order_id="HR-10", journey=1, hours=10)
    chat = await chat_factory("+385911234567")
    replies = await chat.say("jezik")
    assert {b["payload"] for b in replies[0]["buttons"]} == {"lang:en", "lang:id", "lang:hr", "lang:th"}
    assert "I'll write in English" in await chat.text(payload="lang:en")
    assert "Order HR-10" in await chat.text("HR-10")
    assert "ภาษาไทย" in await chat.text("ไทย")


@pytest.mark.parametrize("text,expected", [
    ("Where is my parcel please?", "Please send me your order number"),
    ("Di mana paket saya sekarang ya?", "Silakan kirim nomor pesanan"),
    ("Gdje je moja pošiljka, molim Vas?", "Pošaljite broj narudžbe"),
    ("พัสดุของฉันอยู่ไหน", "กรุณาส่งหมายเลขคำสั่งซื้อ"),
])
async def test_stranger_is_answered_in_the_language_they_write(chat_factory, text, expected):
    chat = await chat_factory()
    assert expected in await chat.text(text)


async def test_notify_me_and_stop_notifying(services, chat_factory):
    number = await add_order(services, order_id="HR-11", journey=1, hours=10)
    chat = await chat_factory("+385911234567")
    await chat.say("HR-11")
    assert "Javit ćemo Vam se" in await chat.text(payload="notify:on")
    cid = await chat.customer_id()
    assert cid in await services.store.smembers(services.store.keys.shipment_subscribers("demo", number))
    assert "nema više obavijesti" in await chat.text("bez obavijesti")
    assert cid not in await services.store.smembers(services.store.keys.shipment_subscribers("demo", number))
    assert cid in await services.store.smembers(services.store.keys.shipment_muted("demo", number))


async def test_stop_and_start_record_consent(services, chat_factory, clock):
    chat = await chat_factory()
    assert "Send START" in await chat.text("STOP")
    cid = await chat.customer_id()
    consent = await services.consent.get(cid)
    assert consent["webchat"] == {"opted_in": False, "source": "keyword", "at": clock.now.isoformat()}
    assert "Welcome back" in await chat.text("start")
    assert (await services.consent.get(cid))["webchat"]["opted_in"] is True


async def test_carrier_outage_answers_with_last_known_status(services, chat_factory, clock):
    await add_order(services, order_id="HR-12", journey=1, hours=24)
    chat = await chat_factory("+385911234567")
    assert "u dostavi" in await chat.text("HR-12")
    services.tracking.carriers["demo"].outage = True
    clock.advance(hours=1)
    text = await chat.text("HR-12")
    assert "u dostavi" in text and "Prijevoznik se trenutačno ne javlja" in text


async def test_concurrent_askers_share_one_carrier_call(services, chat_factory):
    await add_order(services, order_id="HR-13", journey=1, hours=10)
    demo = services.tracking.carriers["demo"]
    before = demo.calls
    import asyncio
    views = await asyncio.gather(*[services.tracking.current("demo", make_number(1, 10, 1))
                                   for _ in range(10)])
    assert demo.calls - before == 1
    assert all(v.snapshot is not None for v in views)
    # fresh enough: no new call
    await services.tracking.current("demo", make_number(1, 10, 1))
    assert demo.calls - before == 1


async def test_webhook_retries_are_processed_once(services, chat_factory):
    chat = await chat_factory()
    first = await chat.say("help", msg_id="dup-1")
    again = await chat.say("help", msg_id="dup-1")
    assert len(first) == 1 and again == []


async def test_sms_style_channels_get_numbered_choices(services, chat_factory):
    from bot.channels import ChannelLimits

    services.engine.limits[ChannelName.WEBCHAT] = ChannelLimits(max_buttons=0)
    chat = await chat_factory()
    replies = await chat.say("help")
    assert replies[0]["buttons"] == []
    assert "Reply with a number:\n1. My orders\n2. Talk to a person\n3. Language" in replies[0]["text"]
    assert "Which language" in await chat.text("3")


async def test_telegram_deep_link_links_the_chat_to_the_order(services, chat_factory):
    await add_order(services, order_id="HR-14", journey=1, hours=10)
    token = await services.orders.link_token("HR-14")
    chat = await chat_factory()
    text = await chat.text(f"/start {token}")
    assert "Narudžba HR-14" in text
    owner = (await services.orders.get("HR-14")).customer_id
    linked = await services.orders.customer_for(Address(ChannelName.WEBCHAT, chat.session), create=False)
    assert linked.id == owner


class NotFoundCarrier:
    """A carrier that recognises every number and knows none of them (like a real 404)."""

    name = "elsewhere"
    limits = __import__("carriers.model", fromlist=["Limits"]).Limits()

    def __init__(self) -> None:
        self.asked: list[str] = []

    def recognizes(self, number: str) -> bool:
        return True

    async def track(self, numbers):
        from carriers.model import NumberProblem, ProblemKind, TrackingReport

        self.asked += list(numbers)
        return TrackingReport(problems={n: NumberProblem(n, ProblemKind.NOT_FOUND) for n in numbers})


async def test_ambiguous_number_asks_which_carrier_and_not_found_moves_on(services, chat_factory):
    other = NotFoundCarrier()
    services.tracking.carriers["elsewhere"] = other
    number = make_number(6, 21, 78)
    chat = await chat_factory()
    replies = await chat.say(f"track {number}")
    assert "More than one carrier" in replies[0]["text"]
    payloads = [b["payload"] for b in replies[0]["buttons"]]
    assert payloads == [f"carrier:demo:{number}", f"carrier:elsewhere:{number}"]
    assert [b["label"] for b in replies[0]["buttons"]] == ["Demo Express", "ELSEWHERE"]
    # the customer picks the wrong one: it answers "not found", so the next candidate is asked
    text = await chat.text(payload=f"carrier:elsewhere:{number}")
    assert other.asked == [number]
    assert "out for delivery" in text and "Demo Express" in text


async def test_a_message_the_engine_cannot_handle_is_kept_and_does_not_block(services, chat_factory):
    chat = await chat_factory()
    await services.store.xadd(services.store.keys.inbound(), {"address": "nonsense", "text": "x",
                                                              "provider_id": "p1"})
    assert "Hi!" in await chat.text("help")  # the next message still gets through
    dead = await services.store.xrange(services.store.keys.shared("inbound", "dead"))
    assert len(dead) == 1 and dead[0][1]["text"] == "x" and "error" in dead[0][1]
