"""Small builders of valid messages for tests."""

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from adapters.environment_locks import MemoryEnvironmentLocks
from adapters.local_files import (
    LocalEnvironmentProvider,
    LocalFolderStore,
    LocalHome,
    LocalModelStore,
)
from adapters.ports import EnvironmentLocks, ExecutionEngine
from schemas.commands import SubmitJob
from schemas.events import JobProgressed, JobStatusChanged, event_id_for
from schemas.jobs import JobRecord, JobRequest, JobView
from schemas.notes import ParagraphResult, ParagraphStatus
from schemas.schedules import Schedule, ScheduleDefined, ScheduleRequest, ScheduleStatus
from schemas.status import JobStatus
from statemachine import TRANSITIONS
from worker.jobs import JobRunner
from worker.moves import Mover

NOTES = Path(__file__).resolve().parent.parent / "fixtures" / "notes"


def job_request(**overrides: object) -> JobRequest:
    fields: dict[str, object] = {
        "modelId": "model",
        "configurationId": "configuration",
        "inputFolderId": "input",
        "outputFolderId": "output",
        "maximumExecutionTimeInSeconds": "7200",
    }
    fields.update(overrides)
    return JobRequest.model_validate(fields)


def submit_command(tenant: str = "local", **overrides: object) -> SubmitJob:
    now = datetime.now(UTC)
    return SubmitJob(
        command_id=uuid.uuid4().hex,
        job_id=uuid.uuid4().hex,
        tenant=tenant,
        request=job_request(**overrides),
        creation_date=now,
        issued_at=now,
    )


# What the tests' LocalHome fixtures hold: model-1, config-1 and the folders in-1 and out-1.
HOME_IDS = {
    "model_id": "model-1",
    "configuration_id": "config-1",
    "input_folder_id": "in-1",
    "output_folder_id": "out-1",
}


def job_home(root: Path, tenant: str = "tenanta", configurations: int = 1) -> LocalHome:
    """A home in ``root`` holding :data:`HOME_IDS` for ``tenant``: success.zpln as model-1,
    empty folders in-1 and out-1, and config-1 (to config-N) on local python."""
    home = LocalHome(root)
    home.add_model(tenant, NOTES / "success.zpln", "model-1")
    home.create_folder(tenant, "in-1")
    home.create_folder(tenant, "out-1")
    for number in range(1, configurations + 1):
        home.add_configuration(tenant, "local python", f"config-{number}")
    return home


def local_runner(
    mover: Mover,
    home: LocalHome,
    engine: ExecutionEngine,
    locks: EnvironmentLocks | None = None,
    *,
    concurrency: int = 1,
    folders: LocalFolderStore | None = None,
    **options: Any,
) -> JobRunner:
    """A JobRunner that takes models, folders and environments from ``home``."""
    return JobRunner(
        mover,
        LocalModelStore(home),
        LocalFolderStore(home) if folders is None else folders,
        LocalEnvironmentProvider(home),
        engine,
        MemoryEnvironmentLocks() if locks is None else locks,
        concurrency,
        **options,
    )


def job_body(**overrides: Any) -> dict[str, Any]:
    """A valid ``POST /jobs`` body over :data:`HOME_IDS`, with fields overridden or (when None)
    removed."""
    body: dict[str, Any] = {
        "modelId": "model-1",
        "configurationId": "config-1",
        "inputFolderId": "in-1",
        "outputFolderId": "out-1",
        "maximumExecutionTimeInSeconds": "7200",
    }
    return with_overrides(body, overrides)


