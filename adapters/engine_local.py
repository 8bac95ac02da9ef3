"""Runs Zeppelin notes locally: Python in one Jupyter kernel per job, %sh with bash.

:class:`LocalNoteEngine` starts the job's kernel (ipykernel, run by this worker's interpreter)
in the workspace; the :class:`LocalNoteSession` it returns runs notes there, so state persists
across Python paragraphs, as with Zeppelin's IPython interpreter. Mirrors Zeppelin's run-all
closely enough for batch jobs (shared notes, sections 1 and 3): disabled paragraphs are left
out, empty ones finish without running, %md/%html/%angular are shown rather than run, and
dynamic forms are filled from the job's variables where Zeppelin's SIMPLE form type applies.
Unlike Zeppelin, a failing paragraph does not stop the run unless the environment
configuration says ``"onParagraphError": "stop"``.
"""

import asyncio
import codecs
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from adapters.engines import stop_on_paragraph_error, strip_ansi
from adapters.ports import EngineError, ParagraphListener
from schemas.jobs import EnvironmentConfiguration
from schemas.notes import (
    MAX_OUTPUT_BYTES,
    TRUNCATED_MARKER,
    Note,
    NoteRun,
    Paragraph,
    ParagraphResult,
    ParagraphStatus,
    apply_simple_forms,
)

log = logging.getLogger(__name__)

#: Source of ``z``, sent to every kernel the engine starts.
ZEPPELIN_CONTEXT = Path(__file__).with_name("zeppelin_context.py")
#: How long a kernel may take to answer ``kernel_info`` and install ``z``.
START_TIMEOUT_SECONDS = 60.0
# After an interrupt, how long the paragraph gets to stop before the kernel is killed.
_INTERRUPT_GRACE_SECONDS = 2.0
# How long ``close`` lets the kernel shut down cleanly before killing it.
_SHUTDOWN_GRACE_SECONDS = 1.0
# How long a cancelled run waits for ``on_paragraph`` to take the ABORT result.
_ABORT_REPORT_SECONDS = 1.0
# Waiting for the kernel to answer on IOPub, after kernel_info, before asking again.
_IOPUB_CHECK_SECONDS = 0.5
# How long a killed process, or a finished bash, gets to exit or close its pipes.
_CLOSE_GRACE_SECONDS = 5.0
_STDERR_TAIL_BYTES = 16 * 1024
_DEFAULT_REPR = re.compile(r"<[\w.]+ object( at 0x[0-9a-f]+)?>")
# The argv of ipykernel's own kernel spec, run by an explicit interpreter; without the history
# database, so a start costs no SQLite file and no ~/.ipython writes.
_KERNEL_ARGS = ("-m", "ipykernel_launcher", "-f", "{connection_file}")
_KERNEL_OPTIONS = ("--HistoryManager.enabled=False",)

_T = TypeVar("_T")


class _Kind(Enum):
    PYTHON = "python"
    SHELL = "shell"
    MARKDOWN = "markdown"
    HTML = "html"


_INTERPRETERS: Mapping[str, _Kind] = {
    "python": _Kind.PYTHON,
    "python.python": _Kind.PYTHON,
    "python.ipython": _Kind.PYTHON,
    "ipython": _Kind.PYTHON,
    "sh": _Kind.SHELL,
    "sh.sh": _Kind.SHELL,
    "shell": _Kind.SHELL,
    "md": _Kind.MARKDOWN,
    "md.md": _Kind.MARKDOWN,
    "markdown": _Kind.MARKDOWN,
    "html": _Kind.HTML,
    "angular": _Kind.HTML,
}


def _resolve(name: str, default_group: str) -> _Kind | None:
    """Zeppelin's lookup: "" is the default group; `%name` is first tried inside that group."""
    if not name:
        return _INTERPRETERS.get(default_group)
    kind = _INTERPRETERS.get(name)
    if kind is None and "." not in name:
        kind = _INTERPRETERS.get(f"{default_group}.{name}")
    return kind


_PRIVATE_PREFIXES = ("JOBMANAGER_", "KAFKA_")
_PRIVATE_WORDS = ("SECRET", "TOKEN", "PASSWORD", "CREDENTIAL")


