"""Fixtures of the reliability suite (real broker, real processes)."""

import pytest

from worker.settings import Settings

# The broker's smallest allowed session timeout (group.min.session.timeout.ms defaults to 6 s):
# a dead worker's partitions move after this, so it bounds every takeover in these tests.
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 1000
# A job renews its lease at least every 1 s while quiet; a new owner takes it over after 2.5 s.
LEASE_RENEW_SECONDS = 0.5
LEASE_SECONDS = 2.5


@pytest.fixture
def fault_settings(settings: Settings) -> Settings:
    """The test's settings with the short failure detection the fault tests measure."""
    return settings.model_copy(
        update={
            "consumer_session_timeout_ms": SESSION_TIMEOUT_MS,
            "consumer_heartbeat_interval_ms": HEARTBEAT_INTERVAL_MS,
            "topic_partitions": 2,
            "job_lease_renew_seconds": LEASE_RENEW_SECONDS,
            "job_lease_seconds": LEASE_SECONDS,
        }
    )
