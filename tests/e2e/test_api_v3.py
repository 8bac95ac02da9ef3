"""The Job Manager v3 API through the real gateway, worker and broker."""

import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.service import FINAL, Service, running_service
from worker.settings import Settings

pytestmark = pytest.mark.kafka

JOBS = "/api/jobmanager/v3/jobs"
SLOW_NOTE = {
    "name": "slow",
    "paragraphs": [
        {"title": "Wait", "text": "%python\nimport time\nwhile True:\n    time.sleep(0.05)"},
    ],
}


@pytest.fixture
def service(settings: Settings, tmp_path: Path) -> Iterator[Service]:
    """One worker slot, so a second job waits in SUBMITTED behind a slow first one."""
    with running_service(
        settings.model_copy(update={"worker_concurrency": 1}), tmp_path / "serve.log"
    ) as running:
        yield running


def _resources(service: Service, note: Path, tenant: str = "local") -> dict[str, str]:
    return {
        "modelId": service.cli("models", "add", str(note), "--tenant", tenant),
        "configurationId": service.cli(
            "configurations", "add", "--name", "python", "--tenant", tenant
        ),
        "inputFolderId": service.cli("folders", "create", "--tenant", tenant),
        "outputFolderId": service.cli("folders", "create", "--tenant", tenant),
        "maximumExecutionTimeInSeconds": "600",
    }


def _queue_when_busy(service: Service, configuration_id: str) -> None:
    """Make the configuration queue jobs while its environment is busy."""
    path = (
        Path(service.env["JOBMANAGER_HOME"])
        / "tenants/local/configurations"
        / f"{configuration_id}.json"
    )
    path.write_text(json.dumps({"name": "queued", "engine": "local", "whenBusy": "queue"}))


def _slow_note(tmp_path: Path) -> Path:
    note = tmp_path / "slow.zpln"
    note.write_text(json.dumps(SLOW_NOTE))
    return note


def test_stop_in_each_status_a_test_can_reach(service: Service, tmp_path: Path) -> None:
    """Stop: STOPPING for RUNNING and SUBMITTED jobs, the job when STOPPING, 409 when final."""
    token = service.cli("token")
    body = _resources(service, _slow_note(tmp_path))
    _queue_when_busy(service, body["configurationId"])
    running = service.request("POST", JOBS, body, token).body
    waiting = service.request("POST", JOBS, body, token).body
    service.wait_for_status(running["id"], token, {"RUNNING"})
    service.wait_for_status(waiting["id"], token, {"SUBMITTED"})

    stop_waiting = service.request("POST", f"{JOBS}/{waiting['id']}/stop", token=token)
    assert stop_waiting.status == 200
    assert stop_waiting.body["status"] == "STOPPING"
    assert service.wait_for_status(waiting["id"], token, FINAL)["status"] == "STOPPED"

    started = time.monotonic()
    stop_running = service.request("POST", f"{JOBS}/{running['id']}/stop", token=token)
    again = service.request("POST", f"{JOBS}/{running['id']}/stop", token=token)
    final = service.wait_for_status(running["id"], token, FINAL, timeout=30)

    assert stop_running.status == 200
    assert stop_running.body["status"] == "STOPPING"
    assert again.status == 200
    assert again.body["status"] in {"STOPPING", "STOPPED"}
    assert final["status"] == "STOPPED"
    assert time.monotonic() - started < 5.0, "a running paragraph is interrupted within 5 s"

    after = service.request("POST", f"{JOBS}/{running['id']}/stop", token=token)
    assert after.status == 409
    assert after.body["errors"][0]["code"] == "jobmanager.jobAlreadyFinished"


def test_time_limit_ends_the_job_failed(service: Service, tmp_path: Path) -> None:
    """A note running past maximumExecutionTimeInSeconds ends FAILED naming the limit."""
    token = service.cli("token")
    body = {**_resources(service, _slow_note(tmp_path)), "maximumExecutionTimeInSeconds": 2}
    job = service.request("POST", JOBS, body, token).body

    final = service.wait_for_status(job["id"], token, FINAL, timeout=30)

    assert final["status"] == "FAILED"
    assert "2 seconds" in final["message"]


