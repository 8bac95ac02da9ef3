"""A local stand-in for a Zeppelin server's REST API, for the zeppelin engine's tests.

Implements the calls described in the shared notes (section 2) with their reply envelopes
``{"status", "message", "body"}``: shiro form login with a JSESSIONID cookie, version, import
(new note id, paragraph ids kept, ``defaultInterpreterGroup`` dropped), note job status (0.9+
shape, or the <=0.8 bare list), clear, blocking run of one paragraph (200 with ``body.code``
even on failure, or 500 like <=0.9), paragraph status and content, stop all, delete note.

The interpreter is tiny: the text must start with ``%python`` (the server's default group is
``spark``, which this server does not have, so unprefixed paragraphs fail); the script ``fail``
ends in ERROR with a Python traceback, ``sleep N`` runs N seconds (stopped by
``DELETE /api/notebook/job/{noteId}``, then ABORT), an empty script finishes without running,
anything else succeeds and echoes the script and the run's params.

Every call is recorded in :attr:`FakeZeppelin.calls`; :meth:`FakeZeppelin.fail_next` makes a
route answer an error a number of times first.
"""

import asyncio
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

SERVER_DEFAULT_GROUP = "spark"
_BODY: web.RequestKey[Any] = web.RequestKey("body", object)
_PREFIX = re.compile(r"^\s*%([\w.\-]+)")


