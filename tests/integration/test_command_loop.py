"""The command loop over a real broker, with a fake engine and the real local file adapters.

The loop is built as ``worker.bootstrap._command_loop`` builds it; only the engine is replaced.
"""

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from adapters.environment_locks import KafkaEnvironmentLocks
from adapters.kafka import (
    EventReader,
    KafkaCommandPublisher,
    KafkaDeadLetterPublisher,
    KafkaEventPublisher,
    KafkaProducer,
    Topics,
    command_consumer,
    ensure_topics,
)
from adapters.local_files import (
    LocalEnvironmentProvider,
    LocalFolderStore,
    LocalHome,
    LocalModelStore,
)
from adapters.projection_store import MemoryProjectionStore
from schemas.events import JobStatusChanged
from schemas.notes import Note, NoteRun
from schemas.status import JobStatus
from statemachine import FINAL_STATUSES, JobMachine
from tests.fakes.engine import OneCallEngine
from tests.integration.helpers import (
    TopicTail,
    committed_offset,
    headers,
    job_events,
    job_reached,
    prepare_job,
    submit_command,
    wait_until,
)
from worker.consumer import CommandLoop
from worker.jobs import SUCCEEDED_MESSAGE, WORKER_LOST_MESSAGE, JobRunner
from worker.moves import Mover
from worker.projection import Projection, follow_events
from worker.settings import Settings

pytestmark = pytest.mark.kafka

S = JobStatus


class FakeEngine(OneCallEngine):
    """Succeeds with no paragraphs; the jobs in ``block`` first wait for ``release``."""

    def __init__(self, *, block: Iterable[str] = ()) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.calls: list[str] = []
        self.blocked = set(block)

    async def run(self, note: Note, workspace: Path, variables: Mapping[str, str]) -> NoteRun:
        job_id = variables["jobId"]
        self.calls.append(job_id)
        if job_id in self.blocked:
            await self.release.wait()
        return NoteRun(paragraphs=())


