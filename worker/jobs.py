"""Running jobs: the steps of a job, stop requests and time limits.

Every status change goes through :class:`worker.moves.Mover`. A job's moves are serialised by
its lock, so a stop request and the job's own progress never race on the same status.
"""

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from adapters.ports import (
    Environment,
    EnvironmentProvider,
    ExecutionEngine,
    FolderStore,
    ModelStore,
    NotFound,
)
from schemas.commands import StopJob, SubmitJob
from schemas.jobs import EnvironmentConfiguration, JobRecord
from schemas.notes import InvalidNote, Note, NoteRun
from schemas.status import JobStatus
from statemachine import FINAL_STATUSES
from worker.moves import Mover

log = structlog.get_logger(__name__)

T = TypeVar("T")

STOP_REQUESTED_MESSAGE = "Stop requested."
STOPPED_MESSAGE = "Job stopped on request."
SUCCEEDED_MESSAGE = "Notebook execution finished successfully."
WORKER_LOST_MESSAGE = "The worker running this job was lost before the job finished."


class CommandRefused(Exception):
    """A well-formed command that must change nothing; it is dead-lettered with this reason."""


class ForeignJob(CommandRefused):
    """A command names a job that belongs to another tenant."""


class ConflictingSubmit(CommandRefused):
    """A SubmitJob reuses a job id (an Idempotency-Key) with a different request."""


class StopRequested(Exception):
    """A user asked to stop the job while it was waiting or running."""


class TimeLimitExceeded(Exception):
    """The note ran longer than ``maximumExecutionTimeInSeconds``."""


@dataclass
class ActiveJob:
    command: SubmitJob
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    task: "asyncio.Task[None] | None" = None


@dataclass(frozen=True, slots=True)
class Outcome:
    trigger: str
    message: str


