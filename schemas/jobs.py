"""The job as the REST API shows it, and the request that creates one."""

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
)
from pydantic.alias_generators import to_camel

from schemas.status import JobStatus

# Ids end up as file and folder names in the local stores, so they are kept path-safe.
ResourceId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
]
TenantName = ResourceId

MAX_EXECUTION_SECONDS = 2**31 - 1


def _seconds_from_json(value: Any) -> int:
    """MindSphere's sample sends "7200" (a string); SDKs send numbers. Both mean seconds."""
    if isinstance(value, bool):
        raise ValueError('must be a whole number of seconds, as a string like "7200" or a number')
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ValueError('must be a whole number of seconds, as a string like "7200" or a number')


def _positive(value: int) -> int:
    if not 1 <= value <= MAX_EXECUTION_SECONDS:
        raise ValueError(f"must be between 1 and {MAX_EXECUTION_SECONDS} seconds")
    return value


ExecutionSeconds = Annotated[
    int,
    BeforeValidator(_seconds_from_json),
    AfterValidator(_positive),
    PlainSerializer(str, return_type=str),
]


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and a Z, as Job Manager v3 answers."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _to_utc_milliseconds(moment: datetime) -> datetime:
    """Truncate to what the wire carries, so a message equals itself after a round trip."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must carry a timezone")
    return moment.astimezone(UTC).replace(microsecond=moment.microsecond // 1000 * 1000)


Timestamp = Annotated[
    datetime,
    AfterValidator(_to_utc_milliseconds),
    PlainSerializer(format_timestamp, return_type=str),
]


class CamelModel(BaseModel):
    """Frozen, camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
    )


class JobRequest(CamelModel):
    """Body of ``POST /api/jobmanager/v3/jobs``; unknown fields are ignored as MindSphere does."""

    model_id: ResourceId
    configuration_id: ResourceId
    input_folder_id: ResourceId
    output_folder_id: ResourceId
    maximum_execution_time_in_seconds: ExecutionSeconds


class JobView(CamelModel):
    """A job exactly in the seed's response shape."""

    id: str
    model_id: str
    environment_id: str | None = None
    message: str = ""
    status: JobStatus
    creation_date: Timestamp
    created_by: str
    input_folder_id: str
    output_folder_id: str
    configuration_id: str
    maximum_execution_time_in_seconds: ExecutionSeconds = Field(default=7200)

    @classmethod
    def submitted(cls, job_id: str, tenant: str, request: JobRequest, at: datetime) -> "JobView":
        return cls(
            id=job_id,
            status=JobStatus.SUBMITTED,
            creation_date=at,
            created_by=tenant,
            **request.model_dump(by_alias=False),
        )


class ErrorDetail(CamelModel):
    code: str
    message: str
    logref: str


class ErrorBody(CamelModel):
    """``{"errors": [{"code", "message", "logref"}]}`` as MindSphere APIs answer errors."""

    errors: tuple[ErrorDetail, ...]


class JobRecord(CamelModel):
    """What a projection keeps per job: the view and the sequence of the last event folded in.

    ``sequence`` 0 marks a job the gateway accepted whose first event has not been read yet.
    """

    view: JobView
    sequence: int = Field(ge=0)
    tenant: str


class EnvironmentConfiguration(CamelModel):
    """``configurations/<id>.json``: how to run a job's environment."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    engine: str = "local"