def note_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The worker's environment minus its own settings and anything that looks like a secret.

    Notes are user code: they must not read the JWT secret, broker credentials or MindSphere
    tokens the worker runs with.
    """
    return {
        name: value
        for name, value in environ.items()
        if not name.upper().startswith(_PRIVATE_PREFIXES)
        and not any(word in name.upper() for word in _PRIVATE_WORDS)
    }


def _now() -> datetime:
    return datetime.now(UTC)


class _TextTail:
    """Keeps the last ``limit`` characters added to it (cleared by ``clear_output``)."""

    def __init__(self, limit: int = MAX_OUTPUT_BYTES) -> None:
        self._limit = limit
        self._chunks: list[str] = []
        self._size = 0
        self._truncated = False
        self._clear_pending = False

    def add(self, text: str) -> None:
        if not text:
            return
        if self._clear_pending:
            self.clear()
        self._chunks.append(text)
        self._size += len(text)
        if self._size > 2 * self._limit:
            self._compact()

    def clear(self, wait: bool = False) -> None:
        """Forget the text so far; with ``wait``, only once more text comes (Jupyter's rule)."""
        self._clear_pending = wait
        if not wait:
            self._chunks.clear()
            self._size = 0
            self._truncated = False

    def _compact(self) -> None:
        joined = "".join(self._chunks)
        if len(joined) > self._limit:
            joined = joined[-self._limit :]
            self._truncated = True
        self._chunks = [joined]
        self._size = len(joined)

    def text(self) -> str:
        self._compact()
        text = "".join(self._chunks)
        return TRUNCATED_MARKER + text if self._truncated else text


class _ByteTail:
    """Keeps the last ``limit`` bytes written to it."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._data = bytearray()

    def add(self, chunk: bytes) -> None:
        self._data += chunk
        if len(self._data) > 2 * self._limit:
            del self._data[: -self._limit]

    def text(self) -> str:
        return bytes(self._data[-self._limit :]).decode("utf-8", "replace")


@dataclass(frozen=True)
class _Outcome:
    status: ParagraphStatus
    output: str = ""
    error: str | None = None
    error_name: str | None = None
    error_value: str | None = None
    traceback: str | None = None


def _kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (started in a new session)."""
    with contextlib.suppress(OSError):  # already gone (ESRCH)
        os.killpg(pid, signal.SIGKILL)


def _watch_exit(pid: int) -> tuple["asyncio.Future[None]", Callable[[], None]]:
    """A future set when child ``pid`` exits (without reaping it), and a function to stop."""
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def set_exited(*_: object) -> None:
        if not exited.done():
            exited.set_result(None)

    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux >= 5.3: a thread waits, without reaping
        waiter = loop.run_in_executor(None, _wait_no_reap, pid)
        waiter.add_done_callback(set_exited)
        return exited, lambda: None

    def exited_now() -> None:
        loop.remove_reader(pidfd)
        set_exited()

    loop.add_reader(pidfd, exited_now)

    def stop() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)

    return exited, stop


def _wait_no_reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


async def _drain(stream: asyncio.StreamReader, sink: Callable[[bytes], None]) -> None:
    while chunk := await stream.read(65536):
        sink(chunk)


def _display_text(data: Mapping[str, Any]) -> str:
    """An execute_result/display_data as text: text/plain, else text/html as ``%html``.

    A default repr such as ``<IPython.core.display.HTML object>`` gives way to the HTML.
    """
    text, html = data.get("text/plain"), data.get("text/html")
    if isinstance(html, str) and (
        not isinstance(text, str) or _DEFAULT_REPR.fullmatch(text.strip())
    ):
        return f"%html {html}\n"
    if isinstance(text, str):
        return text if text.endswith("\n") else text + "\n"
    return ""


class _OneKernelSpec(KernelSpecManager):
    """Answers every kernel name with one spec: the worker's interpreter runs the kernel."""

    def __init__(self, spec: KernelSpec) -> None:
        super().__init__()
        self._spec = spec

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return self._spec


class _KernelDied(Exception):
    pass


