"""Schedules: the REST shapes and the records on ``jobmanager.schedules``.

The topic is compacted. A schedule lives under the key ``<tenant>/<scheduleId>`` (its latest
:class:`ScheduleDefined` is its whole state; deletion is a :class:`ScheduleDeleted` followed by
a tombstone), and the scheduler's bookkeeping under ``<tenant>/<scheduleId>/ticks`` (the latest
:class:`ScheduleTicked`), so a restarted scheduler knows which due time it handled last.
"""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, TypeAdapter

from schemas.jobs import (
    CamelModel,
    ExecutionSeconds,
    Page,
    ResourceId,
    Timestamp,
    format_timestamp,
)

_SCHEDULED_JOB_NAMESPACE = uuid.UUID("3b0e6f2c-8d1a-4f57-b7c4-6a2e9d5f1c08")
_EVENT_NAMESPACE = uuid.UUID("b54a1d0e-2f6c-4c3b-9e8d-7a1f0c2b4d69")


class ScheduleStatus(StrEnum):
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"


class OverlapPolicy(StrEnum):
    """What a due time does while the schedule's previous job is not final yet."""

    SKIP = "skip"  # nothing; the due time is passed over
    QUEUE = "queue"  # one job, once the previous one is final
    ALLOW = "allow"  # a job anyway


ScheduleName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
# statemachine.cron's limit (MAX_EXPRESSION_LENGTH), repeated here as schemas import nothing above
# them; the parser says what is wrong with any other bad line.
ScheduleString = Annotated[str, StringConstraints(min_length=1, max_length=200)]
TimezoneName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ScheduleRequest(CamelModel):
    """Body of ``POST /schedules``; unknown fields are ignored as for jobs."""

    name: ScheduleName
    model_id: ResourceId
    configuration_id: ResourceId
    input_folder_id: ResourceId
    output_folder_id: ResourceId
    maximum_execution_time: ExecutionSeconds
    schedule_string: ScheduleString
    timezone: TimezoneName = "UTC"
    overlap_policy: OverlapPolicy = OverlapPolicy.SKIP


class SchedulePatch(CamelModel):
    """Body of ``PATCH /schedules/{id}``: the fields to change; absent ones stay."""

    name: ScheduleName | None = None
    model_id: ResourceId | None = None
    configuration_id: ResourceId | None = None
    input_folder_id: ResourceId | None = None
    output_folder_id: ResourceId | None = None
    maximum_execution_time: ExecutionSeconds | None = None
    schedule_string: ScheduleString | None = None
    timezone: TimezoneName | None = None
    overlap_policy: OverlapPolicy | None = None

    def applied_to(self, request: ScheduleRequest) -> ScheduleRequest:
        """``request`` with this patch's non-null fields."""
        changes = {
            name: value
            for name in self.model_fields_set
            if (value := getattr(self, name)) is not None
        }
        return request.model_copy(update=changes)


class Schedule(CamelModel):
    """A schedule's whole state, as the topic keeps it."""

    id: str
    request: ScheduleRequest
    status: ScheduleStatus = ScheduleStatus.STOPPED
    creation_date: Timestamp
    created_by: str
    last_modified_date: Timestamp
    # When the schedule last went to RUNNING: due times before it never fire.
    started_at: Timestamp | None = None


class ScheduleView(CamelModel):
    """A schedule as the REST API answers it (``maximumExecutionTime`` as a string)."""

    id: str
    name: str
    model_id: str
    configuration_id: str
    input_folder_id: str
    output_folder_id: str
    maximum_execution_time: ExecutionSeconds
    schedule_string: str
    timezone: str
    status: ScheduleStatus
    overlap_policy: OverlapPolicy
    creation_date: Timestamp
    created_by: str
    last_modified_date: Timestamp
    next_fire_times: tuple[Timestamp, ...] = ()

    @classmethod
    def of(cls, schedule: Schedule, next_fire_times: tuple[datetime, ...] = ()) -> "ScheduleView":
        return cls(
            id=schedule.id,
            status=schedule.status,
            creation_date=schedule.creation_date,
            created_by=schedule.created_by,
            last_modified_date=schedule.last_modified_date,
            next_fire_times=next_fire_times,
            **schedule.request.model_dump(by_alias=False),
        )


class SchedulePage(Page[ScheduleView]):
    """``GET /schedules``: a Spring-style page and the SDK's ``ScheduleList`` in one body."""

    schedules: tuple[ScheduleView, ...]


class ScheduleDefined(CamelModel):
    """A schedule was created or changed; ``schedule`` is its whole new state.

    ``revision`` counts the definitions of the schedule (1 = created), so a reader that already
    applied a newer one ignores a late copy of an older one.
    """

    schema_version: Literal[1] = 1
    type: Literal["ScheduleDefined"] = "ScheduleDefined"
    event_id: str
    tenant: str
    schedule_id: str
    revision: int = Field(ge=1)
    schedule: Schedule
    occurred_at: Timestamp


class ScheduleDeleted(CamelModel):
    """A schedule was deleted; a tombstone under the same key follows it."""

    schema_version: Literal[1] = 1
    type: Literal["ScheduleDeleted"] = "ScheduleDeleted"
    event_id: str
    tenant: str
    schedule_id: str
    revision: int = Field(ge=1)
    occurred_at: Timestamp


class TickOutcome(StrEnum):
    FIRED = "fired"  # a SubmitJob was published for the due time
    SKIPPED = "skipped"  # overlap policy skip: the previous job was not final
    QUEUED = "queued"  # overlap policy queue: fires once the previous job is final


class ScheduleTicked(CamelModel):
    """The scheduler handled a due time of a schedule: the bookkeeping of what fired.

    ``job_id`` is the schedule's latest job: the one fired now, or the one still running that
    made the scheduler skip or queue this due time.
    """

    schema_version: Literal[1] = 1
    type: Literal["ScheduleTicked"] = "ScheduleTicked"
    event_id: str
    tenant: str
    schedule_id: str
    due_at: Timestamp
    outcome: TickOutcome
    job_id: str | None
    occurred_at: Timestamp


ScheduleMessage = Annotated[
    ScheduleDefined | ScheduleDeleted | ScheduleTicked, Field(discriminator="type")
]
SCHEDULE_MESSAGES: TypeAdapter[ScheduleMessage] = TypeAdapter(ScheduleMessage)


def schedule_key(tenant: str, schedule_id: str) -> str:
    return f"{tenant}/{schedule_id}"


def ticks_key(tenant: str, schedule_id: str) -> str:
    return f"{tenant}/{schedule_id}/ticks"


def message_key(message: ScheduleMessage) -> str:
    """The compaction key of a message: its schedule's, or its schedule's bookkeeping."""
    if isinstance(message, ScheduleTicked):
        return ticks_key(message.tenant, message.schedule_id)
    return schedule_key(message.tenant, message.schedule_id)


def scheduled_job_id(schedule_id: str, due_at: datetime) -> str:
    """The job of one due time: every scheduler process derives the same id, so the worker
    turns a second firing of the same due time into a no-op."""
    return uuid.uuid5(_SCHEDULED_JOB_NAMESPACE, f"{schedule_id}\n{format_timestamp(due_at)}").hex


def schedule_event_id(schedule_id: str, kind: str, number: str) -> str:
    """Deterministic, so re-publishing the same record carries the same id."""
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{schedule_id}/{kind}/{number}"))
