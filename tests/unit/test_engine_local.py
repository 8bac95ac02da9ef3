"""Running notes with ``adapters.engine_local.LocalNoteEngine`` (a real Jupyter kernel and bash)."""

import asyncio
import contextlib
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.engine_local import LocalNoteEngine, LocalNoteSession
from adapters.ports import EngineError
from schemas.jobs import EnvironmentConfiguration
from schemas.notes import (
    MAX_OUTPUT_BYTES,
    TRUNCATED_MARKER,
    Note,
    NoteRun,
    Paragraph,
    ParagraphResult,
    ParagraphStatus,
    parse_note,
)
from tests.fakes.notes import make_note

FIXTURES = Path(__file__).parent.parent / "fixtures" / "notes"
DEADLINE_SECONDS = 20.0
CANCEL_SECONDS = 5.0
VARIABLES = {
    "jobId": "job-1",
    "inputFolder": "in-1",
    "outputFolder": "out-2",
    "datasetName": "sensors",
}

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _config(**extra: Any) -> EnvironmentConfiguration:
    return EnvironmentConfiguration.model_validate({"id": "local", "name": "Local", **extra})


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A job workspace as the worker prepares it: input/ with two files and an empty output/."""
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "a.csv").write_text("x\n1\n")
    (tmp_path / "input" / "b.csv").write_text("x\n2\n")
    (tmp_path / "output").mkdir()
    return tmp_path.resolve()


async def _start(
    workspace: Path, configuration: EnvironmentConfiguration | None = None
) -> LocalNoteSession:
    return await asyncio.wait_for(
        LocalNoteEngine().start(workspace, VARIABLES, configuration or _config()),
        DEADLINE_SECONDS,
    )


@pytest.fixture
async def session(workspace: Path) -> AsyncIterator[LocalNoteSession]:
    """A started session in the workspace, closed after the test."""
    started = await _start(workspace)
    try:
        yield started
    finally:
        await asyncio.wait_for(started.close(), DEADLINE_SECONDS)


async def _run(session: LocalNoteSession, note: Note) -> NoteRun:
    return await asyncio.wait_for(session.run(note), DEADLINE_SECONDS)


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (PID 1 here does not reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _exited(pid: int) -> None:
    """Wait, without polling, until process ``pid`` has terminated; fail after the deadline."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()

    def exited() -> None:
        if not gone.done():
            gone.set_result(None)

    loop.add_reader(pidfd, exited)
    try:
        await asyncio.wait_for(gone, DEADLINE_SECONDS)
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    assert not _alive(pid)


class Beacon:
    """A local TCP server a paragraph connects to, to say it started (and send pids)."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[str] = asyncio.Queue()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> "Beacon":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.messages.put_nowait((await reader.read()).decode().strip())
        writer.close()

    def python(self) -> str:
        """Python statements that report the kernel's pid."""
        return (
            "import os, socket\n"
            f"with socket.create_connection(('127.0.0.1', {self.port})) as _s:\n"
            "    _s.sendall(str(os.getpid()).encode())\n"
        )

    async def pids(self) -> list[int]:
        message = await asyncio.wait_for(self.messages.get(), DEADLINE_SECONDS)
        return [int(pid) for pid in message.split()]


@pytest.mark.asyncio
async def test_success_fixture_runs_end_to_end(session: LocalNoteSession, workspace: Path) -> None:
    """success.zpln computes, writes output/result.txt and lists input/ into output/listing.txt."""
    run = await _run(session, parse_note((FIXTURES / "success.zpln").read_bytes()))

    assert run.succeeded, run.failure_summary()
    assert [r.status for r in run.paragraphs] == [ParagraphStatus.FINISHED] * 5
    assert (workspace / "output" / "result.txt").read_text() == "total=30\n"
    assert (workspace / "output" / "listing.txt").read_text().split() == ["a.csv", "b.csv"]
    markdown, compute = run.paragraphs[0], run.paragraphs[1]
    assert markdown.interpreter == "md"
    assert markdown.output.startswith("## Success note")
    assert compute.output == "total=30\n"
    assert compute.label == "Compute total"
    assert "a.csv" in run.paragraphs[3].output


