"""The compacted schedules topic on a real broker: records, tombstones and a fresh fold."""

import asyncio
from datetime import UTC, datetime

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from adapters.kafka import EventReader, KafkaProducer, ensure_topics
from adapters.kafka_schedules import SCHEDULES_TOPIC_CONFIG, KafkaScheduleLog, follow_schedules
from adapters.schedule_store import MemoryScheduleStore
from schemas.schedules import (
    ScheduleDefined,
    ScheduleDeleted,
    ScheduleTicked,
    TickOutcome,
    scheduled_job_id,
)
from tests.unit.factories import schedule_defined
from worker.settings import Settings

pytestmark = pytest.mark.kafka

NOW = datetime(2026, 3, 27, 12, tzinfo=UTC)
TENANT = "local"


def _defined(schedule_id: str, revision: int, name: str) -> ScheduleDefined:
    return schedule_defined(schedule_id, revision, at=NOW, tenant=TENANT, name=name)


async def test_a_fresh_reader_folds_the_current_schedules(
    settings: Settings, producer: KafkaProducer, admin: AIOKafkaAdminClient
) -> None:
    """Definitions, bookkeeping and a delete with tombstones fold into the live state."""
    topic = settings.schedules_topic
    await ensure_topics(
        settings.kafka_bootstrap_servers,
        [topic],
        settings.topic_partitions,
        settings.topic_replication_factor,
        {topic: SCHEDULES_TOPIC_CONFIG},
    )
    records = KafkaScheduleLog(producer, topic)
    await records.publish(_defined("kept", 1, "first name"))
    await records.publish(_defined("kept", 2, "second name"))
    await records.publish(
        ScheduleTicked(
            event_id="t",
            tenant=TENANT,
            schedule_id="kept",
            due_at=NOW,
            outcome=TickOutcome.FIRED,
            job_id=scheduled_job_id("kept", NOW),
            occurred_at=NOW,
        )
    )
    await records.publish(_defined("gone", 1, "deleted soon"))
    await records.publish(
        ScheduleDeleted(
            event_id="d", tenant=TENANT, schedule_id="gone", revision=2, occurred_at=NOW
        )
    )
    await records.erase(TENANT, "gone")

    store = MemoryScheduleStore()
    reader = EventReader(settings.kafka_bootstrap_servers, topic)
    await reader.start()
    following = asyncio.create_task(follow_schedules(reader, store))
    try:
        await reader.caught_up(30)
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await reader.stop()

    kept = store.get(TENANT, "kept")
    assert kept is not None
    assert kept.request.name == "second name"
    tick = store.last_tick(TENANT, "kept")
    assert tick is not None
    assert tick.job_id == scheduled_job_id("kept", NOW)
    assert store.get(TENANT, "gone") is None
    assert [s.id for s in store.list(TENANT)] == ["kept"]
    resource = ConfigResource(ConfigResourceType.TOPIC, topic)
    [response] = await admin.describe_configs([resource])
    [(_, _, _, _, entries)] = response.resources
    assert {entry[0]: entry[1] for entry in entries}["cleanup.policy"] == "compact"
