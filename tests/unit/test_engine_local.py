"""Running notes with ``adapters.engine_local.LocalNoteEngine`` (real subprocesses)."""

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.engine_local import LocalNoteEngine
from schemas.notes import (
    MAX_OUTPUT_BYTES,
    TRUNCATED_MARKER,
    Note,
    NoteRun,
    Paragraph,
    ParagraphStatus,
    parse_note,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "notes"
DEADLINE_SECONDS = 20.0

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _note(*texts: str | tuple[str, bool], default_group: str = "python") -> Note:
    """A note from paragraph texts; ``(text, False)`` makes a disabled paragraph."""
    paragraphs = []
    for index, item in enumerate(texts):
        text, enabled = item if isinstance(item, tuple) else (item, True)
        paragraphs.append(
            Paragraph(index=index, id=f"p{index}", title=None, text=text, enabled=enabled)
        )
    return Note(
        id="2TESTNOTE",
        name="test",
        default_interpreter_group=default_group,
        paragraphs=tuple(paragraphs),
    )


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A job workspace as the worker prepares it: input/ with two files and an empty output/."""
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "a.csv").write_text("x\n1\n")
    (tmp_path / "input" / "b.csv").write_text("x\n2\n")
    (tmp_path / "output").mkdir()
    return tmp_path.resolve()


async def _run(note: Note, workspace: Path, variables: dict[str, str] | None = None) -> NoteRun:
    return await asyncio.wait_for(
        LocalNoteEngine().run(note, workspace, variables or {}), DEADLINE_SECONDS
    )


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (zombies may linger under some PID 1s)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until true; fail after the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


@pytest.mark.asyncio
async def test_success_fixture_runs_end_to_end(workspace: Path) -> None:
    """success.zpln computes, writes output/result.txt and lists input/ into output/listing.txt."""
    note = parse_note((FIXTURES / "success.zpln").read_bytes())

    run = await _run(note, workspace)

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
async def test_failing_fixture_keeps_running_after_error(workspace: Path) -> None:
    """failing.zpln: "Divide" fails with ZeroDivisionError and the later paragraph still runs."""
    note = parse_note((FIXTURES / "failing.zpln").read_bytes())

    run = await _run(note, workspace)

    divide, after = run.paragraphs
    assert divide.status is ParagraphStatus.ERROR
    assert divide.error == "ZeroDivisionError: division by zero"
    assert "ratio = numerator / 0" in divide.output  # traceback with the paragraph's source
    assert after.status is ParagraphStatus.FINISHED
    assert (workspace / "output" / "after.txt").read_text() == "ran after the failure\n"
    assert run.failure_summary() == "Paragraph 'Divide' failed: ZeroDivisionError: division by zero"


@pytest.mark.asyncio
async def test_python_state_persists_across_paragraphs(workspace: Path) -> None:
    """Variables, imports and functions defined in one %python paragraph are seen by the next."""
    note = _note(
        "%python\nimport math\ndef area(r):\n    return math.pi * r * r\nradius = 2",
        "%python\nprint(round(area(radius), 3))",
        "round(area(1), 2)",  # no prefix: the default group (python); last expression shown
    )

    run = await _run(note, workspace)

    assert [r.output for r in run.paragraphs] == ["", "12.566\n", "3.14\n"]
    assert [r.interpreter for r in run.paragraphs] == ["python", "python", "python"]


@pytest.mark.asyncio
async def test_raising_middle_paragraph(workspace: Path) -> None:
    """A raising middle paragraph is ERROR with the exception; later paragraphs still run."""
    note = _note(
        "%python\nx = 10\nprint('before')",
        "%python\nprint('partial')\ny = x / 0",
        "%python\nprint(x + 1)",
        "%sh\necho still running",
    )

    run = await _run(note, workspace)

    first, middle, third, fourth = run.paragraphs
    assert first.status is ParagraphStatus.FINISHED
    assert middle.status is ParagraphStatus.ERROR
    assert middle.error == "ZeroDivisionError: division by zero"
    assert middle.output.startswith("partial\nTraceback (most recent call last):")
    assert "python_runner" not in middle.output
    assert third.status is ParagraphStatus.FINISHED
    assert third.output == "11\n"
    assert fourth.output == "still running\n"
    assert run.failure_summary() == "Paragraph 2 failed: ZeroDivisionError: division by zero"


@pytest.mark.asyncio
async def test_shell_exit_code_is_exit_value(workspace: Path) -> None:
    """`%sh` exiting 3 is ERROR "ExitValue: 3" with stdout and stderr merged."""
    note = _note("%sh\necho out\necho err >&2\nexit 3", "%sh\necho next")

    run = await _run(note, workspace)

    failed, ok = run.paragraphs
    assert failed.status is ParagraphStatus.ERROR
    assert failed.error == "ExitValue: 3"
    assert failed.output == "out\nerr\n"
    assert ok.status is ParagraphStatus.FINISHED
    assert ok.error is None


@pytest.mark.asyncio
async def test_shell_runs_in_workspace(workspace: Path) -> None:
    """`%sh` runs with the workspace as working directory."""
    run = await _run(_note("%sh\npwd\nls input"), workspace)
    assert run.paragraphs[0].output == f"{workspace}\na.csv\nb.csv\n"


@pytest.mark.asyncio
async def test_unknown_interpreter_is_not_available(workspace: Path) -> None:
    """`%spark` is ERROR "interpreter spark is not available..." and does not stop the run."""
    note = _note("%spark\nsc.version", "%spark.pyspark\nsc", "%python\nprint('ok')")

    run = await _run(note, workspace)

    spark, pyspark, python = run.paragraphs
    assert spark.status is ParagraphStatus.ERROR
    assert spark.error == "interpreter spark is not available in this environment"
    assert pyspark.error == "interpreter spark.pyspark is not available in this environment"
    assert python.output == "ok\n"


@pytest.mark.asyncio
async def test_default_group_resolution(workspace: Path) -> None:
    """Unprefixed paragraphs use the note's default group, and `%name` is tried inside it."""
    sh_note = _note("echo from-default", "%python\nprint('py')", default_group="sh")
    spark_note = _note("sc.version", default_group="spark")
    python_note = _note("%ipython\nprint('ipy')")

    sh_run = await _run(sh_note, workspace)
    spark_run = await _run(spark_note, workspace)
    python_run = await _run(python_note, workspace)

    assert [r.output for r in sh_run.paragraphs] == ["from-default\n", "py\n"]
    assert sh_run.paragraphs[0].interpreter == "sh"
    assert spark_run.paragraphs[0].error == (
        "interpreter spark is not available in this environment"
    )
    assert python_run.paragraphs[0].output == "ipy\n"


@pytest.mark.asyncio
async def test_markdown_disabled_and_empty_paragraphs(workspace: Path) -> None:
    """%md finishes with its text, empty paragraphs finish unrun, disabled ones are left out."""
    note = _note(
        "%md\n# Title\n*text*",
        ("%python\nopen('output/disabled.txt', 'w').write('x')", False),
        "%sh\n",
        "%spark\n",
        "%markdown ok",
    )

    run = await _run(note, workspace)

    assert [r.index for r in run.paragraphs] == [0, 2, 3, 4]
    assert all(r.status is ParagraphStatus.FINISHED for r in run.paragraphs)
    assert [r.output for r in run.paragraphs] == ["# Title\n*text*", "", "", "ok"]
    assert not (workspace / "output" / "disabled.txt").exists()


@pytest.mark.asyncio
async def test_variables_reach_python_and_shell(workspace: Path) -> None:
    """Variables are `job_variables` and environment in Python, and environment in %sh."""
    note = _note(
        "%python\nimport os\nprint(job_variables['INPUT_FOLDER'], os.environ['OUTPUT_FOLDER'])",
        "%python\nprint(sorted(job_variables))",
        '%sh\necho "$INPUT_FOLDER $OUTPUT_FOLDER"',
    )
    variables = {"INPUT_FOLDER": "in-1", "OUTPUT_FOLDER": "out-2"}

    run = await _run(note, workspace, variables)

    assert [r.output for r in run.paragraphs] == [
        "in-1 out-2\n",
        "['INPUT_FOLDER', 'OUTPUT_FOLDER']\n",
        "in-1 out-2\n",
    ]


@pytest.mark.asyncio
async def test_times_are_utc_and_ordered(workspace: Path) -> None:
    """started_at and finished_at are timezone-aware UTC and ordered."""
    run = await _run(_note("%python\nx = 1", "%sh\ntrue"), workspace)
    for result in run.paragraphs:
        assert result.started_at is not None
        assert result.finished_at is not None
        assert result.started_at.utcoffset() == timedelta(0)
        assert result.finished_at.utcoffset() == timedelta(0)
        assert result.started_at <= result.finished_at
    first_finished, second_started = run.paragraphs[0].finished_at, run.paragraphs[1].started_at
    assert first_finished is not None
    assert second_started is not None
    assert first_finished <= second_started


@pytest.mark.asyncio
async def test_raw_fd_writes_and_stdin_cannot_corrupt_the_protocol(workspace: Path) -> None:
    """os.system, os.write(1) and input() in a paragraph leave the runner protocol intact."""
    note = _note(
        "%python\nimport os\nos.system('echo noise; echo more noise >&2')\n"
        "os.write(1, b'raw bytes\\n')\nvalue = 41",
        "%python\ntry:\n    input()\nexcept EOFError:\n    print('eof')",
        "%python\nprint(value + 1)",
    )

    run = await _run(note, workspace)

    assert [r.status for r in run.paragraphs] == [ParagraphStatus.FINISHED] * 3
    assert [r.output for r in run.paragraphs][1:] == ["eof\n", "42\n"]


@pytest.mark.asyncio
async def test_child_death_is_reported_and_next_paragraph_gets_fresh_process(
    workspace: Path,
) -> None:
    """os._exit in a paragraph is "Python process exited with code N"; later ones run anew."""
    note = _note(
        "%python\nimport os\nstate = 'old'\nprint(os.getpid())",
        "%python\nimport os, sys\nsys.stderr.flush()\nos._exit(7)",
        "%python\nimport os\nprint(os.getpid(), 'state' in globals())",
    )

    run = await _run(note, workspace)

    first, dead, fresh = run.paragraphs
    assert dead.status is ParagraphStatus.ERROR
    assert dead.error == "Python process exited with code 7"
    assert fresh.status is ParagraphStatus.FINISHED
    new_pid, has_state = fresh.output.split()
    assert new_pid != first.output.strip()
    assert has_state == "False"


@pytest.mark.asyncio
async def test_syntax_error_and_system_exit(workspace: Path) -> None:
    """A SyntaxError fails its paragraph only; sys.exit(0) is success, sys.exit(2) an error."""
    note = _note(
        "%python\ndef broken(:\n    pass",
        "%python\nimport sys\nsys.exit(0)",
        "%python\nimport sys\nsys.exit(2)",
        "%python\nprint('alive')",
    )

    run = await _run(note, workspace)

    syntax, exit0, exit2, alive = run.paragraphs
    assert syntax.status is ParagraphStatus.ERROR
    assert syntax.error is not None
    assert syntax.error.startswith("SyntaxError:")
    assert exit0.status is ParagraphStatus.FINISHED
    assert exit2.error == "SystemExit: 2"
    assert alive.output == "alive\n"


@pytest.mark.asyncio
async def test_python_output_is_bounded(workspace: Path) -> None:
    """Huge Python output keeps only the last 64 KiB, marked as truncated."""
    note = _note("%python\nfor i in range(100000):\n    print(f'line {i}')\nprint('THE END')")

    run = await _run(note, workspace)

    output = run.paragraphs[0].output
    assert len(output.encode()) <= MAX_OUTPUT_BYTES
    assert output.startswith(TRUNCATED_MARKER)
    assert output.endswith("line 99999\nTHE END\n")


@pytest.mark.asyncio
async def test_shell_output_is_bounded(workspace: Path) -> None:
    """Huge %sh output keeps only the last 64 KiB, marked as truncated."""
    note = _note("%sh\nseq 1 200000\necho THE END")

    run = await _run(note, workspace)

    output = run.paragraphs[0].output
    assert len(output.encode()) <= MAX_OUTPUT_BYTES
    assert output.startswith(TRUNCATED_MARKER)
    assert output.endswith("199999\n200000\nTHE END\n")


@pytest.mark.asyncio
async def test_chatty_stderr_does_not_block(workspace: Path) -> None:
    """A child writing megabytes straight to fd 2 does not block on a full pipe."""
    note = _note(
        "%python\nimport os\nfor _ in range(64):\n    os.write(2, b'x' * 65536)\nprint('done')"
    )

    run = await _run(note, workspace)

    assert run.paragraphs[0].output == "done\n"


@pytest.mark.asyncio
async def test_cancellation_kills_python_child_and_its_children(workspace: Path) -> None:
    """Cancelling run() while Python blocks kills the child and what it started, then re-raises."""
    note = _note(
        "%python\nimport os, subprocess, threading\n"
        "sleeper = subprocess.Popen(['sleep', '600'])\n"
        "open('sleeper.pid', 'w').write(str(sleeper.pid))\n"
        "open('py.tmp', 'w').write(str(os.getpid()))\n"
        "os.replace('py.tmp', 'py.pid')\n"
        "threading.Event().wait()",
    )
    task = asyncio.create_task(LocalNoteEngine().run(note, workspace, {}))
    await _wait_until(lambda: _read_pid(workspace / "py.pid") is not None, "the Python child")
    python_pid = _read_pid(workspace / "py.pid")
    sleeper_pid = _read_pid(workspace / "sleeper.pid")
    assert python_pid is not None
    assert sleeper_pid is not None
    assert _alive(python_pid)
    assert _alive(sleeper_pid)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await _wait_until(lambda: not _alive(python_pid), "the Python child to die")
    await _wait_until(lambda: not _alive(sleeper_pid), "the grandchild to die")


@pytest.mark.asyncio
async def test_cancellation_kills_the_bash_process_group(workspace: Path) -> None:
    """Cancelling run() during %sh kills bash and its background jobs, then re-raises."""
    note = _note(
        "%sh\nsleep 600 &\necho $! > sleep.pid\necho $$ > bash.tmp\nmv bash.tmp bash.pid\nwait"
    )
    task = asyncio.create_task(LocalNoteEngine().run(note, workspace, {}))
    await _wait_until(lambda: _read_pid(workspace / "bash.pid") is not None, "bash")
    bash_pid = _read_pid(workspace / "bash.pid")
    sleep_pid = _read_pid(workspace / "sleep.pid")
    assert bash_pid is not None
    assert sleep_pid is not None

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await _wait_until(lambda: not _alive(bash_pid), "bash to die")
    await _wait_until(lambda: not _alive(sleep_pid), "the background sleep to die")


@pytest.mark.asyncio
async def test_timeout_kills_the_child(workspace: Path) -> None:
    """asyncio.wait_for timing out stops a busy Python paragraph and kills its process."""
    note = _note(
        "%python\nimport os\nopen('py.tmp', 'w').write(str(os.getpid()))\n"
        "os.replace('py.tmp', 'py.pid')\nwhile True:\n    pass"
    )
    engine = LocalNoteEngine()
    run = asyncio.create_task(engine.run(note, workspace, {}))
    await _wait_until(lambda: _read_pid(workspace / "py.pid") is not None, "the Python child")
    python_pid = _read_pid(workspace / "py.pid")
    assert python_pid is not None

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(run, 0.05)

    await _wait_until(lambda: not _alive(python_pid), "the Python child to die")


@pytest.mark.asyncio
async def test_child_is_stopped_after_a_normal_run(workspace: Path) -> None:
    """After run() returns, the Python child and its background children are gone."""
    note = _note(
        "%python\nimport os, subprocess\n"
        "sleeper = subprocess.Popen(['sleep', '600'])\n"
        "print(os.getpid(), sleeper.pid)"
    )

    run = await _run(note, workspace)

    python_pid, sleeper_pid = (int(pid) for pid in run.paragraphs[0].output.split())
    await _wait_until(lambda: not _alive(python_pid), "the Python child to stop")
    await _wait_until(lambda: not _alive(sleeper_pid), "its child to stop")
