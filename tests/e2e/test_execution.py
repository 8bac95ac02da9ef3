"""Model execution end to end: real broker, real gateway and worker processes, real notes."""

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES
from tests.fakes.zeppelin_server import FakeZeppelin
from tests.service import FINAL, Service, running_service
from worker.settings import Settings

pytestmark = pytest.mark.kafka

JOBS = "/api/jobmanager/v3/jobs"
NOTES = FIXTURES / "notes"
BUSY = "Failed to start environment [An environment has already been started for the configuration]"


@pytest.fixture
def service(settings: Settings, tmp_path: Path) -> Iterator[Service]:
    with running_service(settings, tmp_path / "serve.log") as running:
        yield running


def _note(tmp_path: Path, name: str, *paragraphs: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.zpln"
    path.write_text(json.dumps({"name": name, "paragraphs": list(paragraphs)}))
    return path


def _configuration(service: Service, **fields: Any) -> str:
    configuration_id = service.cli("configurations", "add", "--name", "e2e")
    path = _home(service) / "tenants/local/configurations" / f"{configuration_id}.json"
    path.write_text(json.dumps({"name": "e2e", "engine": "local", **fields}))
    return configuration_id


def _home(service: Service) -> Path:
    return Path(service.env["JOBMANAGER_HOME"])


def _body(service: Service, note: Path, configuration_id: str | None = None) -> dict[str, str]:
    return {
        "modelId": service.cli("models", "add", str(note)),
        "configurationId": configuration_id or _configuration(service),
        "inputFolderId": service.cli("folders", "create"),
        "outputFolderId": service.cli("folders", "create"),
        "maximumExecutionTimeInSeconds": "600",
    }


def _run(service: Service, token: str, body: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    job = service.request("POST", JOBS, body, token)
    assert job.status == 201, job.body
    return service.wait_for_status(job.body["id"], token, FINAL, timeout=timeout)


def test_unknown_interpreter_fails_that_paragraph_only(service: Service, tmp_path: Path) -> None:
    """%spark fails with 'not available'; the next paragraph still runs and writes its output."""
    token = service.cli("token")
    note = _note(
        tmp_path, "spark",
        {"title": "Spark", "text": "%spark\nsc.parallelize([1])"},
        {"text": "%sh\necho after > output/after.txt"},
    )  # fmt: skip
    body = _body(service, note)

    final = _run(service, token, body)

    assert final["status"] == "FAILED"
    assert "interpreter spark is not available in this environment" in final["message"]
    assert "Spark" in final["message"]
    output = _home(service) / "tenants/local/folders" / body["outputFolderId"]
    assert (output / "after.txt").read_text() == "after\n"
    paragraphs = service.request("GET", f"{JOBS}/{final['id']}/paragraphs", token=token).body
    assert [p["status"] for p in paragraphs["paragraphs"]] == ["ERROR", "FINISHED"]


def test_missing_model_and_output_folder_fail_with_the_reason(service: Service) -> None:
    """A missing model or output folder ends the job FAILED naming what is missing."""
    token = service.cli("token")
    body = _body(service, NOTES / "success.zpln")

    no_model = _run(service, token, {**body, "modelId": "no-such-model"})
    no_output = _run(service, token, {**body, "outputFolderId": "no-such-folder"})

    assert no_model["status"] == no_output["status"] == "FAILED"
    assert "model no-such-model not found" in no_model["message"]
    assert "output folder no-such-folder not found" in no_output["message"]


def test_time_limit_fails_within_the_limit_and_keeps_outputs(
    service: Service, tmp_path: Path
) -> None:
    """A `while True` paragraph is stopped at the limit: FAILED within limit + 5 s, outputs kept."""
    token = service.cli("token")
    note = _note(
        tmp_path, "forever",
        {"text": "%python\nopen('output/partial.txt', 'w').write('kept')"},
        {"text": "%python\nwhile True:\n    pass"},
    )  # fmt: skip
    body = {**_body(service, note), "maximumExecutionTimeInSeconds": 3}
    job = service.request("POST", JOBS, body, token).body
    running = service.wait_for_status(job["id"], token, {"RUNNING", *FINAL})
    started = time.monotonic()

    final = service.wait_for_status(job["id"], token, FINAL, timeout=30)

    assert running["status"] == "RUNNING"
    assert final["status"] == "FAILED"
    assert final["message"].startswith("Maximum execution time of 3 seconds exceeded.")
    assert time.monotonic() - started < 3 + 5
    output = _home(service) / "tenants/local/folders" / body["outputFolderId"]
    assert (output / "partial.txt").read_text() == "kept"


def test_busy_configuration_fails_with_the_seed_message(service: Service, tmp_path: Path) -> None:
    """While one job holds the environment, a second one fails with MindSphere's text."""
    token = service.cli("token")
    slow = _note(tmp_path, "slow", {"text": "%python\nimport time\ntime.sleep(30)"})
    body = _body(service, slow)
    holder = service.request("POST", JOBS, body, token).body
    service.wait_for_status(holder["id"], token, {"RUNNING"})

    second = _run(service, token, body)
    service.request("POST", f"{JOBS}/{holder['id']}/stop", token=token)

    assert second["status"] == "FAILED"
    assert second["message"] == BUSY
    assert service.wait_for_status(holder["id"], token, FINAL)["status"] == "STOPPED"


def test_queue_policy_runs_jobs_in_submission_order(service: Service, tmp_path: Path) -> None:
    """With whenBusy=queue, jobs wait in SUBMITTED naming the holder and run one after another."""
    token = service.cli("token")
    configuration_id = _configuration(service, whenBusy="queue")
    note = _note(
        tmp_path, "stamp",
        {"text": "%python\nimport os, time\ntime.sleep(0.5)\n"
                 "open(os.path.join('output', os.environ['jobId']), 'w').write(str(time.time()))"},
    )  # fmt: skip
    body = _body(service, note, configuration_id)
    ids = [service.request("POST", JOBS, body, token).body["id"] for _ in range(3)]
    waiting = service.wait_for_status(ids[2], token, {"SUBMITTED", *FINAL})

    finals = [service.wait_for_status(job_id, token, FINAL) for job_id in ids]

    assert [final["status"] for final in finals] == ["SUCCEEDED"] * 3
    assert waiting["status"] in {"SUBMITTED", "SUCCEEDED"}
    output = _home(service) / "tenants/local/folders" / body["outputFolderId"]
    finished = [float((output / job_id).read_text()) for job_id in ids]
    assert finished == sorted(finished), "the environment served the jobs in submission order"


@pytest.fixture
def zeppelin() -> Iterator[FakeZeppelin]:
    """A Zeppelin server stand-in (documented REST endpoints) on its own loop and thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> FakeZeppelin:
        server = FakeZeppelin()
        await server.start()
        return server

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)


def test_zeppelin_engine_runs_the_note_on_the_server(
    service: Service, zeppelin: FakeZeppelin, tmp_path: Path
) -> None:
    """A configuration with engine 'zeppelin' runs paragraphs over Zeppelin's REST API."""
    token = service.cli("token")
    note = _note(
        tmp_path, "remote",
        {"title": "Works", "text": "%python\nprint('hi')"},
        {"title": "Breaks", "text": "%python\nfail"},
        {"title": "After", "text": "%python\nprint('still runs')"},
    )  # fmt: skip
    configuration_id = _configuration(service, engine="zeppelin", url=zeppelin.url)
    body = _body(service, note, configuration_id)

    final = _run(service, token, body)

    assert final["status"] == "FAILED"
    assert "Breaks" in final["message"]
    lines = zeppelin.lines()
    assert any(line.startswith("POST /api/notebook/import") for line in lines)
    assert sum(line.startswith("POST /api/notebook/run/") for line in lines) == 3
    assert any(line.startswith("DELETE /api/notebook/") for line in lines), "note cleaned up"
    paragraphs = service.request("GET", f"{JOBS}/{final['id']}/paragraphs", token=token).body
    assert [p["status"] for p in paragraphs["paragraphs"]] == ["FINISHED", "ERROR", "FINISHED"]
