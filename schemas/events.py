"""Events on ``jobmanager.events``: facts in the past tense, keyed by job id."""

import uuid
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from schemas.jobs import CamelModel, JobView, Timestamp
from schemas.notes import ParagraphResult
from schemas.status import JobStatus

_EVENT_NAMESPACE = uuid.UUID("6f1f4a52-3c56-4f7e-9a43-0b0f5a3c2e11")


def event_id_for(job_id: str, sequence: int, epoch: int = 0) -> str:
    """Deterministic, so a re-publish carries the same id and deduplicates; the epoch is part
    of it so two owners racing for one sequence never share an id."""
    name = f"{job_id}/{sequence}" if epoch == 0 else f"{job_id}/{sequence}/{epoch}"
    return str(uuid.uuid5(_EVENT_NAMESPACE, name))


class JobStatusChanged(CamelModel):
    """One applied move (or the job's creation, with ``previous_status`` None and sequence 1).

    ``job`` is the full view after the move, so a reader needs no other event to show the job.
    """

    schema_version: Literal[1] = 1
    type: Literal["JobStatusChanged"] = "JobStatusChanged"
    event_id: str
    job_id: str
    tenant: str
    sequence: int = Field(ge=1)
    # The owner epoch: 0 for the worker that created the job, raised by one by each worker
    # that takes the job over. Readers drop events of an older epoch than the job's (fencing).
    epoch: int = Field(default=0, ge=0)
    previous_status: JobStatus | None
    status: JobStatus
    trigger: str
    job: JobView
    occurred_at: Timestamp


class JobProgressed(CamelModel):
    """Progress within a status: a new step message, or a paragraph that finished.

    Not a move: ``status`` is the job's unchanged status. It shares the job's sequence with the
    status changes, so readers fold both in one order.
    """

    schema_version: Literal[1] = 1
    type: Literal["JobProgressed"] = "JobProgressed"
    event_id: str
    job_id: str
    tenant: str
    sequence: int = Field(ge=1)
    # The owner epoch: 0 for the worker that created the job, raised by one by each worker
    # that takes the job over. Readers drop events of an older epoch than the job's (fencing).
    epoch: int = Field(default=0, ge=0)
    status: JobStatus
    message: str
    paragraph: ParagraphResult | None = None
    job: JobView
    occurred_at: Timestamp


Event = Annotated[JobStatusChanged | JobProgressed, Field(discriminator="type")]
EVENTS: TypeAdapter[Event] = TypeAdapter(Event)