class GatedReader(EventReader):
    """An event reader whose follower can be held: a ledger that lags behind the topic."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        super().__init__(bootstrap_servers, topic)
        self.open = asyncio.Event()
        self.open.set()
        self.parked = asyncio.Event()

    async def next_batch(self, timeout_ms: int = 500) -> list[bytes]:
        if not self.open.is_set():
            self.parked.set()
            await self.open.wait()
            self.parked.clear()
        return await super().next_batch(timeout_ms)


@dataclass
class Worker:
    """One in-process worker: its own producer, event reader, ledger and command loop."""

    loop: CommandLoop
    runner: JobRunner
    engine: FakeEngine
    producer: KafkaProducer
    reader: GatedReader
    follower: "asyncio.Task[None]"
    consumers: list[AIOKafkaConsumer] = field(default_factory=list)
    consuming: "asyncio.Task[None] | None" = None
    crashed: bool = False
    #: The partitions of the last assignment whose on_partitions_assigned callback returned.
    settled: frozenset[TopicPartition] = frozenset()

    @property
    def tasks(self) -> list["asyncio.Task[Any]"]:
        return [task for task in (self.follower, self.consuming) if task is not None]

    async def crash(self) -> None:
        """As close to a process crash as one process allows (see the takeover test)."""
        self.crashed = True
        running = [self.consuming] if self.consuming is not None else []
        running += [a.task for a in self.runner.active.values() if a.task is not None]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for consumer in self.consumers:
            await consumer.stop()


async def _cancel(task: "asyncio.Task[Any] | None") -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, engine: FakeEngine) -> AsyncIterator[Worker]:
    """Start a worker as ``worker.bootstrap`` does; stop it gracefully unless it crashed."""
    async with contextlib.AsyncExitStack() as stack:
        producer = KafkaProducer(
            settings.kafka_bootstrap_servers, settings.broker_ack_timeout_seconds, "worker"
        )
        await producer.start()
        stack.push_async_callback(producer.stop)
        reader = GatedReader(settings.kafka_bootstrap_servers, settings.events_topic)
        await reader.start()
        stack.push_async_callback(reader.stop)
        projection = Projection(MemoryProjectionStore())
        follower = asyncio.create_task(follow_events(reader, projection), name="projection")
        stack.push_async_callback(_cancel, follower)
        await reader.caught_up(settings.catch_up_timeout_seconds)

        home = LocalHome(settings.home)
        mover = Mover(
            JobMachine(), KafkaEventPublisher(producer, settings.events_topic), projection
        )
        await ensure_topics(settings.kafka_bootstrap_servers, [settings.environments_topic], 1, 1)
        lock_reader = EventReader(settings.kafka_bootstrap_servers, settings.environments_topic)
        await lock_reader.start()
        stack.push_async_callback(lock_reader.stop)
        locks = KafkaEnvironmentLocks(
            producer, lock_reader, settings.environments_topic, settings.catch_up_timeout_seconds
        )
        claims = asyncio.create_task(locks.follow(), name="claims")
        stack.push_async_callback(_cancel, claims)
        runner = JobRunner(
            mover,
            LocalModelStore(home),
            LocalFolderStore(home),
            LocalEnvironmentProvider(home),
            engine,
            locks,
            settings.worker_concurrency,
        )
        consumers: list[AIOKafkaConsumer] = []
        built: list[Worker] = []

        def consumer_factory(on_revoked: Any, on_assigned: Any) -> AIOKafkaConsumer:
            async def assigned(partitions: frozenset[TopicPartition]) -> None:
                await on_assigned(partitions)
                built[0].settled = partitions

            consumer = command_consumer(
                settings.kafka_bootstrap_servers,
                settings.commands_topic,
                settings.consumer_group,
                on_revoked,
                assigned,
            )
            consumers.append(consumer)
            return consumer

        loop = CommandLoop(
            consumer_factory,
            runner,
            KafkaDeadLetterPublisher(producer, settings.dead_letter_topic),
            lambda: reader.caught_up(settings.catch_up_timeout_seconds),
        )
        worker = Worker(loop, runner, engine, producer, reader, follower, consumers)
        built.append(worker)
        await loop.start()

        async def stop_gracefully() -> None:
            if not worker.crashed:
                await loop.stop(settings.shutdown_grace_seconds)

        stack.push_async_callback(stop_gracefully)
        stack.callback(reader.open.set)  # a held ledger would keep catch_up, and so stop, waiting
        worker.consuming = asyncio.create_task(loop.run(), name="commands")
        stack.push_async_callback(_cancel, worker.consuming)
        yield worker


async def _locate(settings: Settings, job_id: str) -> tuple[TopicPartition, int]:
    """The partition and offset of the first command keyed by ``job_id``."""
    key = job_id.encode()
    async with TopicTail(settings.kafka_bootstrap_servers, settings.commands_topic) as tail:
        records = await tail.wait_for(
            lambda found: any(r.key == key for r in found), f"command for {job_id}"
        )
    record = next(r for r in records if r.key == key)
    return TopicPartition(record.topic, record.partition), record.offset


def _job_id_in(partition: TopicPartition, settings: Settings) -> str:
    """A fresh job id whose key the default partitioner puts in ``partition``."""
    partitions = list(range(settings.topic_partitions))
    while True:
        job_id = uuid.uuid4().hex
        if DefaultPartitioner()(job_id.encode(), partitions, partitions) == partition.partition:
            return job_id


def _final_count(events: list[Any]) -> int:
    return sum(1 for e in events if isinstance(e, JobStatusChanged) and e.status in FINAL_STATUSES)


async def test_submit_job_ends_succeeded(
    settings: Settings, topics: Topics, producer: KafkaProducer
) -> None:
    """A SubmitJob on the commands topic ends SUCCEEDED on the events topic, sequences 1..n."""
    request = prepare_job(LocalHome(settings.home))
    command = submit_command(request)
    engine = FakeEngine()

    async with TopicTail(settings.kafka_bootstrap_servers, topics.events) as events:
        async with running_worker(settings, engine) as worker:
            await KafkaCommandPublisher(producer, topics.commands).publish(command)
            await events.wait_for(job_reached(command.job_id), "final event", watch=worker.tasks)
        await events.read_to_end()

    found = job_events(events.records, command.job_id)
    assert [e.sequence for e in found] == list(range(1, len(found) + 1))
    moves = [e for e in found if isinstance(e, JobStatusChanged)]
    assert [e.status for e in moves] == [S.SUBMITTED, S.STARTING, S.RUNNING, S.SUCCEEDED]
    assert found[-1].job.message == SUCCEEDED_MESSAGE
    assert found[-1].job.environment_id == f"local-{command.job_id}"
    assert engine.calls == [command.job_id]


async def test_poison_commands_are_dead_lettered_and_the_loop_goes_on(
    settings: Settings, topics: Topics, producer: KafkaProducer
) -> None:
    """Undecodable, v2, unknown-type and mis-keyed commands are dead-lettered; later work runs."""
    request = prepare_job(LocalHome(settings.home))
    command = submit_command(request)
    other_job = uuid.uuid4().hex
    valid = json.loads(command.model_dump_json())
    key = command.job_id.encode()  # one key: the poison precedes the valid command in its partition
    poison = [
        b"\x00\xff this is not JSON {",
        json.dumps({**valid, "schemaVersion": 2}).encode(),
        json.dumps({**valid, "type": "DeleteJob"}).encode(),
        json.dumps({**valid, "jobId": other_job}).encode(),
    ]

    async with (
        TopicTail(settings.kafka_bootstrap_servers, topics.dead_letters) as dead,
        TopicTail(settings.kafka_bootstrap_servers, topics.events) as events,
        running_worker(settings, FakeEngine()) as worker,
    ):
        for value in poison:
            await producer.send(topics.commands, key, value)
        await KafkaCommandPublisher(producer, topics.commands).publish(command)

        await events.wait_for(job_reached(command.job_id), "final event", watch=worker.tasks)
        await dead.wait_for(lambda found: len(found) >= len(poison), "dead letters")
        await dead.read_to_end()
        await events.read_to_end()

    assert [r.value for r in dead.records] == poison
    assert all(r.key == key for r in dead.records)
    reasons = [headers(r)["reason"].decode() for r in dead.records]
    assert reasons[0].startswith("invalid command: message: Invalid JSON")
    assert reasons[1] == "invalid command: SubmitJob.schemaVersion: Input should be 1"
    assert reasons[2].startswith("invalid command:")
    assert "'DeleteJob'" in reasons[2]
    assert reasons[3] == "message key does not match jobId"
    origins = [headers(r)["origin"].decode() for r in dead.records]
    assert all(o.startswith(f"{topics.commands}/") for o in origins)
    assert len(set(origins)) == len(poison)

    assert job_events(events.records, command.job_id)[-1].status is S.SUCCEEDED
    assert job_events(events.records, other_job) == [], "a mis-keyed command never runs"


async def test_offset_is_committed_only_after_the_job_finished(
    settings: Settings, topics: Topics, producer: KafkaProducer, admin: AIOKafkaAdminClient
) -> None:
    """While a job runs, its SubmitJob's offset stays the committed one; it advances once final."""
    home = LocalHome(settings.home)
    command = submit_command(prepare_job(home))
    engine = FakeEngine(block={command.job_id})
    publisher = KafkaCommandPublisher(producer, topics.commands)
    group = settings.consumer_group

    async with (
        TopicTail(settings.kafka_bootstrap_servers, topics.dead_letters) as dead,
        TopicTail(settings.kafka_bootstrap_servers, topics.events) as events,
        running_worker(settings, engine) as worker,
    ):
        await publisher.publish(command)
        partition, offset = await _locate(settings, command.job_id)
        await events.wait_for(job_reached(command.job_id, S.RUNNING), "RUNNING", watch=worker.tasks)

        async def committed() -> int | None:
            return await committed_offset(admin, group, partition)

        async def anything_committed() -> bool:
            return await committed() is not None

        await wait_until(anything_committed, "first commit", watch=worker.tasks)
        assert await committed() == offset

        # A later job in the same partition runs to the end while the first one still runs.
        later = submit_command(prepare_job(home), _job_id_in(partition, settings))
        await publisher.publish(later)
        await events.wait_for(job_reached(later.job_id), "later job final", watch=worker.tasks)
        # Then two commands, each awaited on the DLQ: when the loop handles the second, it has
        # gone through a commit after the later job had finished.
        for number in (1, 2):
            await producer.send(topics.commands, command.job_id.encode(), b"not a command")
            await dead.wait_for(lambda found, n=number: len(found) >= n, f"dead letter {number}")
        assert await committed() == offset, "the committed offset passed a running job"
        assert job_events(events.records, command.job_id)[-1].status is S.RUNNING

        engine.release.set()
        await events.wait_for(job_reached(command.job_id), "final event", watch=worker.tasks)

        async def past_everything() -> bool:
            return await committed() == offset + 4

        await wait_until(past_everything, f"commit of offset {offset + 4}", watch=worker.tasks)

    assert job_events(events.records, command.job_id)[-1].status is S.SUCCEEDED
    assert job_events(events.records, later.job_id)[-1].status is S.SUCCEEDED


