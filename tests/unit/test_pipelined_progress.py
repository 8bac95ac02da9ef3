"""Pipelined events: the job goes on at once, and settling waits for (and checks) the acks."""

import asyncio

import pytest

from adapters.memory import MemoryEventPublisher
from adapters.projection_store import MemoryProjectionStore
from schemas.status import JobStatus
from statemachine import JobMachine
from tests.fakes.publishers import GatedPublisher
from tests.unit.factories import submit_command
from worker.moves import Fenced, Mover
from worker.projection import Projection


def _mover(publisher: GatedPublisher) -> Mover:
    return Mover(JobMachine(), publisher, Projection(MemoryProjectionStore()))


async def test_a_move_after_pipelined_progress_waits_for_its_acknowledgement() -> None:
    """progress(pipelined=True) returns before the ack; a plain move is sent only after it."""
    publisher = GatedPublisher()
    mover = _mover(publisher)
    command = submit_command()
    job_id = command.job_id
    await mover.create(command)

    async with asyncio.timeout(5):
        await mover.progress(job_id, "Validating inputs.", pipelined=True)
    moving = asyncio.create_task(mover.move(job_id, "start", message="Starting environment."))
    # Let the move run as far as it can without the ack.
    for _ in range(20):
        await asyncio.sleep(0)
    assert [event.sequence for event in publisher.sent] == [2], "the move waits for the ack"
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


async def test_pipelined_moves_go_out_together_and_settle_confirms_them() -> None:
    """Moves build on the events still on their way: all are sent before any ack, in order."""
    publisher = GatedPublisher()
    mover = _mover(publisher)
    command = submit_command()
    job_id = command.job_id
    await mover.create(command)

    async with asyncio.timeout(5):
        await mover.progress(job_id, "Validating inputs.", pipelined=True)
        await mover.move(job_id, "start", message="Starting environment.", pipelined=True)
        await mover.progress(job_id, "Preparing inputs.", pipelined=True)
        tail = await mover.move(job_id, "run", message="Running.", pipelined=True)
    assert [(e.sequence, e.status) for e in publisher.sent] == [
        (2, JobStatus.SUBMITTED),
        (3, JobStatus.STARTING),
        (4, JobStatus.STARTING),
        (5, JobStatus.RUNNING),
    ]
    assert (tail.sequence, tail.view.status) == (5, JobStatus.RUNNING)
    ledger = mover.record(job_id)
    assert ledger is not None
    assert ledger.sequence == 1, "nothing acknowledged yet"

    publisher.gate.set()
    async with asyncio.timeout(5):
        await mover.settle(job_id)
    ledger = mover.record(job_id)
    assert ledger is not None
    assert (ledger.sequence, ledger.view.status) == (5, JobStatus.RUNNING)


async def test_an_event_the_broker_did_not_take_is_sent_again_in_order() -> None:
    publisher = GatedPublisher()
    publisher.gate.set()
    mover = _mover(publisher)
    command = submit_command()
    job_id = command.job_id
    await mover.create(command)

    publisher.refuse_next = True
    await mover.move(job_id, "start", message="Starting environment.", pipelined=True)
    await mover.move(job_id, "run", message="Running.", pipelined=True)
    async with asyncio.timeout(5):
        await mover.settle(job_id)
    assert [e.sequence for e in publisher.published] == [1, 2, 3]
    ledger = mover.record(job_id)
    assert ledger is not None
    assert ledger.view.status is JobStatus.RUNNING


async def test_settle_raises_fenced_when_a_newer_owner_took_the_job() -> None:
    """A newer epoch's event refuses every pipelined event of the old one."""
    publisher = GatedPublisher()
    mover = _mover(publisher)
    command = submit_command()
    job_id = command.job_id
    await mover.create(command, epoch=1)
    await mover.move(job_id, "start", message="Starting environment.", epoch=1, pipelined=True)
    await mover.move(job_id, "run", message="Running.", epoch=1, pipelined=True)

    # Another worker takes the job over at epoch 2 before our events land.
    newer = Mover(JobMachine(), MemoryEventPublisher(), mover.ledger)
    await newer.move(job_id, "start", message="Taken over.", epoch=2)

    publisher.gate.set()
    with pytest.raises(Fenced):
        async with asyncio.timeout(5):
            await mover.settle(job_id)
    ledger = mover.record(job_id)
    assert ledger is not None
    assert (ledger.epoch, ledger.view.message) == (2, "Taken over.")


async def test_settle_returns_once_the_pipelined_event_is_in_the_ledger() -> None:
    """After settle, the ledger holds the progress event."""
    publisher = GatedPublisher()
    mover = _mover(publisher)
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
