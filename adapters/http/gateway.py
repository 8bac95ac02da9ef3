"""The REST gateway: Job Manager v3 calls become commands; reads come from the projection.

A driving adapter: it knows the ports it is given and nothing of the worker.
"""

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

import structlog
from aiohttp import web
from aiohttp.hdrs import COOKIE
from structlog.contextvars import bind_contextvars, reset_contextvars

from adapters.http.auth import Forbidden, Principal, Unauthorized
from adapters.http.errors import ApiError, answering_middleware
from adapters.http.filters import JOB_FILTER_FIELDS
from adapters.http.ids import random_id
from adapters.http.inputs import found, idempotency_key, json_body, listing
from adapters.http.openapi import openapi_document
from adapters.http.ratelimit import RateLimiter
from adapters.http.ui import WebUi
from adapters.metrics import Metrics, Probes
from adapters.ports import BrokerUnavailable, CommandPublisher, JobViewReader
from schemas.commands import StopJob, SubmitJob
from schemas.jobs import JobParagraphs, JobRecord, JobRequest, JobView, ParagraphView
from schemas.status import JobStatus
from statemachine import FINAL_STATUSES

if TYPE_CHECKING:  # tracing is optional: nothing of OpenTelemetry is imported while it is off
    from adapters.http.schedules import ScheduleApi
    from adapters.tracing import Tracing

log = structlog.get_logger(__name__)

BASE = "/api/jobmanager/v3"
RETRY_AFTER_SECONDS = "5"
_IDEMPOTENCY_NAMESPACE = uuid.UUID("0d7c9a4e-5f0b-4b8e-8a55-3f1a2c6e9b70")
STOP_REQUESTED_MESSAGE = "Stop requested."
_NO_COOKIES: Mapping[str, str] = MappingProxyType({})


class RequestAuthenticator(Protocol):
    """Who is calling. Raises ``Unauthorized`` (401) or ``Forbidden`` (403)."""

    async def authenticate(
        self, method: str, headers: Mapping[str, str], cookies: Mapping[str, str]
    ) -> Principal: ...


@dataclass(frozen=True, slots=True)
class GatewayLimits:
    max_body_bytes: int = 64 * 1024
    max_execution_seconds: int = 86_400
    requests_per_second: float = 100.0
    request_burst: int = 200
    # Submits and stops waiting for the broker at once, all tenants together; more get 503.
    max_pending_writes: int = 256


def idempotent_job_id(tenant: str, key: str) -> str:
    """The same tenant and key always name the same job, on every replica and after restarts."""
    return uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{tenant}\n{key}").hex


