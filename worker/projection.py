"""The projection: job records folded from the events topic."""

import asyncio
import time
from collections.abc import Callable

import structlog
from pydantic import ValidationError

from adapters.kafka import EventReader
from adapters.ports import ProjectionStore
from adapters.projection_store import construct_trusted
from schemas.events import EVENTS, Event, JobProgressed, JobStatusChanged
from schemas.jobs import JobRecord, TimelineEntry
from schemas.notes import ParagraphResult
from statemachine import FINAL_STATUSES

log = structlog.get_logger(__name__)

#: Most entries a record's timeline keeps. Moves are few (the table has no cycles); step
#: messages are bounded by the runner's steps, so this only guards against a chatty producer.
MAX_TIMELINE = 64

RecordListener = Callable[[JobRecord], None]


def apply(record: JobRecord | None, event: Event) -> JobRecord:
    """Fold one event into a job's record. Pure.

    Events at or below the record's sequence are redeliveries or re-publishes after a crash and
    change nothing but a missing timeline entry, so folding the same events in any order, with
    repeats, gives the same record.

    Fencing: an event of an older owner epoch than the record's (a paused worker writing after
    another took the job over) changes nothing, nor does a newer event after a final status, so
    the first writer of a sequence wins and a final status is never overwritten.
    """
    sequence = 0
    timeline: tuple[TimelineEntry, ...] = ()
    paragraphs: tuple[ParagraphResult, ...] = ()
    if record is not None:
        sequence, timeline = record.sequence, record.timeline
        if event.epoch < record.epoch or (
            event.sequence > sequence > 0 and record.view.status in FINAL_STATUSES
        ):
            return record
        if event.sequence <= sequence:
            if event.epoch != record.epoch:
                return record  # a newer owner that lost the race for this sequence
            grown = _timeline(timeline, event)
            if grown is timeline:
                return record
            return record.model_copy(update={"timeline": grown})
        paragraphs = record.paragraphs
    if isinstance(event, JobProgressed) and event.paragraph is not None:
        paragraphs = (*paragraphs, event.paragraph)
    # Every value comes from the validated event or the record, so no validation again.
    return construct_trusted(
        JobRecord,
        {
            "view": event.job,
            "sequence": event.sequence,
            "tenant": event.tenant,
            "paragraphs": paragraphs,
            "epoch": event.epoch,
            "timeline": _timeline(timeline, event),
        },
    )


def _timeline(timeline: tuple[TimelineEntry, ...], event: Event) -> tuple[TimelineEntry, ...]:
    """The timeline with the event's entry: every move and step message, in time order.

    Kept in time order and free of repeats, so a redelivered or late event lands where it
    belongs; entries of one millisecond keep their arrival order, which is the job's own order
    (its events share one partition). A paragraph's progress is not history of the job (it
    repeats the job's message).
    """
    if isinstance(event, JobProgressed) and event.paragraph is not None:
        return timeline
    moved = isinstance(event, JobStatusChanged)
    at, job = event.occurred_at, event.job
    status, message = job.status, job.message
    # The timeline is in time order and events mostly come in order: look from the end, and
    # compare fields only with entries of the same millisecond (pydantic's model equality and
    # validating a new entry were a third of a replay's time).
    position = len(timeline)
    while position and timeline[position - 1].at > at:
        position -= 1
    same_time = position
    while same_time and timeline[same_time - 1].at == at:
        same_time -= 1
        kept = timeline[same_time]
        if kept.status == status and kept.moved == moved and kept.message == message:
            return timeline
    # Every value comes from a validated event, so the entry needs no validation again.
    entry = construct_trusted(
        TimelineEntry, {"status": status, "at": at, "message": message, "moved": moved}
    )
    if position == len(timeline):
        grown = (*timeline, entry)  # the usual case: the newest entry
    else:
        grown = (*timeline[:position], entry, *timeline[position:])
    if len(grown) > MAX_TIMELINE:
        # Drop the oldest step message, never a move: the moves are what the timeline shows.
        steps = [i for i, kept in enumerate(grown) if not kept.moved]
        drop = steps[0] if steps else 0
        grown = grown[:drop] + grown[drop + 1 :]
    return grown


class Projection:
    """Applies events to a store; shared by the gateway's read side and the worker's ledger."""

    def __init__(self, store: ProjectionStore) -> None:
        self.store = store
        self._listeners: list[RecordListener] = []

    def subscribe(self, listener: RecordListener) -> Callable[[], None]:
        """Call ``listener`` with every record stored from now on; returns the unsubscribe.

        Listeners run synchronously inside ``apply``/``accept``, so they must only hand the
        record over (e.g. to a queue), never block or raise.
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def apply(self, event: Event) -> JobRecord:
        current = self.store.record(event.job_id)
        folded = apply(current, event)
        if folded is not current:
            self.store.put(folded, at=event.occurred_at)
            if self._listeners:
                self._notify(folded)
        return folded

    def accept(self, record: JobRecord) -> None:
        """Record a job the gateway accepted but whose first event is not read yet."""
        if self.store.record(record.view.id) is None:
            self.store.put(record)
            self._notify(record)

    def _notify(self, record: JobRecord) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(record)
            except Exception:  # a broken listener must not stop the fold
                log.exception("projection listener failed", job_id=record.view.id)


#: How often the projection frees final jobs past retention (they are hidden at once anyway).
SWEEP_SECONDS = 3600.0


def sweep(projection: Projection) -> int:
    """Free the final jobs past retention; returns how many."""
    purged = projection.store.purge()
    if purged:
        log.info("final jobs past retention purged", jobs=purged)
    return purged


async def follow_events(
    reader: EventReader, projection: Projection, sweep_seconds: float = SWEEP_SECONDS
) -> None:
    """Fold the events topic into the projection until cancelled; sweep retention once the
    topic is read to its end (the first empty batch), then every ``sweep_seconds``."""
    next_sweep: float | None = None
    # The adapter's core validator itself: the same validation without TypeAdapter's Python
    # wrapper, which a replay would call millions of times.
    validate = EVENTS.validator.validate_json
    while True:
        batch = await reader.next_batch(timeout_ms=200)
        for raw in batch:
            try:
                projection.apply(validate(raw))
            except ValidationError as invalid:
                # An event we cannot read must not stop the read side; it is logged for humans.
                log.error("unreadable event skipped", error=str(invalid)[:500])
        moment = time.monotonic()
        if (next_sweep is None and not batch) or (next_sweep is not None and moment >= next_sweep):
            sweep(projection)
            next_sweep = moment + sweep_seconds
        await asyncio.sleep(0)
