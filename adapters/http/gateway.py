"""The REST gateway: Job Manager v3 calls become commands; reads come from the projection.

A driving adapter: it knows the ports it is given and nothing of the worker.
"""

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import structlog
from aiohttp import web
from pydantic import ValidationError

from adapters.http.auth import Forbidden, Principal, Unauthorized
from adapters.http.errors import ApiError, error_middleware
from adapters.http.filters import JOB_FILTER_FIELDS, FilterError, parse_filter
from adapters.http.openapi import openapi_document
from adapters.http.paging import PageRequest
from adapters.http.ratelimit import RateLimiter
from adapters.metrics import Metrics, Probes
from adapters.ports import BrokerUnavailable, CommandPublisher, JobViewReader
from schemas.commands import StopJob, SubmitJob
from schemas.jobs import JobParagraphs, JobRecord, JobRequest, JobView, ParagraphView
from schemas.status import JobStatus
from statemachine import FINAL_STATUSES

log = structlog.get_logger(__name__)

BASE = "/api/jobmanager/v3"
RETRY_AFTER_SECONDS = "5"
_IDEMPOTENCY_NAMESPACE = uuid.UUID("0d7c9a4e-5f0b-4b8e-8a55-3f1a2c6e9b70")
STOP_REQUESTED_MESSAGE = "Stop requested."


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
    ) -> None:
        self._commands = commands
        self._jobs = jobs
        self._auth = authenticator
        self._on_accepted = on_accepted
        self._limits = limits
        self._clock = clock
        self._rate = RateLimiter(limits.requests_per_second, limits.request_burst)
        self._openapi = json.dumps(openapi_document())
        # /healthz, /readyz and /metrics; the metrics also count every request of this app.
        self._probes = probes if probes is not None else Probes(Metrics())

    def app(self) -> web.Application:
        app = web.Application(
            # The metrics middleware is outermost, so it counts the status the errors got.
            middlewares=[self._probes.metrics.middleware(), error_middleware],
            client_max_size=self._limits.max_body_bytes,
        )
        app.router.add_post(f"{BASE}/jobs", self._guarded(self.submit))
        app.router.add_get(f"{BASE}/jobs", self._guarded(self.list))
        app.router.add_get(f"{BASE}/jobs/{{id}}", self._guarded(self.get))
        app.router.add_post(f"{BASE}/jobs/{{id}}/stop", self._guarded(self.stop))
        app.router.add_get(f"{BASE}/jobs/{{id}}/paragraphs", self._guarded(self.paragraphs))
        app.router.add_get(f"{BASE}/openapi.json", self.openapi)
        self._probes.add_routes(app)
        return app

    # -- routes ---------------------------------------------------------------------------

    async def openapi(self, _: web.Request) -> web.Response:
        return web.json_response(text=self._openapi)

    async def submit(self, request: web.Request, caller: Principal) -> web.Response:
        job_request = await self._job_request(request)
        key = _idempotency_key(request)
        job_id = idempotent_job_id(caller.tenant, key) if key else uuid.uuid4().hex
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
            command_id=uuid.uuid4().hex,
            job_id=job_id,
            tenant=caller.tenant,
            request=job_request,
            creation_date=now,
            issued_at=now,
        )
        await self._publish(command)
        view = JobView.submitted(job_id, caller.tenant, job_request, command.creation_date)
        self._on_accepted(JobRecord(view=view, sequence=0, tenant=caller.tenant))
        log.info("job accepted", job_id=job_id, tenant=caller.tenant, status=view.status)
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
        page = PageRequest.from_query(request.query)
        try:
            selected = parse_filter(request.query.get("filter"), JOB_FILTER_FIELDS)
        except FilterError as malformed:
            raise ApiError(400, f"filter: {malformed}") from None
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
                StopJob(
                    command_id=uuid.uuid4().hex, job_id=view.id, tenant=caller.tenant, issued_at=now
                )
            )
            # The worker makes the move; the answer shows the status the job is now heading to.
            view = view.model_copy(
                update={"status": JobStatus.STOPPING, "message": STOP_REQUESTED_MESSAGE}
            )
        return _json(view)

    # -- helpers --------------------------------------------------------------------------

    def _guarded(
        self, handler: Callable[[web.Request, Principal], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """Authenticate, then rate-limit per tenant, then handle."""

        async def guarded(request: web.Request) -> web.Response:
            try:
                caller = await self._auth.authenticate(
                    request.method, request.headers, request.cookies
                )
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
            with structlog.contextvars.bound_contextvars(tenant=caller.tenant):
                return await handler(request, caller)

        return guarded

    async def _job_request(self, request: web.Request) -> JobRequest:
        if request.content_type not in ("application/json", "application/octet-stream"):
            raise ApiError(415, "send the job as application/json")
        raw = await request.read()
        try:
            job_request = JobRequest.model_validate_json(raw)
        except ValidationError as invalid:
            raise ApiError(400, _explain(invalid)) from None
        limit = self._limits.max_execution_seconds
        if job_request.maximum_execution_time_in_seconds > limit:
            raise ApiError(400, f"maximumExecutionTimeInSeconds: must be at most {limit} seconds")
        return job_request

    def _job(self, request: web.Request, tenant: str) -> JobView:
        job_id = request.match_info["id"]
        view = self._jobs.get(tenant, job_id)
        if view is None:  # another tenant's job is answered exactly like an unknown one
            raise ApiError(404, f"job {job_id} not found")
        return view

    async def _publish(self, command: SubmitJob | StopJob) -> None:
        try:
            await self._commands.publish(command)
        except BrokerUnavailable as unavailable:
            log.warning("command not acknowledged", job_id=command.job_id, error=str(unavailable))
            raise ApiError(
                503,
                "the message broker did not acknowledge in time; retry later",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            ) from None


def _json(view: JobView, status: int = 200) -> web.Response:
    return web.json_response(text=view.model_dump_json(), status=status)


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable():
        raise ApiError(400, "Idempotency-Key must be 1 to 255 printable ASCII characters")
    return key


def _explain(invalid: ValidationError) -> str:
    parts = []
    for error in invalid.errors()[:10]:
        where = ".".join(str(p) for p in error["loc"])
        if error["type"] == "json_invalid":
            parts.append(f"body is not valid JSON ({error.get('ctx', {}).get('error', '')})")
        elif error["type"] == "model_type":
            parts.append("body must be a JSON object")
        elif error["type"] == "missing":
            parts.append(f"{where}: is required")
        else:
            parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
