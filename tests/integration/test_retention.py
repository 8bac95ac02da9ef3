"""Retention over the real broker: a replay of the events topic leaves out jobs past retention."""

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest

from adapters.kafka import EventReader, KafkaEventPublisher, KafkaProducer, Topics
from adapters.projection_store import MemoryProjectionStore
from schemas.events import JobStatusChanged
from tests.integration.helpers import TENANT
from tests.unit.factories import job_events
from worker.projection import Projection, follow_events
from worker.settings import Settings

pytestmark = pytest.mark.kafka

SUCCEEDS = ["start", "run", "succeed"]


def _history(job_id: str, start: datetime) -> list[JobStatusChanged]:
    """A job that succeeded, one minute a move, from ``start``."""
    return job_events(job_id, SUCCEEDS, start + timedelta(minutes=1), tenant=TENANT)


async def test_a_replay_leaves_out_final_jobs_past_retention(
    settings: Settings, topics: Topics, producer: KafkaProducer
) -> None:
    """Jobs that ended 100 days ago are not rebuilt; one that ended yesterday is."""
    now = datetime.now(UTC)
    publisher = KafkaEventPublisher(producer, topics.events)
    for job_id, start in (
        ("old-1", now - 100 * timedelta(days=1)),
        ("recent", now - timedelta(days=1)),
        ("old-2", now - 95 * timedelta(days=1)),
    ):
        for event in _history(job_id, start):
            await publisher.publish(event)

    reader = EventReader(settings.kafka_bootstrap_servers, topics.events)
    await reader.start()
    projection = Projection(MemoryProjectionStore(timedelta(days=90)))
    follower = asyncio.create_task(follow_events(reader, projection))
    try:
        await reader.caught_up(30)
        store = projection.store
        assert [view.id for view in store.list(TENANT)] == ["recent"]
        assert store.get(TENANT, "old-1") is None
        assert store.get(TENANT, "old-2") is None
        assert len(store) == 1  # type: ignore[arg-type]
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await reader.stop()
