"""Runs a note on a Zeppelin server over its REST API (configuration ``"engine": "zeppelin"``).

Configuration (extra fields of ``EnvironmentConfiguration``): ``url`` (e.g.
``http://zeppelin:8080``, a path prefix is kept), optional ``username``/``password`` (shiro
form login, the JSESSIONID cookie is kept for the session) and ``onParagraphError``
(``"continue"``, the default, or ``"stop"``).

One run: import the enabled paragraphs as a new note (``POST /api/notebook/import``; the server
drops ``defaultInterpreterGroup`` on import, so unprefixed paragraphs get ``%<group>`` first),
read the server's paragraph ids (``GET /api/notebook/job/{noteId}``, 0.9+ and <=0.8 shapes),
clear results, then run paragraph by paragraph (``POST /api/notebook/run/{noteId}/{pid}`` with
``{"params": variables}``). That call answers 200 even when the paragraph fails (<=0.9 answer
500 with the same body), so ``body.code`` decides; when no result comes back, the paragraph's
status is polled. Cancelling ``run`` sends ``DELETE /api/notebook/job/{noteId}`` and reports the
running paragraph as ABORT within :data:`STOP_BUDGET_SECONDS`. ``close`` deletes the imported
note.

Files: the server does not see the worker's disk. The workspace's ``input/`` and ``output/``
are NOT copied to or from Zeppelin; notes run by this engine must read and write data at
locations the server can reach, named by the ``inputFolder``/``outputFolder``/``datasetName``
params (``z.input("inputFolder")``, ``${inputFolder}``).

Only GET, PUT (clear), DELETE and the login are retried (5xx, connection errors, timeouts),
with exponential backoff; a POST is only resent when the connection was never established.
"""

import asyncio
import contextlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
import structlog

from adapters.engines import stop_on_paragraph_error, strip_ansi
from adapters.ports import EngineError, ParagraphListener
from schemas.jobs import EnvironmentConfiguration
from schemas.notes import Note, NoteRun, Paragraph, ParagraphResult, ParagraphStatus

log = structlog.get_logger(__name__)

#: Cancelling ``run`` returns within this time (the port promises 5 s).
STOP_BUDGET_SECONDS: Final = 4.0

_COMPLETED: Final = frozenset({"FINISHED", "ERROR", "ABORT"})
_NOT_STARTED: Final = frozenset({"READY", "UNKNOWN"})
_NOT_STARTED_POLLS: Final = 3
_TRACEBACK = "Traceback (most recent call last)"


def _now() -> datetime:
    return datetime.now(UTC)


class _Unreachable(Exception):
    """No HTTP answer (connection refused or dropped, timeout) after the allowed retries."""


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    payload: Any  # parsed JSON, else the text

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def body(self) -> Any:
        return self.payload.get("body") if isinstance(self.payload, dict) else None

    def cause(self) -> str:
        """``HTTP 500: <Zeppelin's message>`` for the bracket of an error message."""
        message: Any = self.payload
        if isinstance(message, dict):
            message = message.get("message") or message.get("status") or ""
        text = " ".join(str(message).split())[:300]
        return f"HTTP {self.status}: {text}" if text else f"HTTP {self.status}"


