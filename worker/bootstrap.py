"""The composition root: the only place that builds clients from settings."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from adapters.engine_local import LocalNoteEngine
from adapters.engine_zeppelin import ZeppelinEngine
from adapters.engines import EngineByConfiguration
from adapters.environment_locks import KafkaEnvironmentLocks
from adapters.http.auth import Authenticator, AuthSettings
from adapters.http.gateway import Gateway, GatewayLimits
from adapters.http.schedules import ScheduleApi
from adapters.http.ui import WebUi
from adapters.kafka import (
    EventReader,
    KafkaCommandPublisher,
    KafkaDeadLetterPublisher,
    KafkaEventPublisher,
    KafkaProducer,
    command_consumer,
    ensure_topics,
)
from adapters.kafka_schedules import SCHEDULES_TOPIC_CONFIG, KafkaScheduleLog, follow_schedules
from adapters.local_files import (
    LocalEnvironmentProvider,
    LocalFolderStore,
    LocalHome,
    LocalModelStore,
)
from adapters.metrics import Check, CheckResult, Metrics, Probes, Readiness, lag_check
from adapters.mindsphere import MindSphereFolderStore, MindSphereModelStore
from adapters.ports import BrokerUnavailable, FolderStore, ModelStore
from adapters.projection_store import MemoryProjectionStore
from adapters.schedule_store import MemoryScheduleStore
from statemachine import JobMachine
from worker.consumer import CommandLoop
from worker.jobs import JobRunner, Lease
from worker.moves import Mover
from worker.projection import Projection, follow_events
from worker.runtime import tune_gc
from worker.scheduler import Scheduler
from worker.settings import Settings

if TYPE_CHECKING:  # tracing is optional: nothing of OpenTelemetry is imported while it is off
    from adapters.tracing import Tracing

log = structlog.get_logger(__name__)

BROKER_WAIT_SECONDS = 60.0
TRACING_FLUSH_SECONDS = 5.0


@dataclass
class Roles:
    gateway: bool = True
    worker: bool = True
    scheduler: bool = True


async def _wait_for_topics(settings: Settings) -> None:
    names = (
        settings.commands_topic,
        settings.events_topic,
        settings.dead_letter_topic,
        settings.environments_topic,
        settings.schedules_topic,
    )
    deadline = asyncio.get_running_loop().time() + BROKER_WAIT_SECONDS
    while True:
        try:
            await ensure_topics(
                settings.kafka_bootstrap_servers,
                names,
                settings.topic_partitions,
                settings.topic_replication_factor,
                # The events topic is the job history the projections are rebuilt from.
                {
                    settings.events_topic: {"retention.ms": str(settings.events_retention_ms)},
                    settings.environments_topic: {
                        "retention.ms": str(settings.events_retention_ms)
                    },
                    settings.schedules_topic: SCHEDULES_TOPIC_CONFIG,
                },
            )
            return
        except Exception as failure:
            if asyncio.get_running_loop().time() > deadline:
                raise BrokerUnavailable(
                    f"no Kafka broker answered at {settings.kafka_bootstrap_servers} "
                    f"within {BROKER_WAIT_SECONDS:g} s (start one with `make kafka-up`)"
                ) from failure
            log.warning("waiting for the broker", bootstrap=settings.kafka_bootstrap_servers)
            await asyncio.sleep(1.0)


async def run(settings: Settings, roles: Roles, stopping: asyncio.Event) -> None:
    """Run the requested roles until ``stopping`` is set, then shut down in order."""
    tune_gc()
    tracing = _tracing(settings)
    await _wait_for_topics(settings)
    # One registry per process: in `serve`, the gateway's /metrics shows the worker's too.
    metrics = Metrics()
    async with contextlib.AsyncExitStack() as stack:
        if tracing is not None:
            # Pushed first, so it runs last: the spans of the shutdown are exported too.
            stack.push_async_callback(_quietly, "tracing", lambda: _flush(tracing))
        producer = KafkaProducer(
            settings.kafka_bootstrap_servers, settings.broker_ack_timeout_seconds, "jobmanager"
        )
        await producer.start()
        stack.push_async_callback(_quietly, "producer", producer.stop)

        reader = EventReader(settings.kafka_bootstrap_servers, settings.events_topic)
        await reader.start()
        stack.push_async_callback(_quietly, "event reader", reader.stop)
        # One projection per process: the gateway's read side and the worker's ledger.
        retention = settings.final_job_retention_days
        projection = Projection(MemoryProjectionStore(timedelta(days=retention) or None))
        follower = asyncio.create_task(follow_events(reader, projection), name="projection")
        stack.push_async_callback(_cancel, follower)
        watched = [follower]
        metrics.follow_projection_lag(reader.lag)
        probes = Probes(
            metrics,
            Readiness(
                {
                    "broker": _broker_check(producer),
                    "projection": lag_check(reader.lag, settings.ready_max_lag),
                }
            ),
        )
        if (roles.worker or roles.scheduler) and not roles.gateway and settings.worker_metrics_port:
            # Up before the catch-up: alive at once, ready once caught up.
            await _serve_probes(stack, probes, settings.host, settings.worker_metrics_port)
        await reader.caught_up(settings.catch_up_timeout_seconds)
        log.info("projection caught up", jobs=len(projection.store))  # type: ignore[arg-type]
        schedules = MemoryScheduleStore()
        schedule_log = KafkaScheduleLog(producer, settings.schedules_topic)
        if roles.gateway or roles.scheduler:
            schedule_reader = EventReader(
                settings.kafka_bootstrap_servers, settings.schedules_topic
            )
            await schedule_reader.start()
            stack.push_async_callback(_quietly, "schedule reader", schedule_reader.stop)
            following = asyncio.create_task(
                follow_schedules(schedule_reader, schedules), name="schedules"
            )
            stack.push_async_callback(_cancel, following)
            watched.append(following)
            await schedule_reader.caught_up(settings.catch_up_timeout_seconds)

        if roles.worker:
            lock_reader = EventReader(settings.kafka_bootstrap_servers, settings.environments_topic)
            await lock_reader.start()
            stack.push_async_callback(_quietly, "environment claims reader", lock_reader.stop)
            locks = KafkaEnvironmentLocks(
                producer,
                lock_reader,
                settings.environments_topic,
                settings.catch_up_timeout_seconds,
            )
            claims = asyncio.create_task(locks.follow(), name="environment-claims")
            stack.push_async_callback(_cancel, claims)
            watched.append(claims)
            await lock_reader.caught_up(settings.catch_up_timeout_seconds)
            loop = _command_loop(settings, producer, projection, reader, locks, metrics, tracing)
            await loop.start()
            stack.push_async_callback(
                _quietly, "command loop", lambda: loop.stop(settings.shutdown_grace_seconds)
            )
            consuming = asyncio.create_task(loop.run(), name="commands")
            stack.push_async_callback(_cancel, consuming)
            watched.append(consuming)
            log.info("worker started", group=settings.consumer_group)

        if roles.gateway:
            authenticator = Authenticator(
                AuthSettings(
                    hs256_secret=settings.hs256_secret(),
                    jwks_url=settings.jwks_url,
                    issuer=settings.jwt_issuer,
                    audience=settings.jwt_audience,
                )
            )
            stack.push_async_callback(_quietly, "authenticator", authenticator.close)
            gateway = Gateway(
                KafkaCommandPublisher(producer, settings.commands_topic, tracing),
                projection.store,
                authenticator,
                projection.accept,
                GatewayLimits(
                    max_body_bytes=settings.max_body_bytes,
                    max_execution_seconds=settings.max_execution_seconds,
                    requests_per_second=settings.rate_limit_per_second,
                    request_burst=settings.rate_limit_burst,
                    max_pending_writes=settings.max_pending_writes,
                ),
                probes=probes,
                tracing=tracing,
                ui=WebUi(
                    projection.store,
                    projection,
                    authenticator,
                    folders=LocalHome(settings.home) if settings.stores == "local" else None,
                ),
                schedules=ScheduleApi(
                    schedules, schedule_log, schedules.apply, settings.max_execution_seconds
                ),
            )
            runner = web.AppRunner(gateway.app(), access_log=None)
            await runner.setup()
            stack.push_async_callback(_quietly, "gateway", runner.cleanup)
            await web.TCPSite(runner, settings.host, settings.port).start()
            log.info("gateway listening", url=f"http://{settings.host}:{settings.port}")

        if roles.scheduler:
            scheduler = Scheduler(
                schedules,
                schedule_log,
                KafkaCommandPublisher(producer, settings.commands_topic, tracing),
                projection.store.record,
                timedelta(seconds=settings.schedule_catch_up_seconds),
            )
            firing = asyncio.create_task(scheduler.run(), name="scheduler")
            stack.push_async_callback(_cancel, firing)
            watched.append(firing)

        stop_wait = asyncio.create_task(stopping.wait())
        done, _ = await asyncio.wait([stop_wait, *watched], return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        failed = [task for task in done if task is not stop_wait]
        for task in failed:
            log.error(
                "component stopped unexpectedly; shutting down",
                component=task.get_name(),
                error=repr(task.exception()) if not task.cancelled() else "cancelled",
            )
        log.info("shutting down")
    if failed:
        raise SystemExit(1)


def _command_loop(
    settings: Settings,
    producer: KafkaProducer,
    ledger: Projection,
    reader: EventReader,
    locks: KafkaEnvironmentLocks,
    metrics: Metrics,
    tracing: "Tracing | None" = None,
) -> CommandLoop:
    home = LocalHome(settings.home)
    mover = Mover(
        JobMachine(),
        KafkaEventPublisher(producer, settings.events_topic, tracing),
        ledger,
        metrics=metrics,
        # Moves are confirmed from the topic, so a worker that lost the job stops at once.
        read_back_seconds=settings.catch_up_timeout_seconds,
    )
    models, folders = _stores(settings, home)
    runner = JobRunner(
        mover,
        models,
        folders,
        LocalEnvironmentProvider(home),
        EngineByConfiguration({"local": LocalNoteEngine(), "zeppelin": ZeppelinEngine()}),
        locks,
        settings.worker_concurrency,
        lease=Lease(settings.job_lease_renew_seconds, settings.job_lease_seconds),
    )
    return CommandLoop(
        lambda on_revoked, on_assigned: command_consumer(
            settings.kafka_bootstrap_servers,
            settings.commands_topic,
            settings.consumer_group,
            on_revoked,
            on_assigned,
            session_timeout_ms=settings.consumer_session_timeout_ms,
            heartbeat_interval_ms=settings.consumer_heartbeat_interval_ms,
        ),
        runner,
        KafkaDeadLetterPublisher(producer, settings.dead_letter_topic),
        lambda: reader.caught_up(settings.catch_up_timeout_seconds),
        tracing=tracing,
    )


def _tracing(settings: Settings) -> "Tracing | None":
    if settings.tracing == "off":
        return None  # and adapters.tracing, so OpenTelemetry, is never imported
    from adapters.tracing import TracingUnavailable, build_tracing

    try:
        return build_tracing(settings.tracing)
    except TracingUnavailable as missing:
        raise SystemExit(str(missing)) from None


async def _flush(tracing: "Tracing") -> None:
    """Export the buffered spans; an unreachable collector delays the exit by at most this."""
    async with asyncio.timeout(TRACING_FLUSH_SECONDS):
        await asyncio.to_thread(tracing.shutdown)


def _broker_check(producer: KafkaProducer) -> Check:
    """Readiness: a broker answers a metadata request (Readiness caches and bounds it)."""

    async def check() -> CheckResult:
        return CheckResult(True, await producer.broker_reachable())

    return check


async def _serve_probes(
    stack: contextlib.AsyncExitStack, probes: Probes, host: str, port: int
) -> None:
    """/healthz, /readyz and /metrics of a process without the gateway.

    A port in use is logged, not fatal, so a second worker on one machine keeps working as
    before; give each its own JOBMANAGER_WORKER_METRICS_PORT (or 0) to probe them all.
    """
    runner = web.AppRunner(probes.app(), access_log=None)
    await runner.setup()
    stack.push_async_callback(_quietly, "probes", runner.cleanup)
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as failure:
        log.error("probes not served", host=host, port=port, error=str(failure))
        return
    log.info("probes listening", url=f"http://{host}:{port}/metrics")


def _stores(settings: Settings, home: LocalHome) -> tuple[ModelStore, FolderStore]:
    if settings.stores == "local":
        return LocalModelStore(home), LocalFolderStore(home)
    if settings.mindsphere_url is None or settings.mindsphere_token is None:
        raise SystemExit(
            "JOBMANAGER_STORES=mindsphere needs JOBMANAGER_MINDSPHERE_URL and "
            "JOBMANAGER_MINDSPHERE_TOKEN"
        )
    token = settings.mindsphere_token.get_secret_value()

    async def technical_token(_tenant: str) -> str:
        return token

    timeout = settings.mindsphere_timeout_seconds
    return (
        MindSphereModelStore(settings.mindsphere_url, technical_token, timeout=timeout),
        MindSphereFolderStore(settings.mindsphere_url, technical_token, timeout=timeout),
    )


async def _quietly(name: str, stop: Callable[[], Awaitable[None]]) -> None:
    """Run one shutdown step; a failing step (aiokafka raises CancelledError from its fetcher
    when the broker is gone) must not keep the remaining steps from running."""
    try:
        await stop()
    except (Exception, asyncio.CancelledError) as failure:  # noqa: BLE001
        log.warning("shutdown step failed", step=name, error=repr(failure))


async def _cancel(task: "asyncio.Task[None]") -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