@pytest.mark.asyncio
async def test_failing_fixture_keeps_running_after_error(
    session: LocalNoteSession, workspace: Path
) -> None:
    """failing.zpln: "Divide" fails with ZeroDivisionError and the later paragraph still runs."""
    run = await _run(session, parse_note((FIXTURES / "failing.zpln").read_bytes()))

    divide, after = run.paragraphs
    assert divide.status is ParagraphStatus.ERROR
    assert divide.error == "ZeroDivisionError: division by zero"
    assert (divide.error_name, divide.error_value) == ("ZeroDivisionError", "division by zero")
    assert divide.traceback is not None
    assert "ratio = numerator / 0" in divide.traceback
    assert divide.traceback in divide.output  # shown after the output, as Zeppelin does
    assert "\x1b[" not in divide.output
    assert after.status is ParagraphStatus.FINISHED
    assert (workspace / "output" / "after.txt").read_text() == "ran after the failure\n"
    assert run.failure_summary() == "Paragraph 'Divide' failed: ZeroDivisionError: division by zero"


@pytest.mark.asyncio
async def test_python_state_persists_across_paragraphs(session: LocalNoteSession) -> None:
    """Variables, imports and functions defined in one Python paragraph are seen by the next."""
    note = make_note(
        "%python\nimport math\ndef area(r):\n    return math.pi * r * r\nradius = 2",
        "%python\nprint(round(area(radius), 3))",
        "round(area(1), 2)",  # no prefix: the default group (python); last expression shown
        "%ipython\nprint(radius)",
    )

    run = await _run(session, note)

    assert [r.output for r in run.paragraphs] == ["", "12.566\n", "3.14\n", "2\n"]
    assert [r.interpreter for r in run.paragraphs] == ["python", "python", "python", "ipython"]
    again = await _run(session, make_note("print(radius + 1)"))  # and across runs of the session
    assert again.paragraphs[0].output == "3\n"


@pytest.mark.asyncio
async def test_raising_middle_paragraph(session: LocalNoteSession) -> None:
    """A raising middle paragraph is ERROR with the exception; later paragraphs still run."""
    note = make_note(
        "%python\nx = 10\nprint('before')",
        "%python\nprint('partial')\ny = x / 0",
        "%python\nprint(x + 1)",
        "%sh\necho still running",
    )

    run = await _run(session, note)

    first, middle, third, fourth = run.paragraphs
    assert first.status is ParagraphStatus.FINISHED
    assert middle.status is ParagraphStatus.ERROR
    assert middle.error == "ZeroDivisionError: division by zero"
    assert middle.output.startswith("partial\nTraceback (most recent call last):")
    assert middle.output.endswith("ZeroDivisionError: division by zero\n")
    assert third.output == "11\n"
    assert fourth.output == "still running\n"
    assert run.failure_summary() == "Paragraph 2 failed: ZeroDivisionError: division by zero"


@pytest.mark.asyncio
async def test_stop_on_error_skips_the_rest(workspace: Path) -> None:
    """With "onParagraphError": "stop", paragraphs after the first failure are SKIPPED."""
    session = await _start(workspace, _config(onParagraphError="stop"))
    reported: list[ParagraphResult] = []

    async def on_paragraph(result: ParagraphResult) -> None:
        reported.append(result)

    try:
        note = make_note("x = 1", "%sh\nexit 4", ("1 / 0", False), "%python\nx = 2", "%md skipped")
        run = await asyncio.wait_for(session.run(note, on_paragraph), DEADLINE_SECONDS)
    finally:
        await session.close()

    assert [r.status for r in run.paragraphs] == [
        ParagraphStatus.FINISHED,
        ParagraphStatus.ERROR,
        ParagraphStatus.SKIPPED,
        ParagraphStatus.SKIPPED,
    ]
    assert list(run.paragraphs) == reported
    skipped = run.paragraphs[2]
    assert (skipped.index, skipped.started_at, skipped.finished_at) == (3, None, None)
    assert run.failure_summary() == "Paragraph 2 failed: ExitValue: 4"


@pytest.mark.asyncio
async def test_invalid_on_paragraph_error_is_refused(workspace: Path) -> None:
    """An onParagraphError other than "continue"/"stop" fails the start with a clear message."""
    with pytest.raises(EngineError, match="onParagraphError"):
        await LocalNoteEngine().start(workspace, {}, _config(onParagraphError="halt"))


