"""Runs a Zeppelin note locally: %python in one persistent child process, %sh with bash.

Mirrors Zeppelin's run-all closely enough for batch jobs (see shared notes, sections 1 and 3.1):
disabled paragraphs are left out, empty ones finish without running, ``%md`` is never run.
Unlike Zeppelin, a failing paragraph does not stop the run; the caller decides from
:attr:`NoteRun.failed`.
"""

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from schemas.notes import (
    MAX_OUTPUT_BYTES,
    TRUNCATED_MARKER,
    Note,
    NoteRun,
    Paragraph,
    ParagraphResult,
    ParagraphStatus,
)

log = logging.getLogger(__name__)

RUNNER = Path(__file__).with_name("python_runner.py")
# Responses carry at most ~64 K characters of output plus a bounded traceback, JSON-escaped.
_RESPONSE_LINE_LIMIT = 16 * 1024 * 1024
_STDERR_TAIL_BYTES = 16 * 1024
# How long a finished child or a finished bash gets to close its pipes before we stop reading.
_CLOSE_GRACE_SECONDS = 5.0


class _Kind(Enum):
    PYTHON = "python"
    SHELL = "shell"
    MARKDOWN = "markdown"


_INTERPRETERS: Mapping[str, _Kind] = {
    "python": _Kind.PYTHON,
    "python.python": _Kind.PYTHON,
    "python.ipython": _Kind.PYTHON,
    "sh": _Kind.SHELL,
    "sh.sh": _Kind.SHELL,
    "shell": _Kind.SHELL,
    "md": _Kind.MARKDOWN,
    "md.md": _Kind.MARKDOWN,
    "markdown": _Kind.MARKDOWN,
}


def _resolve(name: str, default_group: str) -> _Kind | None:
    """Zeppelin's lookup: "" is the default group; `%name` is first tried inside that group."""
    if not name:
        return _INTERPRETERS.get(default_group)
    kind = _INTERPRETERS.get(name)
    if kind is None and "." not in name:
        kind = _INTERPRETERS.get(f"{default_group}.{name}")
    return kind


def _now() -> datetime:
    return datetime.now(UTC)


def _kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the process group led by ``process`` (started with start_new_session=True)."""
    with contextlib.suppress(OSError):  # already gone (ESRCH) or reaped
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()


class _TailBuffer:
    """Keeps the last ``limit`` bytes written to it."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._data = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        self._data += chunk
        if len(self._data) > 2 * self._limit:
            del self._data[: -self._limit]
            self.truncated = True

    def text(self) -> str:
        data = bytes(self._data)
        if len(data) > self._limit:
            data = data[-self._limit :]
            self.truncated = True
        text = data.decode("utf-8", "replace")
        return TRUNCATED_MARKER + text if self.truncated else text


async def _drain(stream: asyncio.StreamReader, sink: _TailBuffer) -> None:
    while chunk := await stream.read(65536):
        sink.add(chunk)


class _PythonDied(Exception):
    def __init__(self, returncode: int | None) -> None:
        super().__init__(f"Python process exited with code {returncode}")


