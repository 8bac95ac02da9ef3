"""``/api/jobmanager/v3/schedules``: schedules are records on the compacted schedules topic.

Writes publish the schedule's whole new state (:class:`ScheduleDefined`, revision + 1) and
answer once the broker acknowledged it; reads come from the store folded from that topic. Auth,
rate limits, errors and idempotency work as for jobs (the gateway's guard wraps every route).
"""

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import structlog
from aiohttp import web

from adapters.http.auth import Principal
from adapters.http.errors import ApiError
from adapters.http.filters import SCHEDULE_FILTER_FIELDS
from adapters.http.inputs import JSON_TYPES, found, idempotency_key, json_body, listing
from adapters.ports import BrokerUnavailable, ScheduleLog, ScheduleReader
from schemas.jobs import format_timestamp
from schemas.schedules import (
    Schedule,
    ScheduleDefined,
    ScheduleDeleted,
    ScheduleMessage,
    SchedulePatch,
    ScheduleRequest,
    ScheduleStatus,
    ScheduleView,
    schedule_event_id,
)
from statemachine.cron import CronError, CronSchedule

log = structlog.get_logger(__name__)

BASE = "/api/jobmanager/v3"
RETRY_AFTER_SECONDS = "5"
NEXT_FIRE_TIMES = 5
_IDEMPOTENCY_NAMESPACE = uuid.UUID("5e2f8b1a-7c34-4d69-a0e1-2b9c6d4f8a37")
# PATCH bodies are merge patches (RFC 7396); clients that say so are answered, not refused.
_MERGE_PATCH = "application/merge-patch+json"

Route = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]
Guard = Callable[[Route], Callable[[web.Request], Awaitable[web.StreamResponse]]]
M = TypeVar("M", ScheduleRequest, SchedulePatch)


def idempotent_schedule_id(tenant: str, key: str) -> str:
    """The same tenant and key always name the same schedule, on every replica."""
    return uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{tenant}\n{key}").hex


@functools.lru_cache(maxsize=1024)
def parsed_cron(schedule_string: str, timezone: str) -> CronSchedule:
    """Parsing is pure; lists and the scheduler ask for the same few schedules again and again."""
    return CronSchedule.parse(schedule_string, timezone)


def checked_cron(request: ScheduleRequest) -> CronSchedule:
    """The request's cron line, or a 400 that names the field at fault."""
    try:
        return parsed_cron(request.schedule_string, request.timezone)
    except CronError as bad:
        message = str(bad)
        if not message.startswith(bad.field):
            message = f"{bad.field}: {message}"
        raise ApiError(400, message) from None


