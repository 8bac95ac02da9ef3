"""The transition table, exercised through the one shared machine, case by case from the table."""

import itertools

import pytest
from structlog.testing import capture_logs

from adapters.memory import MemoryEventPublisher
from adapters.projection_store import MemoryProjectionStore
from schemas.status import JobStatus
from statemachine import FINAL_STATUSES, TRANSITIONS, TRIGGERS, IllegalMove, JobMachine, Move
from worker.moves import Mover
from worker.projection import Projection

ALLOWED = {(move.source, move.trigger): move.dest for move in TRANSITIONS}
FORBIDDEN = [
    (status, trigger)
    for status, trigger in itertools.product(JobStatus, (*TRIGGERS, "to_RUNNING", "bogus"))
    if (status, trigger) not in ALLOWED
]


def test_seven_statuses_exactly() -> None:
    """The statuses are exactly the seven of Job Manager v3, SUCCEEDED spelled right."""
    assert [s.value for s in JobStatus] == [
        "SUBMITTED", "STARTING", "RUNNING", "STOPPING", "FAILED", "SUCCEEDED", "STOPPED",
    ]  # fmt: skip


def test_final_statuses_have_no_way_out() -> None:
    """FAILED, SUCCEEDED and STOPPED are final: no move starts from them."""
    assert {JobStatus.FAILED, JobStatus.SUCCEEDED, JobStatus.STOPPED} == FINAL_STATUSES


def test_the_table_has_exactly_the_issued_moves() -> None:
    """The (source, dest) pairs are exactly those the design allows, and nothing else."""
    s = JobStatus
    expected = {
        (s.SUBMITTED, s.STARTING), (s.SUBMITTED, s.STOPPING), (s.SUBMITTED, s.FAILED),
        (s.STARTING, s.RUNNING), (s.STARTING, s.STOPPING), (s.STARTING, s.FAILED),
        (s.RUNNING, s.SUCCEEDED), (s.RUNNING, s.STOPPING), (s.RUNNING, s.FAILED),
        (s.STOPPING, s.STOPPED), (s.STOPPING, s.FAILED),
    }  # fmt: skip
    assert {(m.source, m.dest) for m in TRANSITIONS} == expected


@pytest.mark.parametrize("move", TRANSITIONS, ids=lambda m: f"{m.source}-{m.trigger}-{m.dest}")
def test_every_allowed_move_is_applied(move: Move) -> None:
    """Each move of the table leads from its source to its destination."""
    assert JobMachine().next_status("job", move.source, move.trigger) is move.dest


@pytest.mark.parametrize(("status", "trigger"), FORBIDDEN, ids=lambda v: str(v))
def test_every_other_pair_is_refused(status: JobStatus, trigger: str) -> None:
    """Any (status, trigger) pair outside the table raises IllegalMove."""
    with pytest.raises(IllegalMove) as refused:
        JobMachine().next_status("job-7", status, trigger)
    assert refused.value.job_id == "job-7"
    assert refused.value.status is status


def test_machine_is_shared_not_per_job() -> None:
    """One machine serves interleaved jobs without leaking one job's status into another."""
    machine = JobMachine()
    assert machine.next_status("a", JobStatus.SUBMITTED, "start") is JobStatus.STARTING
    assert machine.next_status("b", JobStatus.RUNNING, "succeed") is JobStatus.SUCCEEDED
    assert machine.next_status("a", JobStatus.STARTING, "run") is JobStatus.RUNNING


async def test_illegal_move_is_logged_and_never_published() -> None:
    """The mover refuses an illegal trigger: it logs the job id, publishes and records nothing."""
    from tests.unit.factories import submit_command

    publisher = MemoryEventPublisher()
    ledger = Projection(MemoryProjectionStore())
    mover = Mover(JobMachine(), publisher, ledger)
    command = submit_command()
    before = await mover.create(command)

    with capture_logs() as logs, pytest.raises(IllegalMove):
        await mover.move(command.job_id, "succeed")

    assert [e.status for e in publisher.published] == [JobStatus.SUBMITTED]
    assert ledger.store.record(command.job_id) == before
    refusal = [entry for entry in logs if entry["event"] == "illegal move refused"]
    assert refusal
    assert refusal[0]["job_id"] == command.job_id
    assert refusal[0]["log_level"] == "error"
