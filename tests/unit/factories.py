"""Small builders of valid messages for unit tests."""

import uuid
from datetime import UTC, datetime

from schemas.commands import SubmitJob
from schemas.jobs import JobRequest


def job_request(**overrides: object) -> JobRequest:
    fields: dict[str, object] = {
        "modelId": "model",
        "configurationId": "configuration",
        "inputFolderId": "input",
        "outputFolderId": "output",
        "maximumExecutionTimeInSeconds": "7200",
    }
    fields.update(overrides)
    return JobRequest.model_validate(fields)


def submit_command(tenant: str = "local", **overrides: object) -> SubmitJob:
    now = datetime.now(UTC)
    return SubmitJob(
        command_id=uuid.uuid4().hex,
        job_id=uuid.uuid4().hex,
        tenant=tenant,
        request=job_request(**overrides),
        creation_date=now,
        issued_at=now,
    )
