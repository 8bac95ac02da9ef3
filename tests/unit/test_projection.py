"""The projection fold: job records from JobStatusChanged events, idempotent and order-proof."""

import functools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from adapters.projection_store import MemoryProjectionStore
from schemas.events import JobStatusChanged
from schemas.jobs import JobRecord, JobRequest, JobView, TimelineEntry
from schemas.status import JobStatus
from statemachine import FINAL_STATUSES, TRANSITIONS
from tests.unit.factories import job_events
from worker.projection import Projection, apply

TENANT = "tenanta"
START = datetime(2024, 3, 5, 9, 14, 2, 118_000, tzinfo=UTC)
REQUEST = JobRequest(
    model_id="model-1",
    configuration_id="config-1",
    input_folder_id="in-1",
    output_folder_id="out-1",
    maximum_execution_time_in_seconds=7200,
)


def _stream(job_id: str, triggers: list[str], tenant: str = TENANT) -> list[JobStatusChanged]:
    """The events of one job taking the given legal triggers from SUBMITTED, in order."""
    second = timedelta(seconds=1)
    return job_events(job_id, triggers, START + second, tenant=tenant, step=second, request=REQUEST)


def _entry(event: JobStatusChanged) -> TimelineEntry:
    return TimelineEntry(
        status=event.status,
        at=event.occurred_at,
        message=event.job.message,
        moved=True,
    )


def _fold(events: list[JobStatusChanged], record: JobRecord | None = None) -> JobRecord | None:
    return functools.reduce(apply, events, record)


@st.composite
def legal_paths(draw: st.DrawFn) -> list[str]:
    """Trigger sequences the transition table allows from SUBMITTED (possibly unfinished)."""
    status = JobStatus.SUBMITTED
    triggers: list[str] = []
    while status not in FINAL_STATUSES and draw(st.integers(0, 9)) > 0:
        move = draw(st.sampled_from([m for m in TRANSITIONS if m.source is status]))
        triggers.append(move.trigger)
        status = move.dest
    return triggers


@st.composite
def shuffled_with_duplicates(
    draw: st.DrawFn,
) -> tuple[list[JobStatusChanged], list[JobStatusChanged]]:
    """A job's stream in order, and the same events shuffled with some delivered again."""
    events = _stream("job-1", draw(legal_paths()))
    extra = draw(st.lists(st.sampled_from(events), max_size=10))
    delivered = draw(st.permutations(events + extra))
    return events, delivered


def test_first_event_creates_the_record() -> None:
    """Folding SUBMITTED into nothing gives the job's view at sequence 1 with its tenant."""
    [event] = _stream("job-1", [])
    record = apply(None, event)
    assert record == JobRecord(view=event.job, sequence=1, tenant=TENANT, timeline=(_entry(event),))


def test_newer_event_replaces_the_record() -> None:
    """An event with the next sequence replaces the view, sequence and keeps the tenant."""
    events = _stream("job-1", ["start", "run"])
    record = _fold(events)
    assert record is not None
    assert record.view == events[-1].job
    assert record.view.status is JobStatus.RUNNING
    assert record.sequence == 3
    assert record.tenant == TENANT


def test_redelivered_event_changes_nothing() -> None:
    """An event at the record's sequence leaves the very same record."""
    events = _stream("job-1", ["start", "run"])
    record = _fold(events)
    assert record is not None
    assert apply(record, events[-1]) is record


def test_older_event_changes_nothing() -> None:
    """An event below the record's sequence never takes the record back."""
    events = _stream("job-1", ["start", "run", "succeed"])
    record = _fold(events)
    assert record is not None
    for old in events[:-1]:
        assert apply(record, old) is record
    assert record.view.status is JobStatus.SUCCEEDED


def test_gateway_accepted_record_is_replaced_by_the_first_event() -> None:
    """A sequence-0 record from the gateway gives way to the job's first event."""
    [event] = _stream("job-1", [])
    accepted = JobRecord(
        view=JobView.submitted("job-1", TENANT, REQUEST, START), sequence=0, tenant=TENANT
    )
    record = apply(accepted, event)
    assert record is not accepted
    assert record == JobRecord(view=event.job, sequence=1, tenant=TENANT, timeline=(_entry(event),))


def test_tenant_comes_from_the_event() -> None:
    """The folded record keeps the job's tenant through every move."""
    events = _stream("job-1", ["start", "fail"], tenant="tenantb")
    record = _fold(events)
    assert record is not None
    assert record.tenant == "tenantb"
    assert record.view.created_by == "tenantb"


@given(legal_paths())
def test_folding_a_stream_twice_gives_the_same_record(triggers: list[str]) -> None:
    """Folding the whole stream again onto its own result changes nothing."""
    events = _stream("job-1", triggers)
    once = _fold(events)
    assert _fold(events, once) == once
    assert _fold(events + events) == once


@given(shuffled_with_duplicates())
def test_order_and_duplicates_do_not_change_the_final_record(
    streams: tuple[list[JobStatusChanged], list[JobStatusChanged]],
) -> None:
    """Any delivery order with duplicates folds to the record of the in-order stream."""
    in_order, delivered = streams
    expected = _fold(in_order)
    assert expected is not None
    assert _fold(delivered) == expected
    assert expected.sequence == len(in_order)
    assert expected.view == in_order[-1].job


@given(shuffled_with_duplicates())
def test_projection_store_ends_with_the_latest_record(
    streams: tuple[list[JobStatusChanged], list[JobStatusChanged]],
) -> None:
    """Projection.apply over a shuffled stream leaves the store at the in-order result."""
    in_order, delivered = streams
    projection = Projection(MemoryProjectionStore())
    for event in delivered:
        projection.apply(event)
    assert projection.store.record("job-1") == _fold(in_order)
    assert projection.store.get(TENANT, "job-1") == in_order[-1].job
    assert projection.store.get("tenantb", "job-1") is None


def test_accept_never_overwrites_a_folded_event() -> None:
    """A gateway record accepted after the first event was folded does not replace it."""
    events = _stream("job-1", ["start"])
    projection = Projection(MemoryProjectionStore())
    for event in events:
        projection.apply(event)
    accepted = JobRecord(view=events[0].job, sequence=0, tenant=TENANT)
    projection.accept(accepted)
    record = projection.store.record("job-1")
    assert record is not None
    assert (record.sequence, record.view.status) == (2, JobStatus.STARTING)
