"""In-memory implementations of the publishing ports, for unit tests and embedded use.

They keep what was published, in order, and can be told to fail like a broker that is away.
"""

from dataclasses import dataclass, field

from adapters.ports import BrokerUnavailable
from schemas.commands import Command
from schemas.events import JobStatusChanged


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
    published: list[JobStatusChanged] = field(default_factory=list)
    unavailable: bool = False

    async def publish(self, event: JobStatusChanged) -> None:
        if self.unavailable:
            raise BrokerUnavailable("in-memory broker marked unavailable")
        self.published.append(event)


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
