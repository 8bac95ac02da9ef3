"""P3: only legal moves, ever, under random commands (model-checked with hypothesis).

A ``RuleBasedStateMachine`` drives the real ``JobRunner`` and ``Mover`` with in-memory adapters:
submits of valid and broken jobs, stops, stops from another tenant, conflicting and repeated
submits (redeliveries), engine outcomes (success, failing paragraph, engine crash, engine that
will not start) and worker crashes (the jobs are abandoned, a new worker rebuilds its ledger
from the published events and gets every unfinished SubmitJob redelivered). After every step,
every published event is checked against ``statemachine.table.TRANSITIONS``.

The event loop is stepped, not slept: after each command the loop runs until nothing changes
for a while, so a run is deterministic and fast.
"""

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from structlog.testing import capture_logs

from adapters.environment_locks import MemoryEnvironmentLocks
from adapters.memory import MemoryEventPublisher
from adapters.ports import EngineError, Environment, NotFound, ParagraphListener
from adapters.projection_store import MemoryProjectionStore
from schemas.commands import StopJob, SubmitJob
from schemas.events import Event, JobStatusChanged
from schemas.jobs import EnvironmentConfiguration, JobRequest, JobView
from schemas.notes import Note, NoteRun, ParagraphResult, ParagraphStatus, parse_note
from statemachine import FINAL_STATUSES, TRANSITIONS, IllegalMove, JobMachine
from tests.reliability.figures import record
from tests.unit.factories import job_request
from worker.jobs import CommandRefused, ConflictingSubmit, ForeignJob, JobRunner
from worker.moves import Mover
from worker.projection import Projection

NOTE = parse_note(
    (Path(__file__).resolve().parent.parent / "fixtures/notes/success.zpln").read_bytes()
)
TENANT = "tenanta"
NOW = datetime(2024, 3, 5, 9, 14, 2, tzinfo=UTC)
LEGAL = {(m.source, m.trigger, m.dest) for m in TRANSITIONS}
RUNS = 200
STEPS = 30
# Loop iterations without a new event, claim or engine call after which the loop is "settled".
QUIET_ITERATIONS = 25
# Real time a waiting job may need after the last command (its periodic 1 s re-check).
DRAIN_SECONDS = 10.0

# What a submitted job is set up to meet (its inputs, its engine).
BROKEN = ("missing_model", "missing_folder", "unreadable_input", "engine_wont_start")
VARIANTS = ("ok",) * len(BROKEN) + BROKEN  # half the jobs can run
CONFIGURATIONS = ("config-1", "config-2", "queued-1")
OUTCOMES = ("succeed", "paragraph_fails", "engine_crashes")
CRASH_ODDS = 3


def _paragraph(status: ParagraphStatus) -> ParagraphResult:
    return ParagraphResult(
        index=0,
        id="p0",
        label="Compute",
        interpreter="python",
        status=status,
        output="",
        error=None if status is ParagraphStatus.FINISHED else "ValueError: bad",
        started_at=None,
        finished_at=None,
    )


# -- in-memory stand-ins for the outside world -------------------------------------------------


class Models:
    async def load_note(self, tenant: str, model_id: str) -> Note:
        if model_id == "missing_model":
            raise NotFound(f"model {model_id} not found")
        return NOTE


class Folders:
    async def exists(self, tenant: str, folder_id: str) -> bool:
        return folder_id != "missing_folder"

    async def download(self, tenant: str, folder_id: str, destination: Path) -> None:
        if folder_id == "unreadable_input":
            raise OSError("input folder unreadable")

    async def upload(self, source: Path, tenant: str, folder_id: str) -> None:
        return None


class Environments:
    async def configuration(self, tenant: str, configuration_id: str) -> EnvironmentConfiguration:
        extra = {"whenBusy": "queue"} if configuration_id.startswith("queued") else {}
        return EnvironmentConfiguration(id=configuration_id, name="fake", **extra)

    async def start(self, job_id: str, configuration: EnvironmentConfiguration) -> Environment:
        # Never touched: the fake folders and engine do no file I/O.
        return Environment(f"env-{job_id}", Path(PurePosixPath("workspaces", job_id)))

    async def stop(self, environment: Environment) -> None:
        return None