@dataclass
class _PythonChild:
    process: asyncio.subprocess.Process
    stderr_task: asyncio.Task[None]
    stderr: _TailBuffer
    variables_sent: bool = False

    async def execute(self, code: str, variables: Mapping[str, str]) -> dict[str, Any]:
        """Send one paragraph, return the runner's response; raise _PythonDied if it died."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None
        assert stdout is not None
        request: dict[str, Any] = {"code": code}
        if not self.variables_sent:
            request["variables"] = dict(variables)
        try:
            stdin.write(json.dumps(request).encode() + b"\n")
            await stdin.drain()
            self.variables_sent = True
            line = await stdout.readline()
        except ConnectionError:  # includes BrokenPipeError
            line = b""
        if not line:
            raise _PythonDied(await self.process.wait())
        response = json.loads(line)
        if not isinstance(response, dict):
            raise TypeError("malformed response from the Python runner")
        return response

    async def close(self) -> None:
        """Stop the child and everything it started; safe to call more than once."""
        stdin = self.process.stdin
        if self.process.returncode is None and stdin is not None and not stdin.is_closing():
            stdin.close()  # the runner exits on EOF
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), _CLOSE_GRACE_SECONDS)
        self.kill()
        await self.process.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.stderr_task), _CLOSE_GRACE_SECONDS)
        self.stderr_task.cancel()

    def kill(self) -> None:
        _kill_group(self.process)


@dataclass
class _Session:
    """State of one ``run()``: the Python child and the running bash, both killed at the end."""

    note: Note
    workspace: Path
    variables: Mapping[str, str]
    python_executable: str
    bash: str
    env: dict[str, str] = field(default_factory=dict)
    python: _PythonChild | None = None
    shells: set[asyncio.subprocess.Process] = field(default_factory=set)

    def __post_init__(self) -> None:
        # PWD as a shell would set it; the inherited one names the worker's directory.
        self.env = {**os.environ, "PWD": str(self.workspace), **self.variables}

    def kill_all(self) -> None:
        """Synchronous, so it completes even while a cancellation is being delivered."""
        if self.python is not None:
            self.python.kill()
        for process in self.shells:
            _kill_group(process)

    async def close(self) -> None:
        self.kill_all()  # first, before anything can be interrupted
        for process in list(self.shells):
            await process.wait()
        if self.python is not None:
            python, self.python = self.python, None
            await python.close()

    async def run_python(self, script: str) -> tuple[ParagraphStatus, str, str | None]:
        if self.python is None:
            self.python = await self._start_python()
        try:
            response = await self.python.execute(script, self.variables)
        except _PythonDied as died:
            python, self.python = self.python, None
            await python.close()
            stderr = python.stderr.text().strip()
            log.warning("Python process died: %s; stderr tail: %s", died, stderr[-2000:])
            return ParagraphStatus.ERROR, stderr, str(died)
        except (ValueError, TypeError) as exc:  # garbage on the protocol pipe: drop this child
            python, self.python = self.python, None
            await python.close()
            return ParagraphStatus.ERROR, "", f"Python process protocol error: {exc}"
        output = str(response.get("output") or "")
        traceback = response.get("traceback")
        if traceback:  # shown after the paragraph's own output, as Zeppelin does
            separator = "\n" if output and not output.endswith("\n") else ""
            output = f"{output}{separator}{traceback}"
        if response.get("ok"):
            return ParagraphStatus.FINISHED, output, None
        return ParagraphStatus.ERROR, output, str(response.get("error") or "Python error")

    async def _start_python(self) -> _PythonChild:
        process = await asyncio.create_subprocess_exec(
            self.python_executable,
            str(RUNNER),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.workspace,
            env=self.env,
            start_new_session=True,  # its own process group: killed with all it starts
            limit=_RESPONSE_LINE_LIMIT,
        )
        assert process.stderr is not None
        stderr = _TailBuffer(_STDERR_TAIL_BYTES)
        task = asyncio.create_task(_drain(process.stderr, stderr))
        return _PythonChild(process=process, stderr_task=task, stderr=stderr)

    async def run_shell(self, script: str) -> tuple[ParagraphStatus, str, str | None]:
        process = await asyncio.create_subprocess_exec(
            self.bash,
            "-c",
            script,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.workspace,
            env=self.env,
            start_new_session=True,
        )
        self.shells.add(process)
        try:
            assert process.stdout is not None
            output = _TailBuffer(MAX_OUTPUT_BYTES)
            reader = asyncio.create_task(_drain(process.stdout, output))
            try:
                returncode = await process.wait()
                _kill_group(process)  # background jobs left by the script would hold the pipe
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reader), _CLOSE_GRACE_SECONDS)
            finally:
                reader.cancel()
        except BaseException:
            _kill_group(process)
            await process.wait()
            raise
        finally:
            self.shells.discard(process)
        text = output.text()
        if returncode == 0:
            return ParagraphStatus.FINISHED, text, None
        exit_value = returncode if returncode >= 0 else 128 - returncode  # killed by signal N
        return ParagraphStatus.ERROR, text, f"ExitValue: {exit_value}"


class LocalNoteEngine:
    """Runs notes on this machine; implements ``adapters.ports.ExecutionEngine``.

    Each ``run()`` has its own Python process (state shared by its %python paragraphs, started
    on the first one) and runs %sh paragraphs with ``bash -c``; both get ``variables`` on top of
    this process's environment and the workspace as working directory. Python code also sees
    them as the dict ``job_variables``. Cancelling ``run()`` kills every process it started.
    """

    def __init__(self, *, python_executable: str | None = None, bash: str = "bash") -> None:
        self._python_executable = python_executable or sys.executable
        self._bash = bash

    async def run(self, note: Note, workspace: Path, variables: Mapping[str, str]) -> NoteRun:
        session = _Session(
            note=note,
            workspace=workspace,
            variables=dict(variables),
            python_executable=self._python_executable,
            bash=self._bash,
        )
        results: list[ParagraphResult] = []
        try:
            for paragraph in note.paragraphs:
                if paragraph.enabled:
                    results.append(await self._run_paragraph(session, paragraph))
        finally:  # also on cancellation: kills the Python child and any bash group first
            await session.close()
        return NoteRun(paragraphs=tuple(results))

    async def _run_paragraph(self, session: _Session, paragraph: Paragraph) -> ParagraphResult:
        interpreter = paragraph.interpreter or session.note.default_interpreter_group
        started = _now()
        script = paragraph.script
        kind = _resolve(paragraph.interpreter, session.note.default_interpreter_group)
        status, output, error = ParagraphStatus.FINISHED, "", None
        if kind is _Kind.MARKDOWN:
            output = script  # rendering is the UI's business; never fails
        elif not script:
            pass  # Zeppelin skips empty paragraphs: FINISHED without running
        elif kind is None:
            status = ParagraphStatus.ERROR
            error = f"interpreter {interpreter} is not available in this environment"
        else:
            try:
                if kind is _Kind.PYTHON:
                    status, output, error = await session.run_python(script)
                else:
                    status, output, error = await session.run_shell(script)
            except OSError as exc:  # e.g. bash or the Python executable missing
                status, error = ParagraphStatus.ERROR, f"{type(exc).__name__}: {exc}"
        return ParagraphResult(
            index=paragraph.index,
            id=paragraph.id,
            label=paragraph.label,
            interpreter=interpreter,
            status=status,
            output=output,
            error=error,
            started_at=started,
            finished_at=_now(),
        )
