"""JobRunner over the real local file adapters, with a fake execution engine."""

import asyncio
import itertools
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from adapters.environment_locks import MemoryEnvironmentLocks
from adapters.local_files import (
    LocalFolderStore,
    LocalHome,
)
from adapters.memory import MemoryEventPublisher
from adapters.ports import EngineError
from adapters.projection_store import MemoryProjectionStore
from schemas.commands import StopJob, SubmitJob
from schemas.events import Event, JobProgressed, JobStatusChanged, event_id_for
from schemas.jobs import JobRecord, JobView
from schemas.notes import Note, NoteRun, ParagraphResult, ParagraphStatus
from schemas.status import JobStatus
from statemachine import TRANSITIONS, IllegalMove, JobMachine
from tests.fakes.engine import FakeSession, OneCallEngine
from tests.unit.factories import job_home, local_runner, submit_job
from worker.jobs import (
    STOP_REQUESTED_MESSAGE,
    STOPPED_MESSAGE,
    SUCCEEDED_MESSAGE,
    WORKER_LOST_MESSAGE,
    ForeignJob,
    JobRunner,
)
from worker.moves import Mover
from worker.projection import Projection

DEADLINE = 10.0
TENANT = "tenanta"
S = JobStatus
ALLOWED = {(move.source, move.dest) for move in TRANSITIONS}
NOW = datetime(2024, 3, 5, 9, 14, 2, 118_000, tzinfo=UTC)


def _paragraph(status: ParagraphStatus, label: str, error: str | None = None) -> ParagraphResult:
    return ParagraphResult(
        index=0,
        id="p0",
        label=label,
        interpreter="python",
        status=status,
        output="out\n",
        error=error,
        started_at=None,
        finished_at=None,
    )


SUCCESS = NoteRun(paragraphs=(_paragraph(ParagraphStatus.FINISHED, "Compute"),))
FAILURE = NoteRun(
    paragraphs=(_paragraph(ParagraphStatus.ERROR, "Divide", "ZeroDivisionError: division by zero"),)
)