def _cause(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "request timed out"
    return str(exc) or type(exc).__name__


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:  # an HTML error page of a proxy, or no body
        return raw.decode("utf-8", "replace")


def _join_messages(result: Mapping[str, Any]) -> str:
    """``msg[].data`` joined, a newline between parts that do not end with one."""
    parts: list[str] = []
    messages = result.get("msg")
    for message in messages if isinstance(messages, list) else ():
        data = message.get("data") if isinstance(message, dict) else None
        if isinstance(data, str) and data:
            if parts and not parts[-1].endswith("\n"):
                parts.append("\n")
            parts.append(data)
    return "".join(parts)


def _error_line(text: str) -> str | None:
    """The short reason: the exception line of a Python traceback, else the first line."""
    lines = [line.rstrip() for line in strip_ansi(text).splitlines() if line.strip()]
    if not lines:
        return None
    if any(_TRACEBACK in line for line in lines):
        for line in reversed(lines):
            if not line[0].isspace() and not line.startswith("-"):
                return line
    return lines[0].strip()


def _status_paragraphs(body: Any) -> list[Mapping[str, Any]]:
    """Paragraphs of ``GET job/{noteId}``: 0.9+ ``{id, isRunning, paragraphs}``, <=0.8 a list."""
    entries = body.get("paragraphs") if isinstance(body, dict) else body
    if not isinstance(entries, list):
        return []
    return [entry for entry in entries if isinstance(entry, dict)]


def _note_path(note: Note, variables: Mapping[str, str]) -> str:
    """A fresh path per run: Zeppelin refuses to import onto an existing path."""
    name = (note.name or note.id or "note").replace("/", "_").strip() or "note"
    job = variables.get("jobId", "").replace("/", "_") or "run"
    return f"jobmanager/{job}/{name} {secrets.token_hex(4)}"


class ZeppelinSession:
    """One job on a Zeppelin server; implements ``adapters.ports.EngineSession``."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        url: str,
        username: str | None,
        password: str | None,
        stop_on_error: bool,
        variables: Mapping[str, str],
        request_timeout: float,
        connect_timeout: float,
        retries: int,
        backoff: float,
        poll_interval: float,
    ) -> None:
        self._http = http
        self._url = url
        self._username = username
        self._password = password
        self._stop_on_error = stop_on_error
        self._variables = dict(variables)
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=connect_timeout)
        # A paragraph may run for hours: no read deadline on the blocking run call.
        self._run_timeout = aiohttp.ClientTimeout(sock_connect=connect_timeout)
        self._retries = retries
        self._backoff = backoff
        self._poll_interval = poll_interval
        self._imported: list[str] = []
        self._closed = False

    # -- HTTP -------------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        idempotent: bool,
        blocking: bool = False,
        relogin: bool = True,
    ) -> _Reply:
        """One call; retried on 5xx/connection errors when idempotent, re-login once on 401."""
        attempt = 0
        while True:
            try:
                async with self._http.request(
                    method,
                    self._url + path,
                    json=json_body,
                    data=form,
                    timeout=self._run_timeout if blocking else self._timeout,
                    allow_redirects=False,
                ) as response:
                    reply = _Reply(response.status, _decode(await response.read()))
            except aiohttp.ClientConnectorError as exc:  # never connected: nothing was sent
                if attempt >= self._retries:
                    raise _Unreachable(_cause(exc)) from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                if not idempotent or attempt >= self._retries:
                    raise _Unreachable(_cause(exc)) from exc
            else:
                if reply.status == 401 and relogin and self._username is not None:
                    await self._login()  # the session expired; the call was not executed
                    relogin = False
                    continue
                if not (idempotent and reply.status >= 500 and attempt < self._retries):
                    return reply
            delay = self._backoff * 2**attempt
            attempt += 1
            log.info("zeppelin call retried", method=method, path=path, attempt=attempt)
            await asyncio.sleep(delay)

    async def _login(self) -> None:
        assert self._username is not None
        try:
            reply = await self._send(
                "POST",
                "/api/login",
                form={"userName": self._username, "password": self._password or ""},
                idempotent=True,
                relogin=False,
            )
        except _Unreachable as exc:
            raise EngineError(f"Unable to connect to Zeppelin[{exc}]") from None
        if not reply.ok:
            raise EngineError(f"Unable to log in to Zeppelin[{reply.cause()}]")

    async def _check(self) -> None:
        """Logs in when configured and checks that the server answers."""
        if self._username is not None:
            await self._login()
        try:
            reply = await self._send("GET", "/api/version", idempotent=True)
        except _Unreachable as exc:
            raise EngineError(f"Unable to connect to Zeppelin[{exc}]") from None
        if not reply.ok:
            raise EngineError(f"Unable to connect to Zeppelin[{reply.cause()}]")
        body = reply.body
        version = body.get("version") if isinstance(body, dict) else None
        log.info("zeppelin session started", url=self._url, version=version)

    # -- run --------------------------------------------------------------------------------

    async def run(self, note: Note, on_paragraph: ParagraphListener | None = None) -> NoteRun:
        if self._closed:
            raise EngineError("Unable to run model in Zeppelin[the session is closed]")
        enabled = [p for p in note.paragraphs if p.enabled]
        if not enabled:
            return NoteRun(paragraphs=())
        note_id = await self._import(note, enabled)
        server_ids = await self._paragraph_ids(note_id, enabled)
        await self._clear(note_id)
        results: list[ParagraphResult] = []
        stopped = False
        for paragraph, server_id in zip(enabled, server_ids, strict=True):
            if stopped:
                result = self._result(paragraph, note, ParagraphStatus.SKIPPED, "", None)
            else:
                result = await self._run_paragraph(
                    note, note_id, server_id, paragraph, on_paragraph
                )
            results.append(result)
            if on_paragraph is not None:
                await on_paragraph(result)
            stopped = stopped or (result.failed and self._stop_on_error)
        return NoteRun(paragraphs=tuple(results))

    async def _import(self, note: Note, enabled: Sequence[Paragraph]) -> str:
        group = note.default_interpreter_group
        document = {
            "name": _note_path(note, self._variables),
            "defaultInterpreterGroup": group,  # ignored by the import, kept for the record
            "paragraphs": [
                {
                    "id": p.id,
                    "title": p.title,
                    "text": p.text if p.interpreter else f"%{group}\n{p.text}",
                    "config": {"enabled": True},
                }
                for p in enabled
            ],
        }
        try:
            reply = await self._send(
                "POST", "/api/notebook/import", json_body=document, idempotent=False
            )
        except _Unreachable as exc:
            raise EngineError(f"Unable to import model into Zeppelin[{exc}]") from None
        if not reply.ok or not isinstance(reply.body, str) or not reply.body:
            raise EngineError(f"Unable to import model into Zeppelin[{reply.cause()}]")
        self._imported.append(reply.body)
        log.info("zeppelin note imported", note_id=reply.body, paragraphs=len(enabled))
        return reply.body

    async def _paragraph_ids(self, note_id: str, enabled: Sequence[Paragraph]) -> list[str]:
        """The server's ids, matched by id (kept by 0.9+ imports), else by position."""
        try:
            reply = await self._send("GET", f"/api/notebook/job/{note_id}", idempotent=True)
        except _Unreachable as exc:
            raise EngineError(f"Unable to import model into Zeppelin[{exc}]") from None
        if not reply.ok:
            raise EngineError(f"Unable to import model into Zeppelin[{reply.cause()}]")
        ids = [str(entry.get("id")) for entry in _status_paragraphs(reply.body)]
        wanted = [p.id for p in enabled]
        if set(wanted) <= set(ids):
            return wanted
        if len(ids) == len(wanted):
            return ids
        raise EngineError(
            "Unable to import model into Zeppelin[the imported note has "
            f"{len(ids)} paragraphs, expected {len(wanted)}]"
        )

    async def _clear(self, note_id: str) -> None:
        try:
            reply = await self._send("PUT", f"/api/notebook/{note_id}/clear", idempotent=True)
        except _Unreachable as exc:
            raise EngineError(f"Unable to clear model results in Zeppelin[{exc}]") from None
        if reply.status in (404, 405):  # <=0.8 has no clear; a fresh import has no results
            log.info("zeppelin clear not supported", note_id=note_id, status=reply.status)
        elif not reply.ok:
            raise EngineError(f"Unable to clear model results in Zeppelin[{reply.cause()}]")

    def _result(
        self,
        paragraph: Paragraph,
        note: Note,
        status: ParagraphStatus,
        output: str,
        error: str | None,
        started: datetime | None = None,
    ) -> ParagraphResult:
        return ParagraphResult(
            index=paragraph.index,
            id=paragraph.id,
            label=paragraph.label,
            interpreter=paragraph.interpreter or note.default_interpreter_group,
            status=status,
            output=output,
            error=error,
            started_at=started,
            finished_at=None if started is None else _now(),
        )

    async def _run_paragraph(
        self,
        note: Note,
        note_id: str,
        server_id: str,
        paragraph: Paragraph,
        on_paragraph: ParagraphListener | None,
    ) -> ParagraphResult:
        started = _now()
        try:
            status, output, error = await self._execute(note_id, server_id)
        except asyncio.CancelledError:
            aborted = self._result(
                paragraph, note, ParagraphStatus.ABORT, "", "Stopped", started=started
            )
            await self._abort(note_id, aborted, on_paragraph)
            raise
        return self._result(paragraph, note, status, output, error, started=started)

    async def _abort(
        self, note_id: str, aborted: ParagraphResult, on_paragraph: ParagraphListener | None
    ) -> None:
        """Stops the note's jobs and reports the paragraph as ABORT, within the budget."""
        try:
            async with asyncio.timeout(STOP_BUDGET_SECONDS):
                with contextlib.suppress(_Unreachable, TimeoutError):
                    async with asyncio.timeout(STOP_BUDGET_SECONDS / 2):
                        reply = await self._send(
                            "DELETE", f"/api/notebook/job/{note_id}", idempotent=True
                        )
                        if not reply.ok:
                            log.warning("zeppelin stop refused", cause=reply.cause())
                if on_paragraph is not None:
                    await on_paragraph(aborted)
        except TimeoutError:
            log.warning("zeppelin stop took too long", note_id=note_id)
        except Exception:  # the cancellation that brought us here must win
            log.exception("reporting the aborted paragraph failed", note_id=note_id)

    async def _execute(self, note_id: str, pid: str) -> tuple[ParagraphStatus, str, str | None]:
        path = f"/api/notebook/run/{note_id}/{pid}"
        try:
            reply = await self._send(
                "POST",
                path,
                json_body={"params": self._variables},
                idempotent=False,
                blocking=True,
            )
        except _Unreachable as exc:  # the answer was lost; the paragraph may still run
            log.warning("zeppelin run call lost, polling", paragraph=pid, cause=str(exc))
            return await self._await_paragraph(note_id, pid, str(exc))
        body = reply.body
        if isinstance(body, dict) and "code" in body:
            output = _join_messages(body)
            if body["code"] in ("SUCCESS", "KEEP_PREVIOUS_RESULT"):
                return ParagraphStatus.FINISHED, output, None
            status = await self._failed_status(note_id, pid)
            return status, output, _error_line(output) or f"Paragraph ended with {body['code']}"
        if reply.status in (401, 403, 404):
            raise EngineError(f"Unable to run model in Zeppelin[{reply.cause()}]")
        return await self._await_paragraph(note_id, pid, reply.cause())

    async def _failed_status(self, note_id: str, pid: str) -> ParagraphStatus:
        """ABORT when the server says the paragraph was stopped, else ERROR."""
        with contextlib.suppress(_Unreachable):
            reply = await self._send("GET", f"/api/notebook/job/{note_id}/{pid}", idempotent=True)
            if isinstance(reply.body, dict) and reply.body.get("status") == "ABORT":
                return ParagraphStatus.ABORT
        return ParagraphStatus.ERROR

    async def _await_paragraph(
        self, note_id: str, pid: str, cause: str
    ) -> tuple[ParagraphStatus, str, str | None]:
        """Polls the paragraph's status until it completed, then reads its results."""
        not_started = 0
        while True:
            try:
                reply = await self._send(
                    "GET", f"/api/notebook/job/{note_id}/{pid}", idempotent=True
                )
            except _Unreachable as exc:
                raise EngineError(f"Unable to run model in Zeppelin[{exc}]") from None
            if not reply.ok:
                raise EngineError(f"Unable to run model in Zeppelin[{reply.cause()}]")
            status = reply.body.get("status") if isinstance(reply.body, dict) else None
            if status in _COMPLETED:
                break
            if status in _NOT_STARTED or status is None:
                not_started += 1
                if not_started >= _NOT_STARTED_POLLS:
                    return ParagraphStatus.ERROR, "", f"Zeppelin did not run the paragraph[{cause}]"
            await asyncio.sleep(self._poll_interval)
        try:
            reply = await self._send(
                "GET", f"/api/notebook/{note_id}/paragraph/{pid}", idempotent=True
            )
        except _Unreachable as exc:
            raise EngineError(f"Unable to run model in Zeppelin[{exc}]") from None
        paragraph = reply.body if isinstance(reply.body, dict) else {}
        results = paragraph.get("results")
        output = _join_messages(results) if isinstance(results, dict) else ""
        if status == "FINISHED":
            return ParagraphStatus.FINISHED, output, None
        message = paragraph.get("errorMessage")
        error = _error_line(output) or _error_line(message if isinstance(message, str) else "")
        final = ParagraphStatus.ABORT if status == "ABORT" else ParagraphStatus.ERROR
        return final, output, error or f"Paragraph ended with {status}"

    # -- close ------------------------------------------------------------------------------

    async def close(self) -> None:
        """Deletes the imported notes (best effort, logged) and closes the HTTP session."""
        if self._closed:
            return
        self._closed = True
        try:
            for note_id in self._imported:
                try:
                    reply = await self._send("DELETE", f"/api/notebook/{note_id}", idempotent=True)
                except _Unreachable as exc:
                    log.warning("zeppelin note not deleted", note_id=note_id, cause=str(exc))
                    continue
                if not reply.ok and reply.status != 404:
                    log.warning("zeppelin note not deleted", note_id=note_id, cause=reply.cause())
            self._imported.clear()
        finally:
            await self._http.close()


class ZeppelinEngine:
    """Starts :class:`ZeppelinSession`; implements ``adapters.ports.ExecutionEngine``.

    Timeouts and retries are the engine's; server, credentials and error policy come from the
    environment configuration.
    """

    def __init__(
        self,
        *,
        request_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        poll_interval: float = 1.0,
    ) -> None:
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._retries = retries
        self._backoff = backoff
        self._poll_interval = poll_interval

    async def start(
        self,
        workspace: Path,
        variables: Mapping[str, str],
        configuration: EnvironmentConfiguration,
    ) -> ZeppelinSession:
        """Logs in and checks the server; ``workspace`` is not visible to it (see module doc)."""
        extra = configuration.model_extra or {}
        url = extra.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise EngineError(
                f"Invalid environment configuration[{configuration.id}: the zeppelin engine "
                "needs 'url', e.g. http://zeppelin:8080]"
            )
        username, password = extra.get("username"), extra.get("password")
        stop_on_error = stop_on_paragraph_error(configuration)
        # unsafe=True: keep cookies of servers addressed by IP (JSESSIONID from 127.0.0.1).
        http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        session = ZeppelinSession(
            http,
            url=url.rstrip("/"),
            username=str(username) if username else None,
            password=str(password) if password is not None else None,
            stop_on_error=stop_on_error,
            variables=variables,
            request_timeout=self._request_timeout,
            connect_timeout=self._connect_timeout,
            retries=self._retries,
            backoff=self._backoff,
            poll_interval=self._poll_interval,
        )
        try:
            await session._check()
        except BaseException:
            await session.close()
            raise
        return session