@pytest.mark.asyncio
async def test_shell_exit_code_is_exit_value(session: LocalNoteSession, workspace: Path) -> None:
    """`%sh` exiting 3 is ERROR "ExitValue: 3" with stdout and stderr merged, in the workspace."""
    note = make_note("%sh\necho out\necho err >&2\nexit 3", "%sh\npwd\nls input")

    run = await _run(session, note)

    failed, ok = run.paragraphs
    assert failed.status is ParagraphStatus.ERROR
    assert failed.error == "ExitValue: 3"
    assert failed.error_name is None
    assert failed.output == "out\nerr\n"
    assert ok.status is ParagraphStatus.FINISHED
    assert ok.output == f"{workspace}\na.csv\nb.csv\n"


@pytest.mark.asyncio
async def test_unknown_interpreter_is_not_available(session: LocalNoteSession) -> None:
    """`%spark`, `%sql`... are ERROR "interpreter X is not available..." and do not stop the run."""
    note = make_note("%spark\nsc.version", "%spark.pyspark\nsc", "%sql\nselect 1", "print('ok')")

    run = await _run(session, note)

    spark, pyspark, sql, python = run.paragraphs
    assert spark.status is ParagraphStatus.ERROR
    assert spark.error == "interpreter spark is not available in this environment"
    assert pyspark.error == "interpreter spark.pyspark is not available in this environment"
    assert sql.error == "interpreter sql is not available in this environment"
    assert python.output == "ok\n"


@pytest.mark.asyncio
async def test_default_group_resolution(session: LocalNoteSession) -> None:
    """Unprefixed paragraphs use the note's default group, and `%name` is tried inside it."""
    sh_run = await _run(
        session, make_note("echo from-default", "%python\nprint('py')", default_group="sh")
    )
    spark_run = await _run(session, make_note("sc.version", default_group="spark"))

    assert [r.output for r in sh_run.paragraphs] == ["from-default\n", "py\n"]
    assert sh_run.paragraphs[0].interpreter == "sh"
    assert spark_run.paragraphs[0].error == "interpreter spark is not available in this environment"


@pytest.mark.asyncio
async def test_display_disabled_and_empty_paragraphs(
    session: LocalNoteSession, workspace: Path
) -> None:
    """%md/%html/%angular finish with their text, empty ones finish unrun, disabled are left out."""
    note = make_note(
        "%md\n# Title\n*text*",
        ("%python\nopen('output/disabled.txt', 'w').write('x')", False),
        "%sh\n",
        "%spark\n",
        "%html <b>bold</b>",
        "%angular <div>{{x}}</div>",
    )

    run = await _run(session, note)

    assert [r.index for r in run.paragraphs] == [0, 2, 3, 4, 5]
    assert all(r.status is ParagraphStatus.FINISHED for r in run.paragraphs)
    assert [r.output for r in run.paragraphs] == [
        "# Title\n*text*",
        "",
        "",
        "<b>bold</b>",
        "<div>{{x}}</div>",
    ]
    assert not (workspace / "output" / "disabled.txt").exists()


@pytest.mark.asyncio
async def test_variables_reach_environment_and_z(session: LocalNoteSession) -> None:
    """Variables are environment variables (Python, %sh), `job_variables` and z's form values."""
    note = make_note(
        "import os\nprint(os.environ['inputFolder'], os.environ['jobId'], "
        "job_variables['datasetName'])",
        '%sh\necho "$inputFolder $outputFolder"',
        "print(z.input('inputFolder'), z.textbox('outputFolder', 'x'), z.input('nope', 'dflt'))",
        "print(z.select('datasetName', [('a', 'A')], 'a'), z.password('jobId'), z.password('no'))",
        "print(z.checkbox('nope', [('a', 'A'), 'b']), z.checkbox('nope', ['a'], ['c']))",
        "import sys\nprint(sys.executable)",
    )

    run = await _run(session, note)

    assert [r.output for r in run.paragraphs] == [
        "in-1 job-1 sensors\n",
        "in-1 out-2\n",
        "in-1 out-2 dflt\n",
        "sensors job-1 \n",
        "['a', 'b'] ['c']\n",
        f"{sys.executable}\n",  # the worker's interpreter runs the kernel
    ]