class _Kernel:
    """One ipykernel process with its manager and client, owned by one session."""

    def __init__(
        self,
        manager: AsyncKernelManager,
        process: "subprocess.Popen[bytes]",
        stderr_pipe: int,
    ) -> None:
        self.manager = manager
        self.process = process
        self.client: AsyncKernelClient = manager.client()
        self.client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=True)
        self.exited, self._unwatch = _watch_exit(process.pid)
        self.stderr = _ByteTail(_STDERR_TAIL_BYTES)
        self._stderr_pipe = stderr_pipe
        self._stderr_transport: asyncio.ReadTransport | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self.killed = False
        self._closed = False

    @classmethod
    async def launch(
        cls, python: str, workspace: Path, env: Mapping[str, str], runtime_dir: Path
    ) -> "_Kernel":
        """Start the process; raise OSError when it cannot be started."""
        spec = KernelSpec(
            argv=[python, *_KERNEL_ARGS, *_KERNEL_OPTIONS],
            display_name="Python 3 (job)",
            language="python",
            interrupt_mode="signal",
        )
        manager = AsyncKernelManager(
            kernel_name="python3",
            kernel_spec_manager=_OneKernelSpec(spec),
            transport="ipc",  # sockets in our private directory: no ports, no TCP
            ip=str(runtime_dir / "kernel"),
            connection_file=str(runtime_dir / "kernel.json"),
        )
        read_end, write_end = os.pipe()
        try:
            await manager.start_kernel(
                cwd=str(workspace),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # ipykernel echoes captured fd 1 there
                stderr=write_end,  # its log, and echoes of captured fd 2: drained into a tail
            )
        except BaseException:
            os.close(read_end)
            process = getattr(manager.provisioner, "process", None)
            if isinstance(process, subprocess.Popen):
                _kill_group(process.pid)
                process.wait()  # just SIGKILLed: returns at once
            with contextlib.suppress(Exception):
                await manager.cleanup_resources()
            raise
        finally:
            os.close(write_end)
        process = getattr(manager.provisioner, "process", None)
        assert isinstance(process, subprocess.Popen)
        kernel = cls(manager, process, read_end)
        try:
            await kernel._drain_stderr()
        except BaseException:
            await kernel.close(grace=0)
            raise
        return kernel

    async def _drain_stderr(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        pipe = os.fdopen(self._stderr_pipe, "rb", buffering=0)
        self._stderr_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        self._stderr_task = asyncio.create_task(_drain(reader, self.stderr.add))

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return not self.killed and not self.exited.done()

    def kill(self) -> None:
        """SIGKILL the kernel and everything left in its process group; synchronous."""
        self.killed = True
        if self.process.returncode is None:  # not reaped: its pid is still its group's
            _kill_group(self.process.pid)

    def exit_description(self) -> str:
        code = self.process.returncode
        if code is None:
            return "exit status unknown"
        if code < 0:
            return f"killed by signal {-code}"
        return f"exit code {code}"

    def stderr_tail(self, limit: int = 2000) -> str:
        return self.stderr.text().strip()[-limit:]

    async def _until(self, awaitable: Awaitable[_T], deadline: float | None = None) -> _T:
        """Await ``awaitable`` unless the kernel exits first (_KernelDied) or time runs out."""
        task = asyncio.ensure_future(awaitable)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        waiting: set[asyncio.Future[Any]] = {task, self.exited}
        try:
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
        if task.done() and not task.cancelled():
            return task.result()
        if self.exited.done():
            raise _KernelDied
        raise TimeoutError

    async def _reply(self, msg_id: str) -> dict[str, Any]:
        while True:
            msg: dict[str, Any] = await self.client.get_shell_msg()
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg

    async def _any_iopub(self) -> None:
        await self.client.get_iopub_msg()

    async def wait_ready(self, deadline: float) -> None:
        """Return once the kernel answered kernel_info and IOPub delivers its messages."""
        while True:
            await self._until(self._reply(self.client.kernel_info()), deadline)
            # The IOPub subscription may not be live yet (ZeroMQ's slow joiner): the busy/idle
            # of this kernel_info proves it; if it was missed, ask again.
            check = min(deadline, time.monotonic() + _IOPUB_CHECK_SECONDS)
            with contextlib.suppress(TimeoutError):
                await self._until(self._any_iopub(), check)
                return
            if time.monotonic() >= deadline:
                raise TimeoutError

    async def run_silently(self, code: str, deadline: float) -> None:
        """Execute setup code, not shown and not in history; raise RuntimeError if it fails."""
        msg_id = self.client.execute(code, silent=True, store_history=False, stop_on_error=False)
        reply = (await self._until(self._reply(msg_id), deadline))["content"]
        if reply.get("status") != "ok":
            raise RuntimeError(f"{reply.get('ename')}: {reply.get('evalue')}")

    async def execute(
        self, code: str, metadata: Mapping[str, Any], output: _TextTail
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Run ``code``; return the execute_reply content and the IOPub error, if any.

        Raises _KernelDied. When cancelled, interrupts the kernel, gives the code
        ``_INTERRUPT_GRACE_SECONDS`` to stop, else kills the kernel (``killed``), then re-raises.
        """
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": False,  # the session decides what follows an error
        }
        request = self.client.session.msg("execute_request", content, metadata=dict(metadata))
        self.client.shell_channel.send(request)
        collector = asyncio.ensure_future(self._collect(request["header"]["msg_id"], output))
        waiting: set[asyncio.Future[Any]] = {collector, self.exited}
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await self._stop(collector)
            raise
        if collector.done():
            return collector.result()
        collector.cancel()
        raise _KernelDied

    async def _collect(
        self, msg_id: str, output: _TextTail
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        error: dict[str, Any] | None = None
        while True:
            msg: dict[str, Any] = await self.client.get_iopub_msg()
            if msg["parent_header"].get("msg_id") != msg_id:
                continue  # e.g. the end of an interrupted request
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status":
                if content.get("execution_state") == "idle":
                    break  # every output of the request was published before this
            elif kind == "stream":
                output.add(str(content.get("text", "")))
            elif kind in ("execute_result", "display_data"):
                output.add(_display_text(content.get("data") or {}))
            elif kind == "error":
                error = content
            elif kind == "clear_output":  # e.g. progress bars redrawn in place
                output.clear(wait=bool(content.get("wait")))
        return (await self._reply(msg_id))["content"], error

    async def _stop(self, collector: "asyncio.Future[Any]") -> None:
        stopped = False
        try:
            if self.alive:
                await self.manager.interrupt_kernel()  # SIGINT to the kernel's process group
                await asyncio.wait(
                    {collector, self.exited},
                    timeout=_INTERRUPT_GRACE_SECONDS,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                stopped = collector.done()
        finally:
            collector.cancel()
            if not stopped:
                self.kill()

    async def close(self, grace: float) -> None:
        """Shut down (cleanly within ``grace`` seconds, else SIGKILL) and release everything.

        Whatever the kernel started in its process group is killed too. Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if grace > 0 and self.alive:
                # On the shell channel, which ipykernel still accepts: sent on the control
                # channel, ipykernel 7 sometimes hangs for 10 s on exit (its control thread
                # flushes output while the main thread closes IOPub). Either way the kernel
                # resets its namespace first, so files a paragraph left open are flushed.
                request = self.client.session.msg("shutdown_request", {"restart": False})
                self.client.shell_channel.send(request)
                await asyncio.wait({self.exited}, timeout=grace)
        finally:
            self.kill()  # the kernel if still there, and what it left behind in its group
        try:
            await asyncio.wait({self.exited}, timeout=_CLOSE_GRACE_SECONDS)
            # Reaps the (now dead) process and removes connection and socket files.
            await self.manager.shutdown_kernel(now=True)
            if self._stderr_task is not None:
                await asyncio.wait({self._stderr_task}, timeout=_CLOSE_GRACE_SECONDS)
        finally:
            self.client.stop_channels()
            self._unwatch()
            if self._stderr_task is not None:
                self._stderr_task.cancel()
            if self._stderr_transport is not None:
                self._stderr_transport.close()
            elif self._stderr_pipe >= 0:
                with contextlib.suppress(OSError):
                    os.close(self._stderr_pipe)


# Runs in the kernel: loads the z shim as a module and installs it (see zeppelin_context.py).
_SETUP = """\
def _jobmanager_setup(source, variables):
    import sys, types
    module = types.ModuleType("_jobmanager_zeppelin_context")
    sys.modules[module.__name__] = module
    exec(compile(source, "<zeppelin_context>", "exec"), module.__dict__)
    module.install(get_ipython(), variables)
_jobmanager_setup({source!r}, {variables!r})
del _jobmanager_setup
"""


class LocalNoteSession:
    """The engine of one job: its kernel, and the bash processes of running %sh paragraphs.

    Implements ``adapters.ports.EngineSession``. A kernel that dies or is killed (a
    paragraph that would not stop) is replaced by a fresh one for the next Python paragraph.
    """

    def __init__(
        self,
        *,
        workspace: Path,
        variables: Mapping[str, str],
        stop_on_error: bool,
        python: str,
        bash: str,
        start_timeout: float,
    ) -> None:
        self._workspace = workspace
        self._variables = dict(variables)
        self._stop_on_error = stop_on_error
        self._python = python
        self._bash = bash
        self._start_timeout = start_timeout
        # PWD as a shell would set it; the inherited one names the worker's directory.
        self._env = {**note_environment(os.environ), "PWD": str(workspace), **self._variables}
        self._runtime_dir = Path(tempfile.mkdtemp(prefix="jobmanager-kernel-"))
        self._kernel: _Kernel | None = None
        self._shells: set[asyncio.subprocess.Process] = set()
        self._running = False
        self._closed = False

    @property
    def kernel_pid(self) -> int | None:
        """The pid of the current kernel process, if one is running."""
        return None if self._kernel is None else self._kernel.pid

    async def start(self) -> None:
        self._kernel = await self._start_kernel()

    async def _start_kernel(self) -> _Kernel:
        if self._closed:
            raise EngineError("The engine session is closed")
        deadline = time.monotonic() + self._start_timeout
        try:
            kernel = await _Kernel.launch(
                self._python, self._workspace, self._env, self._runtime_dir
            )
        except OSError as exc:  # e.g. no such interpreter
            reason = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
            raise EngineError(f"Failed to start the Python kernel [{reason}]") from exc
        try:
            await kernel.wait_ready(deadline)
            setup = _SETUP.format(
                source=ZEPPELIN_CONTEXT.read_text(encoding="utf-8"), variables=self._variables
            )
            await kernel.run_silently(setup, deadline)
        except BaseException as exc:
            await kernel.close(grace=0)
            if isinstance(exc, _KernelDied):
                reason = f"it exited ({kernel.exit_description()})"
            elif isinstance(exc, TimeoutError):
                reason = f"no answer within {self._start_timeout:g} s"
            elif isinstance(exc, Exception):
                reason = str(exc) or type(exc).__name__
            else:
                raise  # cancelled
            stderr = kernel.stderr_tail()
            log.warning("Python kernel did not start (%s); stderr tail: %s", reason, stderr)
            last_line = stderr.splitlines()[-1].strip()[:300] if stderr else ""
            detail = f": {last_line}" if last_line else ""
            raise EngineError(f"Failed to start the Python kernel [{reason}{detail}]") from exc
        log.debug("started Python kernel %d in %s", kernel.pid, self._workspace)
        return kernel

    async def _discard_kernel(self) -> None:
        kernel, self._kernel = self._kernel, None
        if kernel is not None:
            await kernel.close(grace=0)

    async def run(self, note: Note, on_paragraph: ParagraphListener | None = None) -> NoteRun:
        if self._closed:
            raise EngineError("The engine session is closed")
        if self._running:
            raise RuntimeError("this session is already running a note")
        self._running = True
        try:
            results: list[ParagraphResult] = []
            failed = False
            for paragraph in note.paragraphs:
                if not paragraph.enabled:
                    continue
                if failed and self._stop_on_error:
                    result = self._result(note, paragraph, _Outcome(ParagraphStatus.SKIPPED))
                else:
                    result = await self._run_paragraph(note, paragraph, on_paragraph)
                    failed = failed or result.failed
                results.append(result)
                if on_paragraph is not None:
                    await on_paragraph(result)
            return NoteRun(paragraphs=tuple(results))
        finally:
            self._running = False

    async def _run_paragraph(
        self, note: Note, paragraph: Paragraph, on_paragraph: ParagraphListener | None
    ) -> ParagraphResult:
        started = _now()
        kind = _resolve(paragraph.interpreter, note.default_interpreter_group)
        script = paragraph.script
        form = paragraph.local_properties.get("form", "simple" if kind is _Kind.MARKDOWN else "")
        if script and form == "simple":
            script = apply_simple_forms(script, self._variables)
        if kind in (_Kind.MARKDOWN, _Kind.HTML):  # rendering is the reader's business
            outcome = _Outcome(ParagraphStatus.FINISHED, script)
        elif not paragraph.script:  # Zeppelin skips empty paragraphs: FINISHED without running
            outcome = _Outcome(ParagraphStatus.FINISHED)
        elif kind is None:
            interpreter = paragraph.interpreter or note.default_interpreter_group
            error = f"interpreter {interpreter} is not available in this environment"
            outcome = _Outcome(ParagraphStatus.ERROR, error=error)
        else:
            outcome = await self._execute(note, paragraph, kind, script, started, on_paragraph)
        return self._result(note, paragraph, outcome, started)

    async def _execute(
        self,
        note: Note,
        paragraph: Paragraph,
        kind: _Kind,
        script: str,
        started: datetime,
        on_paragraph: ParagraphListener | None,
    ) -> _Outcome:
        output = _TextTail()
        try:
            if kind is _Kind.PYTHON:
                outcome = await self._run_python(note, paragraph, script, output)
            else:
                outcome = await self._run_shell(script, output)
        except asyncio.CancelledError:
            aborted = _Outcome(ParagraphStatus.ABORT, output.text())
            await self._report_abort(self._result(note, paragraph, aborted, started), on_paragraph)
            raise
        except OSError as exc:  # e.g. bash missing
            message = f"{type(exc).__name__}: {exc}"
            return _Outcome(ParagraphStatus.ERROR, output.text(), message)
        return outcome

    @staticmethod
    async def _report_abort(
        result: ParagraphResult, on_paragraph: ParagraphListener | None
    ) -> None:
        if on_paragraph is None:
            return
        try:
            await asyncio.wait_for(on_paragraph(result), _ABORT_REPORT_SECONDS)
        except Exception:
            log.warning("could not report aborted paragraph %s", result.label, exc_info=True)

    @staticmethod
    def _result(
        note: Note, paragraph: Paragraph, outcome: _Outcome, started: datetime | None = None
    ) -> ParagraphResult:
        return ParagraphResult(
            index=paragraph.index,
            id=paragraph.id,
            label=paragraph.label,
            interpreter=paragraph.interpreter or note.default_interpreter_group,
            status=outcome.status,
            output=outcome.output,
            error=outcome.error,
            started_at=started,
            finished_at=None if started is None else _now(),
            error_name=outcome.error_name,
            error_value=outcome.error_value,
            traceback=outcome.traceback,
        )

    async def _run_python(
        self, note: Note, paragraph: Paragraph, script: str, output: _TextTail
    ) -> _Outcome:
        kernel = self._kernel
        if kernel is None or not kernel.alive:
            await self._discard_kernel()
            kernel = self._kernel = await self._start_kernel()
        metadata = {
            "cellId": paragraph.id,
            "zeppelin": {  # z.getInterpreterContext() (see zeppelin_context.py)
                "noteId": note.id,
                "noteName": note.name,
                "paragraphId": paragraph.id,
                "paragraphTitle": paragraph.title,
                "paragraphText": paragraph.text,
                "replName": paragraph.interpreter or note.default_interpreter_group,
                "localProperties": paragraph.local_properties,
            },
        }
        try:
            reply, error = await kernel.execute(script, metadata, output)
        except _KernelDied:
            await self._discard_kernel()
            log.warning(
                "Python kernel %d died (%s); stderr tail: %s",
                kernel.pid,
                kernel.exit_description(),
                kernel.stderr_tail(),
            )
            message = f"Python kernel died ({kernel.exit_description()})"
            return _Outcome(ParagraphStatus.ERROR, output.text(), message)
        except asyncio.CancelledError:
            if kernel.killed:  # the paragraph would not stop
                await self._discard_kernel()
            raise
        return _python_outcome(reply, error, output.text())

    async def _run_shell(self, script: str, output: _TextTail) -> _Outcome:
        """`bash -c` in the workspace: stdout and stderr merged, non-zero exit is an ERROR."""
        process = await asyncio.create_subprocess_exec(
            self._bash,
            "-c",
            script,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self._workspace,
            env=self._env,
            start_new_session=True,  # its own process group: killed with all it starts
        )
        self._shells.add(process)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        try:
            assert process.stdout is not None
            reader = asyncio.create_task(
                _drain(process.stdout, lambda chunk: output.add(decoder.decode(chunk)))
            )
            try:
                returncode = await process.wait()
                _kill_group(process.pid)  # background jobs left by the script would hold the pipe
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reader), _CLOSE_GRACE_SECONDS)
            finally:
                reader.cancel()
                output.add(decoder.decode(b"", final=True))
        except BaseException:
            _kill_group(process.pid)
            await process.wait()
            raise
        finally:
            self._shells.discard(process)
        if returncode == 0:
            return _Outcome(ParagraphStatus.FINISHED, output.text())
        exit_value = returncode if returncode >= 0 else 128 - returncode  # killed by signal N
        return _Outcome(ParagraphStatus.ERROR, output.text(), f"ExitValue: {exit_value}")

    async def close(self) -> None:
        """Kill running %sh paragraphs, shut the kernel down, remove the kernel's files."""
        if self._closed:
            return
        self._closed = True
        try:
            for process in self._shells:
                _kill_group(process.pid)
            for process in list(self._shells):
                await process.wait()
            kernel, self._kernel = self._kernel, None
            if kernel is not None:
                await kernel.close(grace=_SHUTDOWN_GRACE_SECONDS)
        finally:
            shutil.rmtree(self._runtime_dir, ignore_errors=True)


