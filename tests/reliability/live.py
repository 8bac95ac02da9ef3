"""Helpers for the reliability tests that run the real ``jobmanager`` processes.

Jobs' models, folders and configurations are written straight into the service's home (as the
CLI would, without a process per call); tokens are minted with the service's secret.
"""

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from adapters.http.auth import mint
from adapters.local_files import LocalHome
from schemas.events import EVENTS, Event, JobStatusChanged
from statemachine import FINAL_STATUSES
from tests.conftest import FIXTURES
from tests.integration.helpers import TopicTail
from tests.service import FINAL, Service
from worker.settings import Settings

JOBS = "/api/jobmanager/v3/jobs"
TENANT = "local"


def token(settings: Settings, tenant: str = TENANT, *, read_only: bool = False) -> str:
    assert settings.jwt_secret is not None
    return mint(settings.jwt_secret.get_secret_value(), tenant, read_only=read_only)


def job_body(
    settings: Settings,
    note: str = "success.zpln",
    *,
    tenant: str = TENANT,
    missing_model: bool = False,
    seconds: int = 600,
) -> dict[str, str]:
    """A POST body for a new job of ``note`` (a fixture note's file name or a path), with its
    own configuration (so jobs never wait for each other's environment). ``missing_model``
    names a model that does not exist: the job ends FAILED at its first step, with no engine."""
    home = LocalHome(settings.home)
    path = Path(note) if "/" in note else FIXTURES / "notes" / note
    model_id = "no-such-model" if missing_model else home.add_model(tenant, path)
    input_id = home.create_folder(tenant)
    (home.folder(tenant, input_id) / "data.csv").write_text("a,b\n1,2\n")
    return {
        "modelId": model_id,
        "configurationId": home.add_configuration(tenant, "local python"),
        "inputFolderId": input_id,
        "outputFolderId": home.create_folder(tenant),
        "maximumExecutionTimeInSeconds": str(seconds),
    }


def wait_all_final(
    service: Service, bearer: str, job_ids: Iterable[str], timeout: float = 90.0
) -> dict[str, dict[str, Any]]:
    """Every job's final view; fails at the deadline naming the jobs that are not final."""
    deadline = time.monotonic() + timeout
    pending = set(job_ids)
    final: dict[str, dict[str, Any]] = {}
    while pending and time.monotonic() < deadline:
        for job_id in sorted(pending):
            answer = service.request("GET", f"{JOBS}/{job_id}", token=bearer)
            if answer.status == 200 and answer.body["status"] in FINAL:
                final[job_id] = answer.body
                pending.discard(job_id)
        if pending:
            time.sleep(0.2)
    assert not pending, (
        f"{len(pending)} jobs not final in {timeout:g} s: {sorted(pending)[:5]}\n"
        + service.log.read_text()[-3000:]
    )
    return final


def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` published before the call."""

    async def read() -> list[Any]:
        async with TopicTail(bootstrap, topic) as tail:
            return list(await tail.read_to_end())

    return asyncio.run(read())


def events_by_job(records: Iterable[Any]) -> dict[str, list[Event]]:
    found: dict[str, list[Event]] = {}
    for record in records:
        event = EVENTS.validate_json(record.value)
        found.setdefault(event.job_id, []).append(event)
    return found


def terminal_count(events: Iterable[Event]) -> int:
    return sum(1 for e in events if isinstance(e, JobStatusChanged) and e.status in FINAL_STATUSES)
