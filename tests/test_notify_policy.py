"""The notification policy as tables: `decide()` is pure, so every rule is one row."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.changes import Change, ChangeKind
from bot.models import Address, ChannelName
from bot.notify import (
    Action,
    ConversationCtx,
    CustomerCtx,
    Reach,
    change_from_dict,
    change_to_dict,
    choose_channels,
    decide,
    headline,
    in_quiet_hours,
    is_routine,
    quiet_ends,
    trouble,
    urgent,
)
from carriers.model import CustomsStage, Money, Reason, Status
from tests.conftest import make_settings

SETTINGS = make_settings()  # quiet hours 21:00-08:00, 6 a day, collapse 300 s
BKK, ZAG = ZoneInfo("Asia/Bangkok"), ZoneInfo("Europe/Zagreb")
WA = Address(ChannelName.WHATSAPP, "+66812345678")
SMS = Address(ChannelName.SMS, "+66812345678")
TG = Address(ChannelName.TELEGRAM, "4242")
WEB = Address(ChannelName.WEBCHAT, "s1")
EVERYWHERE = (Reach(SMS), Reach(WA), Reach(TG))


def at(tz: ZoneInfo, hour: int, minute: int = 0, day: int = 23) -> datetime:
    """A local wall-clock time on 2026-11-<day> in `tz`, as an aware datetime."""
    return datetime(2026, 11, day, hour, minute, tzinfo=tz)


def news(kind: ChangeKind, when: datetime, *, status: Status | None = None,
         previous: Status | None = Status.IN_TRANSIT, **kw) -> Change:
    status = status or {
        ChangeKind.SHIPPED: Status.IN_TRANSIT, ChangeKind.OUT_FOR_DELIVERY: Status.OUT_FOR_DELIVERY,
        ChangeKind.DELIVERY_FAILED: Status.DELIVERY_FAILED,
        ChangeKind.READY_FOR_PICKUP: Status.READY_FOR_PICKUP, ChangeKind.DELIVERED: Status.DELIVERED,
        ChangeKind.DELAYED: Status.DELAYED, ChangeKind.CUSTOMS_HELD: Status.ON_HOLD,
        ChangeKind.DUTIES_DUE: Status.ON_HOLD, ChangeKind.CUSTOMS_CLEARED: Status.IN_TRANSIT,
        ChangeKind.STALLED: Status.IN_TRANSIT, ChangeKind.RETURN_TO_SENDER: Status.RETURN_TO_SENDER,
        ChangeKind.EXCEPTION: Status.ON_HOLD,
    }[kind]
    defaults = {ChangeKind.CUSTOMS_HELD: {"customs": CustomsStage.HELD},
                ChangeKind.DUTIES_DUE: {"customs": CustomsStage.DUTIES_DUE}}.get(kind, {})
    return Change(kind=kind, carrier="demo", tracking_number="DM1", key=f"{kind}:{when}",
                  status=status, previous_status=previous, occurred_at=when,
                  **{**defaults, **kw})


def person(tz: str = "Asia/Bangkok", reach=EVERYWHERE, **kw) -> CustomerCtx:  # type: ignore[no-untyped-def]
    return CustomerCtx("c1", "th", tz, tuple(reach), **kw)


# ------------------------------------------------------------------ urgency vs quiet hours
# (kind, local time in the customer's zone) -> (action, reason, silent)
URGENCY = [
    (ChangeKind.OUT_FOR_DELIVERY, (7, 30), Action.SEND, "urgent_quiet_hours", True),
    (ChangeKind.DELIVERY_FAILED, (23, 0), Action.SEND, "urgent_quiet_hours", True),
    (ChangeKind.CUSTOMS_HELD, (2, 0), Action.SEND, "urgent_quiet_hours", True),
    (ChangeKind.DUTIES_DUE, (22, 15), Action.SEND, "urgent_quiet_hours", True),
    (ChangeKind.READY_FOR_PICKUP, (20, 59), Action.SEND, "urgent", False),
    (ChangeKind.OUT_FOR_DELIVERY, (8, 0), Action.SEND, "urgent", False),
    (ChangeKind.DELIVERED, (22, 30), Action.DEFER, "quiet_hours", False),
    (ChangeKind.DELAYED, (6, 0), Action.DEFER, "quiet_hours", False),
    (ChangeKind.SHIPPED, (21, 0), Action.DEFER, "quiet_hours", False),
    (ChangeKind.DELIVERED, (14, 0), Action.DEFER, "collapse", False),  # burst window
    (ChangeKind.RETURN_TO_SENDER, (8, 0), Action.DEFER, "collapse", False),
]


@pytest.mark.parametrize("tz", [BKK, ZAG], ids=["Asia/Bangkok", "Europe/Zagreb"])
@pytest.mark.parametrize("kind,local,action,reason,silent", URGENCY)
def test_urgency_against_quiet_hours_in_the_customers_zone(tz, kind, local, action, reason,
                                                          silent):
    now = at(tz, *local)
    change = news(kind, now - timedelta(minutes=5), previous=Status.PENDING)
    d = decide(change, person(str(tz)), ConversationCtx(), now, SETTINGS)
    assert (d.action, d.reason, d.silent) == (action, reason, silent)
    assert d.urgent is (kind in (ChangeKind.OUT_FOR_DELIVERY, ChangeKind.DELIVERY_FAILED,
                                 ChangeKind.CUSTOMS_HELD, ChangeKind.DUTIES_DUE,
                                 ChangeKind.READY_FOR_PICKUP))


@pytest.mark.parametrize("tz,local,until", [
    (BKK, (22, 30), at(BKK, 8, 0, day=24)),  # evening: tomorrow morning
    (BKK, (3, 0), at(BKK, 8, 0)),  # after midnight: this morning
    (ZAG, (21, 0), at(ZAG, 8, 0, day=24)),
    (ZAG, (7, 59), at(ZAG, 8, 0)),
])
def test_deferred_news_waits_until_the_morning_where_the_customer_lives(tz, local, until):
    now = at(tz, *local)
    d = decide(news(ChangeKind.DELIVERED, now), person(str(tz)), ConversationCtx(), now, SETTINGS)
    assert (d.action, d.until) == (Action.DEFER, until)
    assert d.until.utcoffset() == until.utcoffset()  # aware, in the customer's zone


def test_one_moment_is_night_in_bangkok_and_evening_in_zagreb():
    now = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 22:00 Bangkok, 16:00 Zagreb
    change = news(ChangeKind.DELIVERED, now)
    assert decide(change, person("Asia/Bangkok"), ConversationCtx(), now, SETTINGS).reason \
        == "quiet_hours"
    assert decide(change, person("Europe/Zagreb"), ConversationCtx(), now, SETTINGS).reason \
        == "collapse"


@pytest.mark.parametrize("quiet,local,inside", [
    ((time(21), time(8)), time(20, 59), False), ((time(21), time(8)), time(21), True),
    ((time(21), time(8)), time(0, 30), True), ((time(21), time(8)), time(8), False),
    ((time(13), time(15)), time(14), True), ((time(13), time(15)), time(15), False),
    ((time(0), time(0)), time(3), False),  # equal ends: no quiet hours at all
])
def test_quiet_hours_wrap_midnight_and_are_configurable(quiet, local, inside):
    now = datetime.combine(date(2026, 11, 23), local, tzinfo=ZAG)
    assert in_quiet_hours(now, ZAG, quiet) is inside
    settings = replace(SETTINGS, quiet_hours=quiet)
    d = decide(news(ChangeKind.DELIVERED, now), person("Europe/Zagreb"), ConversationCtx(), now,
               settings)
    assert (d.reason == "quiet_hours") is inside


def test_quiet_hours_end_across_a_dst_change():
    # Zagreb leaves summer time in the night of 25 October 2026
    now = datetime(2026, 10, 24, 22, 0, tzinfo=ZAG)
    assert quiet_ends(now, ZAG, (time(21), time(8))) == datetime(2026, 10, 25, 8, 0, tzinfo=ZAG)
    assert quiet_ends(now, ZAG, (time(21), time(8))).utcoffset() == timedelta(hours=1)


# ------------------------------------------------------------------ once, routine, too old
NOW = at(ZAG, 12)
ROUTINE = [
    # (change, routine?)
    (news(ChangeKind.SHIPPED, NOW, previous=None), False),
    (news(ChangeKind.SHIPPED, NOW, previous=Status.PENDING), False),
    (news(ChangeKind.SHIPPED, NOW, previous=Status.IN_TRANSIT), True),  # another hub scan
    (news(ChangeKind.CUSTOMS_HELD, NOW, customs=CustomsStage.PROCESSING), True),
    (news(ChangeKind.CUSTOMS_HELD, NOW, customs=CustomsStage.HELD), False),
    (news(ChangeKind.CUSTOMS_HELD, NOW, customs=CustomsStage.INFO_REQUIRED), False),
    (news(ChangeKind.CUSTOMS_HELD, NOW, customs=CustomsStage.PROCESSING,
          reason=Reason.CUSTOMS_INSPECTION), False),
    (news(ChangeKind.DELAYED, NOW, status=Status.IN_TRANSIT, eta=at(ZAG, 18, day=25),
          previous_eta=at(ZAG, 9, day=25)), True),  # later the same day: not news
    (news(ChangeKind.DELAYED, NOW, status=Status.IN_TRANSIT, eta=at(ZAG, 9, day=26),
          previous_eta=at(ZAG, 18, day=25)), False),
    (news(ChangeKind.DELAYED, NOW, status=Status.DELAYED), False),
    (news(ChangeKind.OUT_FOR_DELIVERY, NOW, previous=Status.OUT_FOR_DELIVERY), True),
    (news(ChangeKind.OUT_FOR_DELIVERY, NOW, previous=Status.DELIVERY_FAILED), False),
    (news(ChangeKind.DELIVERY_FAILED, NOW, previous=Status.DELIVERY_FAILED), False),  # 2nd try
    (news(ChangeKind.STALLED, NOW), False),
]


@pytest.mark.parametrize("change,routine", ROUTINE)
def test_routine_scans_are_not_news(change, routine):
    assert is_routine(change, ZAG) is routine
    d = decide(change, person("Europe/Zagreb"), ConversationCtx(), NOW + timedelta(minutes=1),
               SETTINGS)
    assert (d.action is Action.SUPPRESS and d.reason == "routine") is routine


@pytest.mark.parametrize("age,kind,status,told", [
    (timedelta(days=2, seconds=-1), ChangeKind.DELIVERED, None, True),
    (timedelta(days=2, seconds=1), ChangeKind.DELIVERED, None, False),
    (timedelta(days=5), ChangeKind.OUT_FOR_DELIVERY, None, False),
    (timedelta(days=3), ChangeKind.DELAYED, Status.DELAYED, False),  # the carrier's delay scan
    (timedelta(days=3), ChangeKind.DELAYED, Status.IN_TRANSIT, True),  # ETA slipped just now
    (timedelta(days=6), ChangeKind.STALLED, None, True),  # dated by the last scan
])
def test_an_event_older_than_two_days_is_not_announced(age, kind, status, told):
    kw = {"status": status} if status else {}
    if kind is ChangeKind.DELAYED and status is Status.IN_TRANSIT:
        kw.update(eta=NOW + timedelta(days=3), previous_eta=NOW + timedelta(days=1))
    d = decide(news(kind, NOW - age, **kw), person("Europe/Zagreb"), ConversationCtx(), NOW,
               SETTINGS)
    assert (d.reason != "too_old") is told


def test_the_same_news_is_announced_once():
    change = news(ChangeKind.OUT_FOR_DELIVERY, NOW)
    first = decide(change, person(), ConversationCtx(), NOW, SETTINGS)
    again = decide(change, person(), ConversationCtx(announced=frozenset({change.key})), NOW,
                   SETTINGS)
    other = decide(replace(change, key="another event"),
                   person(), ConversationCtx(announced=frozenset({change.key})), NOW, SETTINGS)
    assert first.action is Action.SEND
    assert (again.action, again.reason) == (Action.SUPPRESS, "already_announced")
    assert other.action is Action.SEND


# ------------------------------------------------------------------ bursts and budget
def test_a_burst_collapses_into_one_deferral():
    zag = person("Europe/Zagreb")
    first = decide(news(ChangeKind.SHIPPED, NOW, previous=None), zag, ConversationCtx(), NOW,
                   SETTINGS)
    assert (first.action, first.until) == (Action.DEFER, NOW + timedelta(seconds=300))
    later = NOW + timedelta(seconds=120)
    joined = decide(news(ChangeKind.CUSTOMS_CLEARED, later), zag,
                    ConversationCtx(pending_due=first.until), later, SETTINGS)
    assert (joined.action, joined.reason, joined.until) == (Action.DEFER, "collapse", first.until)
    urgent_one = decide(news(ChangeKind.OUT_FOR_DELIVERY, later), zag,
                        ConversationCtx(pending_due=first.until), later, SETTINGS)
    assert urgent_one.action is Action.SEND  # and takes the waiting news along
    released = decide(news(ChangeKind.CUSTOMS_CLEARED, later), zag,
                      ConversationCtx(releasing=True), first.until, SETTINGS)
    assert (released.action, released.reason) == (Action.SEND, "released")
    no_window = replace(SETTINGS, notify_collapse_seconds=0)
    assert decide(news(ChangeKind.DELIVERED, NOW), zag, ConversationCtx(), NOW,
                  no_window).reason == "normal"


@pytest.mark.parametrize("sent,action", [(0, Action.SEND), (5, Action.SEND),
                                         (6, Action.SUPPRESS), (40, Action.SUPPRESS)])
def test_a_daily_budget_per_shipment_stops_floods(sent, action):
    d = decide(news(ChangeKind.OUT_FOR_DELIVERY, NOW), person(),
               ConversationCtx(sent_today=sent), NOW, SETTINGS)
    assert d.action is action
    if action is Action.SUPPRESS:
        assert d.reason == "daily_budget"


def test_muted_and_agent_owned_conversations_are_left_alone():
    change = news(ChangeKind.OUT_FOR_DELIVERY, NOW)
    assert decide(change, person(muted=True), ConversationCtx(), NOW, SETTINGS).reason == "muted"
    assert decide(change, person(), ConversationCtx(agent_owned=True), NOW,
                  SETTINGS).reason == "agent_owns_conversation"


# ------------------------------------------------------------------ channels
CHANNELS = [
    # (reach, last wrote from, expected order)
    (EVERYWHERE, None, (WA, SMS, TG)),  # WhatsApp if they have it, else SMS, else Telegram
    (EVERYWHERE, TG, (TG, WA, SMS)),  # where they last wrote from comes first
    ((Reach(SMS), Reach(WA, opted_out=True), Reach(TG)), None, (SMS, TG)),  # STOP on WhatsApp
    ((Reach(SMS), Reach(WA, unreachable=True), Reach(TG)), None, (SMS, TG)),  # 63024
    ((Reach(SMS), Reach(WA, configured=False)), None, (SMS,)),  # no WhatsApp sender
    ((Reach(SMS, opted_out=True), Reach(WA), Reach(TG)), SMS, (WA, TG)),  # wrote, then STOP
    ((Reach(SMS), Reach(WEB)), WEB, (WEB, SMS)),
    ((Reach(SMS), Reach(WEB)), None, (SMS, WEB)),
    ((), None, ()),
]


@pytest.mark.parametrize("reach,last,expected", CHANNELS)
def test_channel_choice_skips_opted_out_and_unreachable_addresses(reach, last, expected):
    ctx = person(reach=reach, last_address=last)
    assert choose_channels(ctx) == expected
    d = decide(news(ChangeKind.OUT_FOR_DELIVERY, NOW), ctx, ConversationCtx(), NOW, SETTINGS)
    assert d.channels == expected
    if not expected:
        assert (d.action, d.reason) == (Action.SUPPRESS, "no_channel")


def test_fallback_skips_what_was_tried():
    assert choose_channels(person(), skip=[WA]) == (SMS, TG)
    assert choose_channels(person(), skip=[WA, SMS, TG]) == ()


def test_opted_out_everywhere_is_suppressed_with_that_reason():
    out = tuple(Reach(a, opted_out=True) for a in (SMS, WA, TG))
    d = decide(news(ChangeKind.OUT_FOR_DELIVERY, NOW), person(reach=out), ConversationCtx(), NOW,
               SETTINGS)
    assert (d.action, d.reason) == (Action.SUPPRESS, "opted_out")


# ------------------------------------------------------------------ helpers
def test_headline_is_the_newest_news_and_ties_go_to_the_later_stage():
    a = news(ChangeKind.DELAYED, NOW)
    b = news(ChangeKind.DELIVERED, NOW + timedelta(hours=1))
    c = news(ChangeKind.OUT_FOR_DELIVERY, NOW + timedelta(hours=1))
    assert headline([a, b]) is b and headline([b, a]) is b
    assert headline([b, c]) is b


@pytest.mark.parametrize("change,why", [
    (news(ChangeKind.EXCEPTION, NOW, reason=Reason.LOST), "shipment_lost"),
    (news(ChangeKind.EXCEPTION, NOW, reason=Reason.DAMAGED), "shipment_damaged"),
    (news(ChangeKind.RETURN_TO_SENDER, NOW), "shipment_returned"),
    (news(ChangeKind.CUSTOMS_HELD, NOW, customs=CustomsStage.INFO_REQUIRED), "customs_documents"),
    (news(ChangeKind.CUSTOMS_HELD, NOW, reason=Reason.CUSTOMS_DOCUMENTATION), "customs_documents"),
    (news(ChangeKind.DUTIES_DUE, NOW), ""),
    (news(ChangeKind.DELIVERY_FAILED, NOW), ""),
])
def test_trouble_that_a_person_should_see(change, why):
    assert trouble(change) == why


def test_urgent_kinds():
    assert {k for k in ChangeKind if urgent(news(k, NOW))} == {
        ChangeKind.OUT_FOR_DELIVERY, ChangeKind.DELIVERY_FAILED, ChangeKind.READY_FOR_PICKUP,
        ChangeKind.CUSTOMS_HELD, ChangeKind.DUTIES_DUE}


def test_changes_survive_a_round_trip_through_json():
    from decimal import Decimal

    change = news(ChangeKind.DUTIES_DUE, NOW, duties=Money(Decimal("23.40"), "EUR"),
                  payment_url="https://pay.example", eta=NOW + timedelta(days=2),
                  previous_eta=NOW, reason=Reason.CUSTOMS_DUTIES_UNPAID)
    assert change_from_dict(change_to_dict(change)) == change
    assert change_from_dict(change_to_dict(news(ChangeKind.SHIPPED, NOW, previous=None))) \
        == news(ChangeKind.SHIPPED, NOW, previous=None)


def test_news_found_while_the_person_is_being_answered_waits_and_may_be_dropped():
    change = news(ChangeKind.OUT_FOR_DELIVERY, NOW)
    talking = decide(change, person(), ConversationCtx(in_turn=True), NOW, SETTINGS)
    assert (talking.action, talking.reason) == (Action.DEFER, "in_conversation")
    assert talking.until == NOW + timedelta(seconds=60) and talking.urgent
    later = NOW + timedelta(seconds=60)
    shown = decide(change, person(), ConversationCtx(releasing=True, answered_in_chat=True),
                   later, SETTINGS)
    assert (shown.action, shown.reason) == (Action.SUPPRESS, "answered_in_chat")
    other_topic = decide(change, person(), ConversationCtx(releasing=True, in_turn=True), later,
                         SETTINGS)
    assert (other_topic.action, other_topic.reason) == (Action.SEND, "urgent")