async def test_dead_lettered_commands_are_committed(
    settings: Settings, topics: Topics, producer: KafkaProducer, admin: AIOKafkaAdminClient
) -> None:
    """A dead-lettered command is committed: a restarted worker does not dead-letter it again."""
    command = submit_command(prepare_job(LocalHome(settings.home)))
    key = command.job_id.encode()  # all in one partition, the valid command last

    async with TopicTail(settings.kafka_bootstrap_servers, topics.dead_letters) as dead:
        async with running_worker(settings, FakeEngine()) as first:
            for number in (1, 2):
                await producer.send(topics.commands, key, b"poison %d" % number)
                await dead.wait_for(
                    lambda found, n=number: len(found) >= n,
                    f"dead letter {number}",
                    watch=first.tasks,
                )
            partition, offset = await _locate(settings, command.job_id)

            async def both_committed() -> bool:
                committed = await committed_offset(admin, settings.consumer_group, partition)
                return committed == offset + 2

            await wait_until(both_committed, "commit past the dead letters", watch=first.tasks)

        async with (
            TopicTail(settings.kafka_bootstrap_servers, topics.events) as events,
            running_worker(settings, FakeEngine()) as second,
        ):
            await KafkaCommandPublisher(producer, topics.commands).publish(command)
            # The partition is read in order: once this job is final, the poison before it
            # has been handled by the second worker if it was redelivered.
            await events.wait_for(job_reached(command.job_id), "final event", watch=second.tasks)
        await dead.read_to_end()

    assert [r.value for r in dead.records] == [b"poison 1", b"poison 2"], "redelivered"