class Gateway:
    def __init__(
        self,
        commands: CommandPublisher,
        jobs: JobViewReader,
        authenticator: RequestAuthenticator,
        on_accepted: Callable[[JobRecord], None],
        limits: GatewayLimits = GatewayLimits(),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        probes: Probes | None = None,
        tracing: "Tracing | None" = None,
        ui: WebUi | None = None,
        schedules: "ScheduleApi | None" = None,
    ) -> None:
        self._schedules = schedules
        self._commands = commands
        self._ui = ui
        self._tracing = tracing
        self._jobs = jobs
        self._auth = authenticator
        self._on_accepted = on_accepted
        self._limits = limits
        self._clock = clock
        self._rate = RateLimiter(limits.requests_per_second, limits.request_burst)
        self._pending_writes = 0
        self._openapi = json.dumps(openapi_document())
        # /healthz, /readyz and /metrics; the metrics also count every request of this app.
        self._probes = probes if probes is not None else Probes(Metrics())

    def app(self) -> web.Application:
        app = web.Application(
            # One middleware answers errors and counts every answer with the status it got.
            middlewares=[
                # Tracing outside it: its span covers both, and sees the logref.
                *([] if self._tracing is None else [self._tracing.middleware()]),
                answering_middleware(self._probes.metrics.request_recorder()),
            ],
            client_max_size=self._limits.max_body_bytes,
        )
        app.router.add_post(f"{BASE}/jobs", self._guarded(self.submit, bounded=True))
        app.router.add_get(f"{BASE}/jobs", self._guarded(self.list))
        app.router.add_get(f"{BASE}/jobs/{{id}}", self._guarded(self.get))
        app.router.add_post(f"{BASE}/jobs/{{id}}/stop", self._guarded(self.stop, bounded=True))
        app.router.add_get(f"{BASE}/jobs/{{id}}/paragraphs", self._guarded(self.paragraphs))
        app.router.add_get(f"{BASE}/openapi.json", self.openapi)
        if self._schedules is not None:  # /schedules, on the same auth
            self._schedules.add_routes(app, self._guarded)
        if self._ui is not None:  # the web UI at / and /ui/..., on the same auth
            self._ui.add_routes(app, self._guarded)
        self._probes.add_routes(app)
        return app

    # -- routes ---------------------------------------------------------------------------

    async def openapi(self, _: web.Request) -> web.Response:
        return web.json_response(text=self._openapi)

    async def submit(self, request: web.Request, caller: Principal) -> web.Response:
        job_request = await self._job_request(request)
        key = idempotency_key(request)
        job_id = idempotent_job_id(caller.tenant, key) if key else random_id()
        if key:
            existing = self._jobs.get(caller.tenant, job_id)
            if existing is not None:
                if existing.request() != job_request:
                    raise ApiError(
                        409,
                        "Idempotency-Key was already used with a different request body",
                        "jobmanager.idempotencyKeyReused",
                    )
                return _json(existing, 200)
        now = self._clock()
        command = SubmitJob(
            command_id=random_id(),
            job_id=job_id,
            tenant=caller.tenant,
            request=job_request,
            creation_date=now,
            issued_at=now,
        )
        await self._publish(command)
        view = JobView.submitted(job_id, caller.tenant, job_request, command.creation_date)
        self._on_accepted(JobRecord(view=view, sequence=0, tenant=caller.tenant))
        # Debug: it was a sixth of the gateway's CPU per POST at info; the worker's info line
        # "job status changed" (SUBMITTED) carries the job id, tenant and status, and the
        # client has both the request id and the job id.
        log.debug("job accepted", job_id=job_id, tenant=caller.tenant, status=view.status)
        return _json(view, 201)

    async def get(self, request: web.Request, caller: Principal) -> web.Response:
        return _json(self._job(request, caller.tenant))

    async def paragraphs(self, request: web.Request, caller: Principal) -> web.Response:
        view = self._job(request, caller.tenant)
        results = self._jobs.paragraphs(caller.tenant, view.id) or ()
        body = JobParagraphs(
            job_id=view.id,
            status=view.status,
            paragraphs=tuple(ParagraphView.of(result) for result in results),
        )
        return web.json_response(text=body.model_dump_json())

    async def list(self, request: web.Request, caller: Principal) -> web.Response:
        page, selected = listing(request.query, JOB_FILTER_FIELDS)
        items = [
            {**item, "jobId": item["id"]}
            for item in (view.model_dump(mode="json") for view in self._jobs.list(caller.tenant))
            if selected.matches(item)
        ]
        return web.json_response(page.body(items, len(items), "jobs"))

    async def stop(self, request: web.Request, caller: Principal) -> web.Response:
        view = self._job(request, caller.tenant)
        if view.status in FINAL_STATUSES:
            raise ApiError(
                409, f"job {view.id} is already {view.status}", "jobmanager.jobAlreadyFinished"
            )
        if view.status is not JobStatus.STOPPING:
            now = self._clock()
            await self._publish(
                StopJob(command_id=random_id(), job_id=view.id, tenant=caller.tenant, issued_at=now)
            )
            # The worker makes the move; the answer shows the status the job is now heading to.
            view = view.model_copy(
                update={"status": JobStatus.STOPPING, "message": STOP_REQUESTED_MESSAGE}
            )
        return _json(view)

    # -- helpers --------------------------------------------------------------------------

    def _guarded(
        self,
        handler: Callable[[web.Request, Principal], Awaitable[web.StreamResponse]],
        *,
        bounded: bool = False,
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Authenticate, then rate-limit per tenant, then handle.

        ``bounded``: a write, at most ``max_pending_writes`` of them at once and 503 beyond.
        Per-tenant limits do not stop a burst spread over many tenants, and each write holds
        its body while the broker acknowledges (up to the ack timeout), so this bounds the
        gateway's memory. Checked here rather than in a wrapper of its own: each wrapper is
        another coroutine per request.
        """
        limits = self._limits

        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                headers = request.headers
                # Without a Cookie header, request.cookies is empty, but parsing "" costs µs.
                cookies = request.cookies if COOKIE in headers else _NO_COOKIES
                caller = await self._auth.authenticate(request.method, headers, cookies)
            except Unauthorized as refused:
                raise ApiError(401, str(refused), headers={"WWW-Authenticate": "Bearer"}) from None
            except Forbidden as refused:
                raise ApiError(403, str(refused)) from None
            wait = self._rate.acquire(caller.tenant)
            if wait > 0:
                raise ApiError(
                    429,
                    "too many requests for this tenant; slow down",
                    headers={"Retry-After": RateLimiter.retry_after(wait)},
                )
            tokens = bind_contextvars(tenant=caller.tenant)
            try:
                if not bounded:
                    return await handler(request, caller)
                if self._pending_writes >= limits.max_pending_writes:
                    raise ApiError(
                        503,
                        "too many requests waiting for the message broker; retry later",
                        headers={"Retry-After": "1"},
                    )
                self._pending_writes += 1
                try:
                    return await handler(request, caller)
                finally:
                    self._pending_writes -= 1
            finally:
                reset_contextvars(**tokens)

        return guarded

    async def _job_request(self, request: web.Request) -> JobRequest:
        job_request = await json_body(request, JobRequest, "job")
        limit = self._limits.max_execution_seconds
        if job_request.maximum_execution_time_in_seconds > limit:
            raise ApiError(400, f"maximumExecutionTimeInSeconds: must be at most {limit} seconds")
        return job_request

    def _job(self, request: web.Request, tenant: str) -> JobView:
        job_id = request.match_info["id"]
        return found(self._jobs.get(tenant, job_id), "job", job_id)

    async def _publish(self, command: SubmitJob | StopJob) -> None:
        try:
            await self._commands.publish(command)
        except BrokerUnavailable as unavailable:
            log.warning("command not acknowledged", job_id=command.job_id, error=str(unavailable))
            # A timeout is not a refusal: the broker may still append the command once it
            # answers again, so the answer names the job a client can look up to learn which.
            verb = "submit" if isinstance(command, SubmitJob) else "stop"
            raise ApiError(
                503,
                f"the message broker did not acknowledge the {verb} of job {command.job_id} "
                "in time; it may still take effect once the broker answers: check "
                f"GET {BASE}/jobs/{command.job_id}, or retry with the same Idempotency-Key",
                headers={
                    "Retry-After": RETRY_AFTER_SECONDS,
                    "Location": f"{BASE}/jobs/{command.job_id}",
                },
            ) from None


def _json(view: JobView, status: int = 200) -> web.Response:
    return web.json_response(text=view.model_dump_json(), status=status)
