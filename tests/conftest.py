"""Shared fixtures: a real Kafka broker per session, fresh topics per test."""

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kafka_broker import kafka_broker
from worker.settings import Settings

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running broker; fails (never skips) when none can be had."""
    with kafka_broker(tmp_path_factory.mktemp("kafka")) as bootstrap:
        yield bootstrap


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own topics, group, home and secret."""
    suffix = uuid.uuid4().hex[:10]
    return Settings(
        home=tmp_path / "home",
        kafka_bootstrap_servers=kafka_bootstrap,
        commands_topic=f"test.{suffix}.commands",
        events_topic=f"test.{suffix}.events",
        dead_letter_topic=f"test.{suffix}.commands.dlq",
        environments_topic=f"test.{suffix}.environments",
        consumer_group=f"test-{suffix}",
        topic_partitions=3,
        jwt_secret=secrets.token_urlsafe(32),  # type: ignore[arg-type]
        broker_ack_timeout_seconds=10.0,
    )
