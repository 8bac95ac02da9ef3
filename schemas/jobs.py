"""The job as the REST API shows it, and the request that creates one."""

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
)
from pydantic.alias_generators import to_camel

from schemas.notes import ParagraphResult
from schemas.status import JobStatus


# Ids of models, folders and configurations: any printable text up to 256 characters, as
# MindSphere's ids vary in shape, but never a path separator or "." / "..", because the local
# stores use them as file names.
def _not_a_relative_path(value: str) -> str:
    if value in (".", ".."):
        raise ValueError("must not be '.' or '..'")
    return value


ResourceId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=256, pattern=r"^[^/\\\x00-\x1f\x7f]+$"),
    AfterValidator(_not_a_relative_path),
    # JSON Schema regexes have look-ahead, which pydantic's regex engine lacks.
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": 256,
            "pattern": r"^(?!\.{1,2}$)[^/\\\x00-\x1f\x7f]+$",
        }
    ),
]
# Tenants name folders and Kafka-visible records: kept to a conservative alphabet.
TenantName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
]

MAX_EXECUTION_SECONDS = 2**31 - 1


def _seconds_from_json(value: Any) -> int:
    """MindSphere's sample sends "7200" (a string); SDKs send numbers. Both mean seconds.

    The range is checked here too rather than in an after-validator: every event carries a job
    with this field, and one Python call per value instead of two is measurable in a replay.
    """
    if type(value) is str:
        # First: our own messages carry it as a string, and every event's job has one.
        digits = value.strip()
    elif isinstance(value, bool):
        raise ValueError('must be a whole number of seconds, as a string like "7200" or a number')
    elif isinstance(value, int):
        return _positive(value)
    elif isinstance(value, float) and value.is_integer():
        return _positive(int(value))  # 7200.0 is a whole number in JSON
    else:
        digits = value.strip() if isinstance(value, str) else ""
    if digits.isascii() and digits.isdigit():
        # Any count of digits is a number; beyond 12 it is certainly out of range anyway.
        return _positive(int(digits) if len(digits) <= 12 else MAX_EXECUTION_SECONDS + 1)
    raise ValueError('must be a whole number of seconds, as a string like "7200" or a number')


def _positive(value: int) -> int:
    if not 1 <= value <= MAX_EXECUTION_SECONDS:
        raise ValueError(f"must be between 1 and {MAX_EXECUTION_SECONDS} seconds")
    return value


ExecutionSeconds = Annotated[
    int,
    BeforeValidator(_seconds_from_json),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 86_400},
                {
                    "type": "string",
                    # 1 to 86400, the default limit, as digits only.
                    "pattern": "^(?:[1-9][0-9]{0,3}|[1-7][0-9]{4}|8[0-5][0-9]{3}"
                    "|86[0-3][0-9]{2}|86400)$",
                },
            ],
            "description": 'Seconds; a string like "7200" (as MindSphere\'s sample) or a number.'
            " The gateway's limit defaults to 86400.",
        },
        mode="validation",
    ),
    WithJsonSchema({"type": "string", "pattern": "^[0-9]+$"}, mode="serialization"),
]


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and a Z, as Job Manager v3 answers."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _to_utc_milliseconds(moment: datetime) -> datetime:
    """Truncate to what the wire carries, so a message equals itself after a round trip."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must carry a timezone")
    moment = moment.astimezone(UTC)
    extra = moment.microsecond % 1000
    # Most times come off the wire already whole milliseconds: no copy then (every event
    # carries several, and a replay validates millions).
    return moment.replace(microsecond=moment.microsecond - extra) if extra else moment


def _timestamp(value: Any, parse: ValidatorFunctionWrapHandler) -> datetime:
    """A timestamp in UTC, whole milliseconds.

    Fast path for the form :func:`format_timestamp` writes (``2026-01-02T03:04:05.678Z``), which
    is every time on our topics: ``datetime.fromisoformat`` gives it in UTC and whole
    milliseconds already, in half the time of pydantic's parse and the normalisation
    after it (a replay validates two per event). Anything else, or a string of that shape that
    is no valid time, takes pydantic's parse and its errors.
    """
    if (
        type(value) is str
        and len(value) == 24
        and value[23] == "Z"
        and value[19] == "."
        and value[10] == "T"
        and value[7] == "-"
    ):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    return _to_utc_milliseconds(parse(value))


Timestamp = Annotated[
    datetime,
    WrapValidator(_timestamp),
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
    # The schedule that fired the job (an extension): left out when None, so other jobs keep
    # exactly the seed's shape; events written before schedules lack it.
    schedule_id: str | None = Field(default=None, exclude_if=lambda value: value is None)

    def request(self) -> JobRequest:
        """The request this job was submitted with (to recognise an idempotent resubmit)."""
        return JobRequest(
            model_id=self.model_id,
            configuration_id=self.configuration_id,
            input_folder_id=self.input_folder_id,
            output_folder_id=self.output_folder_id,
            maximum_execution_time_in_seconds=self.maximum_execution_time_in_seconds,
        )

    @classmethod
    def submitted(
        cls,
        job_id: str,
        tenant: str,
        request: JobRequest,
        at: datetime,
        schedule_id: str | None = None,
    ) -> "JobView":
        return cls(
            id=job_id,
            status=JobStatus.SUBMITTED,
            creation_date=at,
            created_by=tenant,
            schedule_id=schedule_id,
            **request.model_dump(by_alias=False),
        )


class ErrorDetail(CamelModel):
    code: str
    message: str
    logref: str


class ErrorBody(CamelModel):
    """``{"errors": [{"code", "message", "logref"}]}`` as MindSphere APIs answer errors."""

    errors: tuple[ErrorDetail, ...]


class TimelineEntry(CamelModel):
    """One step of a job's history: a status move (``moved``) or a new step message."""

    status: JobStatus
    at: Timestamp
    message: str
    moved: bool = True