class FakeEngine(OneCallEngine):
    """An ExecutionEngine that writes chosen output files, may block, then returns a chosen run."""

    def __init__(
        self,
        result: NoteRun = SUCCESS,
        *,
        block: bool = False,
        outputs: Mapping[str, str] | None = None,
        during_run: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.result = result
        self.block = block
        self.outputs = dict(outputs or {})
        self.during_run = during_run
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = False
        self.calls: list[tuple[str, Path, dict[str, str]]] = []
        self.inputs_seen: list[str] = []

    async def run(self, note: Note, workspace: Path, variables: Mapping[str, str]) -> NoteRun:
        self.calls.append((note.name, workspace, dict(variables)))
        self.inputs_seen = sorted(p.name for p in (workspace / "input").iterdir())
        for name, text in self.outputs.items():
            (workspace / "output" / name).write_text(text)
        if self.during_run is not None:
            self.during_run()
        self.started.set()
        try:
            if self.block:
                await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return self.result


class ObservedSlots(asyncio.Semaphore):
    """A semaphore that signals when an acquire has to wait for a free slot."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.waiting = asyncio.Event()

    async def acquire(self) -> bool:
        if self.locked():
            self.waiting.set()
        return await super().acquire()


class GatedFolderStore(LocalFolderStore):
    """The local folder store, holding each upload until the test opens the gate."""

    def __init__(self, home: LocalHome) -> None:
        super().__init__(home)
        self.uploading = asyncio.Event()
        self.gate = asyncio.Event()

    async def upload(self, source: Path, tenant: str, folder_id: str) -> None:
        self.uploading.set()
        await self.gate.wait()
        await super().upload(source, tenant, folder_id)


@dataclass
class World:
    home: LocalHome
    events: MemoryEventPublisher
    projection: Projection
    mover: Mover
    locks: MemoryEnvironmentLocks

    def runner(
        self, engine: FakeEngine, concurrency: int = 2, folders: LocalFolderStore | None = None
    ) -> JobRunner:
        return local_runner(
            self.mover, self.home, engine, self.locks, concurrency=concurrency, folders=folders
        )

    def of(self, job_id: str) -> list[Event]:
        return [e for e in self.events.published if e.job_id == job_id]


@pytest.fixture
def world(tmp_path: Path) -> World:
    """A tenant with model-1, folders in-1 (holding data.csv) and out-1, and config-1."""
    home = job_home(tmp_path / "home", TENANT, configurations=3)
    (home.folder(TENANT, "in-1") / "data.csv").write_text("x\n1\n")
    events = MemoryEventPublisher()
    projection = Projection(MemoryProjectionStore())
    mover = Mover(JobMachine(), events, projection, clock=lambda: NOW)
    return World(home, events, projection, mover, MemoryEnvironmentLocks())


def _submit(job_id: str = "job-1", seconds: int = 7200, **request: str) -> SubmitJob:
    return submit_job(job_id, tenant=TENANT, at=NOW, seconds=seconds, **request)


def _stop(job_id: str = "job-1") -> StopJob:
    return StopJob(command_id=f"stop-{job_id}", job_id=job_id, tenant=TENANT, issued_at=NOW)


def _check_history(events: list[Event], job_id: str, statuses: list[S]) -> None:
    """Moves as expected, sequences 1.. over all events, chained statuses, legal moves, ids."""
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    for event in events:
        assert event.job_id == event.job.id == job_id
        assert event.tenant == TENANT
        assert event.job.status is event.status
        assert event.event_id == event_id_for(job_id, event.sequence)
    moves = [e for e in events if isinstance(e, JobStatusChanged)]
    assert [e.status for e in moves] == statuses
    assert moves[0].previous_status is None
    for before, after in itertools.pairwise(moves):
        assert after.previous_status is before.status
        assert (after.previous_status, after.status) in ALLOWED
    for progressed in (e for e in events if isinstance(e, JobProgressed)):
        assert progressed.status is _status_before(events, progressed.sequence)


def _status_before(events: list[Event], sequence: int) -> S:
    """The status of the last move before ``sequence``: progress never changes it."""
    moves = [e for e in events if isinstance(e, JobStatusChanged) and e.sequence < sequence]
    return moves[-1].status


def _moves(events: list[Event]) -> list[JobStatusChanged]:
    return [e for e in events if isinstance(e, JobStatusChanged)]


async def _finish(task: "asyncio.Task[None]") -> None:
    await asyncio.wait_for(task, DEADLINE)


async def _started(engine: FakeEngine) -> None:
    await asyncio.wait_for(engine.started.wait(), DEADLINE)


# -- success and failures ---------------------------------------------------------------------


async def test_successful_job_runs_through_to_succeeded(world: World) -> None:
    """SUBMITTED→STARTING→RUNNING→SUCCEEDED, inputs downloaded, outputs copied to the folder."""
    engine = FakeEngine(outputs={"result.txt": "total=30\n"})
    runner = world.runner(engine)

    await _finish(await runner.submit(_submit()))

    events = world.of("job-1")
    _check_history(events, "job-1", [S.SUBMITTED, S.STARTING, S.RUNNING, S.SUCCEEDED])
    assert events[-1].job.message == SUCCEEDED_MESSAGE
    assert events[0].job.environment_id is None
    assert _moves(events)[2].job.environment_id == "local-job-1"
    assert events[-1].job.environment_id == "local-job-1"
    assert (world.home.folder(TENANT, "out-1") / "result.txt").read_text() == "total=30\n"
    assert engine.inputs_seen == ["data.csv"]
    [(name, workspace, variables)] = engine.calls
    assert name == "Success"
    assert variables["jobId"] == "job-1"
    assert variables["outputFolder"] == str(workspace / "output")
    assert not workspace.exists(), "the environment's workspace is removed after the run"
    assert runner.active == {}
    record = world.mover.record("job-1")
    assert record is not None
    assert (record.sequence, record.view.status) == (len(events), S.SUCCEEDED)
    assert [p.label for p in record.paragraphs] == ["Compute"]
    messages = [e.message for e in events if isinstance(e, JobProgressed)]
    assert messages == [
        "Validating inputs.",
        "Preparing inputs.",
        "Started notebook execution.",
        "Storing outputs.",
    ]


@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        ("model", "model model-1 not found"),
        ("input", "input folder in-1 not found"),
        ("output", "output folder out-1 not found"),
        ("configuration", "configuration config-1 not found"),
    ],
)
async def test_missing_inputs_fail_the_job_before_starting(
    world: World, missing: str, expected: str
) -> None:
    """A missing model, folder or configuration fails SUBMITTED→FAILED naming what is missing."""
    home = world.home
    if missing == "model":
        home.model_file(TENANT, "model-1").unlink()
    elif missing == "configuration":
        home.configuration_file(TENANT, "config-1").unlink()
    else:
        shutil.rmtree(home.folder(TENANT, f"{'in' if missing == 'input' else 'out'}-1"))
    engine = FakeEngine()
    runner = world.runner(engine)

    await _finish(await runner.submit(_submit()))

    events = world.of("job-1")
    _check_history(events, "job-1", [S.SUBMITTED, S.FAILED])
    assert expected in events[-1].job.message
    assert engine.calls == []


async def test_invalid_note_fails_the_job_before_starting(world: World) -> None:
    """A model file that is not a Zeppelin note fails SUBMITTED→FAILED as invalid input."""
    world.home.model_file(TENANT, "model-1").write_text("[1, 2]")
    engine = FakeEngine()

    await _finish(await world.runner(engine).submit(_submit()))

    events = world.of("job-1")
    _check_history(events, "job-1", [S.SUBMITTED, S.FAILED])
    assert "Invalid inputs" in events[-1].job.message
    assert engine.calls == []


async def test_paragraph_failure_fails_the_job_and_keeps_outputs(world: World) -> None:
    """A failed paragraph ends RUNNING→FAILED with the engine's summary; outputs are stored."""
    engine = FakeEngine(FAILURE, outputs={"partial.txt": "half\n"})

    await _finish(await world.runner(engine).submit(_submit()))

    events = world.of("job-1")
    _check_history(events, "job-1", [S.SUBMITTED, S.STARTING, S.RUNNING, S.FAILED])
    assert events[-1].job.message == FAILURE.failure_summary()
    assert (
        events[-1].job.message == "Paragraph 'Divide' failed: ZeroDivisionError: division by zero"
    )
    assert (world.home.folder(TENANT, "out-1") / "partial.txt").read_text() == "half\n"


async def test_output_folder_lost_during_run_fails_a_successful_job(world: World) -> None:
    """Outputs that cannot be stored turn a successful run into FAILED with the reason."""
    engine = FakeEngine(during_run=lambda: shutil.rmtree(world.home.folder(TENANT, "out-1")))

    await _finish(await world.runner(engine).submit(_submit()))

    events = world.of("job-1")
    _check_history(events, "job-1", [S.SUBMITTED, S.STARTING, S.RUNNING, S.FAILED])
    assert "Error while storing outputs" in events[-1].job.message
    assert "out-1" in events[-1].job.message


# -- stop and time limit ----------------------------------------------------------------------


async def test_stop_while_running_cancels_the_engine(world: World) -> None:
    """A stop while RUNNING moves to STOPPING, cancels the engine, then ends STOPPED."""
    engine = FakeEngine(block=True)
    runner = world.runner(engine)
    task = await runner.submit(_submit())
    await _started(engine)

    await runner.stop(_stop())
    await _finish(task)

    events = world.of("job-1")
    _check_history(events, "job-1", [S.SUBMITTED, S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED])
    assert _moves(events)[3].job.message == STOP_REQUESTED_MESSAGE
    assert _moves(events)[4].job.message == STOPPED_MESSAGE
    assert engine.cancelled
    assert runner.active == {}


async def test_stop_while_storing_outputs_wins_over_success(world: World) -> None:
    """A stop that lands after a successful run, while outputs are stored, ends STOPPED."""
    folders = GatedFolderStore(world.home)
    runner = world.runner(FakeEngine(outputs={"result.txt": "done\n"}), folders=folders)
    task = await runner.submit(_submit())
    await asyncio.wait_for(folders.uploading.wait(), DEADLINE)

    await runner.stop(_stop())
    folders.gate.set()
    await _finish(task)

    events = world.of("job-1")
    _check_history(events, "job-1", [S.SUBMITTED, S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED])
    assert events[-1].job.message == STOPPED_MESSAGE
    assert (world.home.folder(TENANT, "out-1") / "result.txt").read_text() == "done\n"


async def test_second_stop_publishes_nothing_more(world: World) -> None:
    """A repeated stop while the job is already STOPPING is ignored."""
    engine = FakeEngine(block=True)
    runner = world.runner(engine)
    task = await runner.submit(_submit())
    await _started(engine)

    await runner.stop(_stop())
    await runner.stop(_stop())
    await _finish(task)

    assert [e.status for e in _moves(world.of("job-1"))].count(S.STOPPING) == 1


async def test_stop_while_waiting_for_a_slot_never_starts(world: World) -> None:
    """With one slot taken, a stopped waiting job goes STOPPING→STOPPED without STARTING."""
    first_engine = FakeEngine(block=True)
    runner = world.runner(first_engine, concurrency=1)
    slots = ObservedSlots(1)
    runner._slots = slots  # observe when the second job queues for the slot
    first = await runner.submit(_submit("job-1"))
    await _started(first_engine)
    second = await runner.submit(_submit("job-2", configuration_id="config-2"))
    await asyncio.wait_for(slots.waiting.wait(), DEADLINE)

    await runner.stop(_stop("job-2"))
    await _finish(second)

    _check_history(world.of("job-2"), "job-2", [S.SUBMITTED, S.STOPPING, S.STOPPED])
    assert len(first_engine.calls) == 1
    assert not first.done()

    first_engine.release.set()
    await _finish(first)
    _check_history(world.of("job-1"), "job-1", [S.SUBMITTED, S.STARTING, S.RUNNING, S.SUCCEEDED])
    # The stopped waiter took no slot with it: a third job still gets to run.
    third = await runner.submit(_submit("job-3", configuration_id="config-3"))
    await _finish(third)
    assert world.of("job-3")[-1].status is S.SUCCEEDED


async def test_time_limit_aborts_then_fails(world: World) -> None:
    """A run over maximumExecutionTimeInSeconds goes RUNNING→STOPPING→FAILED naming the limit."""
    engine = FakeEngine(block=True)

    await _finish(await world.runner(engine).submit(_submit(seconds=1)))

    events = world.of("job-1")
    _check_history(events, "job-1", [S.SUBMITTED, S.STARTING, S.RUNNING, S.STOPPING, S.FAILED])
    moves = _moves(events)
    assert moves[3].trigger == "abort"
    assert "1 seconds" in moves[3].job.message
    assert events[-1].job.message == "Maximum execution time of 1 seconds exceeded."
    assert engine.cancelled


async def test_stop_of_a_job_not_running_here_publishes_nothing(world: World) -> None:
    """A stop for an unknown or finished job changes nothing."""
    runner = world.runner(FakeEngine())
    await runner.stop(_stop("nobody"))
    await _finish(await runner.submit(_submit()))
    published = len(world.events.published)

    await runner.stop(_stop())

    assert len(world.events.published) == published


# -- redelivery and orphans -------------------------------------------------------------------


async def test_redelivered_submit_of_a_final_job_publishes_nothing(world: World) -> None:
    """A SubmitJob delivered again after the job is final publishes no event and runs nothing."""
    engine = FakeEngine()
    runner = world.runner(engine)
    await _finish(await runner.submit(_submit()))
    published = list(world.events.published)

    await _finish(await runner.submit(_submit()))

    assert world.events.published == published
    assert len(engine.calls) == 1


async def test_redelivered_submit_of_a_running_job_returns_the_same_task(world: World) -> None:
    """A SubmitJob delivered again while its job runs gets the running task, no new event."""
    engine = FakeEngine(block=True)
    runner = world.runner(engine)
    task = await runner.submit(_submit())
    await _started(engine)
    published = len(world.events.published)

    again = await runner.submit(_submit())

    assert again is task
    assert len(world.events.published) == published
    engine.release.set()
    await _finish(task)


async def _ledger_at(world: World, job_id: str, *triggers: tuple[str, str | None]) -> None:
    """Put a job into the ledger as another worker would have left it (events not ours)."""
    elsewhere = Mover(JobMachine(), MemoryEventPublisher(), world.projection, clock=lambda: NOW)
    await elsewhere.create(_submit(job_id))
    for trigger, message in triggers:
        await elsewhere.move(job_id, trigger, message=message)


@pytest.mark.parametrize(
    ("triggers", "ending"),
    [
        ([("start", None), ("run", None)], (S.RUNNING, S.FAILED, WORKER_LOST_MESSAGE)),
        ([("start", None)], (S.STARTING, S.FAILED, WORKER_LOST_MESSAGE)),
        (
            [("start", None), ("stop", STOP_REQUESTED_MESSAGE)],
            (S.STOPPING, S.STOPPED, STOPPED_MESSAGE),
        ),
    ],
    ids=["running", "starting", "stopping-on-request"],
)
async def test_orphaned_job_is_ended_once(
    world: World, triggers: list[tuple[str, str | None]], ending: tuple[S, S, str]
) -> None:
    """A job another worker began but never ended is ended with one clear final event."""
    await _ledger_at(world, "job-1", *triggers)
    engine = FakeEngine()
    previous, final, message = ending

    await _finish(await world.runner(engine).submit(_submit()))

    [event] = world.events.published
    assert (event.previous_status, event.status) == (previous, final)
    assert (previous, final) in ALLOWED
    assert event.sequence == len(triggers) + 2
    assert event.epoch == 1, "the taker writes at a newer epoch, fencing the lost worker"
    assert event.event_id == event_id_for("job-1", event.sequence, event.epoch)
    assert event.job.message == message
    assert engine.calls == []


async def test_submit_after_a_crash_before_start_runs_the_job(world: World) -> None:
    """A redelivered SubmitJob whose job is only SUBMITTED runs it, continuing the sequence."""
    await _ledger_at(world, "job-1")

    await _finish(await world.runner(FakeEngine()).submit(_submit()))

    events = world.events.published
    assert events[0].sequence == 2, "the sequence continues after the ledger's SUBMITTED"
    assert [e.sequence for e in events] == list(range(2, len(events) + 2))
    assert [(e.previous_status, e.status) for e in _moves(events)] == [
        (S.SUBMITTED, S.STARTING),
        (S.STARTING, S.RUNNING),
        (S.RUNNING, S.SUCCEEDED),
    ]


async def test_gateway_accepted_record_gets_its_first_event(world: World) -> None:
    """A ledger record with sequence 0 (accepted, no event yet) still gets SUBMITTED as 1."""
    view = JobView.submitted("job-1", TENANT, _submit().request, NOW)
    world.projection.accept(JobRecord(view=view, sequence=0, tenant=TENANT))

    await _finish(await world.runner(FakeEngine()).submit(_submit()))

    _check_history(world.of("job-1"), "job-1", [S.SUBMITTED, S.STARTING, S.RUNNING, S.SUCCEEDED])


# -- the mover --------------------------------------------------------------------------------


async def test_illegal_move_is_refused_logged_and_not_published(world: World) -> None:
    """Mover.move with a trigger the table refuses raises IllegalMove and publishes nothing."""
    await world.mover.create(_submit())
    published = list(world.events.published)

    with capture_logs() as logs, pytest.raises(IllegalMove) as refused:
        await world.mover.move("job-1", "succeed")

    assert refused.value.job_id == "job-1"
    assert refused.value.status is S.SUBMITTED
    assert world.events.published == published
    record = world.mover.record("job-1")
    assert record is not None
    assert (record.sequence, record.view.status) == (1, S.SUBMITTED)
    errors = [entry for entry in logs if entry["log_level"] == "error"]
    assert len(errors) == 1
    assert errors[0]["job_id"] == "job-1"
    assert errors[0]["trigger"] == "succeed"


async def test_unknown_trigger_is_an_illegal_move(world: World) -> None:
    """A trigger the table does not know at all is refused the same way."""
    await world.mover.create(_submit())

    with pytest.raises(IllegalMove):
        await world.mover.move("job-1", "explode")

    assert len(world.events.published) == 1


async def test_stop_right_after_submit_ends_stopped(world: World) -> None:
    """A stop handled before the job's task first runs still ends SUBMITTED→STOPPING→STOPPED."""
    engine = FakeEngine()
    runner = world.runner(engine)
    task = await runner.submit(_submit())

    await runner.stop(_stop())
    await _finish(task)

    _check_history(world.of("job-1"), "job-1", [S.SUBMITTED, S.STOPPING, S.STOPPED])
    assert engine.calls == []


async def test_engine_crash_fails_the_job(world: World) -> None:
    """An engine that raises ends RUNNING→FAILED with an internal-error message."""

    def crash() -> None:
        raise RuntimeError("engine exploded")

    await _finish(await world.runner(FakeEngine(during_run=crash)).submit(_submit()))

    events = world.of("job-1")
    _check_history(events, "job-1", [S.SUBMITTED, S.STARTING, S.RUNNING, S.FAILED])
    assert "Internal error" in events[-1].job.message
    assert "engine exploded" in events[-1].job.message


async def test_unreadable_model_fails_the_job(world: World) -> None:
    """A model that cannot be read (here: a directory) fails the job instead of leaving it."""
    model = world.home.model_file(TENANT, "model-1")
    model.unlink()
    model.mkdir()

    task = await world.runner(FakeEngine()).submit(_submit())
    await asyncio.wait({task}, timeout=DEADLINE)

    assert task.done()
    assert [e.status for e in _moves(world.of("job-1"))] == [S.SUBMITTED, S.FAILED]


async def test_commands_of_another_tenant_touch_nothing(world: World) -> None:
    """A submit or stop naming another tenant's job raises ForeignJob and publishes nothing."""
    engine = FakeEngine(SUCCESS)
    runner = world.runner(engine)
    await _finish(await runner.submit(_submit()))
    published = list(world.events.published)
    intruder_submit = _submit().model_copy(update={"tenant": "tenantb"})
    intruder_stop = _stop().model_copy(update={"tenant": "tenantb"})

    with pytest.raises(ForeignJob):
        await runner.submit(intruder_submit)
    with pytest.raises(ForeignJob):
        await runner.stop(intruder_stop)

    assert world.events.published == published


async def test_busy_configuration_fails_the_second_job_with_the_seed_message(world: World) -> None:
    """A second job on a busy configuration fails with MindSphere's exact message."""
    engine = FakeEngine(block=True)
    runner = world.runner(engine)
    first = await runner.submit(_submit("job-1"))
    await _started(engine)

    await _finish(await runner.submit(_submit("job-2")))

    second = world.of("job-2")
    _check_history(second, "job-2", [S.SUBMITTED, S.STARTING, S.FAILED])
    assert second[-1].job.message == (
        "Failed to start environment "
        "[An environment has already been started for the configuration]"
    )
    assert world.locks.queue(TENANT, "config-1") == ("job-1",)
    engine.release.set()
    await _finish(first)
    assert world.locks.queue(TENANT, "config-1") == ()


async def test_queue_policy_runs_jobs_in_submission_order(world: World) -> None:
    """With whenBusy=queue, later jobs wait in SUBMITTED naming the holder, then run in order."""
    configuration = world.home.configuration_file(TENANT, "config-1")
    configuration.write_text('{"name": "queued", "engine": "local", "whenBusy": "queue"}')
    engine = FakeEngine(block=True)
    runner = world.runner(engine, concurrency=3)
    first = await runner.submit(_submit("job-1"))
    await _started(engine)
    second = await runner.submit(_submit("job-2"))
    third = await runner.submit(_submit("job-3"))

    def waiting(events: list[Event]) -> bool:
        return {
            e.job_id
            for e in events
            if isinstance(e, JobProgressed) and "in use by job job-1" in e.message
        } == {"job-2", "job-3"}

    await asyncio.wait_for(world.events.wait_for(waiting), DEADLINE)
    assert _moves(world.of("job-2"))[-1].status is S.SUBMITTED
    engine.release.set()
    await asyncio.gather(*(_finish(task) for task in (first, second, third)))

    started = [
        e.job_id
        for e in world.events.published
        if isinstance(e, JobStatusChanged) and e.status is S.STARTING
    ]
    assert started == ["job-1", "job-2", "job-3"]
    for job_id in ("job-1", "job-2", "job-3"):
        assert _moves(world.of(job_id))[-1].status is S.SUCCEEDED


async def test_engine_start_failure_fails_with_the_environment_message(world: World) -> None:
    """An engine that cannot start ends the job FAILED with 'Failed to start environment [...]'."""

    class BrokenEngine(FakeEngine):
        async def start(self, *args: object, **kwargs: object) -> FakeSession:
            raise EngineError("kernel died")

    await _finish(await world.runner(BrokenEngine()).submit(_submit()))

    events = world.of("job-1")
    _check_history(events, "job-1", [S.SUBMITTED, S.STARTING, S.FAILED])
    assert events[-1].job.message == "Failed to start environment [kernel died]"
