"""The ports: what the worker and the gateway need from the outside world.

Each docstring states the guarantee an implementation must give; the in-memory versions in
:mod:`adapters.memory` and the real ones are checked against the same expectations.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from schemas.commands import Command
from schemas.events import JobStatusChanged
from schemas.jobs import EnvironmentConfiguration, JobRecord, JobView
from schemas.notes import Note, NoteRun


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

    async def publish(self, event: JobStatusChanged) -> None: ...


class DeadLetterPublisher(Protocol):
    """Parks a message that cannot be handled, with the reason, and returns after the ack."""

    async def dead_letter(
        self, key: bytes | None, value: bytes, reason: str, origin: str
    ) -> None: ...


class JobViewReader(Protocol):
    """Read side for the gateway. Never returns a job of another tenant."""

    def get(self, tenant: str, job_id: str) -> JobView | None: ...

    def list(self, tenant: str) -> Sequence[JobView]: ...


class ProjectionStore(JobViewReader, Protocol):
    """Current record per job, as folded from the events topic.

    ``put`` replaces the record; callers decide with the fold whether a record is newer.
    """

    def record(self, job_id: str) -> JobRecord | None: ...

    def put(self, record: JobRecord) -> None: ...


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


class ExecutionEngine(Protocol):
    """Runs every enabled paragraph of a note, in order, in the workspace.

    Cancelling ``run`` stops all execution (no process is left behind) before the cancellation
    propagates.
    """

    async def run(self, note: Note, workspace: Path, variables: Mapping[str, str]) -> NoteRun: ...
