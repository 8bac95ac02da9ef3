"""Retention of final jobs: past it, a job is gone from the projection and the API, replay too."""

from datetime import UTC, datetime, timedelta

from adapters.projection_store import MemoryProjectionStore
from schemas.events import JobStatusChanged
from schemas.status import JobStatus
from tests.unit.factories import job_events
from worker.projection import Projection, sweep

TENANT = "tenanta"
DAY = timedelta(days=1)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Clock:
    """Epoch milliseconds that the test moves."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> int:
        return int(self.moment.timestamp() * 1000)


def _events(job_id: str, triggers: list[str], start: datetime) -> list[JobStatusChanged]:
    """A job's events, one minute apart from ``start``, taking ``triggers`` from SUBMITTED."""
    return job_events(job_id, triggers, start, tenant=TENANT)


SUCCEEDS = ["start", "run", "succeed"]


def _projection(clock: Clock, days: float | None = 90) -> Projection:
    retention = None if days is None else timedelta(days=days)
    return Projection(MemoryProjectionStore(retention, clock=clock))


def test_a_final_job_leaves_every_reader_once_its_final_move_is_past_retention() -> None:
    """Visible until 90 days after the final move; then 404 material, absent from lists."""
    clock = Clock(NOW)
    projection = _projection(clock)
    for event in _events("old", SUCCEEDS, NOW):
        projection.apply(event)
    store = projection.store
    assert isinstance(store, MemoryProjectionStore)
    ended = NOW + timedelta(minutes=3)

    clock.moment = ended + 90 * DAY - timedelta(seconds=1)
    assert store.get(TENANT, "old") is not None
    assert [view.id for view in store.list(TENANT)] == ["old"]

    clock.moment = ended + 90 * DAY + timedelta(seconds=1)
    assert store.get(TENANT, "old") is None
    assert store.record("old") is None
    assert store.paragraphs(TENANT, "old") is None
    assert store.list(TENANT) == []
    assert len(store) == 1, "hidden at once, freed by the sweep"
    assert sweep(projection) == 1
    assert len(store) == 0


def test_jobs_still_moving_are_never_purged() -> None:
    """Retention is for final jobs only: a job stuck in RUNNING stays, however old."""
    clock = Clock(NOW)
    projection = _projection(clock)
    for event in _events("running", ["start", "run"], NOW):
        projection.apply(event)
    clock.moment = NOW + 1000 * DAY
    assert sweep(projection) == 0
    view = projection.store.get(TENANT, "running")
    assert view is not None
    assert view.status is JobStatus.RUNNING


def test_a_replayed_job_past_retention_does_not_come_back() -> None:
    """Folding the history of a long-finished job leaves nothing; a recent one is kept."""
    clock = Clock(NOW)
    projection = _projection(clock)
    for event in _events("old", ["start", "fail"], NOW - 200 * DAY):
        projection.apply(event)
    for event in _events("recent", SUCCEEDS, NOW - 10 * DAY):
        projection.apply(event)
    store = projection.store
    assert isinstance(store, MemoryProjectionStore)
    assert store.record("old") is None
    assert len(store) == 1
    assert [view.id for view in projection.store.list(TENANT)] == ["recent"]


def test_zero_days_keeps_final_jobs_for_ever() -> None:
    """Without a retention, nothing is hidden or purged."""
    clock = Clock(NOW)
    projection = _projection(clock, days=None)
    for event in _events("old", SUCCEEDS, NOW - 5000 * DAY):
        projection.apply(event)
    assert sweep(projection) == 0
    assert projection.store.get(TENANT, "old") is not None


def test_a_purged_job_id_starts_afresh_when_submitted_again() -> None:
    """A job id reused after its job was purged (an Idempotency-Key) is a new job."""
    clock = Clock(NOW)
    projection = _projection(clock, days=1)
    for event in _events("key-job", SUCCEEDS, NOW - 3 * DAY):
        projection.apply(event)
    assert projection.store.record("key-job") is None
    first = _events("key-job", [], NOW)[0]
    folded = projection.apply(first)
    assert folded.sequence == 1
    assert folded.view.status is JobStatus.SUBMITTED
    assert projection.store.get(TENANT, "key-job") == first.job


def test_a_record_put_without_an_event_time_is_kept() -> None:
    """A final record with no known end (put directly) is never purged by age."""
    clock = Clock(NOW)
    store = MemoryProjectionStore(timedelta(days=1), clock=clock)
    [*_, last] = _events("direct", SUCCEEDS, NOW - 10 * DAY)
    record = Projection(MemoryProjectionStore()).apply(last)
    store.put(record)
    assert store.purge() == 0
    assert store.get(TENANT, "direct") == record.view


def test_a_late_event_of_a_final_job_does_not_move_its_retention() -> None:
    """A redelivered earlier event (it only fills in the timeline) keeps the job's end time."""
    clock = Clock(NOW)
    projection = _projection(clock, days=1)
    events = _events("late", SUCCEEDS, NOW)
    for event in events:
        projection.apply(event)
    late = events[1].model_copy(update={"occurred_at": NOW + 10 * DAY})
    projection.apply(late)
    clock.moment = NOW + timedelta(minutes=3) + DAY + timedelta(seconds=1)
    assert projection.store.get(TENANT, "late") is None
