"""The scheduler's decisions, driven by a fake clock over in-memory stores and publishers."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from adapters.memory import MemoryCommandPublisher, MemoryScheduleLog
from adapters.schedule_store import MemoryScheduleStore
from schemas.commands import SubmitJob
from schemas.jobs import JobRecord, JobView
from schemas.schedules import (
    OverlapPolicy,
    ScheduleDefined,
    ScheduleStatus,
    ScheduleTicked,
    TickOutcome,
    scheduled_job_id,
)
from schemas.status import JobStatus
from tests.unit.factories import job_request, schedule_defined
from worker.scheduler import LATE_TOLERANCE, QUEUE_POLL, Scheduler

TENANT = "local"
SCHEDULE_ID = "sched-1"
START = datetime(2026, 3, 27, 12, 0, 0, 500_000, tzinfo=UTC)
EVERY_SECOND = "* * * * * ?"


def at(seconds: float) -> datetime:
    """12:00:00 plus ``seconds`` on the test day."""
    return START.replace(microsecond=0) + timedelta(seconds=seconds)


def define(
    store: MemoryScheduleStore,
    schedule_string: str = EVERY_SECOND,
    policy: OverlapPolicy = OverlapPolicy.ALLOW,
    status: ScheduleStatus = ScheduleStatus.RUNNING,
    started_at: datetime = START,
    timezone: str = "UTC",
) -> None:
    """Fold a (new revision of the) schedule into ``store``."""
    store.apply(
        schedule_defined(
            SCHEDULE_ID,
            store.revision(TENANT, SCHEDULE_ID) + 1,
            at=START,
            tenant=TENANT,
            status=status,
            started_at=started_at,
            maximumExecutionTime=600,
            scheduleString=schedule_string,
            timezone=timezone,
            overlapPolicy=policy,
        )
    )


@dataclass
class Rig:
    """One scheduler process: its store, what it published and the job projection it reads."""

    store: MemoryScheduleStore = field(default_factory=MemoryScheduleStore)
    records: MemoryScheduleLog = field(default_factory=MemoryScheduleLog)
    commands: MemoryCommandPublisher = field(default_factory=MemoryCommandPublisher)
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    catch_up: timedelta = timedelta(seconds=300)
    born: datetime = START  # when the scheduler process started
    scheduler: Scheduler = field(init=False)

    def __post_init__(self) -> None:
        self.scheduler = Scheduler(
            self.store,
            self.records,
            self.commands,
            self.jobs.get,
            self.catch_up,
            clock=lambda: self.born,
        )

    def fired(self) -> list[datetime]:
        return [c.creation_date for c in self.commands.published if isinstance(c, SubmitJob)]

    def set_status(self, due_at: datetime, status: JobStatus) -> None:
        job_id = scheduled_job_id(SCHEDULE_ID, due_at)
        view = JobView.submitted(job_id, TENANT, job_request(), due_at, SCHEDULE_ID)
        self.jobs[job_id] = JobRecord(
            view=view.model_copy(update={"status": status}), sequence=2, tenant=TENANT
        )

    async def run(self, moments: Iterable[datetime]) -> list[datetime | None]:
        return [await self.scheduler.evaluate(now) for now in moments]


def restarted(before: Rig, born: datetime, catch_up: timedelta = timedelta(seconds=300)) -> Rig:
    """A new scheduler process, started at ``born``, whose store is folded from what ``before``
    left on the topic."""
    after = Rig(catch_up=catch_up, jobs=before.jobs, born=born)
    schedule = before.store.get(TENANT, SCHEDULE_ID)
    assert schedule is not None
    after.store.apply(
        ScheduleDefined(
            event_id="copy",
            tenant=TENANT,
            schedule_id=SCHEDULE_ID,
            revision=before.store.revision(TENANT, SCHEDULE_ID),
            schedule=schedule,
            occurred_at=START,
        )
    )
    for message in before.records.published:
        after.store.apply(message)
    return after


async def test_every_due_time_fires_once_with_a_deterministic_job() -> None:
    """In steady state each second fires one SubmitJob for that due time, and nothing twice."""
    rig = Rig()
    define(rig.store)

    wakes = await rig.run([at(1), at(1.2), at(2), at(3)])

    assert rig.fired() == [at(1), at(2), at(3)]
    assert wakes == [at(2), at(2), at(3), at(4)]
    first = rig.commands.published[0]
    assert isinstance(first, SubmitJob)
    assert first.job_id == scheduled_job_id(SCHEDULE_ID, at(1))
    assert first.schedule_id == SCHEDULE_ID
    assert first.tenant == TENANT
    assert first.request.maximum_execution_time_in_seconds == 600
    ticks = [m for m in rig.records.published if isinstance(m, ScheduleTicked)]
    assert [(t.due_at, t.outcome) for t in ticks] == [
        (at(1), TickOutcome.FIRED),
        (at(2), TickOutcome.FIRED),
        (at(3), TickOutcome.FIRED),
    ]


async def test_nothing_fires_before_the_schedule_was_started() -> None:
    """A due time at or before the start never fires; the first wake is the next due time."""
    rig = Rig()
    define(rig.store, started_at=at(0.5))

    wakes = await rig.run([at(0.6)])

    assert rig.fired() == []
    assert wakes == [at(1)]


async def test_a_schedule_started_while_running_is_not_caught_up_but_fired() -> None:
    """Due times after the process started are not missed ones: seen late, each still fires."""
    rig = Rig()
    define(rig.store, started_at=at(1.5))

    await rig.run([at(4.2)])

    assert rig.fired() == [at(2), at(3), at(4)]


async def test_a_short_delay_still_fires_every_due_time() -> None:
    """Due times found less than the tolerance late fire one by one."""
    rig = Rig()
    define(rig.store)

    await rig.run([at(1), at(4)])

    assert rig.fired() == [at(1), at(2), at(3), at(4)]


async def test_a_stall_collapses_the_misfired_due_times_into_one() -> None:
    """Due times more than the tolerance late fire once, as the latest of them."""
    rig = Rig()
    define(rig.store)

    await rig.run([at(1), at(20)])

    tolerance = int(LATE_TOLERANCE.total_seconds())
    on_time = [at(s) for s in range(20 - tolerance + 1, 21)]
    assert rig.fired() == [at(1), at(20 - tolerance), *on_time]


async def test_a_restart_fires_the_missed_window_once() -> None:
    """After a restart, the missed due times within the window fire once: the latest of them."""
    before = Rig()
    define(before.store)
    await before.run([at(1), at(2)])

    after = restarted(before, born=at(9.3))
    await after.run([at(9.3), at(10)])

    assert after.fired() == [at(9), at(10)]


async def test_a_restart_after_the_window_fires_nothing_missed() -> None:
    """Missed due times older than the catch-up window never fire; the next one does."""
    before = Rig()
    define(before.store, schedule_string="0 * * * * ?")
    await before.run([at(60)])

    after = restarted(before, born=at(60 * 4 + 30), catch_up=timedelta(seconds=20))
    wakes = await after.run([at(60 * 4 + 30)])
    await after.run([at(60 * 5)])

    assert before.fired() == [at(60)]
    assert wakes == [at(60 * 5)]
    assert after.fired() == [at(60 * 5)]


async def test_two_schedulers_fire_the_same_job_for_a_due_time() -> None:
    """Two processes derive the same job id and request, so the worker keeps one job."""
    first, second = Rig(), Rig()
    define(first.store)
    define(second.store)

    await first.run([at(1)])
    await second.run([at(1.05)])

    [one] = first.commands.published
    [two] = second.commands.published
    assert isinstance(one, SubmitJob)
    assert isinstance(two, SubmitJob)
    assert (one.job_id, one.request, one.creation_date) == (
        two.job_id,
        two.request,
        two.creation_date,
    )


async def test_a_due_time_recorded_by_another_scheduler_is_not_fired_again() -> None:
    """Bookkeeping read from the topic moves this process past due times already handled."""
    first, second = Rig(), Rig()
    define(first.store)
    define(second.store)
    await second.run([at(0.7)])
    await first.run([at(1), at(2)])
    for message in first.records.published:
        second.store.apply(message)

    await second.run([at(2.1), at(3)])

    assert second.fired() == [at(3)]


async def test_skip_passes_over_due_times_while_the_previous_job_runs() -> None:
    """With skip, no job fires while the previous one is not final; then the next one does."""
    rig = Rig()
    define(rig.store, policy=OverlapPolicy.SKIP)
    await rig.run([at(1)])
    await rig.run([at(2)])  # the job is not even projected yet: it counts as not final
    rig.set_status(at(1), JobStatus.RUNNING)
    await rig.run([at(3), at(4)])
    rig.set_status(at(1), JobStatus.FAILED)

    await rig.run([at(5)])

    assert rig.fired() == [at(1), at(5)]
    outcomes = [(t.due_at, t.outcome, t.job_id) for t in rig.records.published]  # type: ignore[union-attr]
    job = scheduled_job_id(SCHEDULE_ID, at(1))
    assert outcomes[1:4] == [
        (at(2), TickOutcome.SKIPPED, job),
        (at(3), TickOutcome.SKIPPED, job),
        (at(4), TickOutcome.SKIPPED, job),
    ]


async def test_queue_fires_once_when_the_previous_job_ends() -> None:
    """With queue, due times during a job collapse into one job fired when it ends."""
    rig = Rig()
    define(rig.store, policy=OverlapPolicy.QUEUE)
    await rig.run([at(1)])
    rig.set_status(at(1), JobStatus.RUNNING)

    wakes = await rig.run([at(2), at(3)])
    rig.set_status(at(1), JobStatus.SUCCEEDED)
    await rig.run([at(3.4), at(3.6)])

    assert wakes == [at(2) + QUEUE_POLL, at(3) + QUEUE_POLL]
    assert rig.fired() == [at(1), at(3)]


async def test_a_queued_due_time_survives_a_restart() -> None:
    """The queued due time is on the topic, so a restarted scheduler fires it when due."""
    before = Rig()
    define(before.store, policy=OverlapPolicy.QUEUE)
    await before.run([at(1)])
    before.set_status(at(1), JobStatus.RUNNING)
    await before.run([at(2)])

    after = restarted(before, born=at(2.2))
    await after.run([at(2.2)])
    before.set_status(at(1), JobStatus.STOPPED)
    await after.run([at(2.4)])

    assert after.fired() == [at(2)]


async def test_allow_fires_even_while_the_previous_job_runs() -> None:
    """With allow, every due time fires."""
    rig = Rig()
    define(rig.store, policy=OverlapPolicy.ALLOW)
    await rig.run([at(1)])
    rig.set_status(at(1), JobStatus.RUNNING)

    await rig.run([at(2), at(3)])

    assert rig.fired() == [at(1), at(2), at(3)]


async def test_a_stopped_schedule_does_not_fire_and_restarts_afresh() -> None:
    """STOPPED fires nothing; started again, due times from before the new start never fire."""
    rig = Rig()
    define(rig.store)
    await rig.run([at(1)])
    define(rig.store, status=ScheduleStatus.STOPPED, started_at=at(1.5))

    wakes = await rig.run([at(2), at(3)])
    define(rig.store, started_at=at(5.5))
    await rig.run([at(6)])

    assert wakes == [None, None]
    assert rig.fired() == [at(1), at(6)]


async def test_an_unavailable_broker_retries_the_same_due_time() -> None:
    """A publish that is not acknowledged records nothing and is tried again a second later."""
    rig = Rig()
    define(rig.store)
    rig.commands.unavailable = True

    wakes = await rig.run([at(1)])
    rig.commands.unavailable = False
    await rig.run([at(1) + timedelta(seconds=1) - timedelta(milliseconds=1)])

    assert wakes == [at(2)]
    assert rig.fired() == [at(1)]
    assert rig.records.published[0].due_at == at(1)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("schedule_string", "timezone", "expected"),
    [
        # 09:00 in Berlin: 08:00Z while CET, 07:00Z from the spring change on 2026-03-29.
        (
            "0 0 9 * * ?",
            "Europe/Berlin",
            ["2026-03-27T08:00", "2026-03-28T08:00", "2026-03-29T07:00", "2026-03-30T07:00"],
        ),
        # 02:30 does not exist in Berlin on 2026-03-29; it fires at the shifted 03:30 (01:30Z).
        (
            "30 2 * * *",
            "Europe/Berlin",
            ["2026-03-27T01:30", "2026-03-28T01:30", "2026-03-29T01:30", "2026-03-30T00:30"],
        ),
    ],
)
async def test_due_times_follow_the_time_zone_across_a_dst_change(
    schedule_string: str, timezone: str, expected: list[str]
) -> None:
    """Sleeping from wake to wake, the scheduler fires each local due time once, across DST."""
    rig = Rig()
    define(
        rig.store, schedule_string, started_at=datetime(2026, 3, 27, tzinfo=UTC), timezone=timezone
    )
    now = datetime(2026, 3, 27, tzinfo=UTC)
    for _ in expected:
        wake = await rig.scheduler.evaluate(now)
        assert wake is not None
        now = wake
    await rig.scheduler.evaluate(now)

    assert [f.strftime("%Y-%m-%dT%H:%M") for f in rig.fired()] == expected
