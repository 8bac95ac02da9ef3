"""Commands on ``jobmanager.commands``: imperatives, keyed by job id."""

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from schemas.jobs import CamelModel, JobRequest, Timestamp


class SubmitJob(CamelModel):
    """Create the job and run it. Carries everything the worker needs; no lookups behind Kafka."""

    schema_version: Literal[1] = 1
    type: Literal["SubmitJob"] = "SubmitJob"
    command_id: str
    job_id: str
    tenant: str
    request: JobRequest
    creation_date: Timestamp
    issued_at: Timestamp
    # Set when a schedule fired the job (an extension of Job Manager v3); left out when None,
    # so commands of other producers keep their shape, and older commands lack it.
    schedule_id: str | None = Field(default=None, exclude_if=lambda value: value is None)


class StopJob(CamelModel):
    """Stop the job if it is not final yet."""

    schema_version: Literal[1] = 1
    type: Literal["StopJob"] = "StopJob"
    command_id: str
    job_id: str
    tenant: str
    issued_at: Timestamp


Command = Annotated[SubmitJob | StopJob, Field(discriminator="type")]
COMMANDS: TypeAdapter[Command] = TypeAdapter(Command)
