"""The projection's timeline (moves and step messages) and its change listeners, for the UI."""

from datetime import timedelta

from adapters.projection_store import MemoryProjectionStore
from schemas.events import JobProgressed
from schemas.jobs import JobRecord
from schemas.notes import ParagraphResult
from schemas.status import JobStatus
from tests.unit.factories import finished_paragraph, progressed
from tests.unit.test_projection import START, TENANT, _fold, _stream
from worker.projection import MAX_TIMELINE, Projection, apply


def _step(
    record: JobRecord, message: str, paragraph: ParagraphResult | None = None
) -> JobProgressed:
    return progressed(
        record, message, paragraph, START + timedelta(seconds=100 + record.sequence + 1)
    )


def test_every_move_is_on_the_timeline_with_its_time() -> None:
    """A job's moves are on the timeline in order, each with its event's time and message."""
    events = _stream("job-1", ["start", "run", "succeed"])
    record = _fold(events)
    assert record is not None
    assert [(e.status, e.at, e.moved) for e in record.timeline] == [
        (event.status, event.occurred_at, True) for event in events
    ]
    assert record.timeline[-1].message == "after succeed"


def test_step_messages_are_kept_but_paragraph_progress_is_not() -> None:
    """A progress event with a new message is a step; a finished paragraph adds nothing."""
    record = _fold(_stream("job-1", ["start"]))
    assert record is not None
    record = apply(record, _step(record, "Preparing inputs."))
    record = apply(record, _step(record, "Preparing inputs.", finished_paragraph()))
    assert [(e.message, e.moved) for e in record.timeline[-2:]] == [
        ("after start", True),
        ("Preparing inputs.", False),
    ]
    assert len(record.paragraphs) == 1


def test_a_late_event_still_lands_in_its_place() -> None:
    """An older event folded after a newer one adds its entry in time order, view unchanged."""
    events = _stream("job-1", ["start", "run"])
    record = apply(apply(None, events[0]), events[2])
    late = apply(record, events[1])
    assert late.view == record.view
    assert [e.status for e in late.timeline] == [
        JobStatus.SUBMITTED,
        JobStatus.STARTING,
        JobStatus.RUNNING,
    ]
    assert apply(late, events[1]) is late


def test_timeline_is_bounded_and_keeps_the_moves() -> None:
    """A flood of step messages never grows the timeline past its bound or drops a move."""
    record = _fold(_stream("job-1", ["start", "run"]))
    assert record is not None
    for i in range(MAX_TIMELINE * 2):
        record = apply(record, _step(record, f"step {i}"))
    assert len(record.timeline) == MAX_TIMELINE
    assert [e.status for e in record.timeline if e.moved] == [
        JobStatus.SUBMITTED,
        JobStatus.STARTING,
        JobStatus.RUNNING,
    ]
    assert record.timeline[-1].message == f"step {MAX_TIMELINE * 2 - 1}"


def test_listeners_hear_each_stored_record_until_unsubscribed() -> None:
    """Subscribers get every new record (accepted or folded) and nothing for a redelivery."""
    projection = Projection(MemoryProjectionStore())
    heard: list[JobRecord] = []
    unsubscribe = projection.subscribe(heard.append)
    events = _stream("job-1", ["start"])
    for event in events:
        projection.apply(event)
    projection.apply(events[-1])
    assert [r.view.status for r in heard] == [JobStatus.SUBMITTED, JobStatus.STARTING]
    assert all(r.tenant == TENANT for r in heard)
    unsubscribe()
    projection.apply(_stream("job-2", [])[0])
    assert len(heard) == 2


def test_a_failing_listener_does_not_stop_the_fold() -> None:
    """A listener that raises is logged; the record is still stored and others still hear it."""
    projection = Projection(MemoryProjectionStore())
    heard: list[JobRecord] = []

    def broken(_: JobRecord) -> None:
        raise RuntimeError("listener bug")

    projection.subscribe(broken)
    projection.subscribe(heard.append)
    [event] = _stream("job-1", [])
    projection.apply(event)
    assert projection.store.record("job-1") is not None
    assert len(heard) == 1
