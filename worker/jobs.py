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

from adapters.metrics import Metrics
from adapters.ports import (
    EngineError,
    EngineSession,
    Environment,
    EnvironmentLocks,
    EnvironmentProvider,
    ExecutionEngine,
    FolderStore,
    ModelStore,
    NotFound,
)
from schemas.commands import StopJob, SubmitJob
from schemas.jobs import EnvironmentConfiguration, JobRecord
from schemas.notes import InvalidNote, Note, NoteRun, ParagraphResult
from schemas.status import JobStatus
from statemachine import FINAL_STATUSES
from worker import failpoints
from worker.moves import Fenced, Mover

log = structlog.get_logger(__name__)

T = TypeVar("T")

STOP_REQUESTED_MESSAGE = "Stop requested."
STOPPED_MESSAGE = "Job stopped on request."
SUCCEEDED_MESSAGE = "Notebook execution finished successfully."
VALIDATING_MESSAGE = "Validating inputs."
PREPARING_MESSAGE = "Preparing inputs."
RUNNING_MESSAGE = "Started notebook execution."
STORING_MESSAGE = "Storing outputs."
ENVIRONMENT_BUSY_MESSAGE = (
    "Failed to start environment [An environment has already been started for the configuration]"
)
WORKER_LOST_MESSAGE = "The worker running this job was lost before the job finished."
# Rounds of taking a job over while its old owner still writes (each round fences it harder).
TAKEOVER_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Lease:
    """How a running job shows it is alive: an event at least every ``renew_seconds`` (two at
    most while the job is quiet), and how long another worker waits without one before it
    takes the job over."""

    renew_seconds: float
    expiry_seconds: float


class CommandRefused(Exception):
    """A well-formed command that must change nothing; it is dead-lettered with this reason."""


class ForeignJob(CommandRefused):
    """A command names a job that belongs to another tenant."""


class ConflictingSubmit(CommandRefused):
    """A SubmitJob reuses a job id (an Idempotency-Key) with a different request."""


class _StepFailed(Exception):
    """A step failed; the message is the job's message for it."""


class StopRequested(Exception):
    """A user asked to stop the job while it was waiting or running."""


class TimeLimitExceeded(Exception):
    """The note ran longer than ``maximumExecutionTimeInSeconds``."""


def _variables(command: SubmitJob, environment: Environment) -> dict[str, str]:
    """What the note sees as job variables (environment variables and ``z.input``)."""
    return {
        "jobId": command.job_id,
        "inputFolder": str(environment.workspace / "input"),
        "outputFolder": str(environment.workspace / "output"),
        "datasetName": command.request.input_folder_id,
    }


