"""The REST gateway: Job Manager v3 calls become commands; reads come from the projection.

A driving adapter: it knows the ports it is given and nothing of the worker.
"""

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog
from aiohttp import web
from pydantic import ValidationError

from adapters.auth import JwtAuthenticator, Unauthorized
from adapters.ports import BrokerUnavailable, CommandPublisher, JobViewReader
from schemas.commands import StopJob, SubmitJob
from schemas.jobs import ErrorBody, ErrorDetail, JobRecord, JobRequest, JobView
from schemas.status import JobStatus
from statemachine import FINAL_STATUSES

log = structlog.get_logger(__name__)

BASE = "/api/jobmanager/v3"
MAX_BODY_BYTES = 1024 * 1024
MAX_PAGE_SIZE = 100
RETRY_AFTER_SECONDS = "5"

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def _error_response(
    status: int, code: str, message: str, request_id: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = ErrorBody(errors=(ErrorDetail(code=code, message=message, logref=request_id),))
    return web.json_response(
        text=body.model_dump_json(),
        status=status,
        headers={**(headers or {}), "X-Request-Id": request_id},
    )


_HTTP_CODES = {
    400: "jobmanager.badRequest",
    401: "jobmanager.unauthorized",
    403: "jobmanager.forbidden",
    404: "jobmanager.notFound",
    405: "jobmanager.methodNotAllowed",
    409: "jobmanager.conflict",
    413: "jobmanager.payloadTooLarge",
    415: "jobmanager.unsupportedMediaType",
    503: "jobmanager.serviceUnavailable",
}


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            response = await handler(request)
            response.headers["X-Request-Id"] = request_id
            return response
        except ApiError as error:
            log.info("request refused", status=error.status, code=error.code, reason=error.message)
            return _error_response(
                error.status, error.code, error.message, request_id, error.headers
            )
        except web.HTTPException as http:
            if http.status < 400:
                raise
            code = _HTTP_CODES.get(http.status, f"jobmanager.http{http.status}")
            kept = {k: v for k, v in http.headers.items() if k.lower() in ("allow", "retry-after")}
            return _error_response(http.status, code, http.reason, request_id, kept)
        except Exception:
            log.exception("request failed", path=request.path)
            return _error_response(
                500,
                "jobmanager.internalError",
                "internal error; see logs for the logref",
                request_id,
            )


class Gateway:
    def __init__(
        self,
        commands: CommandPublisher,
        jobs: JobViewReader,
        authenticator: JwtAuthenticator,
        on_accepted: Callable[[JobRecord], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._commands = commands
        self._jobs = jobs
        self._auth = authenticator
        self._on_accepted = on_accepted
        self._clock = clock

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY_BYTES)
        app.router.add_post(f"{BASE}/jobs", self.submit)
        app.router.add_get(f"{BASE}/jobs", self.list)
        app.router.add_get(f"{BASE}/jobs/{{id}}", self.get)
        app.router.add_post(f"{BASE}/jobs/{{id}}/stop", self.stop)
        app.router.add_get("/healthz", self.health)
        return app

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def submit(self, request: web.Request) -> web.Response:
        tenant = self._tenant(request)
        if (
            request.content_type not in ("application/json", "application/octet-stream")
            and request.body_exists
        ):
            raise ApiError(
                415, "jobmanager.unsupportedMediaType", "send the job as application/json"
            )
        try:
            job_request = JobRequest.model_validate_json(await request.read())
        except ValidationError as invalid:
            raise ApiError(400, "jobmanager.badRequest", _explain(invalid)) from None
        now = self._clock()
        job_id = uuid.uuid4().hex
        command = SubmitJob(
            command_id=uuid.uuid4().hex,
            job_id=job_id,
            tenant=tenant,
            request=job_request,
            creation_date=now,
            issued_at=now,
        )
        await self._publish(command)
        view = JobView.submitted(job_id, tenant, job_request, command.creation_date)
        self._on_accepted(JobRecord(view=view, sequence=0, tenant=tenant))
        log.info("job accepted", job_id=job_id, tenant=tenant, status=view.status)
        return _json(view, 201)

    async def get(self, request: web.Request) -> web.Response:
        return _json(self._job(request, self._tenant(request)))

    async def list(self, request: web.Request) -> web.Response:
        tenant = self._tenant(request)
        number = _query_int(request, "pageNumber", 0, minimum=0)
        size = _query_int(request, "pageSize", MAX_PAGE_SIZE, minimum=1, maximum=MAX_PAGE_SIZE)
        views = self._jobs.list(tenant)
        page = views[number * size : (number + 1) * size]
        total_pages = -(-len(views) // size)
        content = [view.model_dump(mode="json") for view in page]
        return web.json_response(
            {
                "content": content,
                "jobs": content,
                "page": {
                    "number": number,
                    "size": size,
                    "totalPages": total_pages,
                    "totalElements": len(views),
                },
                "totalPages": total_pages,
                "totalElements": len(views),
                "number": number,
                "size": size,
                "numberOfElements": len(page),
                "first": number == 0,
                "last": number >= total_pages - 1,
            }
        )

    async def stop(self, request: web.Request) -> web.Response:
        tenant = self._tenant(request)
        view = self._job(request, tenant)
        if view.status in FINAL_STATUSES:
            raise ApiError(409, "jobmanager.jobFinished", f"job {view.id} is already {view.status}")
        if view.status is not JobStatus.STOPPING:
            now = self._clock()
            await self._publish(
                StopJob(command_id=uuid.uuid4().hex, job_id=view.id, tenant=tenant, issued_at=now)
            )
        return _json(view)

    def _tenant(self, request: web.Request) -> str:
        try:
            return self._auth.tenant(request.headers.get("Authorization"))
        except Unauthorized as refused:
            raise ApiError(
                401, "jobmanager.unauthorized", str(refused), {"WWW-Authenticate": "Bearer"}
            ) from None

    def _job(self, request: web.Request, tenant: str) -> JobView:
        job_id = request.match_info["id"]
        view = self._jobs.get(tenant, job_id)
        if view is None:  # another tenant's job is answered exactly like an unknown one
            raise ApiError(404, "jobmanager.notFound", f"job {job_id} not found")
        return view

    async def _publish(self, command: SubmitJob | StopJob) -> None:
        try:
            await self._commands.publish(command)
        except BrokerUnavailable as unavailable:
            log.warning("command not acknowledged", job_id=command.job_id, error=str(unavailable))
            raise ApiError(
                503,
                "jobmanager.serviceUnavailable",
                "the message broker did not acknowledge in time; retry later",
                {"Retry-After": RETRY_AFTER_SECONDS},
            ) from None


def _json(view: JobView, status: int = 200) -> web.Response:
    return web.json_response(text=view.model_dump_json(), status=status)


def _query_int(
    request: web.Request, name: str, default: int, minimum: int, maximum: int | None = None
) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    # isdigit() alone accepts "²" and other digits int() refuses; the length keeps int() cheap.
    number = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else -1
    if number < minimum or (maximum is not None and number > maximum):
        bounds = (
            f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        )
        raise ApiError(400, "jobmanager.badRequest", f"{name} must be a whole number {bounds}")
    return number


def _explain(invalid: ValidationError) -> str:
    parts = []
    for error in invalid.errors()[:10]:
        where = ".".join(str(p) for p in error["loc"])
        if error["type"] == "json_invalid":
            parts.append(f"body is not valid JSON ({error['ctx'].get('error', '')})")
        elif error["type"] == "model_type":
            parts.append("body must be a JSON object")
        else:
            parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