class ScriptedEngine:
    """Sessions whose run waits until the test picks its outcome."""

    def __init__(self, changes: Counter[str]) -> None:
        self.runs: dict[str, asyncio.Future[NoteRun]] = {}
        self.wont_start: set[str] = set()
        self._changes = changes

    async def start(
        self,
        workspace: Path,
        variables: Mapping[str, str],
        configuration: EnvironmentConfiguration,
    ) -> "ScriptedSession":
        job_id = variables["jobId"]
        self._changes["engine"] += 1
        if job_id in self.wont_start:
            raise EngineError("kernel did not start")
        return ScriptedSession(self, job_id)

    def decide(self, job_id: str, outcome: str) -> bool:
        """Settle the job's running note; False when it is not running."""
        run = self.runs.get(job_id)
        if run is None or run.done():
            return False
        if outcome == "succeed":
            run.set_result(NoteRun(paragraphs=(_paragraph(ParagraphStatus.FINISHED),)))
        elif outcome == "paragraph_fails":
            run.set_result(NoteRun(paragraphs=(_paragraph(ParagraphStatus.ERROR),)))
        else:
            run.set_exception(EngineError("kernel died"))
        return True


class ScriptedSession:
    def __init__(self, engine: ScriptedEngine, job_id: str) -> None:
        self._engine = engine
        self._job_id = job_id

    async def run(self, note: Note, on_paragraph: ParagraphListener | None = None) -> NoteRun:
        future = asyncio.get_running_loop().create_future()
        self._engine.runs[self._job_id] = future
        result: NoteRun = await future
        if on_paragraph is not None:
            for paragraph in result.paragraphs:
                await on_paragraph(paragraph)
        return result

    async def close(self) -> None:
        return None


# -- what every published event must satisfy -------------------------------------------------


@dataclass
class Checker:
    """Checks events as they are published; keeps what it found for the figures."""

    checked: int = 0
    moves: int = 0
    violations: list[str] = field(default_factory=list)
    duplicate_terminals: int = 0
    last: dict[str, tuple[int, Any]] = field(default_factory=dict)

    def check(self, events: list[Event]) -> None:
        for event in events[self.checked :]:
            self._check(event)
        self.checked = len(events)

    def _check(self, event: Event) -> None:
        job = event.job_id
        sequence, status = self.last.get(job, (0, None))
        if event.sequence != sequence + 1:
            self.violations.append(f"{job}: sequence {event.sequence} after {sequence}")
        if status in FINAL_STATUSES:
            self.violations.append(f"{job}: {event.type} after final {status}")
            if event.status in FINAL_STATUSES:
                self.duplicate_terminals += 1
        if isinstance(event, JobStatusChanged):
            self.moves += 1
            if event.previous_status is None:
                if (event.sequence, event.status, event.trigger) != (1, "SUBMITTED", "submit"):
                    self.violations.append(f"{job}: bad creation {event.trigger}→{event.status}")
            elif event.previous_status != status or (
                (event.previous_status, event.trigger, event.status) not in LEGAL
            ):
                self.violations.append(
                    f"{job}: illegal move {event.previous_status} --{event.trigger}--> "
                    f"{event.status} (was {status})"
                )
        elif event.status != status:
            self.violations.append(f"{job}: progress changed status {status}→{event.status}")
        if event.job.status != event.status:
            self.violations.append(f"{job}: view status {event.job.status} ≠ {event.status}")
        self.last[job] = (event.sequence, event.status)


TOTALS: Counter[str] = Counter()


