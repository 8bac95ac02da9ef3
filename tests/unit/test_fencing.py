"""Owner epochs and job leases: the fold's fencing rules, the Mover's refusal, the runner's
watching, renewing and taking over (in memory; the real processes are in tests/reliability)."""

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.local_files import (
    LocalHome,
)
from adapters.memory import MemoryEventPublisher
from adapters.projection_store import MemoryProjectionStore
from schemas.commands import SubmitJob
from schemas.events import JobProgressed, JobStatusChanged
from schemas.jobs import JobRecord
from schemas.notes import Note, NoteRun
from schemas.status import JobStatus
from statemachine import JobMachine
from tests.fakes.engine import OneCallEngine
from tests.fakes.publishers import GatedPublisher
from tests.unit.factories import job_home, local_runner, submit_job
from worker.jobs import WORKER_LOST_MESSAGE, JobRunner, Lease
from worker.moves import Fenced, Mover
from worker.projection import Projection, apply

TENANT = "tenanta"
NOW = datetime(2024, 3, 5, 9, 14, 2, tzinfo=UTC)
LEASE = Lease(renew_seconds=0.05, expiry_seconds=0.4)
DEADLINE = 10.0


class BlockingEngine(OneCallEngine):
    """Runs until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.runs = 0

    async def run(self, note: Note, workspace: Path, variables: Mapping[str, str]) -> NoteRun:
        self.runs += 1
        await self.release.wait()
        return NoteRun(paragraphs=())


def _submit(job_id: str = "job-1") -> SubmitJob:
    return submit_job(job_id, tenant=TENANT, at=NOW)


@pytest.fixture
def home(tmp_path: Path) -> LocalHome:
    return job_home(tmp_path / "home", TENANT)


def _runner(home: LocalHome, mover: Mover, engine: OneCallEngine) -> JobRunner:
    return local_runner(mover, home, engine, concurrency=2, lease=LEASE)


async def _running_elsewhere(projection: Projection) -> Mover:
    """job-1 RUNNING at epoch 0, as another worker left it; returns that worker's Mover."""
    elsewhere = Mover(JobMachine(), MemoryEventPublisher(), projection, clock=lambda: NOW)
    await elsewhere.create(_submit())
    await elsewhere.move("job-1", "start")
    await elsewhere.move("job-1", "run")
    return elsewhere


# -- the fold ------------------------------------------------------------------------------


async def test_fold_drops_older_epochs_lost_races_and_anything_after_final() -> None:
    """A zombie's later write, a second writer of a sequence and a move after final change
    nothing; each rule on its own."""
    events = MemoryEventPublisher()
    projection = Projection(MemoryProjectionStore())
    await _running_elsewhere(projection)
    taker = Mover(JobMachine(), events, projection, clock=lambda: NOW)
    await taker.progress("job-1", "taken over", epoch=3)
    running = projection.store.record("job-1")
    assert running is not None
    assert (running.view.status, running.epoch, running.sequence) == (JobStatus.RUNNING, 3, 4)
    taken = events.published[-1]

    zombie = taken.model_copy(update={"epoch": 0, "sequence": 5, "event_id": "z"})
    lost_race = taken.model_copy(update={"epoch": 4, "event_id": "r"})
    assert apply(running, zombie) is running, "an older epoch is dropped"
    assert apply(running, lost_race) is running, "a taken sequence is dropped"

    await taker.move("job-1", "fail", message=WORKER_LOST_MESSAGE, epoch=3)
    failed = projection.store.record("job-1")
    assert failed is not None
    assert failed.view.status is JobStatus.FAILED
    after_final = taken.model_copy(update={"epoch": 4, "sequence": 9, "event_id": "a"})
    assert apply(failed, after_final) is failed, "nothing follows a final status"


async def test_mover_refuses_to_write_for_an_older_epoch() -> None:
    """Once the job has a newer owner, the old owner's Mover publishes nothing: Fenced."""
    projection = Projection(MemoryProjectionStore())
    old = await _running_elsewhere(projection)
    taker = Mover(JobMachine(), MemoryEventPublisher(), projection, clock=lambda: NOW)
    await taker.progress("job-1", "taken over", epoch=2)
    published = MemoryEventPublisher()
    old_writer = Mover(JobMachine(), published, projection, clock=lambda: NOW)

    with pytest.raises(Fenced):
        await old_writer.move("job-1", "succeed", epoch=0)
    with pytest.raises(Fenced):
        await old_writer.progress("job-1", "still here", epoch=0)
    assert published.published == []
    del old