@dataclass
class ActiveJob:
    command: SubmitJob
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    task: "asyncio.Task[None] | None" = None
    #: The owner epoch this worker writes the job's events with (see ``schemas.events``).
    epoch: int = 0
    #: Another worker may be running the job (a redelivery): wait for its lease to lapse.
    watch: bool = False
    #: Set once this worker works on the job itself (not only watching another's lease).
    executing: bool = False
    #: The job's events up to RUNNING may go out without a round trip each: only for a job
    #: this worker created itself (see ``worker.moves.Mover``), never after a takeover.
    pipelining: bool = False
    #: The environment claim sent with the job's first event, not yet awaited.
    claimed: "asyncio.Future[None] | None" = None
    heartbeat: "asyncio.Task[None] | None" = None


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
        locks: EnvironmentLocks,
        concurrency: int,
        metrics: Metrics | None = None,
        lease: "Lease | None" = None,
    ) -> None:
        self._mover = mover
        self._lease = lease
        self._models = models
        self._folders = folders
        self._environments = environments
        self._engine = engine
        self._locks = locks
        self._slots = asyncio.Semaphore(concurrency)
        self.active: dict[str, ActiveJob] = {}
        #: The epoch of jobs this worker takes on now: the consumer group generation of its
        #: current assignment, which is higher than any earlier owner's (set by the loop).
        self.owner_epoch = 0
        self.metrics = metrics if metrics is not None else mover.metrics
        self.metrics.count_in_flight(lambda: len(self.active))

    # -- commands -------------------------------------------------------------------------

    async def submit(self, command: SubmitJob) -> "asyncio.Task[None]":
        """Record the job (its first event) and start its task.

        The first event is handed to the broker before this returns (its round trip overlaps
        the job's next steps), and the job is registered here, so a stop that follows the
        submit in the same partition always finds it. A redelivered command gets the running
        task.
        """
        record = self._mover.latest_record(command.job_id)
        self._check_tenant(record, command.tenant, command.job_id)
        if record is not None and record.view.request() != command.request:
            raise ConflictingSubmit(f"job {command.job_id} already exists with a different request")
        existing = self.active.get(command.job_id)
        if existing is not None and existing.task is not None:
            return existing.task
        bound = {"job_id": command.job_id, "tenant": command.tenant}
        claimed: asyncio.Future[None] | None = None
        if record is None or record.sequence == 0:
            epoch = self.owner_epoch
            # The claim's round trip overlaps the first event's, and claims still queue in the
            # order the commands came. A job that turns out to be another worker's keeps it
            # harmlessly: claims are per job, and a final job's claim no longer counts.
            claimed = asyncio.ensure_future(
                self._locks.claim(command.tenant, command.request.configuration_id, command.job_id)
            )
            claimed.add_done_callback(lambda done: done.cancelled() or done.exception())
            # Pipelined: whether another worker created the job first (it got the command
            # before a rebalance) shows when the job's events settle (see ``_run``).
            with structlog.contextvars.bound_contextvars(**bound):
                await self._mover.create(command, epoch=epoch, pipelined=True)
            watch = False
        else:
            # A redelivery: whoever handled the command before may still run it (its
            # partition moved in a rebalance) or be paused, so the job is left to it while its
            # lease lasts; taken over after, at a newer epoch whose first write fences it.
            epoch, watch = max(self.owner_epoch, record.epoch + 1), True
        active = ActiveJob(command, epoch=epoch, watch=watch, pipelining=not watch, claimed=claimed)
        self.active[command.job_id] = active
        active.task = asyncio.create_task(self._run(active), name=f"job-{command.job_id}")
        active.task.add_done_callback(lambda _: self._forget(active))
        return active.task

    async def stop(self, command: StopJob) -> None:
        active = self.active.get(command.job_id)
        record = self._mover.latest_record(command.job_id)
        self._check_tenant(record, command.tenant, command.job_id)
        bound = {"job_id": command.job_id, "tenant": command.tenant}
        if active is None or record is None:
            status = record.view.status if record else None
            log.info("stop ignored: job is not running here", status=status, **bound)
            return
        async with active.lock:
            # More than one round only for a watched job whose worker is still writing: the
            # stop is the takeover, and it may lose the race for a sequence to that worker.
            for _ in range(TAKEOVER_ATTEMPTS):
                status = self._status(command.job_id)
                if status in FINAL_STATUSES or status is JobStatus.STOPPING:
                    log.info("stop ignored: job is already ending", status=status, **bound)
                    return
                try:
                    await self._mover.move(
                        command.job_id, "stop", message=STOP_REQUESTED_MESSAGE, epoch=active.epoch
                    )
                    break
                except Fenced:
                    now = self._mover.record(command.job_id)
                    if now is None or now.epoch > active.epoch:
                        log.warning("stop ignored: another worker owns the job now", **bound)
                        return
            active.stop_requested.set()
        failpoints.reach("after_stopping_published")

    def executing(self) -> list["asyncio.Task[None]"]:
        """The tasks of jobs this worker runs itself (not the ones it only watches)."""
        return [a.task for a in self.active.values() if a.executing and a.task is not None]

    async def release(self, job_ids: set[str]) -> None:
        """The partitions of ``job_ids`` were revoked: stop watching other workers' jobs among
        them (the partition's next owner watches now). Jobs this worker runs keep running and
        renewing their lease, and end here; the next owner sees them end."""
        watched = {j for j in job_ids if j in self.active and not self.active[j].executing}
        await self.abandon(watched)

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
            if active.watch and self._lease is not None and not await self._lease_lapsed(active):
                return
            active.executing = True
            if self._lease is not None:
                active.heartbeat = asyncio.create_task(
                    self._renew(active, self._lease), name=f"lease-{command.job_id}"
                )
            for _ in range(TAKEOVER_ATTEMPTS):
                try:
                    await self._run_once(active)
                    return
                except Fenced:
                    created_here, active.pipelining = active.pipelining, False
                    record = self._mover.record(command.job_id)
                    assert record is not None, "a fenced job has a record"
                    if record.epoch > active.epoch or record.view.status in FINAL_STATUSES:
                        log.warning(
                            "job taken over by another worker; stopped here without a word",
                            status=record.view.status,
                            epoch=active.epoch,
                            owner_epoch=record.epoch,
                        )
                        return
                    if created_here and not await self._watch_instead(active):
                        return
                    # Our takeover write lost the race to the old owner, which is still
                    # writing: try again above its latest event.
                    active.epoch = max(active.epoch, record.epoch + 1)
            raise Fenced(f"{command.job_id}: no takeover in {TAKEOVER_ATTEMPTS} attempts")

    async def _watch_instead(self, active: ActiveJob) -> bool:
        """This worker's first events lost to an older owner's that got the same command before
        a rebalance and is running the job: it is that worker's while its lease lasts. True
        once it lapsed (take the job over), False once the job is final."""
        log.warning("job created by another worker; watching its lease", epoch=active.epoch)
        if self._lease is None:
            return True
        active.executing = False
        if active.heartbeat is not None:
            # Renewing would write at this worker's newer epoch and fence the live owner.
            active.heartbeat.cancel()
            active.heartbeat = None
        if not await self._lease_lapsed(active):
            return False
        active.executing = True
        active.heartbeat = asyncio.create_task(
            self._renew(active, self._lease), name=f"lease-{active.command.job_id}"
        )
        return True

    async def _lease_lapsed(self, active: ActiveJob) -> bool:
        """Watch a job another worker may be running: False once it is final, True once it has
        been silent for a whole lease (or a user asked to stop it): this worker takes it over.
        """
        job_id = active.command.job_id
        assert self._lease is not None
        while True:
            record = self._mover.record(job_id)
            assert record is not None, "a watched job has a record"
            if record.view.status in FINAL_STATUSES:
                log.info("watched job ended on its worker", status=record.view.status)
                return False
            try:
                await self._interruptible(
                    active,
                    self._mover.changed(job_id, record.sequence),
                    limit_seconds=self._lease.expiry_seconds,
                )
            except TimeLimitExceeded:
                log.warning(
                    "job lease lapsed; taking the job over",
                    status=record.view.status,
                    lease_seconds=self._lease.expiry_seconds,
                )
                return True
            except StopRequested:
                return True

    async def _renew(self, active: ActiveJob, lease: "Lease") -> None:
        """Keep the job's lease: an event at least every other beat while the job is quiet."""
        job_id = active.command.job_id
        seen = -1
        while True:
            await asyncio.sleep(lease.renew_seconds)
            # Under the job's lock, so a renewal never follows the job's final move.
            async with active.lock:
                # With its pipelined events: a job still handing over its first events is
                # busy, not gone.
                record = self._mover.latest_record(job_id)
                if record is None or record.view.status in FINAL_STATUSES:
                    return
                if record.sequence != seen:
                    seen = record.sequence
                    continue
                try:
                    await self._mover.progress(job_id, None, epoch=active.epoch)
                except Fenced:
                    # Another worker took the job over while this one was paused or cut off.
                    if active.task is not None:
                        active.task.cancel()
                    return
                seen = -1

    async def _run_once(self, active: ActiveJob) -> None:
        command = active.command
        status = self._status(command.job_id)
        if status in FINAL_STATUSES:
            log.info("job already final; command was a redelivery", status=status)
            return
        if status is not JobStatus.SUBMITTED:
            await self._end_orphan(active, status)
            return
        # Claimed before anything here waits, so claims queue in the order the commands came
        # (the pipelined step message only hands its event over); cancellation (a hand-over)
        # skips the release on purpose: the next owner decides.
        configuration_id = command.request.configuration_id
        try:
            await self._progress(active, VALIDATING_MESSAGE, pipelined=True)
            claimed, active.claimed = active.claimed, None
            if claimed is None:
                claimed = asyncio.ensure_future(
                    self._locks.claim(command.tenant, configuration_id, command.job_id)
                )
            # Validation reads files while the claim makes its round trip.
            validating = asyncio.ensure_future(self._validate(command))
            try:
                await claimed
            except BaseException:
                validating.cancel()
                raise
            try:
                note, configuration = await validating
            except (NotFound, InvalidNote, OSError) as invalid:
                # OSError: a model or configuration that exists but cannot be read.
                await self._finish(active, Outcome("fail", f"Invalid inputs [{invalid}]"))
            else:
                if await self._environment_is_ours(active, configuration):
                    with self.metrics.holding_environment():
                        await self._interruptible(active, self._slots.acquire())
                        try:
                            await self._steps(active, note, configuration)
                        finally:
                            self._slots.release()
        except StopRequested:
            # A stop while waiting (for the environment or a slot) or between steps.
            await self._finish(active, Outcome("stopped", STOPPED_MESSAGE))
        await self._locks.release(command.tenant, configuration_id, command.job_id)

    async def _environment_is_ours(
        self, active: ActiveJob, configuration: EnvironmentConfiguration
    ) -> bool:
        """Wait for the configuration's environment (``whenBusy: queue``) or fail at once.

        The holder is the first claim whose job is not final, so a crashed holder's claim stops
        counting as soon as its job is ended, even if its release never came.
        """
        tenant, job_id = active.command.tenant, active.command.job_id

        def holder() -> str:
            for claimant in self._locks.queue(tenant, configuration.id):
                record = self._mover.record(claimant)
                if claimant == job_id or record is None or record.view.status not in FINAL_STATUSES:
                    return claimant
            return job_id

        current = holder()
        if current == job_id:
            return True
        if (configuration.model_extra or {}).get("whenBusy", "fail") != "queue":
            await self._advance(active, "start", message="Starting environment.")
            await self._finish(active, Outcome("fail", ENVIRONMENT_BUSY_MESSAGE))
            return False
        await self._progress(
            active,
            f"Waiting for the environment of configuration {configuration.id}, "
            f"in use by job {current}.",
        )
        while holder() != job_id:
            # Claims changing wakes us; the periodic re-check covers a holder that ended
            # without a release reaching the topic.
            with contextlib.suppress(TimeLimitExceeded):
                await self._interruptible(
                    active,
                    self._locks.wait_for(lambda: holder() == job_id),
                    limit_seconds=1.0,
                )
        return True

    async def _steps(
        self, active: ActiveJob, note: Note, configuration: EnvironmentConfiguration
    ) -> None:
        command = active.command
        request = command.request
        tenant = command.tenant
        try:
            await self._advance(
                active, "start", message="Starting environment.", pipelined=active.pipelining
            )
        except StopRequested:
            await self._finish(active, Outcome("stopped", STOPPED_MESSAGE))
            return
        if failpoints.armed("after_starting_published"):
            # The point is STARTING on the topic; pipelined, it may not be there yet.
            async with active.lock:
                await self._mover.settle(command.job_id)
        failpoints.reach("after_starting_published")

        environment: Environment | None = None
        session: EngineSession | None = None
        messages: list[str] = []
        outcome: Outcome
        try:
            try:
                environment = await self._interruptible(
                    active, self._environments.start(command.job_id, configuration)
                )
                session = await self._interruptible(
                    active,
                    self._engine.start(
                        environment.workspace, _variables(command, environment), configuration
                    ),
                )
            except (NotFound, OSError, EngineError) as failure:
                raise _StepFailed(f"Failed to start environment [{failure}]") from failure
            await self._progress(active, PREPARING_MESSAGE, pipelined=True)
            try:
                await self._interruptible(
                    active,
                    self._folders.download(
                        tenant, request.input_folder_id, environment.workspace / "input"
                    ),
                )
            except (NotFound, OSError) as failure:
                raise _StepFailed(f"Failed to prepare inputs [{failure}]") from failure
            await self._advance(
                active,
                "run",
                message=RUNNING_MESSAGE,
                environment_id=environment.id,
                pipelined=active.pipelining,
            )
            # The note runs only once every event up to RUNNING took effect: a fenced worker
            # must not run it.
            async with active.lock:
                await self._mover.settle(command.job_id)
            failpoints.reach("after_running_published")
            outcome = await self._execute(active, note, session)
        except StopRequested:
            outcome = Outcome("stopped", STOPPED_MESSAGE)
        except _StepFailed as failure:
            outcome = Outcome("fail", str(failure))
        except (Fenced, asyncio.CancelledError):
            # Fenced, or handed over (cancelled): the job is another worker's to end.
            await self._leave(session, environment)
            raise
        except Exception as failure:
            log.exception("job step failed unexpectedly")
            outcome = Outcome("fail", f"Internal error [{failure!r}]")

        if session is not None:
            try:
                await session.close()
            except (OSError, EngineError) as failure:
                log.error("engine session did not close", error=str(failure))
        if environment is not None:
            try:
                await self._progress(active, STORING_MESSAGE, keep_stop=True)
            except Fenced:
                await self._leave(None, environment)
                raise
            failpoints.reach("storing_outputs")
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

    async def _leave(self, session: EngineSession | None, environment: Environment | None) -> None:
        """Stop a job's engine and environment without publishing or storing anything: another
        worker owns the job now, and what this one would store could overwrite its outputs."""
        if session is not None:
            with contextlib.suppress(OSError, EngineError):
                await session.close()
        if environment is not None:
            with contextlib.suppress(OSError):
                await self._environments.stop(environment)

    async def _validate(self, command: SubmitJob) -> tuple[Note, EnvironmentConfiguration]:
        """The job's note and configuration, once its folders are known to exist; the lookups
        run together, and the first failing one in this order is the one reported."""
        request = command.request
        tenant = command.tenant
        note, configuration, has_input, has_output = await asyncio.gather(
            self._models.load_note(tenant, request.model_id),
            self._environments.configuration(tenant, request.configuration_id),
            self._folders.exists(tenant, request.input_folder_id),
            self._folders.exists(tenant, request.output_folder_id),
            return_exceptions=True,
        )
        for outcome in (note, configuration, has_input, has_output):
            if isinstance(outcome, BaseException):
                raise outcome
        assert isinstance(note, Note)
        assert isinstance(configuration, EnvironmentConfiguration)
        for role, folder_id, exists in (
            ("input", request.input_folder_id, has_input),
            ("output", request.output_folder_id, has_output),
        ):
            if not exists:
                raise NotFound(f"{role} folder {folder_id} not found")
        return note, configuration

    async def _execute(self, active: ActiveJob, note: Note, session: EngineSession) -> Outcome:
        """Run the note within the time limit, which counts engine time only."""
        limit = active.command.request.maximum_execution_time_in_seconds

        async def paragraph_done(result: ParagraphResult) -> None:
            await self._progress(active, None, paragraph=result, keep_stop=True)

        try:
            with self.metrics.engine_timer():
                run: NoteRun = await self._interruptible(
                    active, session.run(note, paragraph_done), limit_seconds=limit
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
            await self._mover.move(
                active.command.job_id, trigger, message=message or None, epoch=active.epoch
            )

    async def _end_orphan(self, active: ActiveJob, status: JobStatus) -> None:
        """A job another worker began and never ended: end it, once, with a clear message."""
        record = self._mover.record(active.command.job_id)
        assert record is not None, "an orphan has a record"
        user_stop = record.view.message == STOP_REQUESTED_MESSAGE
        async with active.lock:
            trigger, message = "fail", WORKER_LOST_MESSAGE
            if status is JobStatus.STOPPING and user_stop:
                trigger, message = "stopped", STOPPED_MESSAGE
            log.warning("ending a job whose worker was lost", status=status, epoch=active.epoch)
            await self._mover.move(
                active.command.job_id, trigger, message=message, epoch=active.epoch
            )
        # The lost worker cannot release its claim any more; its job being final frees it too.
        await self._locks.release(
            active.command.tenant, record.view.configuration_id, active.command.job_id
        )

    # -- helpers --------------------------------------------------------------------------

    async def _progress(
        self,
        active: ActiveJob,
        message: str | None,
        *,
        paragraph: ParagraphResult | None = None,
        keep_stop: bool = False,
        pipelined: bool = False,
    ) -> None:
        """Publish progress within the current status (never a move); ``pipelined``: the
        step's work overlaps the acknowledgement, which the job's next confirmed publish (or
        settling) waits for."""
        async with active.lock:
            if active.stop_requested.is_set() and not keep_stop:
                raise StopRequested
            await self._mover.progress(
                active.command.job_id, message, paragraph, epoch=active.epoch, pipelined=pipelined
            )

    async def _advance(
        self,
        active: ActiveJob,
        trigger: str,
        *,
        message: str,
        environment_id: str | None = None,
        stopping: bool = False,
        pipelined: bool = False,
    ) -> None:
        """A non-final move of the job's own, unless a stop got in first."""
        async with active.lock:
            if active.stop_requested.is_set() and not stopping:
                raise StopRequested
            await self._mover.move(
                active.command.job_id,
                trigger,
                message=message,
                environment_id=environment_id,
                epoch=active.epoch,
                pipelined=pipelined,
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
        record = self._mover.latest_record(job_id)
        assert record is not None, "a running job always has a record"
        return record.view.status

    def _forget(self, active: ActiveJob) -> None:
        if active.heartbeat is not None:
            active.heartbeat.cancel()
        if self.active.get(active.command.job_id) is active:
            del self.active[active.command.job_id]
            self._mover.discard(active.command.job_id)
        task = active.task
        if task is not None and not task.cancelled() and task.exception() is not None:
            log.error(
                "job task crashed",
                job_id=active.command.job_id,
                error=repr(task.exception()),
            )
