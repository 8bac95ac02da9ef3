"""In-memory implementations of the publishing ports, for unit tests and embedded use.

They keep what was published, in order, and can be told to fail like a broker that is away.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from adapters.ports import BrokerUnavailable
from schemas.commands import Command
from schemas.events import Event
from schemas.schedules import ScheduleMessage


@dataclass
class MemoryCommandPublisher:
    published: list[Command] = field(default_factory=list)
    unavailable: bool = False

    async def publish(self, command: Command) -> None:
        if self.unavailable:
            raise BrokerUnavailable("in-memory broker marked unavailable")
        self.published.append(command)


@dataclass
class MemoryEventPublisher:
    published: list[Event] = field(default_factory=list)
    unavailable: bool = False
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def publish(self, event: Event) -> None:
        if self.unavailable:
            raise BrokerUnavailable("in-memory broker marked unavailable")
        self.published.append(event)
        async with self._changed:
            self._changed.notify_all()

    async def enqueue(self, event: Event) -> Awaitable[object]:
        """Published in order at once; the acknowledgement is the publish itself."""
        await self.publish(event)
        acknowledged: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acknowledged.set_result(None)
        return acknowledged

    async def wait_for(self, predicate: Callable[[list[Event]], bool]) -> None:
        """Return once ``predicate(published)`` holds (callers bound the wait)."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self.published))


@dataclass
class DeadLetter:
    key: bytes | None
    value: bytes
    reason: str
    origin: str


@dataclass
class MemoryDeadLetterPublisher:
    parked: list[DeadLetter] = field(default_factory=list)

    async def dead_letter(self, key: bytes | None, value: bytes, reason: str, origin: str) -> None:
        self.parked.append(DeadLetter(key, value, reason, origin))


@dataclass
class MemoryScheduleLog:
    """Keeps schedule records in order; tombstones are kept as ``(tenant, schedule_id)``."""

    published: list[ScheduleMessage] = field(default_factory=list)
    erased: list[tuple[str, str]] = field(default_factory=list)
    unavailable: bool = False

    async def publish(self, message: ScheduleMessage) -> None:
        if self.unavailable:
            raise BrokerUnavailable("in-memory broker marked unavailable")
        self.published.append(message)

    async def erase(self, tenant: str, schedule_id: str) -> None:
        if self.unavailable:
            raise BrokerUnavailable("in-memory broker marked unavailable")
        self.erased.append((tenant, schedule_id))