class ScheduleApi:
    def __init__(
        self,
        schedules: ScheduleReader,
        records: ScheduleLog,
        on_recorded: Callable[[ScheduleMessage], object],
        max_execution_seconds: int = 86_400,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._schedules = schedules
        self._records = records
        self._on_recorded = on_recorded
        self._max_execution_seconds = max_execution_seconds
        self._clock = clock
        # Writes of one process are serialised, so two of them never compute the same revision.
        self._writing = asyncio.Lock()

    def add_routes(self, app: web.Application, guard: Guard) -> None:
        app.router.add_post(f"{BASE}/schedules", guard(self.create))
        app.router.add_get(f"{BASE}/schedules", guard(self.list))
        app.router.add_get(f"{BASE}/schedules/{{id}}", guard(self.get))
        app.router.add_patch(f"{BASE}/schedules/{{id}}", guard(self.patch))
        app.router.add_delete(f"{BASE}/schedules/{{id}}", guard(self.delete))
        app.router.add_post(f"{BASE}/schedules/{{id}}/start", guard(self.start))
        app.router.add_post(f"{BASE}/schedules/{{id}}/stop", guard(self.stop))

    # -- routes -----------------------------------------------------------------------------

    async def create(self, request: web.Request, caller: Principal) -> web.Response:
        schedule_request = self._checked(await self._body(request, ScheduleRequest))
        key = idempotency_key(request)
        schedule_id = idempotent_schedule_id(caller.tenant, key) if key else uuid.uuid4().hex
        async with self._writing:
            if key and self._schedules.revision(caller.tenant, schedule_id):
                existing = self._schedules.get(caller.tenant, schedule_id)
                if existing is None or existing.request != schedule_request:
                    raise ApiError(
                        409,
                        "Idempotency-Key was already used with a different request body"
                        if existing is not None
                        else "Idempotency-Key was already used for a schedule now deleted",
                        "jobmanager.idempotencyKeyReused",
                    )
                return self._answer(existing, 200)
            now = self._clock()
            schedule = Schedule(
                id=schedule_id,
                request=schedule_request,
                creation_date=now,
                created_by=caller.user,
                last_modified_date=now,
            )
            await self._define(caller.tenant, schedule, now)
        log.info("schedule created", schedule_id=schedule_id, tenant=caller.tenant)
        return self._answer(schedule, 201)

    async def list(self, request: web.Request, caller: Principal) -> web.Response:
        page, selected = listing(request.query, SCHEDULE_FILTER_FIELDS)
        now = self._clock()
        items = [
            item
            for item in (
                ScheduleView.of(schedule).model_dump(mode="json")
                for schedule in self._schedules.list(caller.tenant)
            )
            if selected.matches(item)
        ]
        body = page.body(items, len(items), "schedules")
        for item in body["content"]:  # only the page's items: each costs a cron computation
            schedule = self._schedules.get(caller.tenant, item["id"])
            if schedule is not None:
                fire_times = self._next_fire_times(schedule, now)
                item["nextFireTimes"] = [format_timestamp(moment) for moment in fire_times]
        return web.json_response(body)

    async def get(self, request: web.Request, caller: Principal) -> web.Response:
        return self._answer(self._schedule(request, caller.tenant))

    async def patch(self, request: web.Request, caller: Principal) -> web.Response:
        changes = await self._body(request, SchedulePatch)
        async with self._writing:
            schedule = self._schedule(request, caller.tenant)
            changed = self._checked(changes.applied_to(schedule.request))
            if changed == schedule.request:
                return self._answer(schedule)
            now = self._clock()
            schedule = schedule.model_copy(update={"request": changed, "last_modified_date": now})
            await self._define(caller.tenant, schedule, now)
        log.info("schedule changed", schedule_id=schedule.id, tenant=caller.tenant)
        return self._answer(schedule)

    async def delete(self, request: web.Request, caller: Principal) -> web.Response:
        async with self._writing:
            schedule = self._schedule(request, caller.tenant)
            revision = self._schedules.revision(caller.tenant, schedule.id) + 1
            deleted = ScheduleDeleted(
                event_id=schedule_event_id(schedule.id, "revision", str(revision)),
                tenant=caller.tenant,
                schedule_id=schedule.id,
                revision=revision,
                occurred_at=self._clock(),
            )
            await self._publish(deleted)
            await self._unavailable_is_503(self._records.erase(caller.tenant, schedule.id))
        log.info("schedule deleted", schedule_id=schedule.id, tenant=caller.tenant)
        return web.Response(status=204)

    async def start(self, request: web.Request, caller: Principal) -> web.Response:
        return await self._set_status(request, caller, ScheduleStatus.RUNNING)

    async def stop(self, request: web.Request, caller: Principal) -> web.Response:
        return await self._set_status(request, caller, ScheduleStatus.STOPPED)

    # -- helpers ----------------------------------------------------------------------------

    async def _set_status(
        self, request: web.Request, caller: Principal, status: ScheduleStatus
    ) -> web.Response:
        """Start and stop are idempotent: the schedule already in ``status`` is answered as is."""
        async with self._writing:
            schedule = self._schedule(request, caller.tenant)
            if schedule.status is status:
                return self._answer(schedule)
            now = self._clock()
            update: dict[str, object] = {"status": status, "last_modified_date": now}
            if status is ScheduleStatus.RUNNING:
                update["started_at"] = now
            schedule = schedule.model_copy(update=update)
            await self._define(caller.tenant, schedule, now)
        log.info(
            "schedule status changed", schedule_id=schedule.id, tenant=caller.tenant, status=status
        )
        return self._answer(schedule)

    async def _define(self, tenant: str, schedule: Schedule, now: datetime) -> None:
        revision = self._schedules.revision(tenant, schedule.id) + 1
        await self._publish(
            ScheduleDefined(
                event_id=schedule_event_id(schedule.id, "revision", str(revision)),
                tenant=tenant,
                schedule_id=schedule.id,
                revision=revision,
                schedule=schedule,
                occurred_at=now,
            )
        )

    async def _publish(self, message: ScheduleMessage) -> None:
        await self._unavailable_is_503(self._records.publish(message))
        self._on_recorded(message)

    async def _unavailable_is_503(self, sending: Awaitable[None]) -> None:
        try:
            await sending
        except BrokerUnavailable as unavailable:
            log.warning("schedule record not acknowledged", error=str(unavailable))
            raise ApiError(
                503,
                "the message broker did not acknowledge in time; retry later",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            ) from None

    async def _body(self, request: web.Request, model: type[M]) -> M:
        return await json_body(request, model, "schedule", (*JSON_TYPES, _MERGE_PATCH))

    def _checked(self, request: ScheduleRequest) -> ScheduleRequest:
        limit = self._max_execution_seconds
        if request.maximum_execution_time > limit:
            raise ApiError(400, f"maximumExecutionTime: must be at most {limit} seconds")
        checked_cron(request)
        return request

    def _schedule(self, request: web.Request, tenant: str) -> Schedule:
        schedule_id = request.match_info["id"]
        return found(self._schedules.get(tenant, schedule_id), "schedule", schedule_id)

    def _next_fire_times(self, schedule: Schedule, now: datetime) -> tuple[datetime, ...]:
        if schedule.status is not ScheduleStatus.RUNNING:
            return ()
        cron = parsed_cron(schedule.request.schedule_string, schedule.request.timezone)
        return tuple(cron.next_fire_times(now, NEXT_FIRE_TIMES))

    def _answer(self, schedule: Schedule, status: int = 200) -> web.Response:
        view = ScheduleView.of(schedule, self._next_fire_times(schedule, self._clock()))
        return web.json_response(text=view.model_dump_json(), status=status)