# -- the runner's lease ----------------------------------------------------------------------


async def test_a_redelivered_job_that_its_worker_keeps_alive_is_left_to_it(
    home: LocalHome,
) -> None:
    """While the other worker publishes, the new owner only watches; it publishes nothing."""
    projection = Projection(MemoryProjectionStore())
    elsewhere = await _running_elsewhere(projection)
    events = MemoryEventPublisher()
    engine = BlockingEngine()
    task = await _runner(home, Mover(JobMachine(), events, projection), engine).submit(_submit())

    # Three leases' worth of renewals from the other worker, then its final move.
    for _ in range(12):
        await asyncio.sleep(LEASE.expiry_seconds / 4)
        await elsewhere.progress("job-1", None)
    await elsewhere.move("job-1", "succeed", message="done elsewhere")
    await asyncio.wait_for(task, DEADLINE)

    assert events.published == []
    assert engine.runs == 0
    record = projection.store.record("job-1")
    assert record is not None
    assert record.view.status is JobStatus.SUCCEEDED


async def test_a_job_another_worker_created_first_and_runs_is_left_to_it(
    home: LocalHome,
) -> None:
    """The same command handled by two workers around a rebalance: this worker's pipelined
    first events all land behind the other worker's, so it watches that worker's lease
    instead of running the note too, and publishes nothing that takes effect."""
    projection = Projection(MemoryProjectionStore())
    events = GatedPublisher()
    engine = BlockingEngine()
    runner = _runner(home, Mover(JobMachine(), events, projection), engine)
    runner.owner_epoch = 1
    task = await runner.submit(_submit())

    # The older owner's events reach the topic first, past every event of ours.
    elsewhere = await _running_elsewhere(projection)
    for _ in range(4):
        await elsewhere.progress("job-1", None)
    async with asyncio.timeout(DEADLINE):
        while not any(e.status is JobStatus.RUNNING for e in events.sent):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    events.gate.set()

    for _ in range(6):
        await asyncio.sleep(LEASE.expiry_seconds / 4)
        await elsewhere.progress("job-1", None)
    await elsewhere.move("job-1", "succeed", message="done elsewhere")
    await asyncio.wait_for(task, DEADLINE)

    assert engine.runs == 0, "the note ran only on the worker that owns the job"
    record = projection.store.record("job-1")
    assert record is not None
    assert (record.view.status, record.epoch, record.view.message) == (
        JobStatus.SUCCEEDED,
        0,
        "done elsewhere",
    )


async def test_a_silent_job_is_taken_over_after_its_lease(home: LocalHome) -> None:
    """No event for a whole lease: the new owner ends the job FAILED "worker lost", once."""
    projection = Projection(MemoryProjectionStore())
    await _running_elsewhere(projection)
    events = MemoryEventPublisher()
    runner = _runner(home, Mover(JobMachine(), events, projection), BlockingEngine())
    started = time.monotonic()

    await asyncio.wait_for(await runner.submit(_submit()), DEADLINE)

    assert time.monotonic() - started >= LEASE.expiry_seconds
    [event] = events.published
    assert isinstance(event, JobStatusChanged)
    assert (event.status, event.epoch, event.job.message) == (
        JobStatus.FAILED,
        1,
        WORKER_LOST_MESSAGE,
    )


async def test_a_quiet_running_job_renews_its_lease(home: LocalHome) -> None:
    """A job blocked in its note publishes unchanged progress at least every other beat."""
    projection = Projection(MemoryProjectionStore())
    events = MemoryEventPublisher()
    engine = BlockingEngine()
    task = await _runner(home, Mover(JobMachine(), events, projection), engine).submit(_submit())
    await asyncio.wait_for(
        events.wait_for(lambda published: published[-1].status is JobStatus.RUNNING), DEADLINE
    )
    running_at = len(events.published)

    await asyncio.sleep(LEASE.expiry_seconds)
    renewals = events.published[running_at:]
    engine.release.set()
    await asyncio.wait_for(task, DEADLINE)

    assert len(renewals) >= 2, renewals
    assert all(isinstance(e, JobProgressed) and e.paragraph is None for e in renewals)
    record: JobRecord | None = projection.store.record("job-1")
    assert record is not None
    assert record.view.status is JobStatus.SUCCEEDED
