"""Applying a move: check it with the machine, publish it, then record it in the ledger."""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from adapters.metrics import Metrics
from adapters.ports import BrokerUnavailable, EventPublisher
from adapters.retry import until_acknowledged
from schemas.commands import SubmitJob
from schemas.events import Event, JobProgressed, JobStatusChanged, event_id_for
from schemas.jobs import JobRecord, JobView
from schemas.notes import ParagraphResult
from statemachine import IllegalMove, JobMachine
from worker.projection import Projection, apply

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]


class Fenced(Exception):
    """This worker no longer owns the job: another took it over (a newer owner epoch) or
    another writer's event took the sequence first. Nothing more may be published for it."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Chain:
    """A job's events handed to the broker in order and not settled yet (see ``pipelined``)."""

    #: The record as the ledger will hold it once every event here took effect.
    tail: JobRecord
    #: Each event with its acknowledgement (None: the broker did not even take it).
    sent: list[tuple[Event, Awaitable[object] | None]] = field(default_factory=list)


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

    Pipelined publishing (``pipelined=True``) hands a job's next events over one after another
    without a round trip each; :meth:`settle` then waits for all of them and checks that the
    last took effect. That is sound only while no writer of an older epoch can slip between
    them, which holds for a job this worker created itself (an older owner's first write is
    refused, and it writes again only at a newer epoch, which refuses all of ours): the
    runner pipelines only such jobs, and takes the slow path after any takeover.
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
        # Per job, its pipelined events not settled yet.
        self._chains: dict[str, _Chain] = {}

    def record(self, job_id: str) -> JobRecord | None:
        """The job's record as the topic has it (the ledger)."""
        return self.ledger.store.record(job_id)

    def latest_record(self, job_id: str) -> JobRecord | None:
        """The job's record after its pipelined events too (what this worker last wrote)."""
        chain = self._chains.get(job_id)
        return self.record(job_id) if chain is None else chain.tail

    async def create(
        self, command: SubmitJob, epoch: int = 0, *, pipelined: bool = False
    ) -> JobRecord:
        """Publish the job's first event (SUBMITTED, sequence 1); ``pipelined`` as for
        :meth:`move`."""
        await self.settle(command.job_id)
        view = JobView.submitted(
            command.job_id,
            command.tenant,
            command.request,
            command.creation_date,
            command.schedule_id,
        )
        event = JobStatusChanged(
            event_id=event_id_for(view.id, 1, epoch),
            job_id=view.id,
            tenant=command.tenant,
            sequence=1,
            epoch=epoch,
            previous_status=None,
            status=view.status,
            trigger="submit",
            job=view,
            occurred_at=self._clock(),
        )
        return await self._send(event, None, pipelined)

    async def move(
        self,
        job_id: str,
        trigger: str,
        *,
        message: str | None = None,
        environment_id: str | None = None,
        epoch: int = 0,
        pipelined: bool = False,
    ) -> JobRecord:
        """Apply ``trigger`` as the job's owner of ``epoch``; :class:`Fenced` if it is not.

        ``pipelined``: return once the event is handed over, with the record it leads to; the
        job's next non-pipelined publish or :meth:`settle` confirms it (see the class doc).
        """
        if not pipelined:
            await self.settle(job_id)
        record = self._latest(job_id, epoch)
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
        event = JobStatusChanged(
            event_id=event_id_for(job_id, record.sequence + 1, epoch),
            job_id=job_id,
            tenant=record.tenant,
            sequence=record.sequence + 1,
            epoch=epoch,
            previous_status=current,
            status=status,
            trigger=trigger,
            job=view,
            occurred_at=self._clock(),
        )
        return await self._send(event, record, pipelined)

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

        ``pipelined``: return once the event is handed over (with the record it leads to), so
        the step's own work overlaps the broker round trip; as for :meth:`move`.
        """
        if not pipelined:
            await self.settle(job_id)
        record = self._latest(job_id, epoch)
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
        return await self._send(event, record, pipelined)

    async def settle(self, job_id: str) -> None:
        """Wait until the job's pipelined events are acknowledged and folded; :class:`Fenced`
        if they did not all take effect. Events the broker failed to confirm are sent again,
        in order, until it does (a repeat of an event changes nothing for its readers)."""
        chain = self._chains.pop(job_id, None)
        if chain is None:
            return
        resend = False
        for event, acknowledged in chain.sent:
            # From the first event the broker did not confirm on, every one is sent again in
            # order, so none overtakes it on the topic.
            resend = resend or not await self._confirmed(event, acknowledged)
            if resend:
                await self._publish_until_acknowledged(event)
            if self._read_back_seconds is None:
                self.ledger.apply(event)
            self._published(event)
        last = chain.sent[-1][0]
        record = (
            self.record(job_id) if self._read_back_seconds is None else await self._read_back(last)
        )
        # Only this worker writes at its epoch, so the ledger at that epoch and at or past
        # the last sequence means every event of the chain was folded (see the class doc).
        if record is None or record.epoch != last.epoch or record.sequence < last.sequence:
            log.warning(
                "fenced: pipelined events did not take effect",
                job_id=job_id,
                tenant=last.tenant,
                sequence=last.sequence,
                epoch=last.epoch,
                owner_epoch=None if record is None else record.epoch,
            )
            raise Fenced(job_id)

    @staticmethod
    async def _confirmed(event: Event, acknowledged: Awaitable[object] | None) -> bool:
        """Whether the broker acknowledged a pipelined event (None: it did not even take it)."""
        if acknowledged is None:
            return False
        try:
            await acknowledged
        except BrokerUnavailable as failure:
            log.warning(
                "pipelined event not acknowledged; sending it again",
                job_id=event.job_id,
                sequence=event.sequence,
                error=str(failure),
            )
            return False
        return True

    def discard(self, job_id: str) -> None:
        """Forget the job's unsettled events (its task ended without settling them: handed
        over or crashed); what reached the broker stays there."""
        self._chains.pop(job_id, None)

    def _latest(self, job_id: str, epoch: int) -> JobRecord:
        """The record the job's next event builds on: after its pipelined events, if any."""
        chain = self._chains.get(job_id)
        if chain is None:
            return self._owned(job_id, epoch)
        if self.record(job_id) is not None:
            self._owned(job_id, epoch)  # fenced early if a newer owner already wrote
        return chain.tail

    async def _send(self, event: Event, record: JobRecord | None, pipelined: bool) -> JobRecord:
        """Hand ``event`` over (pipelined) or publish it and wait until it took effect; either
        way, the record it leads to."""
        if pipelined:
            return await self._hand_over(event, record)
        await self._publish_until_acknowledged(event)
        folded = await self._took_effect(event)
        self._published(event)
        return folded

    async def _hand_over(self, event: Event, record: JobRecord | None) -> JobRecord:
        chain = self._chains.get(event.job_id)
        tail = apply(record if chain is None else chain.tail, event)
        acknowledged: Awaitable[object] | None = None
        # Once one event was not taken, the rest wait for settling too, which sends them all
        # in order: none may overtake it on the topic.
        if chain is None or all(taken is not None for _, taken in chain.sent):
            try:
                acknowledged = await self._publisher.enqueue(event)
            except BrokerUnavailable as failure:
                log.warning(
                    "event not taken by the broker; sent again when settling",
                    job_id=event.job_id,
                    sequence=event.sequence,
                    error=str(failure),
                )
        chain = self._chains.setdefault(event.job_id, _Chain(tail=tail))
        chain.tail = tail
        chain.sent.append((event, acknowledged))
        return tail

    def _published(self, event: Event) -> None:
        """Count and log an event once the broker has it."""
        if isinstance(event, JobStatusChanged):
            view = event.job
            self.metrics.transition(
                event.previous_status, view.status, event.trigger, view.creation_date,
                event.occurred_at,
            )  # fmt: skip
            log.info(
                "job status changed",
                job_id=event.job_id,
                tenant=event.tenant,
                status=view.status,
                previous_status=event.previous_status,
                trigger=event.trigger,
                sequence=event.sequence,
                message=view.message,
            )
            return
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