def _python_outcome(
    reply: Mapping[str, Any], error: Mapping[str, Any] | None, output: str
) -> _Outcome:
    """Map an execute_reply (and the IOPub error) to the paragraph's outcome."""
    status = reply.get("status")
    if status == "ok":
        return _Outcome(ParagraphStatus.FINISHED, output)
    if status != "error":  # "aborted": the kernel dropped the request
        return _Outcome(ParagraphStatus.ERROR, output, f"Python kernel answered {status!r}")
    details = {**(error or {}), **reply}
    name = str(details.get("ename") or "Error")
    value = str(details.get("evalue") or "")
    if name == "SystemExit" and value in ("", "0", "None"):
        return _Outcome(ParagraphStatus.FINISHED, output)  # sys.exit(0) ends a script normally
    lines = details.get("traceback") or (error or {}).get("traceback") or []
    traceback = strip_ansi("\n".join(str(line) for line in lines)).strip("\n") + "\n"
    if traceback.strip():  # shown after the paragraph's own output, as Zeppelin does
        separator = "\n" if output and not output.endswith("\n") else ""
        output = f"{output}{separator}{traceback}"
    else:
        traceback = ""
    return _Outcome(
        ParagraphStatus.ERROR,
        output,
        error=f"{name}: {value}" if value else name,
        error_name=name,
        error_value=value,
        traceback=traceback or None,
    )


class LocalNoteEngine:
    """Runs notes on this machine; implements ``adapters.ports.ExecutionEngine``.

    ``start`` launches the job's Jupyter kernel (ipykernel run by ``python_executable``,
    default: this worker's interpreter) with the workspace as working directory and
    ``variables`` on top of this process's environment; ``z`` and ``job_variables`` are
    installed in it. %sh paragraphs run with ``bash -c`` in the same directory and environment.
    """

    def __init__(
        self,
        *,
        python_executable: str | None = None,
        bash: str = "bash",
        start_timeout: float = START_TIMEOUT_SECONDS,
    ) -> None:
        self._python = python_executable or sys.executable
        self._bash = bash
        self._start_timeout = start_timeout

    async def start(
        self,
        workspace: Path,
        variables: Mapping[str, str],
        configuration: EnvironmentConfiguration,
    ) -> LocalNoteSession:
        session = LocalNoteSession(
            workspace=workspace,
            variables=variables,
            stop_on_error=stop_on_paragraph_error(configuration),
            python=self._python,
            bash=self._bash,
            start_timeout=self._start_timeout,
        )
        try:
            await session.start()
        except BaseException:
            await session.close()
            raise
        return session
