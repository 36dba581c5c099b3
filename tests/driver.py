"""Test drivers: a controllable clock and a customer chatting through the web chat channel."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.models import Address, ChannelName
from bot.services import Services


class Clock:
    """Callable clock the tests move forward."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


_ids = itertools.count(1)


@dataclass
class Chat:
    """A customer on the web chat: `say` pushes a message and returns the bot's new replies."""

    services: Services
    session: str
    seen: int = 0
    sent: list[str] = field(default_factory=list)

    @classmethod
    async def open(cls, services: Services, phone: str = "") -> Chat:
        session = await services.webchat.open_session(phone)
        if phone:
            customer = await services.orders.customer_for(Address(ChannelName.SMS, phone), create=False)
            assert customer is not None, f"no customer with phone {phone}"
            await services.orders.link(Address(ChannelName.WEBCHAT, session), customer)
        return cls(services, session)

    @property
    def address(self) -> Address:
        return Address(ChannelName.WEBCHAT, self.session)

    async def say(self, text: str = "", payload: str = "", *, msg_id: str = "") -> list[dict]:
        msg = self.services.webchat.parse(self.session, text, payload,
                                          message_id=msg_id or f"m{next(_ids)}")
        await self.services.engine.receive(msg)
        await self.services.pump()
        return await self.replies()

    async def replies(self) -> list[dict]:
        inbox = await self.services.webchat.inbox(self.session, self.seen)
        self.seen += len(inbox)
        return inbox

    async def text(self, text: str = "", payload: str = "") -> str:
        """All reply texts of one turn joined (handy for assertions)."""
        return "\n".join(m["text"] for m in await self.say(text, payload))

    async def customer_id(self) -> str:
        customer = await self.services.orders.customer_for(self.address, create=False)
        assert customer is not None
        return customer.id
