"""The service wired as ``worker.bootstrap`` wires it, with the engine pluggable.

``worker.bootstrap._command_loop`` hard-codes its engines; the benchmarks build the same loop
from the same classes (``JobRunner``, ``Mover``, ``KafkaEnvironmentLocks``,
``EngineByConfiguration``, ``CommandLoop``) with a no-op or the embedded engine instead.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from aiohttp import web
from aiokafka import TopicPartition

from adapters.engines import EngineByConfiguration
from adapters.environment_locks import KafkaEnvironmentLocks
from adapters.http.auth import Authenticator, AuthSettings
from adapters.http.gateway import Gateway, GatewayLimits
from adapters.kafka import (
    EventReader,
    KafkaCommandPublisher,
    KafkaDeadLetterPublisher,
    KafkaEventPublisher,
    KafkaProducer,
    command_consumer,
)
from adapters.local_files import (
    LocalEnvironmentProvider,
    LocalFolderStore,
    LocalHome,
    LocalModelStore,
)
from adapters.ports import EngineSession, ExecutionEngine, ParagraphListener
from adapters.projection_store import MemoryProjectionStore
from bench.common import now
from schemas.events import Event
from schemas.jobs import EnvironmentConfiguration, JobRecord
from schemas.notes import Note, NoteRun
from schemas.status import JobStatus
from statemachine import FINAL_STATUSES, JobMachine
from worker.consumer import CommandLoop
from worker.jobs import JobRunner
from worker.moves import Mover
from worker.projection import Projection, follow_events
from worker.runtime import tune_gc
from worker.settings import Settings

AssignedHook = Callable[[frozenset[TopicPartition]], None]
#: The final-job retention production runs with (the default setting).
RETENTION = timedelta(days=Settings.model_fields["final_job_retention_days"].default)


class NoopSession:
    async def run(self, note: Note, on_paragraph: ParagraphListener | None = None) -> NoteRun:
        return NoteRun(paragraphs=())

    async def close(self) -> None:
        return None


class NoopEngine:
    """An ``ExecutionEngine`` that does nothing; remembers which jobs it started."""

    def __init__(self) -> None:
        self.started: list[str] = []

    async def start(
        self,
        workspace: Path,
        variables: Mapping[str, str],
        configuration: EnvironmentConfiguration,
    ) -> EngineSession:
        self.started.append(variables["jobId"])
        return NoopSession()


class WatchedProjection(Projection):
    """The production projection, noting when each job first shows RUNNING and a final status.

    The gateway's GET reads the same store, so ``running_at`` is the moment a GET would first
    answer RUNNING. Costs a dict lookup per event.
    """

    def __init__(self) -> None:
        super().__init__(MemoryProjectionStore(RETENTION))
        self.running_at: dict[str, float] = {}
        self.final_at: dict[str, float] = {}
        self.final_status: dict[str, JobStatus] = {}
        self._want = 0
        self._reached = asyncio.Event()

    def apply(self, event: Event) -> JobRecord:
        folded = super().apply(event)
        status = folded.view.status
        job_id = event.job_id
        if status is JobStatus.RUNNING and job_id not in self.running_at:
            self.running_at[job_id] = now()
        elif status in FINAL_STATUSES and job_id not in self.final_at:
            self.final_at[job_id] = now()
            self.final_status[job_id] = status
            if self._want and len(self.final_at) >= self._want:
                self._reached.set()
        return folded

    async def wait_final(self, count: int, within: float) -> None:
        """Return once ``count`` jobs are final; TimeoutError after ``within`` seconds."""
        async with asyncio.timeout(within):
            while len(self.final_at) < count:
                self._want = count
                self._reached.clear()
                await self._reached.wait()


def command_loop(
    settings: Settings,
    producer: KafkaProducer,
    ledger: Projection,
    reader: EventReader,
    locks: KafkaEnvironmentLocks,
    engines: Mapping[str, ExecutionEngine],
    on_assigned: AssignedHook | None = None,
) -> CommandLoop:
    """``worker.bootstrap._command_loop`` with ``engines`` instead of the built-in ones."""
    home = LocalHome(settings.home)
    mover = Mover(
        JobMachine(),
        KafkaEventPublisher(producer, settings.events_topic),
        ledger,
        read_back_seconds=settings.catch_up_timeout_seconds,
    )
    runner = JobRunner(
        mover,
        LocalModelStore(home),
        LocalFolderStore(home),
        LocalEnvironmentProvider(home),
        EngineByConfiguration(engines),
        locks,
        settings.worker_concurrency,
    )

    def consumer(revoked_cb, assigned_cb):  # type: ignore[no-untyped-def]
        async def assigned(partitions: frozenset[TopicPartition]) -> None:
            await assigned_cb(partitions)
            if on_assigned is not None:
                on_assigned(partitions)

        return command_consumer(
            settings.kafka_bootstrap_servers,
            settings.commands_topic,
            settings.consumer_group,
            revoked_cb,
            assigned,
            session_timeout_ms=settings.consumer_session_timeout_ms,
            heartbeat_interval_ms=settings.consumer_heartbeat_interval_ms,
        )

    return CommandLoop(
        consumer,
        runner,
        KafkaDeadLetterPublisher(producer, settings.dead_letter_topic),
        lambda: reader.caught_up(settings.catch_up_timeout_seconds),
    )


@dataclass
class Service:
    producer: KafkaProducer
    projection: WatchedProjection
    tasks: list["asyncio.Task[None]"] = field(default_factory=list)
    app: web.Application | None = None

    def check(self) -> None:
        """Raise if a background task of the service died."""
        for task in self.tasks:
            if task.done():
                error = "cancelled" if task.cancelled() else repr(task.exception())
                raise RuntimeError(f"{task.get_name()} stopped: {error}")


async def _cancel(task: "asyncio.Task[None]") -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def running_service(
    settings: Settings,
    *,
    worker: Mapping[str, ExecutionEngine] | None,
    gateway: GatewayLimits | None,
    on_assigned: AssignedHook | None = None,
    authenticator: Callable[[AuthSettings], Authenticator] = Authenticator,
) -> AsyncIterator[Service]:
    """``worker.bootstrap.run`` with the given roles: one producer, one projection (the
    gateway's read side and the worker's ledger), the worker with ``worker`` engines and the
    gateway's app (not listening: the caller serves ``service.app``)."""
    tune_gc()  # as worker.bootstrap.run does
    async with contextlib.AsyncExitStack() as stack:
        producer = KafkaProducer(
            settings.kafka_bootstrap_servers, settings.broker_ack_timeout_seconds, "jobmanager"
        )
        await producer.start()
        stack.push_async_callback(producer.stop)
        reader = EventReader(settings.kafka_bootstrap_servers, settings.events_topic)
        await reader.start()
        stack.push_async_callback(reader.stop)
        projection = WatchedProjection()
        follower = asyncio.create_task(follow_events(reader, projection), name="projection")
        stack.push_async_callback(_cancel, follower)
        service = Service(producer, projection, [follower])
        await reader.caught_up(settings.catch_up_timeout_seconds)

        if worker is not None:
            lock_reader = EventReader(settings.kafka_bootstrap_servers, settings.environments_topic)
            await lock_reader.start()
            stack.push_async_callback(lock_reader.stop)
            locks = KafkaEnvironmentLocks(
                producer,
                lock_reader,
                settings.environments_topic,
                settings.catch_up_timeout_seconds,
            )
            claims = asyncio.create_task(locks.follow(), name="environment-claims")
            stack.push_async_callback(_cancel, claims)
            await lock_reader.caught_up(settings.catch_up_timeout_seconds)
            loop = command_loop(settings, producer, projection, reader, locks, worker, on_assigned)
            await loop.start()
            stack.push_async_callback(loop.stop, settings.shutdown_grace_seconds)
            consuming = asyncio.create_task(loop.run(), name="commands")
            stack.push_async_callback(_cancel, consuming)
            service.tasks += [claims, consuming]

        if gateway is not None:
            checker = authenticator(AuthSettings(hs256_secret=settings.hs256_secret()))
            stack.push_async_callback(checker.close)
            service.app = Gateway(
                KafkaCommandPublisher(producer, settings.commands_topic),
                projection.store,
                checker,
                projection.accept,
                gateway,
            ).app()
        yield service


#: Per-tenant rate limit out of the way: the benchmark drives one tenant far above the
#: default 100 requests/s, which would otherwise answer 429.
UNLIMITED = GatewayLimits(requests_per_second=1e9, request_burst=10**9)
