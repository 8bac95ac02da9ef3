"""Running notes with ``adapters.engine_zeppelin.ZeppelinEngine`` against a fake Zeppelin server."""

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.engine_zeppelin import ZeppelinEngine, ZeppelinSession
from adapters.ports import EngineError
from schemas.jobs import EnvironmentConfiguration
from schemas.notes import Note, NoteRun, ParagraphResult, ParagraphStatus
from tests.fakes.notes import make_note
from tests.fakes.zeppelin_server import FakeZeppelin

DEADLINE_SECONDS = 10.0
VARIABLES = {
    "jobId": "job-1",
    "inputFolder": "/data/in",
    "outputFolder": "/data/out",
    "datasetName": "sensors",
}

ServerFactory = Callable[..., Awaitable[FakeZeppelin]]


def _configuration(url: str, **extra: Any) -> EnvironmentConfiguration:
    return EnvironmentConfiguration.model_validate(
        {"id": "zeppelin", "name": "Zeppelin", "engine": "zeppelin", "url": url, **extra}
    )


def _engine(retries: int = 2) -> ZeppelinEngine:
    return ZeppelinEngine(
        request_timeout=5.0, connect_timeout=2.0, retries=retries, backoff=0.01, poll_interval=0.01
    )


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    """Starts fake servers on demand and closes them after the test."""
    servers: list[FakeZeppelin] = []

    async def make(**options: Any) -> FakeZeppelin:
        server = FakeZeppelin(**options)
        servers.append(server)
        await server.start()
        return server

    yield make
    for server in servers:
        await server.close()


async def _start(url: str, tmp_path: Path, **extra: Any) -> ZeppelinSession:
    return await asyncio.wait_for(
        _engine().start(tmp_path, VARIABLES, _configuration(url, **extra)), DEADLINE_SECONDS
    )


async def _run_note(
    server: FakeZeppelin, tmp_path: Path, note: Note, **extra: Any
) -> tuple[NoteRun, list[ParagraphResult]]:
    """Starts a session, runs the note, closes; returns the run and what the listener saw."""
    seen: list[ParagraphResult] = []

    async def listen(result: ParagraphResult) -> None:
        seen.append(result)

    session = await _start(server.url, tmp_path, **extra)
    try:
        run = await asyncio.wait_for(session.run(note, listen), DEADLINE_SECONDS)
    finally:
        await asyncio.wait_for(session.close(), DEADLINE_SECONDS)
    return run, seen


@pytest.mark.parametrize("legacy_job_status", [False, True])
async def test_success_path(
    make_server: ServerFactory, tmp_path: Path, legacy_job_status: bool
) -> None:
    """Imports, clears, runs each paragraph with the params, deletes the note at close."""
    server = await make_server(legacy_job_status=legacy_job_status)
    note = make_note("print('a')", ("%python\nfail", False), "%python\nb = 2")

    run, seen = await _run_note(server, tmp_path, note)

    assert [r.status for r in run.paragraphs] == [ParagraphStatus.FINISHED] * 2
    assert [r.id for r in run.paragraphs] == ["p0", "p2"]
    assert list(run.paragraphs) == seen
    assert run.paragraphs[0].output.startswith("ran: print('a')\nparams: ")
    assert run.paragraphs[0].interpreter == "python"
    assert run.paragraphs[0].started_at is not None
    assert run.paragraphs[0].finished_at is not None
    [deleted] = server.deleted
    note_id = deleted.id
    assert server.lines() == [
        "GET /api/version",
        "POST /api/notebook/import",
        f"GET /api/notebook/job/{note_id}",
        f"PUT /api/notebook/{note_id}/clear",
        f"POST /api/notebook/run/{note_id}/p0",
        f"POST /api/notebook/run/{note_id}/p2",
        f"DELETE /api/notebook/{note_id}",
    ]
    assert [p.text for p in deleted.paragraphs] == ["%python\nprint('a')", "%python\nb = 2"]
    assert all(p.params == VARIABLES for p in deleted.paragraphs)
    runs = [c for c in server.calls if c.path.startswith("/api/notebook/run/")]
    assert all(c.body == {"params": VARIABLES} for c in runs)
    assert deleted.path.startswith("/jobmanager/job-1/test ")
    assert server.notes == {}


@pytest.mark.parametrize("error_status", [200, 500])
async def test_error_paragraph_does_not_stop_the_run(
    make_server: ServerFactory, tmp_path: Path, error_status: int
) -> None:
    """A paragraph in ERROR (200 or the old 500 answer) is reported; later ones still run."""
    server = await make_server(error_status=error_status)
    note = make_note("%python\nfail", "%python\nafter")

    run, _ = await _run_note(server, tmp_path, note)

    failed, after = run.paragraphs
    assert failed.status is ParagraphStatus.ERROR
    assert failed.error == "RuntimeError: failure requested"
    assert failed.output.startswith("Traceback (most recent call last):")
    assert after.status is ParagraphStatus.FINISHED
    assert run.failure_summary() == "Paragraph 1 failed: RuntimeError: failure requested"