class JobLives(RuleBasedStateMachine):
    """Random commands against one worker (replaced by a new one on a crash)."""

    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.events = MemoryEventPublisher()
        self.locks = MemoryEnvironmentLocks()
        self.changes: Counter[str] = Counter()
        self.engine = ScriptedEngine(self.changes)
        self.checker = Checker()
        self.commands: dict[str, SubmitJob] = {}
        self.refused: Counter[str] = Counter()
        self.counter = itertools.count(1)
        self.generation = 0
        self.runner = self._worker(Projection(MemoryProjectionStore()))
        TOTALS["runs"] += 1

    def _worker(self, ledger: Projection) -> JobRunner:
        mover = Mover(JobMachine(), self.events, ledger, clock=lambda: NOW)
        return JobRunner(
            mover, Models(), Folders(), Environments(), self.engine, self.locks, concurrency=2
        )

    # -- driving the loop -----------------------------------------------------------------

    def _fingerprint(self) -> tuple[int, int, int]:
        return (len(self.events.published), len(self.locks.published), self.changes["engine"])

    def _settle(self) -> None:
        async def quiet() -> None:
            seen, still = self._fingerprint(), 0
            while still < QUIET_ITERATIONS:
                await asyncio.sleep(0)
                now = self._fingerprint()
                still = still + 1 if now == seen else 0
                seen = now

        self.loop.run_until_complete(quiet())
        self.checker.check(self.events.published)

    def _run(self, coroutine: Any) -> Any:
        result = self.loop.run_until_complete(coroutine)
        self._settle()
        return result

    # -- rules ----------------------------------------------------------------------------

    @rule(target=jobs, variant=st.sampled_from(VARIANTS), config=st.sampled_from(CONFIGURATIONS))
    def submit(self, variant: str, config: str) -> str:
        job_id = f"job-{next(self.counter)}"
        request = JobRequest(
            model_id="missing_model" if variant == "missing_model" else "model-1",
            configuration_id=config,
            input_folder_id=variant if variant in ("missing_folder", "unreadable_input") else "in",
            output_folder_id="out",
            maximum_execution_time_in_seconds=7200,
        )
        if variant == "engine_wont_start":
            self.engine.wont_start.add(job_id)
        command = SubmitJob(
            command_id=f"c-{job_id}",
            job_id=job_id,
            tenant=TENANT,
            request=request,
            creation_date=NOW,
            issued_at=NOW,
        )
        self.commands[job_id] = command
        self._run(self.runner.submit(command))
        TOTALS["jobs_submitted"] += 1
        TOTALS["broken_jobs"] += variant != "ok"
        return job_id

    @rule(job=jobs)
    def redeliver(self, job: str) -> None:
        """The same SubmitJob again, as after a lost commit."""
        self._run(self.runner.submit(self.commands[job]))
        TOTALS["redeliveries"] += 1

    @rule(job=jobs)
    def conflicting_submit(self, job: str) -> None:
        """The job id again with another request: refused, nothing published."""
        before = len(self.events.published)
        command = self.commands[job]
        changed = command.request.model_copy(update={"output_folder_id": "x"})
        other = command.model_copy(update={"request": changed})
        with pytest.raises(ConflictingSubmit):
            self.loop.run_until_complete(self.runner.submit(other))
        self._settle()
        self._no_event_of(job, since=before)
        self.refused["conflicting_submit"] += 1

    @rule(job=jobs)
    def stop(self, job: str) -> None:
        try:
            self._run(self.runner.stop(self._stop(job, TENANT)))
        except IllegalMove:
            self.refused["illegal_stop"] += 1  # refused and never published: what P3 demands
        TOTALS["stops"] += 1

    @rule(job=jobs)
    def foreign_stop(self, job: str) -> None:
        """Another tenant's stop for this job: refused, nothing published."""
        before = len(self.events.published)
        with pytest.raises(ForeignJob):
            self.loop.run_until_complete(self.runner.stop(self._stop(job, "tenantb")))
        self._settle()
        self._no_event_of(job, since=before)
        self.refused["foreign_stop"] += 1

    @precondition(lambda self: any(not run.done() for run in self.engine.runs.values()))
    @rule(data=st.data(), outcome=st.sampled_from(OUTCOMES))
    def engine_outcome(self, data: st.DataObject, outcome: str) -> None:
        running = sorted(job for job, run in self.engine.runs.items() if not run.done())
        job = data.draw(st.sampled_from(running), label="running job")
        assert self.engine.decide(job, outcome)
        TOTALS[f"engine_{outcome}"] += 1
        self._settle()

    @precondition(lambda self: bool(self.runner.active))
    @rule(dice=st.integers(0, CRASH_ODDS - 1))
    def crash(self, dice: int) -> None:
        """The worker dies; a new one rebuilds its ledger from the events and gets every
        unfinished SubmitJob redelivered (their offsets were never committed)."""
        if dice != CRASH_ODDS - 1:
            return  # rare (hypothesis favours small draws), so jobs get far enough between crashes
        active = set(self.runner.active)
        self.loop.run_until_complete(self.runner.abandon(active))
        ledger = Projection(MemoryProjectionStore())
        for event in self.events.published:
            ledger.apply(event)
        self.runner = self._worker(ledger)
        # The new owner's epoch is its consumer group generation, newer than any before.
        self.generation += 1
        self.runner.owner_epoch = self.generation
        self._settle()
        for job_id, command in self.commands.items():
            record = ledger.store.record(job_id)
            if record is None or record.view.status not in FINAL_STATUSES:
                try:
                    self._run(self.runner.submit(command))
                except CommandRefused:
                    self.refused["after_crash"] += 1
        TOTALS["crashes"] += 1

    # -- checks ---------------------------------------------------------------------------

    @invariant()
    def only_legal_moves(self) -> None:
        assert not self.checker.violations, self.checker.violations

    def teardown(self) -> None:
        try:
            self._drain()
            self.checker.check(self.events.published)
            unfinished = {
                job
                for job in self.commands
                if self.checker.last.get(job, (0, None))[1] not in FINAL_STATUSES
            }
            TOTALS["jobs_lost"] += len(unfinished)
            TOTALS["events"] += self.checker.checked
            TOTALS["moves"] += self.checker.moves
            TOTALS["illegal_moves"] += len(self.checker.violations)
            TOTALS["duplicate_terminals"] += self.checker.duplicate_terminals
            TOTALS["refused_commands"] += sum(self.refused.values())
            assert not self.checker.violations, self.checker.violations
            assert not unfinished, f"jobs never final: {sorted(unfinished)}"
        finally:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()

    def _drain(self) -> None:
        """Let every job end: running notes succeed; waiting jobs get real time to re-check."""
        deadline = time.monotonic() + DRAIN_SECONDS

        async def drain() -> None:
            while self.runner.active and time.monotonic() < deadline:
                for job in list(self.runner.active):
                    self.engine.decide(job, "succeed")
                await asyncio.sleep(0.01)

        self.loop.run_until_complete(drain())
        self._settle()

    def _stop(self, job: str, tenant: str) -> StopJob:
        return StopJob(command_id=f"s-{job}", job_id=job, tenant=tenant, issued_at=NOW)

    def _no_event_of(self, job: str, since: int) -> None:
        assert all(e.job_id != job for e in self.events.published[since:]), "refused but published"