def with_overrides(body: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``body`` with fields overridden, or removed where the override is None."""
    for key, value in overrides.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    return body


def submit_job(
    job_id: str = "job-1",
    *,
    tenant: str = "tenanta",
    at: datetime | None = None,
    seconds: int = 7200,
    **request: str,
) -> SubmitJob:
    """``job_id``'s SubmitJob over :data:`HOME_IDS`; ``request`` replaces some of those ids."""
    at = at or datetime.now(UTC)
    return SubmitJob(
        command_id=f"cmd-{job_id}",
        job_id=job_id,
        tenant=tenant,
        request=JobRequest(**{**HOME_IDS, **request}, maximum_execution_time_in_seconds=seconds),
        creation_date=at,
        issued_at=at,
    )


def job_events(
    job_id: str,
    triggers: list[str],
    start: datetime,
    *,
    tenant: str = "local",
    step: timedelta = timedelta(minutes=1),
    request: JobRequest | None = None,
) -> list[JobStatusChanged]:
    """A job's events taking the legal ``triggers`` from SUBMITTED: the n-th at
    ``start + (n - 1) * step``, each move's message naming its trigger."""
    view = JobView.submitted(job_id, tenant, request or job_request(), start)
    events = [_status_changed(view, tenant, None, "submit", 1, start)]
    for trigger in triggers:
        current = events[-1].status
        [move] = [m for m in TRANSITIONS if m.source is current and m.trigger == trigger]
        view = view.model_copy(update={"status": move.dest, "message": f"after {trigger}"})
        at = start + step * len(events)
        events.append(_status_changed(view, tenant, current, trigger, len(events) + 1, at))
    return events


def _status_changed(
    view: JobView,
    tenant: str,
    previous: JobStatus | None,
    trigger: str,
    sequence: int,
    at: datetime,
) -> JobStatusChanged:
    return JobStatusChanged(
        event_id=event_id_for(view.id, sequence),
        job_id=view.id,
        tenant=tenant,
        sequence=sequence,
        previous_status=previous,
        status=view.status,
        trigger=trigger,
        job=view,
        occurred_at=at,
    )


def schedule_request(**overrides: object) -> ScheduleRequest:
    fields: dict[str, object] = {
        "name": "nightly",
        "modelId": "m",
        "configurationId": "c",
        "inputFolderId": "i",
        "outputFolderId": "o",
        "maximumExecutionTime": 60,
        "scheduleString": "0 2 * * *",
    }
    fields.update(overrides)
    return ScheduleRequest.model_validate(fields)


def schedule_defined(
    schedule_id: str,
    revision: int,
    *,
    at: datetime,
    tenant: str = "local",
    status: ScheduleStatus = ScheduleStatus.STOPPED,
    started_at: datetime | None = None,
    **changes: object,
) -> ScheduleDefined:
    """Revision ``revision`` of a schedule created at ``at``; ``changes`` go to its request.

    A started schedule was last modified, and this revision recorded, when it started.
    """
    changed_at = started_at or at
    schedule = Schedule(
        id=schedule_id,
        request=schedule_request(**changes),
        status=status,
        creation_date=at,
        created_by="me",
        last_modified_date=changed_at,
        started_at=started_at,
    )
    return ScheduleDefined(
        event_id=f"{schedule_id}-{revision}",
        tenant=tenant,
        schedule_id=schedule_id,
        revision=revision,
        schedule=schedule,
        occurred_at=changed_at,
    )


def progressed(
    record: JobRecord, message: str, paragraph: ParagraphResult | None, at: datetime
) -> JobProgressed:
    """The step after ``record``: its job with ``message``, status unchanged."""
    sequence = record.sequence + 1
    view = record.view.model_copy(update={"message": message})
    return JobProgressed(
        event_id=event_id_for(view.id, sequence),
        job_id=view.id,
        tenant=record.tenant,
        sequence=sequence,
        status=view.status,
        message=message,
        paragraph=paragraph,
        job=view,
        occurred_at=at,
    )


def finished_paragraph(
    index: int = 0, output: str = "", interpreter: str = "python", at: datetime | None = None
) -> ParagraphResult:
    """Paragraph ``index`` finished with ``output``, started and finished at ``at``."""
    return ParagraphResult(
        index=index,
        id=f"p{index}",
        label=f"paragraph {index + 1}",
        interpreter=interpreter,
        status=ParagraphStatus.FINISHED,
        output=output,
        error=None,
        started_at=at,
        finished_at=at,
    )