class JobRecord(CamelModel):
    """What a projection keeps per job: the view and the sequence of the last event folded in.

    ``sequence`` 0 marks a job the gateway accepted whose first event has not been read yet.
    ``timeline`` is the job's moves and step messages in order (bounded, see the fold).
    """

    view: JobView
    sequence: int = Field(ge=0)
    tenant: str
    paragraphs: tuple[ParagraphResult, ...] = ()
    # The owner epoch of the last event folded in (see ``schemas.events``).
    epoch: int = Field(default=0, ge=0)
    timeline: tuple[TimelineEntry, ...] = ()


class EnvironmentConfiguration(CamelModel):
    """``configurations/<id>.json``: how to run a job's environment."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    engine: str = "local"


class JobListItem(JobView):
    """A job in a list: the job's fields, and ``jobId`` as the list samples name it."""

    job_id: str


class PageInfo(CamelModel):
    """The MindSphere SDK's page block."""

    number: int
    size: int
    total_pages: int
    total_elements: int


class SortInfo(CamelModel):
    sorted: bool
    unsorted: bool
    empty: bool


ItemT = TypeVar("ItemT", bound=CamelModel)


class Page(CamelModel, Generic[ItemT]):
    """A listing's answer: a Spring-style page; each subclass adds the SDK's list of it.

    The body ``adapters.http.paging.PageRequest.body`` writes, so the OpenAPI document shows it.
    """

    content: tuple[ItemT, ...]
    page: PageInfo
    total_pages: int
    total_elements: int
    last: bool
    first: bool
    size: int
    number: int
    number_of_elements: int
    sort: SortInfo


class JobPage(Page[JobListItem]):
    """``GET /jobs``: a Spring-style page and the SDK's ``JobList`` in one body."""

    jobs: tuple[JobListItem, ...]


class ParagraphView(CamelModel):
    """One paragraph's result as ``GET /jobs/{id}/paragraphs`` shows it (an extension)."""

    index: int
    id: str
    label: str
    interpreter: str
    status: str
    output: str
    error: str | None
    error_name: str | None = None
    error_value: str | None = None
    traceback: str | None = None
    started_at: Timestamp | None
    finished_at: Timestamp | None

    @classmethod
    def of(cls, result: ParagraphResult) -> "ParagraphView":
        return cls.model_validate(result.model_dump())


class JobParagraphs(CamelModel):
    """The paragraphs that finished so far, in run order."""

    job_id: str
    status: JobStatus
    paragraphs: tuple[ParagraphView, ...]