class JobRunner:
    def __init__(
        self,
        mover: Mover,
        models: ModelStore,
        folders: FolderStore,
        environments: EnvironmentProvider,
        engine: ExecutionEngine,
        concurrency: int,
    ) -> None:
        self._mover = mover
        self._models = models
        self._folders = folders
        self._environments = environments
        self._engine = engine
        self._slots = asyncio.Semaphore(concurrency)
        self.active: dict[str, ActiveJob] = {}

    # -- commands -------------------------------------------------------------------------

    async def submit(self, command: SubmitJob) -> "asyncio.Task[None]":
        """Record the job (its first event) and start its task.

        The first event is published before this returns, so a stop that follows the submit in
        the same partition always finds the job. A redelivered command gets the running task.
        """
        record = self._mover.record(command.job_id)
        self._check_tenant(record, command.tenant, command.job_id)
        if record is not None and record.view.request() != command.request:
            raise ConflictingSubmit(f"job {command.job_id} already exists with a different request")
        existing = self.active.get(command.job_id)
        if existing is not None and existing.task is not None:
            return existing.task
        if record is None or record.sequence == 0:
            with structlog.contextvars.bound_contextvars(
                job_id=command.job_id, tenant=command.tenant
            ):
                await self._mover.create(command)
        active = ActiveJob(command)
        self.active[command.job_id] = active
        active.task = asyncio.create_task(self._run(active), name=f"job-{command.job_id}")
        active.task.add_done_callback(lambda _: self._forget(active))
        return active.task

    async def stop(self, command: StopJob) -> None:
        active = self.active.get(command.job_id)
        record = self._mover.record(command.job_id)
        self._check_tenant(record, command.tenant, command.job_id)
        bound = {"job_id": command.job_id, "tenant": command.tenant}
        if active is None or record is None:
            status = record.view.status if record else None
            log.info("stop ignored: job is not running here", status=status, **bound)
            return
        async with active.lock:
            status = self._status(command.job_id)
            if status in FINAL_STATUSES or status is JobStatus.STOPPING:
                log.info("stop ignored: job is already ending", status=status, **bound)
                return
            await self._mover.move(command.job_id, "stop", message=STOP_REQUESTED_MESSAGE)
            active.stop_requested.set()

    async def abandon(self, job_ids: set[str], timeout_seconds: float = 30.0) -> None:
        """Cancel jobs without publishing anything more: another worker takes them over."""
        tasks = [
            a.task for job_id, a in self.active.items() if job_id in job_ids and a.task is not None
        ]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_seconds)
            log.warning("jobs handed over to another worker", job_ids=sorted(job_ids))

    # -- the job --------------------------------------------------------------------------

    async def _run(self, active: ActiveJob) -> None:
        command = active.command
        with structlog.contextvars.bound_contextvars(job_id=command.job_id, tenant=command.tenant):
            status = self._status(command.job_id)
            if status in FINAL_STATUSES:
                log.info("job already final; command was a redelivery", status=status)
                return
            if status is not JobStatus.SUBMITTED:
                await self._end_orphan(active, status)
                return
            try:
                await self._interruptible(active, self._slots.acquire())
            except StopRequested:
                await self._advance(active, "stopped", message=STOPPED_MESSAGE, stopping=True)
                return
            try:
                await self._steps(active)
            finally:
                self._slots.release()

    async def _steps(self, active: ActiveJob) -> None:
        command = active.command
        request = command.request
        tenant = command.tenant
        try:
            note, configuration = await self._validate(command)
        except (NotFound, InvalidNote, OSError) as invalid:
            # OSError: a model or configuration that exists but cannot be read.
            await self._finish(active, Outcome("fail", f"Invalid inputs [{invalid}]"))
            return
        try:
            await self._advance(active, "start", message="Starting environment.")
        except StopRequested:
            await self._finish(active, Outcome("stopped", STOPPED_MESSAGE))
            return

        environment: Environment | None = None
        messages: list[str] = []
        outcome: Outcome
        try:
            environment = await self._interruptible(
                active, self._environments.start(command.job_id, configuration)
            )
            await self._interruptible(
                active,
                self._folders.download(
                    tenant, request.input_folder_id, environment.workspace / "input"
                ),
            )
            await self._advance(
                active, "run", message="Started notebook execution.", environment_id=environment.id
            )
            outcome = await self._execute(active, note, environment)
        except StopRequested:
            outcome = Outcome("stopped", STOPPED_MESSAGE)
        except (NotFound, OSError) as failure:
            phase = "start environment" if environment is None else "prepare inputs"
            outcome = Outcome("fail", f"Failed to {phase} [{failure}]")
        except Exception as failure:
            log.exception("job step failed unexpectedly")
            outcome = Outcome("fail", f"Internal error [{failure!r}]")

        if environment is not None:
            try:
                await self._folders.upload(
                    environment.workspace / "output", tenant, request.output_folder_id
                )
            except (NotFound, OSError) as failure:
                messages.append(f"Error while storing outputs [{failure}]")
                if outcome.trigger == "succeed":
                    outcome = Outcome("fail", "")
            try:
                await self._environments.stop(environment)
            except OSError as failure:
                log.error("environment did not stop", error=str(failure))
                messages.append("Error while stopping environment")
        await self._finish(
            active, Outcome(outcome.trigger, " ".join(filter(None, [outcome.message, *messages])))
        )

    async def _validate(self, command: SubmitJob) -> tuple[Note, EnvironmentConfiguration]:
        request = command.request
        note = await self._models.load_note(command.tenant, request.model_id)
        configuration = await self._environments.configuration(
            command.tenant, request.configuration_id
        )
        for role, folder_id in (
            ("input", request.input_folder_id),
            ("output", request.output_folder_id),
        ):
            if not await self._folders.exists(command.tenant, folder_id):
                raise NotFound(f"{role} folder {folder_id} not found")
        return note, configuration

    async def _execute(self, active: ActiveJob, note: Note, environment: Environment) -> Outcome:
        limit = active.command.request.maximum_execution_time_in_seconds
        workspace = environment.workspace
        variables = {
            "jobId": active.command.job_id,
            "inputFolder": str(workspace / "input"),
            "outputFolder": str(workspace / "output"),
        }
        try:
            run: NoteRun = await self._interruptible(
                active, self._engine.run(note, workspace, variables), limit_seconds=limit
            )
        except TimeLimitExceeded:
            message = f"Maximum execution time of {limit} seconds exceeded."
            await self._advance(active, "abort", message=message)
            return Outcome("fail", message)
        if run.succeeded:
            return Outcome("succeed", SUCCEEDED_MESSAGE)
        return Outcome("fail", run.failure_summary())

    async def _finish(self, active: ActiveJob, outcome: Outcome) -> None:
        """The final move. A stop that arrived meanwhile wins over success or failure."""
        async with active.lock:
            status = self._status(active.command.job_id)
            trigger, message = outcome.trigger, outcome.message
            if status is JobStatus.STOPPING:
                trigger = "stopped" if active.stop_requested.is_set() else "fail"
                if trigger == "stopped" and outcome.trigger != "stopped":
                    message = STOPPED_MESSAGE
            await self._mover.move(active.command.job_id, trigger, message=message or None)

    async def _end_orphan(self, active: ActiveJob, status: JobStatus) -> None:
        """A job another worker began and never ended: end it, once, with a clear message."""
        record = self._mover.record(active.command.job_id)
        user_stop = record is not None and record.view.message == STOP_REQUESTED_MESSAGE
        async with active.lock:
            if status is JobStatus.STOPPING and user_stop:
                await self._mover.move(active.command.job_id, "stopped", message=STOPPED_MESSAGE)
            else:
                await self._mover.move(active.command.job_id, "fail", message=WORKER_LOST_MESSAGE)

    # -- helpers --------------------------------------------------------------------------

    async def _advance(
        self,
        active: ActiveJob,
        trigger: str,
        *,
        message: str,
        environment_id: str | None = None,
        stopping: bool = False,
    ) -> None:
        """A non-final move of the job's own, unless a stop got in first."""
        async with active.lock:
            if active.stop_requested.is_set() and not stopping:
                raise StopRequested
            await self._mover.move(
                active.command.job_id, trigger, message=message, environment_id=environment_id
            )

    async def _interruptible(
        self, active: ActiveJob, work: Awaitable[T], limit_seconds: float | None = None
    ) -> T:
        """Await ``work``, cancelling it on a stop request or when ``limit_seconds`` run out."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(active.stop_requested.wait())
        try:
            done, _ = await asyncio.wait(
                {task, stop}, timeout=limit_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            if task in done:
                return task.result()
            raise StopRequested if stop in done else TimeLimitExceeded
        finally:
            for pending in (task, stop):
                if not pending.done():
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pending

    @staticmethod
    def _check_tenant(record: JobRecord | None, tenant: str, job_id: str) -> None:
        if record is not None and record.tenant != tenant:
            raise ForeignJob(f"job {job_id} belongs to another tenant than {tenant}")

    def _status(self, job_id: str) -> JobStatus:
        record = self._mover.record(job_id)
        assert record is not None, "a running job always has a record"
        return record.view.status

    def _forget(self, active: ActiveJob) -> None:
        if self.active.get(active.command.job_id) is active:
            del self.active[active.command.job_id]
        task = active.task
        if task is not None and not task.cancelled() and task.exception() is not None:
            log.error(
                "job task crashed",
                job_id=active.command.job_id,
                error=repr(task.exception()),
            )
