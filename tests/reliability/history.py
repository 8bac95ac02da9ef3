"""The history checker: reads a whole events topic and judges every job's history in it.

It folds each job's events the way every projection does (``worker.projection.apply``: an
event of an older owner epoch, at or below the record's sequence, or after a final status
changes nothing) and then checks what took effect, and what did not, against the rules of the
reliability suite:

- exact redeliveries (same event id, same content) are counted and dropped first; two
  different events under one event id are a conflict;
- the effective history of a job starts with its creation at sequence 1 and its sequences
  go up by one, with no gaps;
- every effective move is legal per ``statemachine.table.TRANSITIONS`` and starts from the
  status the job had;
- a job has at most one effective terminal event, and no terminal event that was dropped for
  any reason other than fencing (an older epoch: a zombie's write, which no reader applies);
- every accepted job id is in the topic and final.
"""

from dataclasses import dataclass, field

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from schemas.events import EVENTS, Event, JobStatusChanged
from schemas.status import JobStatus
from statemachine import FINAL_STATUSES, TRANSITIONS
from tests.integration.helpers import TopicTail

LEGAL: frozenset[tuple[JobStatus, str, JobStatus]] = frozenset(
    (move.source, move.trigger, move.dest) for move in TRANSITIONS
)


@dataclass
class JobHistory:
    """One job's events as read (after dropping exact redeliveries) and what took effect."""

    job_id: str
    events: list[Event] = field(default_factory=list)
    effective: list[Event] = field(default_factory=list)
    fenced: list[Event] = field(default_factory=list)

    @property
    def status(self) -> JobStatus | None:
        return self.effective[-1].status if self.effective else None


@dataclass
class HistoryReport:
    """What :func:`check_history` found; ``violations`` says what is wrong, one line each."""

    jobs: int = 0
    events: int = 0
    redeliveries: int = 0
    #: Events of an older owner epoch that no reader applies (a zombie's writes).
    fenced_events: int = 0
    #: Events that lost a race for a sequence to another writer of the same or a newer epoch.
    lost_races: int = 0
    unreadable: int = 0
    jobs_lost: int = 0
    duplicate_terminals: int = 0
    illegal_moves: int = 0
    gaps: int = 0
    conflicts: int = 0
    violations: list[str] = field(default_factory=list)
    histories: dict[str, JobHistory] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def safety(self) -> dict[str, int]:
        """The counts every fault test records, each of which must be 0."""
        return {
            "jobs_lost": self.jobs_lost,
            "duplicate_terminals": self.duplicate_terminals,
            "illegal_moves": self.illegal_moves,
        }

    def summary(self) -> str:
        head = (
            f"{self.jobs} jobs, {self.events} events, {self.redeliveries} redeliveries, "
            f"{self.fenced_events} fenced, {self.lost_races} lost races"
        )
        return "\n".join([head, *self.violations[:50]])


async def read_topic(bootstrap: str, topic: str, within: float = 60.0) -> list[ConsumerRecord]:
    """Every record of ``topic`` from the beginning up to its end at the time of the call."""
    async with TopicTail(bootstrap, topic) as tail:
        return list(await tail.read_to_end(within))


def judge(records: list[ConsumerRecord], accepted: set[str]) -> HistoryReport:
    """Check the records of an events topic (in partition order) against the rules above."""
    report = HistoryReport()
    histories: dict[str, JobHistory] = {}
    seen: dict[str, bytes] = {}
    for record in records:
        try:
            event = EVENTS.validate_json(record.value)
        except ValidationError:
            report.unreadable += 1
            report.violations.append(f"unreadable event at offset {record.offset}")
            continue
        report.events += 1
        earlier = seen.get(event.event_id)
        if earlier is not None:
            if earlier == record.value:
                report.redeliveries += 1
            else:
                report.conflicts += 1
                report.violations.append(
                    f"{event.job_id}: two different events under id {event.event_id}"
                )
            continue
        seen[event.event_id] = record.value
        history = histories.setdefault(event.job_id, JobHistory(event.job_id))
        history.events.append(event)
    for history in histories.values():
        _fold(history, report)
    report.jobs = len(histories)
    for job_id in sorted(accepted):
        found = histories.get(job_id)
        if found is None or found.status not in FINAL_STATUSES:
            report.jobs_lost += 1
            status = "no event" if found is None else found.status
            report.violations.append(f"{job_id}: accepted but not final ({status})")
    report.histories = histories
    return report


def _fold(history: JobHistory, report: HistoryReport) -> None:
    """Apply the projections' fold rules and check what took effect."""
    epoch = 0
    terminals: list[Event] = []
    for event in history.events:
        last = history.effective[-1] if history.effective else None
        if last is not None and event.epoch < epoch:
            history.fenced.append(event)
            report.fenced_events += 1
            continue
        if last is not None and (event.sequence <= last.sequence or last.status in FINAL_STATUSES):
            report.lost_races += 1
            if event.status in FINAL_STATUSES and isinstance(event, JobStatusChanged):
                # A second terminal that no fencing explains: its writer believed it owned the
                # job at the newest epoch, so two owners ended the same job.
                report.duplicate_terminals += 1
                report.violations.append(
                    f"{history.job_id}: unfenced second terminal {event.status} "
                    f"at sequence {event.sequence} epoch {event.epoch}"
                )
            continue
        _check_step(history.job_id, last, event, report)
        history.effective.append(event)
        epoch = event.epoch
        if isinstance(event, JobStatusChanged) and event.status in FINAL_STATUSES:
            terminals.append(event)
    if len(terminals) > 1:
        report.duplicate_terminals += len(terminals) - 1
        report.violations.append(f"{history.job_id}: {len(terminals)} effective terminal events")


def _check_step(job_id: str, last: Event | None, event: Event, report: HistoryReport) -> None:
    if last is None:
        if event.sequence != 1 or not (
            isinstance(event, JobStatusChanged)
            and event.previous_status is None
            and event.status is JobStatus.SUBMITTED
        ):
            report.gaps += 1
            report.violations.append(
                f"{job_id}: history starts with {event.type} {event.status} "
                f"at sequence {event.sequence}"
            )
        return
    if event.sequence != last.sequence + 1:
        report.gaps += 1
        report.violations.append(
            f"{job_id}: sequence {last.sequence} is followed by {event.sequence}"
        )
    if isinstance(event, JobStatusChanged):
        legal = (
            event.previous_status is last.status
            and (last.status, event.trigger, event.status) in LEGAL
        )
        if not legal:
            report.illegal_moves += 1
            report.violations.append(
                f"{job_id}: illegal move {event.previous_status}-{event.trigger}->{event.status} "
                f"while {last.status} (sequence {event.sequence})"
            )
    elif event.status is not last.status:
        report.illegal_moves += 1
        report.violations.append(
            f"{job_id}: progress changed the status {last.status}->{event.status} "
            f"(sequence {event.sequence})"
        )


async def check_history(bootstrap: str, events_topic: str, accepted: set[str]) -> HistoryReport:
    """Read the whole events topic and judge it; ``accepted`` are the job ids answered 201."""
    return judge(await read_topic(bootstrap, events_topic), accepted)
