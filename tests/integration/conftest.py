"""Fixtures for the integration tests: the test's topics, a producer and an admin client."""

from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from adapters.kafka import KafkaProducer, Topics, ensure_topics
from worker.settings import Settings


@pytest.fixture
async def topics(settings: Settings) -> Topics:
    """The three topics of this test, created with the configured partition count."""
    await ensure_topics(
        settings.kafka_bootstrap_servers,
        (settings.commands_topic, settings.events_topic, settings.dead_letter_topic),
        settings.topic_partitions,
        settings.topic_replication_factor,
    )
    return Topics(settings.commands_topic, settings.events_topic, settings.dead_letter_topic)


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[KafkaProducer]:
    """A started producer on the test broker."""
    started = KafkaProducer(
        settings.kafka_bootstrap_servers, settings.broker_ack_timeout_seconds, "integration-tests"
    )
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    """An admin client on the test broker."""
    client = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await client.start()
    try:
        yield client
    finally:
        await client.close()