async def test_unprefixed_paragraph_without_group_prefix_would_fail(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """The server's own default group is not the note's: the engine's prefix is what runs it."""
    server = await make_server()
    note = make_note("%spark\nval x = 1", "x = 1", default_group="python")

    run, _ = await _run_note(server, tmp_path, note)

    assert [r.status for r in run.paragraphs] == [ParagraphStatus.ERROR, ParagraphStatus.FINISHED]
    assert run.paragraphs[0].error == "Interpreter spark not found"
    assert [r.interpreter for r in run.paragraphs] == ["spark", "python"]


async def test_stop_policy_skips_the_rest(make_server: ServerFactory, tmp_path: Path) -> None:
    """With onParagraphError "stop" the paragraphs after a failure are SKIPPED, not sent."""
    server = await make_server()
    note = make_note("%python\nok", "%python\nfail", "%python\nnever", "%python\nnor this")

    run, seen = await _run_note(server, tmp_path, note, onParagraphError="stop")

    assert [r.status for r in run.paragraphs] == [
        ParagraphStatus.FINISHED,
        ParagraphStatus.ERROR,
        ParagraphStatus.SKIPPED,
        ParagraphStatus.SKIPPED,
    ]
    assert seen == list(run.paragraphs)
    runs = [line for line in server.lines() if "/api/notebook/run/" in line]
    assert [line.rsplit("/", 1)[1] for line in runs] == ["p0", "p1"]


async def _cancel_slow_run(
    server: FakeZeppelin, tmp_path: Path
) -> tuple[ZeppelinSession, list[ParagraphResult], str, float]:
    """Runs ok + `sleep 60`, cancels run() once the sleep started; returns the seconds taken."""
    seen: list[ParagraphResult] = []

    async def listen(result: ParagraphResult) -> None:
        seen.append(result)

    session = await _start(server.url, tmp_path)
    task = asyncio.create_task(session.run(make_note("%python\nok", "%python\nsleep 60"), listen))
    await asyncio.wait_for(server.sleeping.wait(), DEADLINE_SECONDS)
    note_id = next(iter(server.notes))
    began = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return session, seen, note_id, time.monotonic() - began


async def test_cancelling_run_stops_the_slow_paragraph(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """Cancelling run() sends DELETE job, reports ABORT and returns within 5 s."""
    server = await make_server()

    session, seen, note_id, seconds = await _cancel_slow_run(server, tmp_path)

    assert seconds < 5.0
    assert [r.status for r in seen] == [ParagraphStatus.FINISHED, ParagraphStatus.ABORT]
    assert f"DELETE /api/notebook/job/{note_id}" in server.lines()
    await asyncio.wait_for(server.aborted.wait(), DEADLINE_SECONDS)
    assert server.notes[note_id].paragraphs[1].status == "ABORT"
    await asyncio.wait_for(session.close(), DEADLINE_SECONDS)
    assert server.lines()[-1] == f"DELETE /api/notebook/{note_id}"


async def test_cancelling_returns_in_time_when_stop_hangs(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """A server that never answers the stop still lets cancellation return within 5 s."""
    server = await make_server()
    server.stop_hangs = True

    session, seen, note_id, seconds = await _cancel_slow_run(server, tmp_path)
    await asyncio.wait_for(session.close(), DEADLINE_SECONDS)

    assert seconds < 5.0
    assert [r.status for r in seen] == [ParagraphStatus.FINISHED, ParagraphStatus.ABORT]
    assert f"DELETE /api/notebook/job/{note_id}" in server.lines()


async def test_login_keeps_the_session_cookie(make_server: ServerFactory, tmp_path: Path) -> None:
    """With credentials the engine logs in first and every later call carries JSESSIONID."""
    server = await make_server(username="alice", password="s3cret")

    run, _ = await _run_note(
        server, tmp_path, make_note("%python\nok"), username="alice", password="s3cret"
    )

    assert run.succeeded
    assert server.calls[0].line == "POST /api/login"
    assert server.calls[0].body == {"userName": "alice", "password": "s3cret"}
    assert all(call.authenticated for call in server.calls[1:])
    assert server.notes == {}


async def test_wrong_password_fails_start(make_server: ServerFactory, tmp_path: Path) -> None:
    """A refused login is an EngineError naming Zeppelin's answer."""
    server = await make_server(username="alice", password="s3cret")

    with pytest.raises(EngineError, match=r"^Unable to log in to Zeppelin\[HTTP 403"):
        await _start(server.url, tmp_path, username="alice", password="wrong")


async def test_missing_login_fails_the_import(make_server: ServerFactory, tmp_path: Path) -> None:
    """Without credentials a secured server refuses the import; the message says so."""
    server = await make_server(username="alice", password="s3cret")
    session = await _start(server.url, tmp_path)
    try:
        with pytest.raises(EngineError) as caught:
            await asyncio.wait_for(session.run(make_note("%python\nok")), DEADLINE_SECONDS)
    finally:
        await session.close()
    assert str(caught.value) == "Unable to import model into Zeppelin[HTTP 401: Unauthorized]"


async def test_import_failure_message(make_server: ServerFactory, tmp_path: Path) -> None:
    """A refused import surfaces as "Unable to import model into Zeppelin[<cause>]"."""
    server = await make_server()
    server.import_error = "Fail to import note: Note '/x' existed"
    session = await _start(server.url, tmp_path)
    try:
        with pytest.raises(EngineError) as caught:
            await asyncio.wait_for(session.run(make_note("%python\nok")), DEADLINE_SECONDS)
    finally:
        await session.close()
    assert str(caught.value) == (
        "Unable to import model into Zeppelin[HTTP 500: Fail to import note: Note '/x' existed]"
    )
    assert server.lines().count("POST /api/notebook/import") == 1  # a POST is never resent


async def test_5xx_is_retried_then_succeeds(make_server: ServerFactory, tmp_path: Path) -> None:
    """Idempotent calls answered 5xx are retried with backoff until they succeed."""
    server = await make_server()
    server.fail_next("GET", "/api/version", times=2, status=502)
    server.fail_next("GET", "/api/notebook/job/{note_id}", times=2, status=503)
    server.fail_next("DELETE", "/api/notebook/{note_id}", times=1, status=500)

    run, _ = await _run_note(server, tmp_path, make_note("%python\nok"))

    assert run.succeeded
    lines = server.lines()
    assert lines.count("GET /api/version") == 3
    assert sum(line.startswith("GET /api/notebook/job/") for line in lines) == 3
    assert sum(line.startswith("DELETE /api/notebook/") for line in lines) == 2
    assert server.notes == {}


async def test_5xx_beyond_the_retries_is_an_engine_error(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """When every retry is answered 5xx, the last answer names the cause."""
    server = await make_server()
    server.fail_next("GET", "/api/version", times=3, status=503)

    with pytest.raises(EngineError, match=r"^Unable to connect to Zeppelin\[HTTP 503: injected"):
        await _start(server.url, tmp_path)


async def test_run_call_failing_without_result_polls_the_status(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """A run answered 500 without a result is checked by polling; never started means ERROR."""
    server = await make_server()
    server.fail_next("POST", "/api/notebook/run/{note_id}/{paragraph_id}", times=1, status=500)

    run, _ = await _run_note(server, tmp_path, make_note("%python\nfirst", "%python\nsecond"))

    first, second = run.paragraphs
    assert first.status is ParagraphStatus.ERROR
    assert first.error == "Zeppelin did not run the paragraph[HTTP 500: injected failure]"
    assert second.status is ParagraphStatus.FINISHED
    assert any(
        line.endswith("/p0") and line.startswith("GET /api/notebook/job/")
        for line in server.lines()
    )


async def test_unreachable_server_is_an_engine_error(tmp_path: Path) -> None:
    """Nothing listening at the url: start raises EngineError quickly."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there

    began = time.monotonic()
    with pytest.raises(EngineError, match=r"^Unable to connect to Zeppelin\[.*127\.0\.0\.1"):
        await _start(f"http://127.0.0.1:{port}", tmp_path)
    assert time.monotonic() - began < DEADLINE_SECONDS


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"url": None}, "needs 'url'"),
        ({"onParagraphError": "explode"}, "onParagraphError must be"),
    ],
)
async def test_invalid_configuration(tmp_path: Path, extra: dict[str, Any], match: str) -> None:
    """A configuration without url or with an unknown error policy is refused at start."""
    configuration = EnvironmentConfiguration.model_validate(
        {"id": "zeppelin", "name": "Zeppelin", "url": "http://127.0.0.1:9"} | extra
    )
    with pytest.raises(EngineError, match=match):
        await _engine().start(tmp_path, VARIABLES, configuration)


async def test_note_without_enabled_paragraphs_needs_no_server(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """Only disabled paragraphs: nothing is imported, the run is empty, close is idempotent."""
    server = await make_server()
    session = await _start(server.url, tmp_path)
    run = await session.run(make_note(("%python\nfail", False)))
    await session.close()
    await session.close()
    assert run.paragraphs == ()
    assert server.lines() == ["GET /api/version"]