@pytest.mark.asyncio
async def test_forms_substituted_in_md_and_simple_sh_only(session: LocalNoteSession) -> None:
    """`${inputFolder}` is filled in %md and `%sh(form=simple)`, not in plain %sh or Python."""
    note = make_note(
        "%md Reading ${inputFolder} (${missing=none}, ${mode(Mode)=fast,fast|slow})",
        "%sh(form=simple)\necho '${inputFolder}' '${outputFolder=x}' '$${datasetName}'",
        "%sh\necho '${inputFolder}'",
        "print('${inputFolder}')",
    )

    run = await _run(session, note)

    assert [r.output for r in run.paragraphs] == [
        "Reading in-1 (none, fast)",
        "in-1 out-2 sensors\n",
        "${inputFolder}\n",
        "${inputFolder}\n",
    ]


@pytest.mark.asyncio
async def test_z_show_prints_table_for_frames(session: LocalNoteSession) -> None:
    """z.show prints a duck-typed data frame as `%table` TSV and anything else as print does."""
    frame = (
        "class Frame:\n"
        "    columns = ['name', 'n']\n"
        "    def __len__(self):\n"
        "        return 2\n"
        "    def to_csv(self, sep=',', index=True):\n"
        "        return sep.join(self.columns) + '\\n' + f'a{sep}1\\nb{sep}2\\n'\n"
    )
    note = make_note(frame + "z.show(Frame())", "z.show({'k': 1})")

    run = await _run(session, note)

    assert [r.output for r in run.paragraphs] == ["%table name\tn\na\t1\nb\t2\n", "{'k': 1}\n"]


@pytest.mark.asyncio
async def test_rich_output_and_clear_output(session: LocalNoteSession) -> None:
    """Displays show text/plain (HTML-only objects as `%html`); clear_output drops earlier text."""
    note = make_note(
        "from IPython.display import HTML, clear_output, display\n"
        "class Both:\n"
        "    def _repr_html_(self):\n"
        "        return '<table/>'\n"
        "    def __repr__(self):\n"
        "        return 'plain table'\n"
        "display(Both())\nHTML('<b>bold</b>')",
        "print('old')\nclear_output()\nprint('new')",
        "print('kept')\nclear_output(wait=True)",
    )

    run = await _run(session, note)

    assert [r.output for r in run.paragraphs] == [
        "plain table\n%html <b>bold</b>\n",
        "new\n",
        "kept\n",
    ]


@pytest.mark.asyncio
async def test_z_context_objects_and_unsupported_calls(session: LocalNoteSession) -> None:
    """getInterpreterContext names the running paragraph; put/get share; z.run raises."""
    note = Note(
        id="2ABCDEFGH",
        name="Context note",
        default_interpreter_group="python",
        paragraphs=(
            Paragraph(index=0, id="para-a", title="First", text="z.put('k', 41)", enabled=True),
            Paragraph(
                index=1,
                id="para-b",
                title=None,
                text="%python\nc = z.getInterpreterContext()\n"
                "print(c.getNoteId(), c.noteName, c.getParagraphId(), c.paragraphTitle)\n"
                "print(z.get('k') + 1, 'k' in z, z['nope'])\nz.remove('k')\nprint('k' in z)",
                enabled=True,
            ),
            Paragraph(index=2, id="para-c", title="Run", text="z.run('para-a')", enabled=True),
            Paragraph(
                index=3,
                id="para-d",
                title="Title",
                text="z.configure_mpl(width=1)\nz.angularBind('x', 1)\n"
                "print(z.getInterpreterContext().getParagraphTitle())",
                enabled=True,
            ),
        ),
    )

    run = await _run(session, note)

    assert run.paragraphs[1].output == "2ABCDEFGH Context note para-b None\n42 True None\nFalse\n"
    assert run.paragraphs[2].error_name == "NotImplementedError"
    assert run.paragraphs[3].output == "Title\n"


