"""Shared fixtures: a real Kafka broker per session, fresh topics per test."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kafka_broker import kafka_broker
from tests.service import fresh_settings
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
    return fresh_settings(kafka_bootstrap, tmp_path / "home", broker_ack_timeout_seconds=10.0)