@dataclass(frozen=True)
class Call:
    """One request: method, path (no query), JSON body or form, whether it carried a session."""

    method: str
    path: str
    body: Any
    authenticated: bool

    @property
    def line(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class FakeParagraph:
    id: str
    title: str | None
    text: str
    config: dict[str, Any]
    status: str = "READY"
    results: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    started: str | None = None
    finished: str | None = None


@dataclass
class FakeNote:
    id: str
    path: str
    paragraphs: list[FakeParagraph]
    raw: dict[str, Any]

    def paragraph(self, paragraph_id: str) -> FakeParagraph:
        for paragraph in self.paragraphs:
            if paragraph.id == paragraph_id:
                return paragraph
        raise web.HTTPNotFound(
            text=json.dumps(
                {"status": "NOT_FOUND", "message": f"No such paragraph: {paragraph_id}"}
            ),
            content_type="application/json",
        )


def _reply(body: Any = None, *, status: int = 200, message: str = "") -> web.Response:
    names = {200: "OK", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND"}
    envelope: dict[str, Any] = {"status": names.get(status, "INTERNAL_SERVER_ERROR")}
    envelope["message"] = message
    if body is not None:
        envelope["body"] = body
    return web.json_response(envelope, status=status)


class FakeZeppelin:
    """The server; ``url`` is set between :meth:`start` and :meth:`close`."""

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        error_status: int = 200,
        legacy_job_status: bool = False,
    ) -> None:
        self.username = username
        self.password = password
        self.error_status = error_status  # 200 (0.10+) or 500 (<=0.9) for a failed paragraph
        self.legacy_job_status = legacy_job_status
        self.import_error: str | None = None  # message of a 500 answer to the import
        self.stop_hangs = False  # DELETE job never answers
        self.calls: list[Call] = []
        self.notes: dict[str, FakeNote] = {}
        self.deleted: list[FakeNote] = []
        self.sleeping = asyncio.Event()  # set when a `sleep N` paragraph starts
        self.aborted = asyncio.Event()  # set when a running paragraph was stopped
        self._sessions: set[str] = set()
        self._failures: dict[tuple[str, str], list[int]] = {}
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._counter = 0
        self._server: TestServer | None = None
        self.url = ""

    # -- test controls -------------------------------------------------------------------

    def fail_next(self, method: str, route: str, times: int = 1, status: int = 503) -> None:
        """Answer ``status`` to the next ``times`` calls of a route, named as registered."""
        self._failures.setdefault((method, route), []).extend([status] * times)

    def lines(self) -> list[str]:
        """``"METHOD path"`` of every call, in order."""
        return [call.line for call in self.calls]

    async def start(self) -> str:
        self._server = TestServer(self._app(), host="127.0.0.1")
        await self._server.start_server()
        self.url = str(self._server.make_url("")).rstrip("/")
        return self.url

    async def close(self) -> None:
        for task in self._running.values():
            task.cancel()
        if self._server is not None:
            await self._server.close()

    # -- app -----------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/api/login", self._login)
        app.router.add_get("/api/version", self._version)
        app.router.add_post("/api/notebook/import", self._import)
        app.router.add_get("/api/notebook/job/{note_id}", self._note_status)
        app.router.add_delete("/api/notebook/job/{note_id}", self._stop_all)
        app.router.add_get("/api/notebook/job/{note_id}/{paragraph_id}", self._paragraph_status)
        app.router.add_post("/api/notebook/run/{note_id}/{paragraph_id}", self._run)
        app.router.add_put("/api/notebook/{note_id}/clear", self._clear)
        app.router.add_get("/api/notebook/{note_id}/paragraph/{paragraph_id}", self._paragraph)
        app.router.add_delete("/api/notebook/{note_id}", self._delete)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body: Any = None
        if request.content_type == "application/x-www-form-urlencoded":
            body = dict(await request.post())
        elif request.can_read_body:
            text = await request.text()
            body = json.loads(text) if text else None
        authenticated = request.cookies.get("JSESSIONID") in self._sessions
        self.calls.append(Call(request.method, request.path, body, authenticated))
        request[_BODY] = body
        route = request.match_info.route.resource
        key = (request.method, route.canonical if route is not None else request.path)
        pending = self._failures.get(key)
        if pending:
            return _reply(status=pending.pop(0), message="injected failure")
        public = request.path in ("/api/login", "/api/version")
        if self.username is not None and not public and not authenticated:
            return _reply(status=401, message="Unauthorized")
        response: web.StreamResponse = await handler(request)
        return response

    def _note(self, request: web.Request) -> FakeNote:
        note_id = request.match_info["note_id"]
        note = self.notes.get(note_id)
        if note is None:
            raise web.HTTPNotFound(
                text=json.dumps({"status": "NOT_FOUND", "message": f"Note {note_id} not found"}),
                content_type="application/json",
            )
        return note

    async def _login(self, request: web.Request) -> web.Response:
        form = request[_BODY] or {}
        if form.get("userName") != self.username or form.get("password") != self.password:
            return _reply(status=403, message="")
        token = secrets.token_hex(8)
        self._sessions.add(token)
        response = _reply({"principal": self.username, "ticket": token, "roles": "[]"})
        response.set_cookie("JSESSIONID", token, path="/", httponly=True)
        return response

    async def _version(self, request: web.Request) -> web.Response:
        return _reply({"version": "0.11.2", "git-commit-id": "", "git-timestamp": ""})

    async def _import(self, request: web.Request) -> web.Response:
        if self.import_error is not None:
            return _reply(status=500, message=self.import_error)
        raw = request[_BODY]
        if not isinstance(raw, dict) or not isinstance(raw.get("paragraphs"), list):
            return _reply(status=500, message="Fail to import note: invalid note JSON")
        path = "/" + str(raw.get("name", "Untitled"))
        if any(note.path == path for note in self.notes.values()):
            return _reply(status=500, message=f"Note '{path}' existed")
        self._counter += 1
        note_id = f"2FAKE{self._counter:04d}"
        paragraphs = [
            FakeParagraph(
                id=p.get("id") or f"paragraph_{self._counter}_{i}",
                title=p.get("title"),
                text=p.get("text") or "",
                config=dict(p.get("config") or {}),
            )
            for i, p in enumerate(raw["paragraphs"])
        ]
        self.notes[note_id] = FakeNote(note_id, path, paragraphs, raw)
        return _reply(note_id)

    async def _note_status(self, request: web.Request) -> web.Response:
        note = self._note(request)
        entries = [
            {"id": p.id, "status": p.status, "progress": "0"}
            | ({"started": p.started} if p.started else {})
            | ({"finished": p.finished} if p.finished else {})
            for p in note.paragraphs
        ]
        if self.legacy_job_status:
            return _reply(entries)
        running = any(p.status in ("PENDING", "RUNNING") for p in note.paragraphs)
        return _reply({"id": note.id, "isRunning": running, "paragraphs": entries})

    async def _paragraph_status(self, request: web.Request) -> web.Response:
        paragraph = self._note(request).paragraph(request.match_info["paragraph_id"])
        return _reply({"id": paragraph.id, "status": paragraph.status, "progress": "0"})

    async def _paragraph(self, request: web.Request) -> web.Response:
        paragraph = self._note(request).paragraph(request.match_info["paragraph_id"])
        return _reply(
            {
                "id": paragraph.id,
                "text": paragraph.text,
                "status": paragraph.status,
                "results": paragraph.results,
                "config": paragraph.config,
            }
        )

    async def _clear(self, request: web.Request) -> web.Response:
        for paragraph in self._note(request).paragraphs:
            paragraph.results = None
        return _reply()

    async def _stop_all(self, request: web.Request) -> web.Response:
        note = self._note(request)
        if self.stop_hangs:
            await asyncio.Event().wait()  # until the client hangs up
        for (note_id, _), task in list(self._running.items()):
            if note_id == note.id:
                task.cancel()
        return _reply()

    async def _delete(self, request: web.Request) -> web.Response:
        note = self._note(request)
        del self.notes[note.id]
        self.deleted.append(note)
        return _reply()

    async def _run(self, request: web.Request) -> web.Response:
        note = self._note(request)
        paragraph = note.paragraph(request.match_info["paragraph_id"])
        params = (request[_BODY] or {}).get("params") or {}
        paragraph.params = dict(params)
        paragraph.status = "RUNNING"
        paragraph.started = "Mon Jan 01 00:00:00 UTC 2024"
        # Like Jetty, the run goes on when the client hangs up; only a stop ends it early.
        task = asyncio.ensure_future(self._execute(note.id, paragraph))
        self._running[(note.id, paragraph.id)] = task
        await asyncio.shield(task)
        results = paragraph.results or {"code": "SUCCESS", "msg": []}
        status = 200 if results["code"] == "SUCCESS" else self.error_status
        return _reply(results, status=status)

    async def _execute(self, note_id: str, paragraph: FakeParagraph) -> None:
        try:
            await self._interpret(paragraph)
        except asyncio.CancelledError:  # stopped by DELETE job (or the server closing)
            paragraph.status = "ABORT"
            paragraph.results = {"code": "ERROR", "msg": [{"type": "TEXT", "data": "aborted\n"}]}
            self.aborted.set()
        finally:
            self._running.pop((note_id, paragraph.id), None)
            paragraph.finished = "Mon Jan 01 00:00:01 UTC 2024"

    async def _interpret(self, paragraph: FakeParagraph) -> None:
        match = _PREFIX.match(paragraph.text)
        name = match.group(1) if match else SERVER_DEFAULT_GROUP
        script = paragraph.text[match.end() :].strip() if match else paragraph.text.strip()
        if name != "python":
            paragraph.status = "ERROR"
            text = f"Interpreter {name} not found\n"
            paragraph.results = {"code": "ERROR", "msg": [{"type": "TEXT", "data": text}]}
            return
        if not script:
            paragraph.status = "FINISHED"
            paragraph.results = {"code": "SUCCESS", "msg": []}
            return
        if script == "fail":
            paragraph.status = "ERROR"
            trace = (
                "Traceback (most recent call last):\n"
                '  File "<stdin>", line 1, in <module>\n'
                "RuntimeError: failure requested\n"
            )
            paragraph.results = {"code": "ERROR", "msg": [{"type": "TEXT", "data": trace}]}
            return
        if script.startswith("sleep "):
            self.sleeping.set()
            await asyncio.sleep(float(script.split()[1]))
        paragraph.status = "FINISHED"
        echo = [
            {"type": "TEXT", "data": f"ran: {script}"},
            {"type": "TEXT", "data": f"params: {json.dumps(paragraph.params, sort_keys=True)}\n"},
        ]
        paragraph.results = {"code": "SUCCESS", "msg": echo}
