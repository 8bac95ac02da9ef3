"""``examples/follow_status.py`` against a real broker: one line per change, duplicates dropped,
and its consumer group resumes where it stopped."""

import asyncio
import importlib.util
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

from adapters.kafka import KafkaEventPublisher, KafkaProducer, ensure_topics
from schemas.events import JobStatusChanged, event_id_for
from schemas.jobs import JobRequest, JobView
from schemas.status import JobStatus
from worker.settings import Settings

pytestmark = pytest.mark.kafka

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "follow_status.py"
DEADLINE_SECONDS = 60


def _load_example() -> ModuleType:
    """Import the example by path: ``examples/`` is a folder of scripts, not a package."""
    spec = importlib.util.spec_from_file_location("follow_status_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


follow_status = _load_example()


def _changes(job_id: str) -> list[JobStatusChanged]:
    """Creation (SUBMITTED), STARTING and RUNNING of one job, as the worker publishes them."""
    created_at = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    request = JobRequest(
        model_id="model",
        configuration_id="configuration",
        input_folder_id="input",
        output_folder_id="output",
        maximum_execution_time_in_seconds=7200,
    )
    view = JobView.submitted(job_id, "local", request, created_at)
    moves = [
        (None, JobStatus.SUBMITTED, "submit"),
        (JobStatus.SUBMITTED, JobStatus.STARTING, "start"),
        (JobStatus.STARTING, JobStatus.RUNNING, "started"),
    ]
    return [
        JobStatusChanged(
            event_id=event_id_for(job_id, sequence),
            job_id=job_id,
            tenant="local",
            sequence=sequence,
            previous_status=previous,
            status=status,
            trigger=trigger,
            job=view.model_copy(update={"status": status}),
            occurred_at=created_at + timedelta(seconds=sequence),
        )
        for sequence, (previous, status, trigger) in enumerate(moves, start=1)
    ]


async def _publish(settings: Settings, events: list[JobStatusChanged]) -> None:
    producer = KafkaProducer(
        settings.kafka_bootstrap_servers, settings.broker_ack_timeout_seconds, "follow-status-test"
    )
    await producer.start()
    try:
        publisher = KafkaEventPublisher(producer, settings.events_topic)
        for event in events:
            await publisher.publish(event)
    finally:
        await producer.stop()


async def _follow_until(
    settings: Settings, group: str, sequence: int, capsys: pytest.CaptureFixture[str]
) -> list[str]:
    """Run the example's coroutine until it printed the change with ``sequence``; its lines."""
    capsys.readouterr()  # drop what was printed before (log lines of the set-up)
    async with asyncio.timeout(DEADLINE_SECONDS):
        await follow_status.follow(
            settings.kafka_bootstrap_servers,
            settings.events_topic,
            group,
            from_beginning=True,
            until=lambda event: event.sequence == sequence,
        )
    return capsys.readouterr().out.splitlines()


async def test_prints_each_change_once_and_resumes_in_its_group(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await ensure_topics(
        settings.kafka_bootstrap_servers,
        [settings.events_topic],
        settings.topic_partitions,
        settings.topic_replication_factor,
    )
    job_id = uuid.uuid4().hex
    created, starting, running = _changes(job_id)
    group = f"{settings.consumer_group}-follow-status"

    # The duplicate (a re-publish after a crash) sits between the two changes: the same key puts
    # all three in one partition, so by the time #2 is printed the duplicate has been read.
    await _publish(settings, [created, created, starting])
    assert await _follow_until(settings, group, 2, capsys) == [
        f"2025-01-01T12:00:01.000Z {job_id} #1 - -> SUBMITTED",
        f"2025-01-01T12:00:02.000Z {job_id} #2 SUBMITTED -> STARTING",
    ]

    # Same group again: it resumes after what it committed, so only the new change is printed.
    await _publish(settings, [running])
    assert await _follow_until(settings, group, 3, capsys) == [
        f"2025-01-01T12:00:03.000Z {job_id} #3 STARTING -> RUNNING",
    ]


def test_a_message_is_quoted_after_the_change() -> None:
    (created, *_) = _changes("job-1")
    failed = created.model_copy(
        update={
            "sequence": 2,
            "previous_status": JobStatus.SUBMITTED,
            "status": JobStatus.FAILED,
            "job": created.job.model_copy(
                update={"status": JobStatus.FAILED, "message": "model missing"}
            ),
        }
    )
    assert follow_status.format_change(failed) == (
        "2025-01-01T12:00:01.000Z job-1 #2 SUBMITTED -> FAILED 'model missing'"
    )