@pytest.mark.asyncio
async def test_fixture_with_forms_and_z(workspace: Path) -> None:
    """zeppelin_context.zpln reads input/ through z.input and forms and writes output/."""
    session = await _start(workspace)
    try:
        run = await _run(session, parse_note((FIXTURES / "zeppelin_context.zpln").read_bytes()))
    finally:
        await session.close()

    assert run.succeeded, run.failure_summary()
    assert run.paragraphs[0].output.startswith("## Summing in-1")
    assert run.paragraphs[2].output == "%table file\trows\na.csv\t1\nb.csv\t1\n"
    assert (workspace / "output" / "summary.txt").read_text() == "job-1 sensors 3\n"


@pytest.mark.asyncio
async def test_times_are_utc_and_ordered(session: LocalNoteSession) -> None:
    """started_at and finished_at are timezone-aware UTC and ordered."""
    run = await _run(session, make_note("%python\nx = 1", "%sh\ntrue"))
    for result in run.paragraphs:
        assert result.started_at is not None
        assert result.finished_at is not None
        assert result.started_at.utcoffset() == timedelta(0)
        assert result.started_at <= result.finished_at
    first_finished, second_started = run.paragraphs[0].finished_at, run.paragraphs[1].started_at
    assert first_finished is not None
    assert second_started is not None
    assert first_finished <= second_started


