"""The scheduler: turns the due times of RUNNING schedules into ``SubmitJob`` commands.

It reads the schedules (and its own bookkeeping) from the compacted schedules topic, sleeps
until the next due time or until a schedule changes, and publishes one ``SubmitJob`` per due
time with a job id derived from the schedule id and the due time. Every scheduler process
derives the same id, and the worker treats a repeated ``SubmitJob`` with the same request as a
redelivery, so two schedulers, or one that fires again after a restart, never make two jobs.

Which due times fire:

* Due times at or before the schedule's last start never fire.
* In steady state every due time fires; one that is found more than ``LATE_TOLERANCE`` late
  (the process was stalled) is a misfire, and the misfires of one wake fire once, as the latest.
* After a restart the scheduler continues from the last due time recorded on the topic: of the
  due times missed before the process started, those within the catch-up window fire once, as
  the latest of them; older ones never.
* While the schedule's previous job is not final: ``skip`` passes over the due time, ``queue``
  fires the latest such due time once the job is final, ``allow`` fires anyway.

Each handled due time is recorded as a ``ScheduleTicked`` under the schedule's bookkeeping key.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from adapters.http.schedules import parsed_cron
from adapters.ports import BrokerUnavailable, CommandPublisher, ScheduleLog
from adapters.schedule_store import MemoryScheduleStore
from schemas.commands import SubmitJob
from schemas.jobs import JobRecord, JobRequest, format_timestamp
from schemas.schedules import (
    OverlapPolicy,
    Schedule,
    ScheduleMessage,
    ScheduleStatus,
    ScheduleTicked,
    TickOutcome,
    schedule_event_id,
    scheduled_job_id,
)
from schemas.status import JobStatus
from statemachine import FINAL_STATUSES
from statemachine.cron import CronError, CronSchedule

log = structlog.get_logger(__name__)

LATE_TOLERANCE = timedelta(seconds=5)
# While a queued due time waits for the previous job to end: how often to look at the job.
QUEUE_POLL = timedelta(seconds=0.5)
# After a publish the broker did not acknowledge: when to try again.
RETRY_AFTER = timedelta(seconds=1)
# Sleeps are cut to this, so a clock jump is noticed even when nothing else happens.
MAX_SLEEP = timedelta(seconds=30)


@dataclass
class _Cursor:
    """What this process knows of one schedule's due times."""

    handled: datetime  # every due time at or before this has been handled
    latest_job: str | None  # the schedule's latest job
    queued: datetime | None = None  # a due time waiting for ``latest_job`` to end


