"""The projection: job records folded from the events topic."""

import asyncio

import structlog
from pydantic import ValidationError

from adapters.kafka import EventReader
from adapters.ports import ProjectionStore
from schemas.events import EVENTS, Event, JobProgressed
from schemas.jobs import JobRecord

log = structlog.get_logger(__name__)


def apply(record: JobRecord | None, event: Event) -> JobRecord:
    """Fold one event into a job's record. Pure.

    Events at or below the record's sequence are redeliveries or re-publishes after a crash and
    change nothing, so folding the same stream twice gives the same record.
    """
    if record is not None and event.sequence <= record.sequence:
        return record
    paragraphs = record.paragraphs if record is not None else ()
    if isinstance(event, JobProgressed) and event.paragraph is not None:
        paragraphs = (*paragraphs, event.paragraph)
    return JobRecord(
        view=event.job, sequence=event.sequence, tenant=event.tenant, paragraphs=paragraphs
    )


class Projection:
    """Applies events to a store; shared by the gateway's read side and the worker's ledger."""

    def __init__(self, store: ProjectionStore) -> None:
        self.store = store

    def apply(self, event: Event) -> JobRecord:
        current = self.store.record(event.job_id)
        folded = apply(current, event)
        if folded is not current:
            self.store.put(folded)
        return folded

    def accept(self, record: JobRecord) -> None:
        """Record a job the gateway accepted but whose first event is not read yet."""
        if self.store.record(record.view.id) is None:
            self.store.put(record)


async def follow_events(reader: EventReader, projection: Projection) -> None:
    """Fold the events topic into the projection until cancelled."""
    while True:
        for raw in await reader.next_batch(timeout_ms=200):
            try:
                projection.apply(EVENTS.validate_json(raw))
            except ValidationError as invalid:
                # An event we cannot read must not stop the read side; it is logged for humans.
                log.error("unreadable event skipped", error=str(invalid)[:500])
        await asyncio.sleep(0)