@pytest.mark.asyncio
async def test_fd_level_output_and_stdin(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """os.system output is captured, megabytes on fd 2 do not block, input() fails at once."""
    monkeypatch.delenv("PYTEST_CURRENT_TEST")  # else ipykernel leaves fds 1 and 2 to pytest
    note = make_note(
        "import os\nos.system('echo from-system')\nprint('after')",
        "import os\nos.write(2, b'x' * 4_000_000)\nprint('done')",
        "input()",
    )
    session = await _start(workspace)
    try:
        run = await _run(session, note)
    finally:
        await session.close()

    system, chatty, reading = run.paragraphs
    assert sorted(system.output.splitlines()) == ["after", "from-system"]  # order may vary
    assert chatty.status is ParagraphStatus.FINISHED
    assert len(chatty.output.encode()) <= MAX_OUTPUT_BYTES  # "done" may come before the x's
    assert reading.error_name == "StdinNotImplementedError"


@pytest.mark.asyncio
async def test_syntax_error_and_system_exit(session: LocalNoteSession) -> None:
    """A SyntaxError fails its paragraph only; sys.exit(0) is success, sys.exit(2) an error."""
    note = make_note(
        "def broken(:\n    pass",
        "import sys\nsys.exit(0)",
        "import sys\nsys.exit(2)",
        "print('alive')",
    )

    run = await _run(session, note)

    syntax, exit0, exit2, alive = run.paragraphs
    assert syntax.error is not None
    assert syntax.error.startswith("SyntaxError: invalid syntax")
    assert (exit0.status, exit0.output) == (ParagraphStatus.FINISHED, "")
    assert exit2.error == "SystemExit: 2"
    assert alive.output == "alive\n"


@pytest.mark.asyncio
async def test_output_is_bounded(session: LocalNoteSession) -> None:
    """Huge Python or %sh output keeps only the last 64 KiB, marked as truncated."""
    note = make_note(
        "for i in range(100000):\n    print(f'line {i}')\nprint('THE END')",
        "%sh\nseq 1 200000\necho THE END",
    )

    run = await _run(session, note)

    python, shell = (r.output for r in run.paragraphs)
    for output in (python, shell):
        assert len(output.encode()) <= MAX_OUTPUT_BYTES
        assert output.startswith(TRUNCATED_MARKER)
    assert python.endswith("line 99999\nTHE END\n")
    assert shell.endswith("199999\n200000\nTHE END\n")


@pytest.mark.asyncio
async def test_kernel_death_is_reported_and_a_fresh_kernel_follows(
    session: LocalNoteSession,
) -> None:
    """os._exit in a paragraph is "Python kernel died (exit code 7)"; later ones get a new one."""
    note = make_note(
        "import os\nstate = 'old'\nprint(os.getpid())",
        "import os\nos._exit(7)",
        "import os\nprint(os.getpid(), 'state' in globals(), z.input('jobId'))",
    )

    run = await _run(session, note)

    first, dead, fresh = run.paragraphs
    assert dead.status is ParagraphStatus.ERROR
    assert dead.error == "Python kernel died (exit code 7)"
    new_pid, has_state, job_id = fresh.output.split()
    assert (has_state, job_id) == ("False", "job-1")
    assert int(new_pid) == session.kernel_pid != int(first.output)
    await _exited(int(first.output))


@pytest.mark.asyncio
async def test_cancel_interrupts_and_the_kernel_stays_usable(session: LocalNoteSession) -> None:
    """Cancelling a `while True` paragraph interrupts it within 5 s: ABORT, kernel state kept."""
    reported: list[ParagraphResult] = []

    async def on_paragraph(result: ParagraphResult) -> None:
        reported.append(result)

    async with Beacon() as beacon:
        note = make_note("x = 41", f"print('looping')\n{beacon.python()}while True:\n    pass")
        task = asyncio.create_task(session.run(note, on_paragraph))
        (pid,) = await beacon.pids()
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < CANCEL_SECONDS

    assert [r.status for r in reported] == [ParagraphStatus.FINISHED, ParagraphStatus.ABORT]
    assert reported[1].output == "looping\n"
    assert session.kernel_pid == pid
    assert _alive(pid)
    again = await _run(session, make_note("print(x + 1)"))
    assert again.paragraphs[0].output == "42\n"


@pytest.mark.asyncio
async def test_cancel_kills_a_kernel_that_ignores_the_interrupt(
    session: LocalNoteSession,
) -> None:
    """A paragraph ignoring the interrupt is killed with its children within 5 s."""
    stubborn = (
        "import os, signal, socket, subprocess, threading\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "child = subprocess.Popen(['sleep', '600'])  # ignores SIGINT too\n"
        "with socket.create_connection(('127.0.0.1', PORT)) as s:\n"
        "    s.sendall(f'{os.getpid()} {child.pid}'.encode())\n"
        "threading.Event().wait()"
    )
    async with Beacon() as beacon:
        task = asyncio.create_task(
            session.run(make_note(stubborn.replace("PORT", str(beacon.port))))
        )
        kernel_pid, child_pid = await beacon.pids()
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < CANCEL_SECONDS

    await _exited(kernel_pid)
    await _exited(child_pid)
    assert session.kernel_pid is None
    again = await _run(session, make_note("print('restarted')"))  # a fresh kernel
    assert again.paragraphs[0].output == "restarted\n"


@pytest.mark.asyncio
async def test_timeout_stops_a_busy_paragraph(session: LocalNoteSession) -> None:
    """asyncio.wait_for timing out a busy paragraph returns within 5 s."""
    async with Beacon() as beacon:
        task = asyncio.create_task(
            session.run(make_note(f"{beacon.python()}while True:\n    pass"))
        )
        await beacon.pids()
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(task, 0.05)
        assert time.monotonic() - started < CANCEL_SECONDS


@pytest.mark.asyncio
async def test_cancel_kills_the_bash_process_group(session: LocalNoteSession) -> None:
    """Cancelling run() during %sh kills bash and its background jobs, reports ABORT, re-raises."""
    reported: list[ParagraphResult] = []

    async def on_paragraph(result: ParagraphResult) -> None:
        reported.append(result)

    async with Beacon() as beacon:
        script = (
            f"%sh\nsleep 600 &\necho started\necho $$ $! > /dev/tcp/127.0.0.1/{beacon.port}\nwait"
        )
        task = asyncio.create_task(session.run(make_note(script), on_paragraph))
        bash_pid, sleep_pid = await beacon.pids()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    await _exited(bash_pid)
    await _exited(sleep_pid)
    assert [(r.status, r.output) for r in reported] == [(ParagraphStatus.ABORT, "started\n")]


@pytest.mark.asyncio
async def test_close_kills_the_kernel_and_its_children(workspace: Path) -> None:
    """close() stops the kernel and what it started; it is idempotent and ends the session."""
    session = await _start(workspace)
    kernel_pid = session.kernel_pid
    assert kernel_pid is not None
    run = await _run(
        session,
        make_note(
            "import os, subprocess\nsleeper = subprocess.Popen(['sleep', '600'])\n"
            "print(os.getpid(), sleeper.pid)"
        ),
    )
    pid, sleeper_pid = (int(p) for p in run.paragraphs[0].output.split())
    assert pid == kernel_pid

    await asyncio.wait_for(session.close(), DEADLINE_SECONDS)
    await asyncio.wait_for(session.close(), DEADLINE_SECONDS)

    assert not _alive(kernel_pid)
    await _exited(sleeper_pid)
    with pytest.raises(EngineError, match="closed"):
        await session.run(make_note("1"))


@pytest.mark.asyncio
async def test_on_paragraph_is_called_once_per_paragraph_in_order(
    session: LocalNoteSession,
) -> None:
    """on_paragraph gets each enabled paragraph's result, in order, as it finishes."""
    reported: list[tuple[int, ParagraphStatus]] = []

    async def on_paragraph(result: ParagraphResult) -> None:
        reported.append((result.index, result.status))

    note = make_note("x = 1", ("x = 2", False), "%sh\nexit 1", "%md m", "print(x)")
    run = await asyncio.wait_for(session.run(note, on_paragraph), DEADLINE_SECONDS)

    assert reported == [(r.index, r.status) for r in run.paragraphs]
    assert [index for index, _ in reported] == [0, 2, 3, 4]


@pytest.mark.asyncio
async def test_kernel_that_cannot_start_is_an_engine_error(workspace: Path) -> None:
    """A missing interpreter, or one that exits at once, fails start() with EngineError."""
    crashing = workspace / "crashing-python"
    crashing.write_text("#!/bin/sh\necho 'No module named ipykernel_launcher' >&2\nexit 1\n")
    crashing.chmod(0o755)

    with pytest.raises(
        EngineError,
        match=r"^Failed to start the Python kernel \[No such file or directory: .*missing\]$",
    ):
        await LocalNoteEngine(python_executable=str(workspace / "missing")).start(
            workspace, {}, _config()
        )
    with pytest.raises(EngineError) as failure:
        await asyncio.wait_for(
            LocalNoteEngine(python_executable=str(crashing)).start(workspace, {}, _config()),
            DEADLINE_SECONDS,
        )
    assert str(failure.value) == (
        "Failed to start the Python kernel [it exited (exit code 1): "
        "No module named ipykernel_launcher]"
    )


@pytest.mark.asyncio
async def test_kernel_start_deadline_kills_the_process(workspace: Path) -> None:
    """A kernel that never answers fails start() after the deadline and is killed."""
    silent = workspace / "silent-python"
    silent.write_text(f"#!/bin/sh\necho $$ > {workspace}/silent.pid\nexec sleep 600\n")
    silent.chmod(0o755)
    engine = LocalNoteEngine(python_executable=str(silent), start_timeout=0.5)

    with pytest.raises(
        EngineError, match=r"^Failed to start the Python kernel \[no answer within 0\.5 s\]$"
    ):
        await asyncio.wait_for(engine.start(workspace, {}, _config()), DEADLINE_SECONDS)

    await _exited(int((workspace / "silent.pid").read_text()))


@pytest.mark.asyncio
async def test_cancelled_start_leaves_no_process(workspace: Path) -> None:
    """Cancelling start() kills the kernel being started."""
    silent = workspace / "silent-python"
    silent.write_text(
        "#!/bin/bash\nexec 3<>/dev/tcp/127.0.0.1/$BEACON_PORT\necho $$ >&3\nexec 3>&-\n"
        "exec sleep 600\n"
    )
    silent.chmod(0o755)
    async with Beacon() as beacon:
        engine = LocalNoteEngine(python_executable=str(silent))
        variables = {"BEACON_PORT": str(beacon.port)}  # variables are environment variables
        task = asyncio.create_task(engine.start(workspace, variables, _config()))
        (pid,) = await beacon.pids()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()

    await _exited(pid)


def test_notes_never_see_the_workers_secrets() -> None:
    """Worker settings and secret-looking variables are removed from a note's environment."""
    from adapters.engine_local import note_environment

    seen = note_environment(
        {
            "PATH": "/usr/bin",
            "JOBMANAGER_JWT_SECRET": "s",
            "JOBMANAGER_MINDSPHERE_TOKEN": "t",
            "KAFKA_BOOTSTRAP_SERVERS": "k",
            "AWS_SECRET_ACCESS_KEY": "a",
            "GITHUB_TOKEN": "g",
            "DB_PASSWORD": "p",
            "HOME": "/root",
        }
    )
    assert seen == {"PATH": "/usr/bin", "HOME": "/root"}
