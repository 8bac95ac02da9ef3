"""Realistic messages: one job's events made by the real ``Mover``, then copied per job.

A no-op job publishes exactly the events ``JobRunner`` publishes for a job that succeeds
without paragraphs: SUBMITTED, VALIDATING, STARTING, PREPARING, RUNNING, STORING, SUCCEEDED
(7 events), plus an environment claim and release.
"""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from adapters.memory import MemoryEventPublisher
from adapters.projection_store import MemoryProjectionStore
from schemas.commands import SubmitJob
from schemas.environments import EnvironmentClaimed, EnvironmentReleased
from schemas.jobs import JobRequest
from statemachine import JobMachine
from worker.jobs import (
    PREPARING_MESSAGE,
    RUNNING_MESSAGE,
    STORING_MESSAGE,
    SUCCEEDED_MESSAGE,
    VALIDATING_MESSAGE,
)
from worker.moves import Mover
from worker.projection import Projection

TENANT = "bench"


def _request() -> JobRequest:
    return JobRequest(
        model_id=uuid.uuid4().hex,
        configuration_id=uuid.uuid4().hex,
        input_folder_id=uuid.uuid4().hex,
        output_folder_id=uuid.uuid4().hex,
        maximum_execution_time_in_seconds=600,
    )


async def _lifecycle(job_id: str, request: JobRequest) -> list[bytes]:
    published = MemoryEventPublisher()
    mover = Mover(JobMachine(), published, Projection(MemoryProjectionStore()))
    moment = datetime.now(UTC)
    await mover.create(
        SubmitJob(
            command_id=uuid.uuid4().hex,
            job_id=job_id,
            tenant=TENANT,
            request=request,
            creation_date=moment,
            issued_at=moment,
        )
    )
    await mover.progress(job_id, VALIDATING_MESSAGE)
    await mover.move(job_id, "start", message="Starting environment.")
    await mover.progress(job_id, PREPARING_MESSAGE)
    await mover.move(job_id, "run", message=RUNNING_MESSAGE, environment_id=f"local-{job_id}")
    await mover.progress(job_id, STORING_MESSAGE)
    await mover.move(job_id, "succeed", message=SUCCEEDED_MESSAGE)
    return [event.model_dump_json().encode() for event in published.published]


class Template:
    """One job's messages; :meth:`for_job` copies them with fresh ids (byte substitution)."""

    def __init__(self, job_id: str, request: JobRequest, events: list[bytes]) -> None:
        self.job_id = job_id
        self.request = request
        self.events = events
        moment = datetime.now(UTC)
        ids = {
            "tenant": TENANT,
            "configuration_id": self.request.configuration_id,
            "job_id": self.job_id,
            "occurred_at": moment,
        }
        self.claims = [
            EnvironmentClaimed(**ids).model_dump_json().encode(),
            EnvironmentReleased(**ids).model_dump_json().encode(),
        ]
        self._config = self.request.configuration_id.encode()
        self._job = self.job_id.encode()
        # Event ids are uuid5 strings; each job gets fresh ones of the same length.
        marker = b'"eventId":"'
        self._event_ids = [marker + e.split(marker)[1].split(b'"')[0] + b'"' for e in events]

    @classmethod
    async def make(cls) -> "Template":
        job_id, request = uuid.uuid4().hex, _request()
        return cls(job_id, request, await _lifecycle(job_id, request))

    def for_job(self, job_id: str) -> list[bytes]:
        """The 7 events of a job with this id and a configuration of its own."""
        job = job_id.encode()
        config = uuid.uuid4().hex.encode()
        copies = []
        for event, event_id in zip(self.events, self._event_ids, strict=True):
            fresh = f'"eventId":"{uuid.uuid4()}"'.encode()
            copies.append(
                event.replace(event_id, fresh).replace(self._job, job).replace(self._config, config)
            )
        return copies

    def jobs(self, count: int) -> Iterator[tuple[bytes, list[bytes]]]:
        """``count`` jobs: (key, events)."""
        for _ in range(count):
            job_id = uuid.uuid4().hex
            yield job_id.encode(), self.for_job(job_id)