class Scheduler:
    def __init__(
        self,
        schedules: MemoryScheduleStore,
        records: ScheduleLog,
        commands: CommandPublisher,
        jobs: Callable[[str], JobRecord | None],
        catch_up: timedelta = timedelta(seconds=300),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._schedules = schedules
        self._records = records
        self._commands = commands
        self._jobs = jobs
        self._catch_up = catch_up
        self._clock = clock
        # Due times before this are ones the process missed (it was not running yet).
        self._born = clock()
        self._cursors: dict[tuple[str, str], _Cursor] = {}
        self._unparsable: set[tuple[str, str, str]] = set()

    async def run(self) -> None:
        """Fire due times until cancelled."""
        log.info("scheduler started", schedules=len(self._schedules))
        while True:
            wake = await self.evaluate(self._clock())
            delay = min(wake - self._clock(), MAX_SLEEP) if wake is not None else MAX_SLEEP
            await self._schedules.wait_for_change(delay.total_seconds())

    async def evaluate(self, now: datetime) -> datetime | None:
        """Handle everything due at ``now``; return when something may be due next."""
        wake: datetime | None = None
        live = set()
        for tenant, schedule in self._schedules.all():
            where = (tenant, schedule.id)
            if schedule.status is not ScheduleStatus.RUNNING:
                continue
            live.add(where)
            cron = self._cron(tenant, schedule)
            if cron is None:
                continue
            with structlog.contextvars.bound_contextvars(tenant=tenant, schedule_id=schedule.id):
                try:
                    next_wake = await self._evaluate(tenant, schedule, cron, now)
                except BrokerUnavailable as unavailable:
                    log.warning("schedule not fired; retrying", error=str(unavailable))
                    next_wake = now + RETRY_AFTER
            if next_wake is not None and (wake is None or next_wake < wake):
                wake = next_wake
        for where in set(self._cursors) - live:  # stopped or deleted: start afresh next time
            del self._cursors[where]
        return wake

    async def _evaluate(
        self, tenant: str, schedule: Schedule, cron: CronSchedule, now: datetime
    ) -> datetime | None:
        cursor, first_look = self._cursor(tenant, schedule)
        for due_at in self._due(cron, cursor.handled, now, first_look):
            if schedule.request.overlap_policy is OverlapPolicy.ALLOW or self._previous_ended(
                cursor
            ):
                await self._fire(tenant, schedule, cursor, due_at, now)
            elif schedule.request.overlap_policy is OverlapPolicy.QUEUE:
                cursor.queued = due_at
                await self._record(tenant, schedule, cursor, due_at, TickOutcome.QUEUED, now)
                log.info(
                    "due time queued behind the previous job",
                    due_at=format_timestamp(due_at),
                    job_id=cursor.latest_job,
                )
            else:
                await self._record(tenant, schedule, cursor, due_at, TickOutcome.SKIPPED, now)
                log.info(
                    "due time skipped: previous job not final",
                    due_at=format_timestamp(due_at),
                    job_id=cursor.latest_job,
                )
            cursor.handled = due_at
        if cursor.queued is not None:
            if not self._previous_ended(cursor):
                return now + QUEUE_POLL
            await self._fire(tenant, schedule, cursor, cursor.queued, now)
        return cron.next_after(max(now, cursor.handled))

    def _cursor(self, tenant: str, schedule: Schedule) -> tuple[_Cursor, bool]:
        """This process's cursor, brought up to date with what any scheduler recorded."""
        started = schedule.started_at or schedule.last_modified_date
        tick = self._schedules.last_tick(tenant, schedule.id)
        cursor = self._cursors.get((tenant, schedule.id))
        first_look = cursor is None
        if cursor is None:
            cursor = self._cursors[(tenant, schedule.id)] = _Cursor(started, None)
        if tick is not None and tick.due_at > cursor.handled:
            cursor.handled = tick.due_at
            cursor.latest_job = tick.job_id
            cursor.queued = tick.due_at if tick.outcome is TickOutcome.QUEUED else None
        if started > cursor.handled:  # stopped and started again: nothing before counts
            cursor.handled, cursor.queued = started, None
        return cursor, first_look

    def _due(
        self, cron: CronSchedule, handled: datetime, now: datetime, first_look: bool
    ) -> list[datetime]:
        """The due times to handle now, oldest first (see the module's rules)."""
        since = max(handled, now - self._catch_up)
        if since >= now:
            return []
        due: list[datetime] = []
        missed_until = min(now, self._born)
        if first_look and missed_until > since:
            # Missed while no scheduler of ours ran: the catch-up fires the latest of them once.
            latest = cron.latest_at_or_before(missed_until)
            due += [latest] if latest is not None and latest > since else []
            since = missed_until
        on_time_since = max(since, now - LATE_TOLERANCE)
        misfired = cron.latest_at_or_before(on_time_since)
        due += [misfired] if misfired is not None and misfired > since else []
        return due + list(cron.fire_times_between(on_time_since, now))

    def _previous_ended(self, cursor: _Cursor) -> bool:
        if cursor.latest_job is None:
            return True
        # A job not projected yet was fired a moment ago and is not final either.
        record = self._jobs(cursor.latest_job)
        return record is not None and record.view.status in FINAL_STATUSES

    async def _fire(
        self, tenant: str, schedule: Schedule, cursor: _Cursor, due_at: datetime, now: datetime
    ) -> None:
        job_id = scheduled_job_id(schedule.id, due_at)
        request = schedule.request
        await self._commands.publish(
            SubmitJob(
                command_id=uuid.uuid4().hex,
                job_id=job_id,
                tenant=tenant,
                request=JobRequest(
                    model_id=request.model_id,
                    configuration_id=request.configuration_id,
                    input_folder_id=request.input_folder_id,
                    output_folder_id=request.output_folder_id,
                    maximum_execution_time_in_seconds=request.maximum_execution_time,
                ),
                # The due time, not the publishing time: every firing of it is the same job.
                creation_date=due_at,
                issued_at=now,
                schedule_id=schedule.id,
            )
        )
        cursor.latest_job, cursor.queued = job_id, None
        await self._record(tenant, schedule, cursor, due_at, TickOutcome.FIRED, now)
        log.info(
            "schedule fired",
            job_id=job_id,
            due_at=format_timestamp(due_at),
            status=JobStatus.SUBMITTED,
        )

    async def _record(
        self,
        tenant: str,
        schedule: Schedule,
        cursor: _Cursor,
        due_at: datetime,
        outcome: TickOutcome,
        now: datetime,
    ) -> None:
        ticked: ScheduleMessage = ScheduleTicked(
            event_id=schedule_event_id(schedule.id, outcome, format_timestamp(due_at)),
            tenant=tenant,
            schedule_id=schedule.id,
            due_at=due_at,
            outcome=outcome,
            job_id=cursor.latest_job,
            occurred_at=now,
        )
        await self._records.publish(ticked)
        self._schedules.apply(ticked)

    def _cron(self, tenant: str, schedule: Schedule) -> CronSchedule | None:
        try:
            return parsed_cron(schedule.request.schedule_string, schedule.request.timezone)
        except CronError as bad:
            # The gateway refuses such lines; one could still come straight from the topic.
            marker = (tenant, schedule.id, schedule.request.schedule_string)
            if marker not in self._unparsable:
                self._unparsable.add(marker)
                log.error("schedule cannot be parsed; not fired", error=str(bad))
            return None
