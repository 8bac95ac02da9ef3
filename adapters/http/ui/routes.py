"""The web UI: a small vanilla-JS page served by the gateway, on the gateway's own auth.

Pages (``/``, ``/ui/…``) are one static shell; its script reads the public JSON API and two UI
helpers (``/ui/api/jobs`` with durations, ``/ui/api/jobs/{id}`` with the timeline and the
paragraph outputs split by type) and follows ``/ui/stream``, the tenant's job changes as
server-sent events. ``POST /ui/login`` turns a pasted token into the gateway's cookie session
(``SESSION`` plus the double-submit ``XSRF-TOKEN``), so the browser never holds the token in
script-readable storage.
"""

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib import resources
from typing import Any, Protocol
from urllib.parse import quote

import structlog
from aiohttp import web

from adapters.http.auth import (
    SESSION_COOKIE,
    XSRF_COOKIE,
    Forbidden,
    Principal,
    Unauthorized,
    new_xsrf_token,
)
from adapters.http.errors import ApiError
from adapters.http.filters import JOB_FILTER_FIELDS
from adapters.http.inputs import listing
from adapters.http.ui.folders import FolderPaths, LocalFolders
from adapters.http.ui.outputs import output_parts
from adapters.http.ui.stream import HEARTBEAT_SECONDS, JobStream
from schemas.jobs import JobRecord, JobView, ParagraphView, format_timestamp
from schemas.status import JobStatus
from statemachine import FINAL_STATUSES

log = structlog.get_logger(__name__)

#: Longest token accepted by the login form (a JWT with a few claims is well under 4 KiB).
MAX_TOKEN_CHARS = 16 * 1024
PAGES = (
    "/",
    "/ui",
    "/ui/",
    "/ui/login",
    "/ui/submit",
    "/ui/schedules",
    "/ui/jobs/{id}",
    "/ui/folders/{id}",
)
_STATIC = {
    "app.js": "text/javascript",
    "app.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
# Everything is served from here: no inline script, no other origin. Styles inline in a
# sandboxed %html frame are allowed (the frame has no script and an opaque origin).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

Handler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]
Guard = Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]


class RecordReader(Protocol):
    """The projection's records; the UI checks the tenant itself."""

    def record(self, job_id: str) -> JobRecord | None: ...

    def list(self, tenant: str) -> Sequence[JobView]: ...


class JobChanges(Protocol):
    """Calls a listener with every record the projection stores; returns the unsubscribe."""

    def subscribe(self, listener: Callable[[JobRecord], None]) -> Callable[[], None]: ...


class TokenVerifier(Protocol):
    async def authenticate(
        self, method: str, headers: Mapping[str, str], cookies: Mapping[str, str]
    ) -> Principal: ...


def _static(name: str) -> bytes:
    return (resources.files("adapters.http.ui") / "static" / name).read_bytes()


def job_summary(record: JobRecord) -> dict[str, Any]:
    """A job as the list shows it: the API's fields, ``jobId``, and when it started/finished."""
    return {**record.view.model_dump(mode="json"), **_times(record)}


def _times(record: JobRecord | None) -> dict[str, Any]:
    if record is None:  # dropped from the store between the list and this lookup
        return {"startedAt": None, "finishedAt": None}
    moves = [entry for entry in record.timeline if entry.moved]
    started = next((e.at for e in moves if e.status == JobStatus.RUNNING), None)
    finished = next((e.at for e in moves if e.status in FINAL_STATUSES), None)
    return {
        "jobId": record.view.id,
        "startedAt": None if started is None else format_timestamp(started),
        "finishedAt": None if finished is None else format_timestamp(finished),
    }