def test_only_legal_moves_under_random_commands() -> None:
    """200 random command sequences publish only moves of the table, and every job ends."""
    TOTALS.clear()
    started = time.monotonic()
    # Captured, not rendered: pretty tracebacks of the injected engine crashes cost seconds.
    with capture_logs() as logs:
        try:
            run_state_machine_as_test(
                JobLives,
                settings=hypothesis.settings(
                    max_examples=RUNS,
                    stateful_step_count=STEPS,
                    deadline=None,
                    derandomize=True,
                    database=None,
                    suppress_health_check=[hypothesis.HealthCheck.too_slow],
                ),
            )
        finally:
            record(
                "P3",
                "test_only_legal_moves_under_random_commands",
                state_machine_runs=TOTALS["runs"],
                jobs_submitted=TOTALS["jobs_submitted"],
                events_checked=TOTALS["events"],
                moves_checked=TOTALS["moves"],
                faults_injected=TOTALS["crashes"]
                + TOTALS["redeliveries"]
                + TOTALS["engine_engine_crashes"]
                + TOTALS["refused_commands"]
                + TOTALS["broken_jobs"],
                worker_crashes=TOTALS["crashes"],
                redeliveries=TOTALS["redeliveries"],
                refused_commands=TOTALS["refused_commands"],
                stops=TOTALS["stops"],
                engine_crashes=TOTALS["engine_engine_crashes"],
                broken_jobs=TOTALS["broken_jobs"],
                outcomes_succeeded=TOTALS["engine_succeed"],
                outcomes_paragraph_failed=TOTALS["engine_paragraph_fails"],
                jobs_lost=TOTALS["jobs_lost"],
                duplicate_terminals=TOTALS["duplicate_terminals"],
                illegal_moves=TOTALS["illegal_moves"],
                refused_moves_logged=sum(e["event"] == "illegal move refused" for e in logs),
                seconds=round(time.monotonic() - started, 1),
            )
    assert TOTALS["runs"] >= RUNS
    assert TOTALS["crashes"] > 0, "crashes were exercised"
    assert TOTALS["redeliveries"] > 0, "redeliveries were exercised"
    assert TOTALS["moves"] > TOTALS["jobs_submitted"], "jobs moved beyond SUBMITTED"


def test_checker_catches_an_illegal_move() -> None:
    """The checker is not vacuous: a skipped status, a move after a final one and a gap fail."""
    request = job_request()

    def changed(job: str, sequence: int, previous: str | None, status: str, trigger: str) -> Event:
        view = JobView.submitted(job, TENANT, request, NOW).model_copy(update={"status": status})
        return JobStatusChanged(
            event_id=f"{job}/{sequence}",
            job_id=job,
            tenant=TENANT,
            sequence=sequence,
            previous_status=previous,
            status=status,
            trigger=trigger,
            job=view,
            occurred_at=NOW,
        )

    checker = Checker()
    checker.check(
        [
            changed("a", 1, None, "SUBMITTED", "submit"),
            changed("a", 2, "SUBMITTED", "SUCCEEDED", "succeed"),  # skips STARTING, RUNNING
            changed("a", 3, "SUCCEEDED", "FAILED", "fail"),  # a second terminal
            changed("b", 2, "SUBMITTED", "STARTING", "start"),  # a gap: no sequence 1
        ]
    )
    found = [v.split(":")[0] for v in checker.violations]
    assert found.count("a") == 3, checker.violations
    assert "b" in found, checker.violations
    assert checker.duplicate_terminals == 1
