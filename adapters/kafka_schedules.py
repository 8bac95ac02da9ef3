"""Kafka side of schedules: the compacted topic's writer, and the fold that reads it."""

import asyncio

import structlog

from adapters.kafka import EventReader, KafkaProducer
from adapters.schedule_store import MemoryScheduleStore, UnreadableRecord
from schemas.schedules import ScheduleMessage, message_key, schedule_key, ticks_key

log = structlog.get_logger(__name__)

# Compaction keeps the latest record per key: a schedule's state and its scheduler bookkeeping.
SCHEDULES_TOPIC_CONFIG = {"cleanup.policy": "compact"}


class KafkaScheduleLog:
    """Schedule records on the compacted schedules topic (see :mod:`schemas.schedules`)."""

    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def publish(self, message: ScheduleMessage) -> None:
        await self._producer.send(
            self._topic,
            message_key(message).encode(),
            message.model_dump_json().encode(),
            [("type", message.type.encode()), ("event-id", message.event_id.encode())],
        )

    async def erase(self, tenant: str, schedule_id: str) -> None:
        # Tombstones: compaction then drops the schedule and its bookkeeping for good.
        for key in (schedule_key(tenant, schedule_id), ticks_key(tenant, schedule_id)):
            await self._producer.send(self._topic, key.encode(), None)  # type: ignore[arg-type]


async def follow_schedules(reader: EventReader, store: MemoryScheduleStore) -> None:
    """Fold the schedules topic into the store until cancelled."""
    while True:
        for key, value in await reader.next_records(timeout_ms=200):
            try:
                store.apply_record(key, value)
            except UnreadableRecord as unreadable:
                # A record we cannot read must not stop the schedules; it is logged for humans.
                log.error("unreadable schedule record skipped", key=key, error=str(unreadable))
        await asyncio.sleep(0)