class WebUi:
    """Routes of the web UI; ``add_routes`` is called by the gateway with its auth guard."""

    def __init__(
        self,
        records: RecordReader,
        changes: JobChanges,
        verifier: TokenVerifier,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        folders: FolderPaths | None = None,
    ) -> None:
        self._records = records
        # Folders are browsable only where they are directories of this machine (local stores).
        self._folders = LocalFolders(folders) if folders is not None else None
        self._verifier = verifier
        self.stream = JobStream(heartbeat_seconds)
        self._unsubscribe = changes.subscribe(self.stream.publish)
        self._shell = _static("index.html")

    def add_routes(self, app: web.Application, guarded: Guard) -> None:
        for path in PAGES:
            app.router.add_get(path, self.page)
        app.router.add_get("/ui/static/{name}", self.static)
        app.router.add_post("/ui/login", self.login)
        app.router.add_post("/ui/logout", self.logout)
        app.router.add_get("/ui/api/session", guarded(self.session))
        app.router.add_get("/ui/api/jobs", guarded(self.jobs))
        app.router.add_get("/ui/api/jobs/{id}", guarded(self.job))
        app.router.add_get("/ui/stream", guarded(self.events))
        app.router.add_get("/ui/api/folders/{id}", guarded(self.folder))
        app.router.add_get("/ui/api/folders/{id}/files/{path:.+}", guarded(self.folder_file))
        # Open streams end before the server waits for its handlers, so shutdown is prompt.
        app.on_shutdown.append(self.stream.close)
        app.on_cleanup.append(self._stop_listening)

    async def _stop_listening(self, _: web.Application) -> None:
        self._unsubscribe()

    # -- pages ----------------------------------------------------------------------------

    async def page(self, _: web.Request) -> web.Response:
        return web.Response(
            body=self._shell,
            content_type="text/html",
            charset="utf-8",
            headers=_page_headers(),
        )

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        content_type = _STATIC.get(name)
        if content_type is None:
            raise ApiError(404, f"no such file: {name}")
        return web.Response(
            body=_static(name),
            content_type=content_type,
            charset="utf-8" if content_type.startswith("text/") else None,
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    # -- session --------------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        """Check a pasted token and turn it into a cookie session."""
        # JSON only: a cross-site form cannot send it without a CORS preflight, which this
        # gateway never grants, so no other site can log a browser in (login CSRF).
        if request.content_type != "application/json":
            raise ApiError(415, 'send the token as application/json: {"token": "…"}')
        try:
            body = json.loads(await request.read())
        except ValueError:
            raise ApiError(400, "body is not valid JSON") from None
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise ApiError(400, "token: is required")
        token = token.strip()
        if token.lower().startswith("bearer "):
            token = token[7:].strip()
        if len(token) > MAX_TOKEN_CHARS:
            raise ApiError(400, f"token: must be at most {MAX_TOKEN_CHARS} characters")
        try:
            caller = await self._verifier.authenticate(
                "GET", {"Authorization": f"Bearer {token}"}, {}
            )
        except Unauthorized as refused:
            raise ApiError(401, str(refused)) from None
        except Forbidden as refused:
            raise ApiError(403, str(refused)) from None
        response = web.json_response(_who(caller))
        secure = request.secure
        response.set_cookie(
            SESSION_COOKIE, token, path="/", httponly=True, samesite="Strict", secure=secure
        )
        # Readable by the page's script, which echoes it in X-XSRF-TOKEN on every write.
        response.set_cookie(
            XSRF_COOKIE, new_xsrf_token(), path="/", samesite="Strict", secure=secure
        )
        log.info("ui session started", tenant=caller.tenant, user=caller.user)
        return response

    async def logout(self, _: web.Request) -> web.Response:
        response = web.Response(status=204)
        response.del_cookie(SESSION_COOKIE, path="/")
        response.del_cookie(XSRF_COOKIE, path="/")
        return response

    async def session(self, _: web.Request, caller: Principal) -> web.Response:
        return web.json_response(_who(caller))

    # -- data -----------------------------------------------------------------------------

    async def jobs(self, request: web.Request, caller: Principal) -> web.Response:
        """``GET /jobs`` as the API answers it, with ``startedAt``/``finishedAt`` per item."""
        page, selected = listing(request.query, JOB_FILTER_FIELDS)
        items = [view.model_dump(mode="json") for view in self._records.list(caller.tenant)]
        matching = [item for item in items if selected.matches(item)]
        body = page.body(matching, len(matching), "jobs")
        # Only the page's items need the record's timeline (``content`` and ``jobs`` are one
        # list of the same dicts).
        for item in body["content"]:
            item.update({"jobId": item["id"], **_times(self._records.record(item["id"]))})
        return web.json_response(body)

    async def job(self, request: web.Request, caller: Principal) -> web.Response:
        """The job page's data: the job, its timeline and its paragraphs' typed outputs."""
        job_id = request.match_info["id"]
        record = self._records.record(job_id)
        if record is None or record.tenant != caller.tenant:
            raise ApiError(404, f"job {job_id} not found")
        paragraphs = []
        for result in record.paragraphs:
            shown = ParagraphView.of(result).model_dump(mode="json")
            shown["outputs"] = output_parts(result.interpreter, result.output)
            paragraphs.append(shown)
        return web.json_response(
            {
                "job": job_summary(record),
                "timeline": [entry.model_dump(mode="json") for entry in record.timeline],
                "paragraphs": paragraphs,
            }
        )

    async def events(self, request: web.Request, caller: Principal) -> web.StreamResponse:
        return await self.stream.serve(request, caller.tenant, job_summary)

    async def folder(self, request: web.Request, caller: Principal) -> web.Response:
        """The files of one of the tenant's data folders."""
        folders = self._local_folders()
        return web.json_response(await folders.listing(caller.tenant, request.match_info["id"]))

    async def folder_file(self, request: web.Request, caller: Principal) -> web.StreamResponse:
        """One file of a data folder, always as a download."""
        folders = self._local_folders()
        path = folders.file(caller.tenant, request.match_info["id"], request.match_info["path"])
        return web.FileResponse(
            path,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(path.name)}",
                "X-Content-Type-Options": "nosniff",
            },
        )

    def _local_folders(self) -> LocalFolders:
        if self._folders is None:
            raise ApiError(404, "folders are not browsable on this gateway (not local stores)")
        return self._folders


def _who(caller: Principal) -> dict[str, Any]:
    return {"tenant": caller.tenant, "user": caller.user, "canWrite": caller.can_write}


def _page_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }
