"""Pipelined progress: the step goes on at once, and the job's next publish waits for its ack."""

import asyncio

from adapters.memory import MemoryEventPublisher
from adapters.projection_store import MemoryProjectionStore
from schemas.events import Event, JobProgressed
from schemas.status import JobStatus
from statemachine import JobMachine
from tests.unit.factories import submit_command
from worker.moves import Mover
from worker.projection import Projection


class GatedPublisher(MemoryEventPublisher):
    """Holds progress events until the gate opens, like a broker slow to acknowledge."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.sent: list[Event] = []

    async def publish(self, event: Event) -> None:
        self.sent.append(event)
        if isinstance(event, JobProgressed):
            await self.gate.wait()
        await super().publish(event)


async def test_a_move_after_pipelined_progress_waits_for_its_acknowledgement() -> None:
    """progress(pipelined=True) returns before the ack; the next move is sent only after it."""
    publisher = GatedPublisher()
    mover = Mover(JobMachine(), publisher, Projection(MemoryProjectionStore()))
    command = submit_command()
    job_id = command.job_id
    await mover.create(command)

    async with asyncio.timeout(5):
        await mover.progress(job_id, "Validating inputs.", pipelined=True)
    moving = asyncio.create_task(mover.move(job_id, "start", message="Starting environment."))
    await asyncio.sleep(0.05)
    assert [event.sequence for event in publisher.sent] == [1, 2], "the move waits for the ack"
    assert not moving.done()

    publisher.gate.set()
    async with asyncio.timeout(5):
        record = await moving
    assert [(event.sequence, event.status) for event in publisher.published] == [
        (1, JobStatus.SUBMITTED),
        (2, JobStatus.SUBMITTED),
        (3, JobStatus.STARTING),
    ]
    assert record.sequence == 3
    assert record.view.message == "Starting environment."


async def test_settle_returns_once_the_pipelined_event_is_in_the_ledger() -> None:
    """After settle, the ledger holds the progress event."""
    publisher = GatedPublisher()
    mover = Mover(JobMachine(), publisher, Projection(MemoryProjectionStore()))
    command = submit_command()
    await mover.create(command)
    await mover.progress(command.job_id, "Preparing inputs.", pipelined=True)
    record = mover.record(command.job_id)
    assert record is not None
    assert record.sequence == 1
    publisher.gate.set()
    async with asyncio.timeout(5):
        await mover.settle(command.job_id)
    record = mover.record(command.job_id)
    assert record is not None
    assert record.sequence == 2
    assert record.view.message == "Preparing inputs."