async def test_takeover_after_a_crash_fails_the_job_once(
    settings: Settings, topics: Topics, producer: KafkaProducer, admin: AIOKafkaAdminClient
) -> None:
    """After a worker dies mid-job, the next group member ends it FAILED exactly once."""
    # The crash, in process: worker A's poll task and its job task are cancelled (a cancelled
    # job publishes nothing, like a dead process) and its consumer is closed without
    # CommandLoop.stop, so nothing is committed and no rebalance callback of A runs. Closing the
    # consumer still sends LeaveGroup, so B is assigned at once instead of after the session
    # timeout; A's producer stays open but has nothing left to send.
    request = prepare_job(LocalHome(settings.home))
    command = submit_command(request)
    engine_a = FakeEngine(block={command.job_id})
    engine_b = FakeEngine()

    async with TopicTail(settings.kafka_bootstrap_servers, topics.events) as events:
        async with running_worker(settings, engine_a) as worker_a:
            await KafkaCommandPublisher(producer, topics.commands).publish(command)
            await events.wait_for(
                job_reached(command.job_id, S.RUNNING), "RUNNING", watch=worker_a.tasks
            )

            # RUNNING reaches the topic before A has read it back and started the note.
            async def note_running() -> bool:
                return engine_a.calls == [command.job_id]

            await wait_until(note_running, "the note running on A", watch=worker_a.tasks)
            await worker_a.crash()

            partition, offset = await _locate(settings, command.job_id)
            assert await committed_offset(admin, settings.consumer_group, partition) in (
                None,
                offset,
            )

            async with running_worker(settings, engine_b) as worker_b:
                await events.wait_for(
                    job_reached(command.job_id), "final event", watch=worker_b.tasks
                )
        await events.read_to_end()

    found = job_events(events.records, command.job_id)
    assert _final_count(found) == 1, [(e.sequence, e.status) for e in found]
    by_sequence: dict[int, set[str]] = {}
    for event in found:
        by_sequence.setdefault(event.sequence, set()).add(event.model_dump_json())
    assert all(len(contents) == 1 for contents in by_sequence.values()), "a sequence was reused"
    assert sorted(by_sequence) == list(range(1, len(by_sequence) + 1)), "no gaps"
    final = found[-1]
    assert (final.previous_status, final.status) == (S.RUNNING, S.FAILED)
    assert final.job.message == WORKER_LOST_MESSAGE
    assert engine_a.calls == [command.job_id]
    assert engine_b.calls == [], "the orphan is ended, not run again"


