"""The ports: what the worker and the gateway need from the outside world.

Each docstring states the guarantee an implementation must give; the in-memory versions in
:mod:`adapters.memory` and the real ones are checked against the same expectations.
"""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from schemas.commands import Command
from schemas.events import Event
from schemas.jobs import EnvironmentConfiguration, JobRecord, JobView
from schemas.notes import Note, NoteRun, ParagraphResult
from schemas.schedules import Schedule, ScheduleMessage, ScheduleTicked


class BrokerUnavailable(Exception):
    """The broker did not acknowledge in time; nothing can be promised about the message."""


class NotFound(Exception):
    """A named resource (model, folder, configuration) does not exist for the tenant."""


class CommandPublisher(Protocol):
    """Sends commands keyed by job id.

    ``publish`` returns only once the broker acknowledged the command (acks=all), so every
    command answered to a client is durable; raises :class:`BrokerUnavailable` after the
    configured timeout instead of hanging.
    """

    async def publish(self, command: Command) -> None: ...


class EventPublisher(Protocol):
    """Appends events keyed by job id; returns only after the broker acknowledged the event.

    Events of one job are appended in the order ``publish`` is awaited (one partition per job).
    """

    async def publish(self, event: Event) -> None: ...

    async def enqueue(self, event: Event) -> Awaitable[object]:
        """Hand ``event`` over and return at once with its acknowledgement to await.

        Events enqueued one after another are appended in that order, so a job's next event
        need not wait for the previous one's round trip. The acknowledgement raises
        :class:`BrokerUnavailable` if the broker never confirms; the event may then be missing.
        """
        ...


class DeadLetterPublisher(Protocol):
    """Parks a message that cannot be handled, with the reason, and returns after the ack."""

    async def dead_letter(
        self, key: bytes | None, value: bytes, reason: str, origin: str
    ) -> None: ...


class JobViewReader(Protocol):
    """Read side for the gateway. Never returns a job of another tenant."""

    def get(self, tenant: str, job_id: str) -> JobView | None: ...

    def list(self, tenant: str) -> Sequence[JobView]: ...

    def paragraphs(self, tenant: str, job_id: str) -> tuple[ParagraphResult, ...] | None:
        """The job's finished paragraphs, or None when there is no such job for the tenant."""
        ...


class ProjectionStore(JobViewReader, Protocol):
    """Current record per job, as folded from the events topic.

    ``put`` replaces the record; callers decide with the fold whether a record is newer.
    ``at`` is when the record's last event happened: a final job is kept for the retention
    period after it (for ever without ``at``), then it is gone for every reader.
    """

    def record(self, job_id: str) -> JobRecord | None: ...

    def put(self, record: JobRecord, at: datetime | None = None) -> None: ...

    def purge(self) -> int:
        """Free the final jobs past retention (readers stopped seeing them already); returns
        how many were dropped."""
        ...


class ModelStore(Protocol):
    """Models of a tenant.

    ``load_note`` raises :class:`NotFound` or ``schemas.notes.InvalidNote``.
    """

    async def load_note(self, tenant: str, model_id: str) -> Note: ...


class FolderStore(Protocol):
    """Data folders of a tenant, used as job input and output.

    Copies are complete when the coroutine returns; a failed copy raises ``OSError``.
    """

    async def exists(self, tenant: str, folder_id: str) -> bool: ...

    async def download(self, tenant: str, folder_id: str, destination: Path) -> None: ...

    async def upload(self, source: Path, tenant: str, folder_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Environment:
    """A started environment: where the note runs."""

    id: str
    workspace: Path


class EnvironmentProvider(Protocol):
    """Environment configurations and the environments started from them.

    ``stop`` is idempotent and must be safe to call after a failed or cancelled run.
    """

    async def configuration(
        self, tenant: str, configuration_id: str
    ) -> EnvironmentConfiguration: ...

    async def start(self, job_id: str, configuration: EnvironmentConfiguration) -> Environment: ...

    async def stop(self, environment: Environment) -> None: ...


ParagraphListener = Callable[[ParagraphResult], Awaitable[None]]


class EngineSession(Protocol):
    """An engine started for one job: state (variables, imports) persists across paragraphs.

    ``run`` executes every enabled paragraph of the note in order and calls ``on_paragraph``
    after each one finishes (FINISHED, ERROR, ABORT or SKIPPED). A failing paragraph does not
    stop the run unless the configuration says ``"onParagraphError": "stop"`` (then the rest are
    SKIPPED). Cancelling ``run`` interrupts the running paragraph and returns control within
    5 s, leaving no process behind. ``close`` is idempotent and releases everything.
    """

    async def run(self, note: Note, on_paragraph: ParagraphListener | None = None) -> NoteRun: ...

    async def close(self) -> None: ...


class EnvironmentLocks(Protocol):
    """One environment per configuration at a time, across every worker process.

    ``claim`` queues the job for the configuration and returns once the claim is visible in
    ``queue`` (so it is ordered after every earlier claim of any worker); a job's repeated claim
    keeps its place. ``queue`` lists unreleased claims in order; ``wait_for`` returns once the
    predicate holds, re-checked whenever claims change. ``release`` is idempotent.
    """

    async def claim(self, tenant: str, configuration_id: str, job_id: str) -> None: ...

    async def release(self, tenant: str, configuration_id: str, job_id: str) -> None: ...

    def queue(self, tenant: str, configuration_id: str) -> tuple[str, ...]: ...

    async def wait_for(self, predicate: Callable[[], bool]) -> None: ...


class ExecutionEngine(Protocol):
    """Starts an engine session for a job in its workspace (the note's working directory).

    ``variables`` (``jobId``, ``inputFolder``, ``outputFolder``, ``datasetName``) are visible to
    the note as environment variables and through ``z.input``. ``start`` raises ``EngineError``
    with a message fit for the job's ``message`` when the engine cannot start.
    """

    async def start(
        self,
        workspace: Path,
        variables: Mapping[str, str],
        configuration: EnvironmentConfiguration,
    ) -> EngineSession: ...


class EngineError(Exception):
    """The engine could not start or lost its runtime; the message says why."""


class ScheduleLog(Protocol):
    """Appends schedule records to the compacted schedules topic, keyed by
    :func:`schemas.schedules.message_key`; returns only after the broker acknowledged.

    ``erase`` writes tombstones for a deleted schedule's keys, so compaction drops it.
    Both raise :class:`BrokerUnavailable` after the configured timeout.
    """

    async def publish(self, message: ScheduleMessage) -> None: ...

    async def erase(self, tenant: str, schedule_id: str) -> None: ...


class ScheduleReader(Protocol):
    """The current schedules, as folded from the schedules topic. Never crosses tenants."""

    def get(self, tenant: str, schedule_id: str) -> Schedule | None: ...

    def revision(self, tenant: str, schedule_id: str) -> int:
        """The revision of the schedule's latest record (0: never defined), deleted or not."""
        ...

    def list(self, tenant: str) -> Sequence[Schedule]: ...

    def all(self) -> Sequence[tuple[str, Schedule]]:
        """Every live schedule of every tenant, with its tenant."""
        ...

    def last_tick(self, tenant: str, schedule_id: str) -> ScheduleTicked | None: ...
