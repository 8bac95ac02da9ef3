"""Follow job status changes on the events topic and print one line per change.

A downstream consumer of ``jobmanager.events`` (see ``docs/asyncapi.json``), written against the
published contract only: it decodes each record with ``schemas.events.EVENTS`` and needs nothing
else of the Job Manager. Run it from the repository's venv::

    python examples/follow_status.py                    # new changes from now on
    python examples/follow_status.py --from-beginning   # a new group replays the whole topic

Each change prints as ``<occurredAt> <jobId> #<sequence> <previous> -> <status>``, for example
``2025-01-01T12:00:00.000Z 6c1d9e #2 SUBMITTED -> STARTING``; a job's creation shows ``-`` as the
previous status, and a job's message, when it has one, follows in quotes.

* It reads in its own consumer group (default ``jobmanager-follow-status``), so it never takes
  records from the worker; offsets are committed after each printed batch, so a restarted
  follower resumes where it stopped. ``--from-beginning`` only matters for a group with no
  committed offsets yet.
* Delivery is at least once and the worker re-publishes an event after a crash (same
  ``eventId`` and ``sequence``), so changes are deduplicated by (job id, sequence): a job's
  events share a partition and arrive in order, so remembering the highest sequence seen per
  job is enough.
* Ctrl-C (or SIGTERM) stops it cleanly: the consumer leaves its group. A second
  Ctrl-C aborts at once.

The defaults come from the Job Manager's variables: ``JOBMANAGER_KAFKA_BOOTSTRAP_SERVERS`` (or
``KAFKA_BOOTSTRAP_SERVERS``) and ``JOBMANAGER_EVENTS_TOPIC``.
"""

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from schemas.events import EVENTS, JobStatusChanged
from schemas.jobs import format_timestamp

DEFAULT_GROUP = "jobmanager-follow-status"
POLL_MILLISECONDS = 200


def format_change(event: JobStatusChanged) -> str:
    """The line printed for one change."""
    previous = event.previous_status.value if event.previous_status is not None else "-"
    line = (
        f"{format_timestamp(event.occurred_at)} {event.job_id} #{event.sequence} "
        f"{previous} -> {event.status.value}"
    )
    return f"{line} {event.job.message!r}" if event.job.message else line


class Deduplicator:
    """Lets each (job id, sequence) through once; keeps one number per job."""

    def __init__(self) -> None:
        self._highest: dict[str, int] = {}

    def is_new(self, event: JobStatusChanged) -> bool:
        if event.sequence <= self._highest.get(event.job_id, 0):
            return False
        self._highest[event.job_id] = event.sequence
        return True


async def follow(
    bootstrap_servers: str,
    topic: str,
    group_id: str = DEFAULT_GROUP,
    *,
    from_beginning: bool = False,
    stop: asyncio.Event | None = None,
    until: Callable[[JobStatusChanged], bool] | None = None,
    emit: Callable[[str], None] = print,
) -> None:
    """Print each new status change until ``stop`` is set or ``until(change)`` holds.

    ``until`` is asked after each printed change; the records already fetched with it are still
    handled, so nothing read is left unprinted before the offsets are committed.
    """
    stop = stop if stop is not None else asyncio.Event()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        # Committed by hand after each printed batch: an auto-commit on stop can be lost in a
        # rebalance, and a restarted follower would print old changes again.
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    seen = Deduplicator()
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=POLL_MILLISECONDS)
            for records in batches.values():
                for record in records:
                    try:
                        event = EVENTS.validate_json(record.value or b"")
                    except ValidationError as invalid:
                        where = f"{record.topic}/{record.partition}/{record.offset}"
                        print(f"skipped unreadable record {where}: {invalid}", file=sys.stderr)
                        continue
                    if not isinstance(event, JobStatusChanged):
                        continue  # JobProgressed: steps and paragraphs, not status changes
                    if seen.is_new(event):
                        emit(format_change(event))
                        if until is not None and until(event):
                            stop.set()
            if batches:
                await consumer.commit()
    finally:
        await consumer.stop()  # leaves the group


def _stop_on_signals(stop: asyncio.Event) -> None:
    """First SIGINT/SIGTERM: stop cleanly. The handler is then removed, so a second Ctrl-C
    raises KeyboardInterrupt at once."""
    loop = asyncio.get_running_loop()

    def handle(signum: signal.Signals) -> None:
        stop.set()
        loop.remove_signal_handler(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        # Windows has no loop signal handlers: Ctrl-C arrives as KeyboardInterrupt instead.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, handle, signum)


async def _run(arguments: argparse.Namespace) -> None:
    stop = asyncio.Event()
    _stop_on_signals(stop)
    await follow(
        arguments.bootstrap_servers,
        arguments.topic,
        arguments.group,
        from_beginning=arguments.from_beginning,
        stop=stop,
        emit=lambda line: print(line, flush=True),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print Job Manager status changes as they happen.")
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get(
            "JOBMANAGER_KAFKA_BOOTSTRAP_SERVERS",
            os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        ),
    )
    parser.add_argument(
        "--topic", default=os.environ.get("JOBMANAGER_EVENTS_TOPIC", "jobmanager.events")
    )
    parser.add_argument("--group", default=DEFAULT_GROUP, help="consumer group of this follower")
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="a group without committed offsets starts at the oldest event, not the newest",
    )
    arguments = parser.parse_args(argv)
    try:
        asyncio.run(_run(arguments))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
