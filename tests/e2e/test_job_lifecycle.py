"""A job over the real broker, the real gateway over HTTP and a real worker process."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.service import Service, running_service
from worker.settings import Settings

pytestmark = pytest.mark.kafka

NOTES = FIXTURES / "notes"


@pytest.fixture
def service(settings: Settings, tmp_path: Path) -> Iterator[Service]:
    with running_service(settings, tmp_path / "serve.log") as running:
        yield running


def test_job_runs_from_submitted_to_succeeded(service: Service) -> None:
    """POST: 201 SUBMITTED in the seed's shape; GET finds it; it ends SUCCEEDED with outputs."""
    token = service.cli("token")
    body = service.job_body(NOTES / "success.zpln")

    created = service.request("POST", "/api/jobmanager/v3/jobs", body, token)

    assert created.status == 201, created.body
    job = created.body
    assert set(job) == {
        "id",
        "modelId",
        "environmentId",
        "message",
        "status",
        "creationDate",
        "createdBy",
        "inputFolderId",
        "outputFolderId",
        "configurationId",
        "maximumExecutionTimeInSeconds",
    }
    assert job["status"] == "SUBMITTED"
    assert job["createdBy"] == "local"
    assert job["maximumExecutionTimeInSeconds"] == "7200"
    assert job["creationDate"].endswith("Z")
    assert len(job["creationDate"]) == len("2018-06-23T20:09:00.123Z")

    read_back = service.request("GET", f"/api/jobmanager/v3/jobs/{job['id']}", token=token)
    assert read_back.status == 200
    assert read_back.body["id"] == job["id"]

    final = service.wait_for_status(job["id"], token, {"SUCCEEDED", "FAILED", "STOPPED"})

    assert final["status"] == "SUCCEEDED", final["message"]
    assert final["environmentId"]
    output = Path(service.env["JOBMANAGER_HOME"]) / "tenants/local/folders" / body["outputFolderId"]
    assert (output / "result.txt").read_text() == "total=30\n"
    assert (output / "listing.txt").read_text().split() == ["data.csv"]


def test_failing_paragraph_ends_failed_with_its_name(service: Service) -> None:
    """A %python paragraph that raises makes the job FAILED with a message naming that paragraph."""
    token = service.cli("token")
    body = service.job_body(NOTES / "failing.zpln")

    created = service.request("POST", "/api/jobmanager/v3/jobs", body, token)
    final = service.wait_for_status(created.body["id"], token, {"SUCCEEDED", "FAILED", "STOPPED"})

    assert final["status"] == "FAILED"
    assert "Divide" in final["message"]
    assert "ZeroDivisionError" in final["message"]
    output = Path(service.env["JOBMANAGER_HOME"]) / "tenants/local/folders" / body["outputFolderId"]
    assert (output / "after.txt").exists(), "later paragraphs run and their outputs are stored"


def test_another_tenant_cannot_see_the_job(service: Service) -> None:
    """A job is answered 404 to another tenant, exactly as an unknown id."""
    token = service.cli("token")
    other = service.cli("token", "--tenant", "other")
    body = service.job_body(NOTES / "success.zpln")
    created = service.request("POST", "/api/jobmanager/v3/jobs", body, token)

    foreign = service.request("GET", f"/api/jobmanager/v3/jobs/{created.body['id']}", token=other)
    unknown = service.request("GET", "/api/jobmanager/v3/jobs/no-such-job", token=other)

    assert foreign.status == unknown.status == 404
    assert foreign.body["errors"][0]["code"] == unknown.body["errors"][0]["code"]
