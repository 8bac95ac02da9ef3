"""Applying a move: check it with the machine, publish it, then record it in the ledger."""

import asyncio
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


class Fenced(Exception):
    """This worker no longer owns the job: another took it over (a newer owner epoch) or
    another writer's event took the sequence first. Nothing more may be published for it."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class Mover:
    """The only code that changes a job's status. Illegal moves are logged, raised, never published.

    The ledger is updated only after the broker acknowledged the event, so it never runs ahead
    of the events topic. Every published move is counted here, after the acknowledgement.

    With ``read_back_seconds`` set (every real worker), the ledger is not updated by the Mover
    at all: it waits until the ledger's follower has read the event back from the topic and
    checks that the event took effect there. Two workers can both believe they own a job (one
    paused past its session timeout), and only the topic's order says which write won; every
    reader folds that order the same way, so the ledger never holds a write the topic refused.
    Without it (in-memory tests) the event is applied at once, under the same fold rules.
    """

    def __init__(
        self,
        machine: JobMachine,
        publisher: EventPublisher,
        ledger: Projection,
        clock: Clock = utc_now,
        metrics: Metrics | None = None,
        read_back_seconds: float | None = None,
    ) -> None:
        self._machine = machine
        self._publisher = publisher
        self.ledger = ledger
        self._clock = clock
        self.metrics = metrics if metrics is not None else Metrics()
        self._read_back_seconds = read_back_seconds
        # Per job, its pipelined progress event still on its way (see ``progress``).
        self._pending: dict[str, asyncio.Task[JobRecord]] = {}

    def record(self, job_id: str) -> JobRecord | None:
        return self.ledger.store.record(job_id)

    async def create(self, command: SubmitJob, epoch: int = 0) -> JobRecord:
        """Publish the job's first event (SUBMITTED, sequence 1)."""
        await self.settle(command.job_id)
        view = JobView.submitted(
            command.job_id,
            command.tenant,
            command.request,
            command.creation_date,
            command.schedule_id,
        )
        return await self._publish(view, None, "submit", 1, command.tenant, epoch)

    async def move(
        self,
        job_id: str,
        trigger: str,
        *,
        message: str | None = None,
        environment_id: str | None = None,
        epoch: int = 0,
    ) -> JobRecord:
        """Apply ``trigger`` as the job's owner of ``epoch``; :class:`Fenced` if it is not."""
        await self.settle(job_id)
        record = self._owned(job_id, epoch)
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
        return await self._publish(
            view, current, trigger, record.sequence + 1, record.tenant, epoch
        )

    async def progress(
        self,
        job_id: str,
        message: str | None,
        paragraph: ParagraphResult | None = None,
        epoch: int = 0,
        *,
        pipelined: bool = False,
    ) -> JobRecord:
        """Publish a step message or a finished paragraph; the status does not change.

        ``pipelined``: return once the event is handed over (with the record as it was), so
        the step's own work overlaps the broker round trip. The job's next publish waits for
        its acknowledgement first (:meth:`settle`), so nothing of the job is published before
        it is acknowledged, and a failure (``Fenced``) surfaces there.
        """
        await self.settle(job_id)
        record = self._owned(job_id, epoch)
        view = record.view
        if message is not None:
            view = view.model_copy(update={"message": message})
        sequence = record.sequence + 1
        event = JobProgressed(
            event_id=event_id_for(job_id, sequence, epoch),
            job_id=job_id,
            tenant=record.tenant,
            sequence=sequence,
            epoch=epoch,
            status=view.status,
            message=view.message,
            paragraph=paragraph,
            job=view,
            occurred_at=self._clock(),
        )
        if not pipelined:
            return await self._deliver_progress(event)
        pending = asyncio.create_task(self._deliver_progress(event), name=f"progress-{job_id}")
        self._pending[job_id] = pending
        pending.add_done_callback(self._delivered)
        return record

    async def settle(self, job_id: str) -> None:
        """Wait until the job's pipelined progress event, if any, is acknowledged and folded;
        raises what delivering it raised."""
        pending = self._pending.get(job_id)
        if pending is None:
            return
        try:
            await pending
        finally:
            if self._pending.get(job_id) is pending:
                del self._pending[job_id]

    def _delivered(self, pending: "asyncio.Task[JobRecord]") -> None:
        # Delivered or cancelled needs no settling; a failed one stays for the next publish to
        # raise (it holds the job's only copy of the failure, e.g. Fenced).
        if pending.cancelled() or pending.exception() is None:
            for job_id, waiting in list(self._pending.items()):
                if waiting is pending:
                    del self._pending[job_id]

    async def _deliver_progress(self, event: JobProgressed) -> JobRecord:
        await self._publish_until_acknowledged(event)
        folded = await self._took_effect(event)
        paragraph = event.paragraph
        log.info(
            "job progressed",
            job_id=event.job_id,
            tenant=event.tenant,
            status=event.status,
            sequence=event.sequence,
            message=event.message,
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
        epoch: int,
    ) -> JobRecord:
        event = JobStatusChanged(
            event_id=event_id_for(view.id, sequence, epoch),
            job_id=view.id,
            tenant=tenant,
            sequence=sequence,
            epoch=epoch,
            previous_status=previous,
            status=view.status,
            trigger=trigger,
            job=view,
            occurred_at=self._clock(),
        )
        await self._publish_until_acknowledged(event)
        record = await self._took_effect(event)
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

    async def changed(self, job_id: str, sequence: int) -> JobRecord:
        """The job's record once the ledger holds an event past ``sequence`` (callers bound
        the wait)."""
        done = asyncio.Event()
        unsubscribe = self.ledger.subscribe(
            lambda record: done.set() if record.view.id == job_id else None
        )
        try:
            while (record := self.record(job_id)) is None or record.sequence <= sequence:
                await done.wait()
                done.clear()
            return record
        finally:
            unsubscribe()

    def _owned(self, job_id: str, epoch: int) -> JobRecord:
        record = self.record(job_id)
        if record is None:
            raise KeyError(job_id)
        if record.epoch > epoch:
            log.warning(
                "fenced: another worker owns the job",
                job_id=job_id,
                tenant=record.tenant,
                status=record.view.status,
                epoch=epoch,
                owner_epoch=record.epoch,
            )
            raise Fenced(job_id)
        return record

    async def _took_effect(self, event: Event) -> JobRecord:
        """The job's record once ``event`` is folded in; :class:`Fenced` if it changed nothing."""
        if self._read_back_seconds is None:
            record = self.ledger.apply(event)
        else:
            record = await self._read_back(event)
        if record.sequence != event.sequence or record.epoch != event.epoch:
            log.warning(
                "fenced: the event did not take effect",
                job_id=event.job_id,
                tenant=event.tenant,
                status=record.view.status,
                sequence=event.sequence,
                epoch=event.epoch,
                owner_epoch=record.epoch,
            )
            raise Fenced(event.job_id)
        return record

    async def _read_back(self, event: Event) -> JobRecord:
        """Wait until the ledger's follower has folded ``event`` (or what beat it)."""
        assert self._read_back_seconds is not None

        def settled(record: JobRecord | None) -> bool:
            # Once the follower passed our event, the record is at or past its sequence or
            # was taken over (a newer epoch, whose sequence may be lower than ours).
            return record is not None and (
                record.sequence >= event.sequence or record.epoch > event.epoch
            )

        done = asyncio.Event()
        unsubscribe = self.ledger.subscribe(
            lambda record: done.set() if record.view.id == event.job_id else None
        )
        try:
            async with asyncio.timeout(self._read_back_seconds):
                while not settled(record := self.record(event.job_id)):
                    await done.wait()
                    done.clear()
        finally:
            unsubscribe()
        assert record is not None
        return record

    async def _publish_until_acknowledged(self, event: Event) -> None:
        await until_acknowledged(
            lambda: self._publisher.publish(event),
            what=f"{event.type} {event.job_id}/{event.sequence}",
        )
