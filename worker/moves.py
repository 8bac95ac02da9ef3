"""Applying a move: check it with the machine, publish it, then record it in the ledger."""

from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from adapters.metrics import Metrics
from adapters.ports import EventPublisher
from adapters.retry import until_acknowledged
from schemas.commands import SubmitJob
from schemas.events import Event, JobProgressed, JobStatusChanged, event_id_for
from schemas.jobs import JobRecord, JobView
from schemas.notes import ParagraphResult
from schemas.status import JobStatus
from statemachine import IllegalMove, JobMachine
from worker.projection import Projection

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Mover:
    """The only code that changes a job's status. Illegal moves are logged, raised, never published.

    The ledger is updated only after the broker acknowledged the event, so it never runs ahead
    of the events topic. Every published move is counted here, after the acknowledgement.
    """

    def __init__(
        self,
        machine: JobMachine,
        publisher: EventPublisher,
        ledger: Projection,
        clock: Clock = utc_now,
        metrics: Metrics | None = None,
    ) -> None:
        self._machine = machine
        self._publisher = publisher
        self.ledger = ledger
        self._clock = clock
        self.metrics = metrics if metrics is not None else Metrics()

    def record(self, job_id: str) -> JobRecord | None:
        return self.ledger.store.record(job_id)

    async def create(self, command: SubmitJob) -> JobRecord:
        """Publish the job's first event (SUBMITTED, sequence 1)."""
        view = JobView.submitted(
            command.job_id, command.tenant, command.request, command.creation_date
        )
        return await self._publish(view, None, "submit", 1, command.tenant)

    async def move(
        self,
        job_id: str,
        trigger: str,
        *,
        message: str | None = None,
        environment_id: str | None = None,
    ) -> JobRecord:
        record = self.record(job_id)
        if record is None:
            raise KeyError(job_id)
        current = record.view.status
        try:
            status = self._machine.next_status(job_id, current, trigger)
        except IllegalMove as refused:
            self.metrics.illegal_move(current, trigger)
            log.error(
                "illegal move refused",
                job_id=job_id,
                tenant=record.tenant,
                status=current,
                trigger=trigger,
                error=str(refused),
            )
            raise
        changes: dict[str, object] = {"status": status}
        if message is not None:
            changes["message"] = message
        if environment_id is not None:
            changes["environment_id"] = environment_id
        view = record.view.model_copy(update=changes)
        return await self._publish(view, current, trigger, record.sequence + 1, record.tenant)

    async def progress(
        self, job_id: str, message: str | None, paragraph: ParagraphResult | None = None
    ) -> JobRecord:
        """Publish a step message or a finished paragraph; the status does not change."""
        record = self.record(job_id)
        if record is None:
            raise KeyError(job_id)
        view = record.view
        if message is not None:
            view = view.model_copy(update={"message": message})
        sequence = record.sequence + 1
        event = JobProgressed(
            event_id=event_id_for(job_id, sequence),
            job_id=job_id,
            tenant=record.tenant,
            sequence=sequence,
            status=view.status,
            message=view.message,
            paragraph=paragraph,
            job=view,
            occurred_at=self._clock(),
        )
        await self._publish_until_acknowledged(event)
        folded = self.ledger.apply(event)
        log.info(
            "job progressed",
            job_id=job_id,
            tenant=record.tenant,
            status=view.status,
            sequence=sequence,
            message=view.message,
            paragraph=None if paragraph is None else paragraph.label,
            paragraph_status=None if paragraph is None else paragraph.status,
        )
        return folded

    async def _publish(
        self,
        view: JobView,
        previous: JobStatus | None,
        trigger: str,
        sequence: int,
        tenant: str,
    ) -> JobRecord:
        event = JobStatusChanged(
            event_id=event_id_for(view.id, sequence),
            job_id=view.id,
            tenant=tenant,
            sequence=sequence,
            previous_status=previous,
            status=view.status,
            trigger=trigger,
            job=view,
            occurred_at=self._clock(),
        )
        await self._publish_until_acknowledged(event)
        record = self.ledger.apply(event)
        self.metrics.transition(
            previous, view.status, trigger, view.creation_date, event.occurred_at
        )
        log.info(
            "job status changed",
            job_id=view.id,
            tenant=tenant,
            status=view.status,
            previous_status=previous,
            trigger=trigger,
            sequence=sequence,
            message=view.message,
        )
        return record

    async def _publish_until_acknowledged(self, event: Event) -> None:
        await until_acknowledged(
            lambda: self._publisher.publish(event),
            what=f"{event.type} {event.job_id}/{event.sequence}",
        )
