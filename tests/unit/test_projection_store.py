"""The in-memory projection store gives back exactly the record it was given, compact or not."""

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.projection_store import MemoryProjectionStore
from schemas.jobs import JobRecord, JobView, TimelineEntry
from schemas.notes import ParagraphResult, ParagraphStatus
from schemas.status import JobStatus
from statemachine import FINAL_STATUSES

ids = st.text(min_size=1, max_size=40)
texts = st.text(max_size=60)
# Whole milliseconds in UTC (what validation leaves), and finer or zoned ones (model_construct
# can carry them), so both the compact form and its fall-back are exercised.
instants = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
moments = st.one_of(
    instants.map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000)),
    instants,
    instants.map(lambda moment: moment.astimezone(timezone(timedelta(hours=2)))),
)


@st.composite
def views(draw: st.DrawFn) -> JobView:
    job_id = draw(ids)
    environment = draw(st.one_of(st.none(), ids, ids.map(lambda prefix: prefix + job_id)))
    return JobView.model_construct(
        id=job_id,
        model_id=draw(ids),
        environment_id=environment,
        message=draw(texts),
        status=draw(st.sampled_from(JobStatus)),
        creation_date=draw(moments),
        created_by=draw(ids),
        input_folder_id=draw(ids),
        output_folder_id=draw(ids),
        configuration_id=draw(ids),
        maximum_execution_time_in_seconds=draw(st.integers(1, 2**31 - 1)),
        schedule_id=draw(st.one_of(st.none(), ids)),
    )


timelines = st.lists(
    st.builds(
        TimelineEntry.model_construct,
        status=st.sampled_from(JobStatus),
        at=moments,
        message=texts,
        moved=st.booleans(),
    ),
    max_size=8,
).map(tuple)

paragraphs = st.lists(
    st.builds(
        ParagraphResult,
        index=st.integers(0, 50),
        id=ids,
        label=texts,
        interpreter=st.just("python"),
        status=st.sampled_from(ParagraphStatus),
        output=texts,
        error=st.one_of(st.none(), texts),
        started_at=st.none(),
        finished_at=st.none(),
    ),
    max_size=3,
).map(tuple)


@st.composite
def records(draw: st.DrawFn) -> JobRecord:
    view = draw(views())
    return JobRecord.model_construct(
        view=view,
        sequence=draw(st.integers(0, 2**40)),
        epoch=draw(st.integers(0, 2**40)),
        tenant=draw(st.one_of(ids, st.just(view.created_by))),
        paragraphs=draw(paragraphs),
        timeline=draw(timelines),
    )


@settings(max_examples=300)
@given(records(), st.one_of(st.none(), moments))
def test_put_then_record_gives_back_an_equal_record(record: JobRecord, at: datetime | None) -> None:
    """Every field of every record, final (compact) or not, round-trips through the store."""
    store = MemoryProjectionStore()
    store.put(record, at=at)
    job_id = record.view.id
    assert store.record(job_id) == record
    assert store.get(record.tenant, job_id) == record.view
    assert store.paragraphs(record.tenant, job_id) == record.paragraphs
    assert store.list(record.tenant) == [record.view]


@settings(max_examples=100)
@given(records())
def test_a_record_is_never_shown_to_another_tenant(record: JobRecord) -> None:
    """get, paragraphs and list answer for the record's own tenant only."""
    store = MemoryProjectionStore()
    store.put(record)
    other = record.tenant + "x"
    assert store.get(other, record.view.id) is None
    assert store.paragraphs(other, record.view.id) is None
    assert store.list(other) == []


def test_validated_final_records_are_kept_compact_and_come_back_equal() -> None:
    """A final record as a replay folds it is stored compactly yet equals the original."""
    created = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    view = JobView(
        id="job-1",
        model_id="model",
        environment_id="local-job-1",
        message="Notebook execution finished successfully.",
        status=JobStatus.SUCCEEDED,
        creation_date=created,
        created_by="tenant",
        input_folder_id="in",
        output_folder_id="out",
        configuration_id="conf",
        maximum_execution_time_in_seconds=7200,
    )
    timeline = tuple(
        TimelineEntry(status=status, at=created + timedelta(seconds=i), message=f"step {i}")
        for i, status in enumerate([JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.SUCCEEDED])
    )
    record = JobRecord(view=view, sequence=7, tenant="tenant", timeline=timeline)
    store = MemoryProjectionStore()
    store.put(record, at=created + timedelta(minutes=1))
    assert type(store._records["job-1"]).__name__ == "_FinalRecord"
    assert store.record("job-1") == record
    assert store.get("tenant", "job-1") == view


def test_records_of_jobs_still_moving_are_kept_as_they_are() -> None:
    """A non-final record is stored as the very object put (its next event replaces it)."""
    view = JobView.model_construct(
        id="job-2",
        model_id="m",
        status=JobStatus.RUNNING,
        creation_date=datetime(2026, 1, 1, tzinfo=UTC),
        created_by="t",
        input_folder_id="i",
        output_folder_id="o",
        configuration_id="c",
    )
    record = JobRecord.model_construct(view=view, sequence=3, tenant="t")
    store = MemoryProjectionStore()
    store.put(record)
    assert store.record("job-2") is record
    assert record.view.status not in FINAL_STATUSES
