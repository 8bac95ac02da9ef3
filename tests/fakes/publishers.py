"""An event publisher whose broker is slow to acknowledge, for pipelined publishing."""

import asyncio
from collections.abc import Awaitable

from adapters.memory import MemoryEventPublisher
from adapters.ports import BrokerUnavailable
from schemas.events import Event


class GatedPublisher(MemoryEventPublisher):
    """Takes pipelined events in order at once but publishes (acknowledges) each only once the
    gate opens; ``refuse_next`` makes the next hand-over fail outright."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.sent: list[Event] = []
        self.refuse_next = False

    async def enqueue(self, event: Event) -> Awaitable[object]:
        self.sent.append(event)
        if self.refuse_next:
            self.refuse_next = False
            raise BrokerUnavailable("not taken")

        async def acknowledged() -> None:
            await self.gate.wait()
            await self.publish(event)

        return asyncio.ensure_future(acknowledged())
