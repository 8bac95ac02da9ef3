"""The Kafka adapters against a real broker: topics, publishers, the event reader, timeouts."""

import asyncio
import time
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from adapters.kafka import (
    EventReader,
    KafkaCommandPublisher,
    KafkaEventPublisher,
    KafkaProducer,
    Topics,
    ensure_topics,
)
from adapters.ports import BrokerUnavailable
from schemas.commands import COMMANDS, StopJob
from schemas.events import EVENTS, JobStatusChanged, event_id_for
from schemas.jobs import JobRequest, JobView
from schemas.status import JobStatus
from tests.integration.helpers import TENANT, TopicTail, headers, submit_command
from tests.kafka_broker import free_port
from worker.settings import Settings

pytestmark = pytest.mark.kafka

REQUEST = JobRequest(
    model_id="model",
    configuration_id="configuration",
    input_folder_id="input",
    output_folder_id="output",
    maximum_execution_time_in_seconds=60,
)
STATUSES = [
    JobStatus.SUBMITTED,
    JobStatus.STARTING,
    JobStatus.RUNNING,
    JobStatus.STOPPING,
    JobStatus.STOPPED,
]


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    described = await admin.describe_topics(names)
    return {topic["topic"]: len(topic["partitions"]) for topic in described}


def _event(job_id: str, sequence: int) -> JobStatusChanged:
    status = STATUSES[sequence - 1]
    now = datetime.now(UTC)
    view = JobView.submitted(job_id, TENANT, REQUEST, now).model_copy(update={"status": status})
    return JobStatusChanged(
        event_id=event_id_for(job_id, sequence),
        job_id=job_id,
        tenant=TENANT,
        sequence=sequence,
        previous_status=STATUSES[sequence - 2] if sequence > 1 else None,
        status=status,
        trigger="test",
        job=view,
        occurred_at=now,
    )


async def test_ensure_topics_creates_them_and_is_idempotent(
    settings: Settings, admin: AIOKafkaAdminClient
) -> None:
    """ensure_topics creates the topics with the configured partitions; a second call is a no-op."""
    names = [settings.commands_topic, settings.events_topic, settings.dead_letter_topic]
    bootstrap = settings.kafka_bootstrap_servers
    assert not set(names) & set(await admin.list_topics())

    await ensure_topics(bootstrap, names, settings.topic_partitions, 1)
    assert await _partition_counts(admin, names) == dict.fromkeys(names, settings.topic_partitions)

    # Again, and with another partition count: existing topics are left as they are.
    await ensure_topics(bootstrap, names, settings.topic_partitions, 1)
    await ensure_topics(bootstrap, names, settings.topic_partitions + 2, 1)
    assert await _partition_counts(admin, names) == dict.fromkeys(names, settings.topic_partitions)


async def test_command_publisher_round_trip(
    settings: Settings, topics: Topics, producer: KafkaProducer
) -> None:
    """A published command reads back keyed by job id, decodes with COMMANDS, typed in headers."""
    publisher = KafkaCommandPublisher(producer, topics.commands)
    submit = submit_command(REQUEST)
    stop = StopJob(
        command_id=uuid.uuid4().hex,
        job_id=submit.job_id,
        tenant=TENANT,
        issued_at=datetime.now(UTC),
    )

    await publisher.publish(submit)
    await publisher.publish(stop)

    async with TopicTail(settings.kafka_bootstrap_servers, topics.commands) as tail:
        records = await tail.wait_for(lambda found: len(found) >= 2, "two commands", within=30)
    assert [r.key for r in records] == [submit.job_id.encode()] * 2
    assert len({r.partition for r in records}) == 1, "one job's commands share a partition"
    assert [COMMANDS.validate_json(r.value) for r in records] == [submit, stop]
    assert [headers(r) for r in records] == [
        {"type": b"SubmitJob", "schema-version": b"1"},
        {"type": b"StopJob", "schema-version": b"1"},
    ]


async def test_event_reader_caught_up_waits_until_events_are_applied(
    settings: Settings, topics: Topics, producer: KafkaProducer
) -> None:
    """caught_up returns only once every earlier event was handed out and applied, in job order."""
    publisher = KafkaEventPublisher(producer, topics.events)
    jobs = [uuid.uuid4().hex for _ in range(4)]
    published = [_event(job_id, sequence) for sequence in (1, 2, 3) for job_id in jobs]
    for event in published:
        await publisher.publish(event)

    reader = EventReader(settings.kafka_bootstrap_servers, topics.events)
    await reader.start()
    handed: list[bytes] = []
    applied: list[bytes] = []
    all_handed = asyncio.Event()
    may_apply = asyncio.Event()

    async def follow() -> None:
        while True:
            batch = await reader.next_batch(timeout_ms=100)
            handed.extend(batch)
            if len(handed) >= len(published):
                all_handed.set()
                await may_apply.wait()  # holds the batch: it is handed out, not applied
            applied.extend(batch)

    follower = asyncio.create_task(follow(), name="follower")
    try:
        caught_up = asyncio.create_task(reader.caught_up(30), name="caught_up")
        async with asyncio.timeout(30):
            await all_handed.wait()
        # Everything is handed out but the last batch is not applied: caught_up must still wait.
        done, _ = await asyncio.wait({caught_up}, timeout=1.0)
        assert not done, "caught_up returned before the last batch was applied"

        may_apply.set()
        async with asyncio.timeout(10):
            await caught_up
        assert sorted(applied) == sorted(e.model_dump_json().encode() for e in published)

        # Later events: a new caught_up call waits for them as well.
        later = [_event(job_id, sequence) for sequence in (4, 5) for job_id in jobs]
        for event in later:
            await publisher.publish(event)
        await reader.caught_up(30)
        assert len(applied) == len(published) + len(later)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await reader.stop()

    events = [EVENTS.validate_json(raw) for raw in applied]
    for job_id in jobs:
        assert [e.sequence for e in events if e.job_id == job_id] == [1, 2, 3, 4, 5]


async def test_send_to_unreachable_broker_raises_broker_unavailable() -> None:
    """send to a closed port raises BrokerUnavailable within the ack timeout instead of hanging."""
    ack_timeout = 2.0
    producer = KafkaProducer(f"127.0.0.1:{free_port()}", ack_timeout, "unreachable")
    async with asyncio.timeout(ack_timeout + 10):
        # The client cannot bootstrap: start fails at once with aiokafka's own error (not wrapped).
        with pytest.raises(KafkaError):
            await producer.start()
        began = time.monotonic()
        try:
            with pytest.raises(BrokerUnavailable, match="did not acknowledge"):
                await producer.send("any-topic", b"key", b"value")
        finally:
            await producer.stop()
    assert time.monotonic() - began < ack_timeout + 2


async def test_ensure_topics_applies_topic_configs(settings: Settings) -> None:
    """A config given for a topic (the events topic's retention) is set on creation."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    name = settings.events_topic
    await ensure_topics(
        settings.kafka_bootstrap_servers, [name], 1, 1, {name: {"retention.ms": "-1"}}
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    finally:
        await admin.close()
    [(_, _, _, _, entries)] = response.resources
    assert {entry[0]: entry[1] for entry in entries}["retention.ms"] == "-1"