def _assignment(worker: Worker) -> frozenset[TopicPartition]:
    return frozenset(worker.consumers[0].assignment())


class SequenceReused(AssertionError):
    """The bug's symptom; any other failure of the test is a real failure."""


async def test_takeover_waits_until_the_ledger_caught_up(
    settings: Settings, topics: Topics, producer: KafkaProducer
) -> None:
    """A partition taken over mid-run is not consumed before the new owner's ledger caught up."""
    async with (
        TopicTail(settings.kafka_bootstrap_servers, topics.events) as events,
        running_worker(settings, engine_b := FakeEngine()) as worker_b,
    ):
        engine_a = FakeEngine()
        async with running_worker(settings, engine_a) as worker_a:

            async def balanced() -> bool:
                mine, theirs = worker_a.settled, worker_b.settled
                return bool(mine) and bool(theirs) and not mine & theirs and len(mine | theirs) == 3

            await wait_until(balanced, "a balanced group", watch=worker_a.tasks + worker_b.tasks)
            partition = min(worker_a.settled)
            command = submit_command(prepare_job(LocalHome(settings.home)))
            command = command.model_copy(update={"job_id": _job_id_in(partition, settings)})
            engine_a.blocked.add(command.job_id)

            # B's ledger stops following the events topic before the job exists.
            worker_b.reader.open.clear()
            async with asyncio.timeout(10):
                await worker_b.reader.parked.wait()
            await KafkaCommandPublisher(producer, topics.commands).publish(command)
            await events.wait_for(job_reached(command.job_id, S.RUNNING), "RUNNING")
            await worker_a.crash()

            async def taken_over() -> bool:
                return partition in _assignment(worker_b)

            await wait_until(taken_over, "B owning the partition", watch=worker_b.tasks)
            # B's catch_up cannot finish while its ledger is held; a correct loop hands out
            # nothing of the partition meanwhile. Give a premature one time to act.
            with contextlib.suppress(AssertionError):
                await events.wait_for(
                    lambda found: len(job_events(found, command.job_id)) > 3,
                    "a premature move",
                    within=3,
                )
            worker_b.reader.open.set()
            await events.wait_for(job_reached(command.job_id), "final event", watch=worker_b.tasks)
    async with TopicTail(settings.kafka_bootstrap_servers, topics.events) as complete:
        await complete.read_to_end()

    found = job_events(complete.records, command.job_id)
    summary = [(e.sequence, e.status) for e in found]
    if len({e.sequence for e in found}) != len(found):
        raise SequenceReused(f"sequences re-published with new content: {summary}")
    assert _final_count(found) == 1, summary
    assert found[-1].job.message == WORKER_LOST_MESSAGE
    assert engine_b.calls == [], "the orphan is ended, not run again"