def test_two_tenants_read_only_expired_and_cookie_sessions(service: Service) -> None:
    """Tenants are isolated; jm.r reads only; expired tokens and XSRF-less cookies are refused."""
    tenant_a = service.cli("token", "--tenant", "tenanta")
    tenant_b = service.cli("token", "--tenant", "tenantb")
    read_only = service.cli("token", "--tenant", "tenanta", "--read-only")
    expired = service.cli("token", "--tenant", "tenanta", "--hours", "-1")
    body = _resources(service, FIXTURES / "notes" / "success.zpln", tenant="tenanta")

    created = service.request("POST", JOBS, body, tenant_a)
    assert created.status == 201
    job_id = created.body["id"]

    assert service.request("GET", f"{JOBS}/{job_id}", token=tenant_b).status == 404
    assert service.request("GET", JOBS, token=tenant_b).body["totalElements"] == 0
    assert service.request("GET", f"{JOBS}/{job_id}", token=read_only).status == 200
    assert service.request("POST", JOBS, body, read_only).status == 403
    assert service.request("GET", JOBS, token=expired).status == 401

    cookie = f"SESSION={tenant_a}; XSRF-TOKEN=abc"
    without = service.raw("POST", JOBS, json.dumps(body).encode(), {"Cookie": cookie})
    with_header = service.raw(
        "POST", JOBS, json.dumps(body).encode(), {"Cookie": cookie, "X-XSRF-TOKEN": "abc"}
    )
    assert without.status == 403
    assert with_header.status == 201


def test_filters_paging_and_idempotent_resubmit(service: Service) -> None:
    """Filters select, pages bound, a malformed filter is a 400 and a key resubmits the same job."""
    token = service.cli("token")
    body = _resources(service, FIXTURES / "notes" / "success.zpln")
    failing = {
        **body,
        "modelId": service.cli("models", "add", str(FIXTURES / "notes/failing.zpln")),
        # Its own configuration: one environment per configuration at a time.
        "configurationId": service.cli("configurations", "add", "--name", "second"),
    }
    keyed = service.raw(
        "POST", JOBS, json.dumps(body).encode(), {"Authorization": f"Bearer {token}",
        "Content-Type": "application/json", "Idempotency-Key": "nightly-1"}
    )  # fmt: skip
    repeat = service.raw(
        "POST", JOBS, json.dumps(body).encode(), {"Authorization": f"Bearer {token}",
        "Content-Type": "application/json", "Idempotency-Key": "nightly-1"}
    )  # fmt: skip
    assert (keyed.status, repeat.status) == (201, 200)
    assert keyed.body["id"] == repeat.body["id"]
    bad = service.request("POST", JOBS, failing, token).body
    for job_id in (keyed.body["id"], bad["id"]):
        service.wait_for_status(job_id, token, FINAL)

    spec = {
        "status": {"or": [{"eq": "FAILED"}, {"eq": "STOPPED"}]},
        "message": {"contains": "Divide"},
    }
    query = urllib.parse.quote(json.dumps(spec))
    filtered = service.request("GET", f"{JOBS}?filter={query}", token=token).body
    assert [item["jobId"] for item in filtered["content"]] == [bad["id"]]

    first = service.request("GET", f"{JOBS}?pageSize=1&pageNumber=0", token=token).body
    last = service.request("GET", f"{JOBS}?pageSize=1&pageNumber=1", token=token).body
    beyond = service.request("GET", f"{JOBS}?pageSize=1&pageNumber=2", token=token)
    assert first["content"][0]["id"] == bad["id"], "newest first"
    assert (first["first"], first["last"], last["last"]) == (True, False, True)
    assert beyond.status == 200
    assert beyond.body["content"] == []

    malformed = service.request("GET", f"{JOBS}?filter=%7Bnope", token=token)
    assert malformed.status == 400
    assert malformed.body["errors"][0]["message"].startswith("filter")


def test_stop_while_starting_never_runs_the_note(service: Service, tmp_path: Path) -> None:
    """A stop that lands in STARTING (the kernel is starting) ends STOPPED without RUNNING."""
    token = service.cli("token")
    body = _resources(service, _slow_note(tmp_path))
    caught = None
    for _attempt in range(8):
        job = service.request("POST", JOBS, body, token).body
        seen = service.wait_for_status(job["id"], token, {"STARTING", "RUNNING"})
        stopped = service.request("POST", f"{JOBS}/{job['id']}/stop", token=token)
        assert stopped.status == 200
        final = service.wait_for_status(job["id"], token, FINAL, timeout=30)
        assert final["status"] == "STOPPED"
        if seen["status"] == "STARTING" and final["environmentId"] is None:
            caught = final
            break
    assert caught is not None, "no attempt caught the job in STARTING"
    paragraphs = service.request("GET", f"{JOBS}/{caught['id']}/paragraphs", token=token)
    assert paragraphs.body["paragraphs"] == []
