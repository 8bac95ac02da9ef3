"""All configuration, from ``JOBMANAGER_*`` environment variables, with local defaults."""

import secrets
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JOBMANAGER_", frozen=True, populate_by_name=True)

    home: Path = Path(".jobmanager")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices(
            "JOBMANAGER_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"
        ),
    )
    commands_topic: str = "jobmanager.commands"
    events_topic: str = "jobmanager.events"
    dead_letter_topic: str = "jobmanager.commands.dlq"
    environments_topic: str = "jobmanager.environments"
    # Compacted: every schedule's state and the scheduler's bookkeeping (docs/SCHEDULES.md).
    schedules_topic: str = "jobmanager.schedules"
    # After a scheduler restart, missed due times this recent fire once (the latest of them).
    schedule_catch_up_seconds: float = Field(default=300.0, ge=0)
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    consumer_group: str = "jobmanager-worker"
    # -1 keeps every event: the events topic is the jobs' history (GET and idempotency read it).
    events_retention_ms: int = Field(default=-1, ge=-1)
    broker_ack_timeout_seconds: float = Field(default=10.0, gt=0)
    catch_up_timeout_seconds: float = Field(default=120.0, gt=0)

    worker_concurrency: int = Field(default=4, ge=1)
    # Where models and data folders live: the local layout under ``home``, or MindSphere's
    # Model Management and Data Exchange APIs at ``mindsphere_url`` with a technical token.
    stores: Literal["local", "mindsphere"] = "local"
    mindsphere_url: str | None = None
    mindsphere_token: SecretStr | None = None
    mindsphere_timeout_seconds: float = Field(default=30.0, gt=0)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    # How long a silent worker keeps its partitions (the broker allows 6 s to 300 s by default):
    # a crashed worker's jobs are taken over within about this plus a rebalance.
    consumer_session_timeout_ms: int = Field(default=10_000, ge=1000)
    consumer_heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    # A running job publishes an event at least every other renewal while it is quiet; a
    # partition's new owner leaves a job to its worker until it has been silent this long, so
    # a crashed worker's jobs end within about session timeout + lease + a rebalance.
    job_lease_renew_seconds: float = Field(default=10.0, gt=0)
    job_lease_seconds: float = Field(default=30.0, gt=0)

    jwt_secret: SecretStr | None = None
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None

    max_execution_seconds: int = Field(default=86_400, ge=1)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    rate_limit_per_second: float = Field(default=100.0, gt=0)
    rate_limit_burst: int = Field(default=200, ge=1)
    # POST /jobs and stops waiting for the broker at once, all tenants together (then 503).
    max_pending_writes: int = Field(default=256, ge=1)
    # `jobmanager worker` and `jobmanager scheduler` serve /healthz, /readyz and /metrics on this
    # port (0: not at all); a process with the gateway serves them on the gateway's port instead.
    worker_metrics_port: int = Field(default=9102, ge=0, le=65535)
    # /readyz answers 503 while the projection is more than this many events behind.
    ready_max_lag: int = Field(default=1000, ge=0)
    # Final jobs whose final move is older than this many days leave the projection and the API,
    # as in MindSphere (90 days); 0 keeps them for ever.
    final_job_retention_days: float = Field(default=90, ge=0)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # OpenTelemetry spans, with the trace context in Kafka headers (docs/OPERATIONS.md, Tracing);
    # console and otlp need the `otel` extra, and otlp reads the standard OTEL_EXPORTER_OTLP_*.
    tracing: Literal["off", "console", "otlp"] = "off"

    @model_validator(mode="after")
    def _lease_outlasts_two_renewals(self) -> "Settings":
        # A quiet job renews every other beat; a shorter lease would take live jobs over.
        if self.job_lease_seconds <= 2 * self.job_lease_renew_seconds:
            raise ValueError("job_lease_seconds must be more than twice job_lease_renew_seconds")
        return self

    def hs256_secret(self) -> str | None:
        """HS256 is for local use: with a JWKS URL and no explicit secret, it is off."""
        if self.jwt_secret is None and self.jwks_url is not None:
            return None
        return self.resolved_jwt_secret()

    def resolved_jwt_secret(self) -> str:
        """The configured secret, or one generated once per home and kept there (mode 0600).

        Local use then needs no configuration, and no secret is ever in the repository.
        """
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        path = self.home / "jwt-secret"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(48))
        return path.read_text().strip()
