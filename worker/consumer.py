"""The command loop: decode, dispatch, dead-letter, and commit only what is finished.

A partition's committed offset never passes a command whose work is not done: a SubmitJob stays
uncommitted until its job is final, so a crash at any point redelivers it to the next owner.
"""

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from adapters.kafka import PartitionsCallback, consumer_lag, group_generation
from adapters.metrics import DeadLetterReason, Metrics
from adapters.ports import DeadLetterPublisher
from schemas.commands import COMMANDS, Command
from statemachine import IllegalMove
from worker import failpoints
from worker.handlers import COMMAND_HANDLERS
from worker.jobs import CommandRefused, JobRunner

if TYPE_CHECKING:  # tracing is optional: nothing of OpenTelemetry is imported while it is off
    from adapters.tracing import Tracing

log = structlog.get_logger(__name__)

ConsumerFactory = Callable[[PartitionsCallback, PartitionsCallback], AIOKafkaConsumer]


class OffsetTracker:
    """Per partition: the offsets in progress and the next offset after everything seen."""

    def __init__(self) -> None:
        self._pending: dict[TopicPartition, dict[int, str]] = defaultdict(dict)
        self._next: dict[TopicPartition, int] = {}

    def begin(self, partition: TopicPartition, offset: int, job_id: str) -> None:
        self._pending[partition][offset] = job_id
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def skip(self, partition: TopicPartition, offset: int) -> None:
        """An offset that is done as soon as it is seen (a dead-lettered message)."""
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def finish(self, partition: TopicPartition, offset: int) -> None:
        self._pending[partition].pop(offset, None)

    def committable(self) -> dict[TopicPartition, int]:
        return {
            partition: min(self._pending[partition], default=end)
            for partition, end in self._next.items()
        }

    def job_ids(self, partitions: frozenset[TopicPartition]) -> set[str]:
        return {job_id for p in partitions for job_id in self._pending.get(p, {}).values()}

    def forget(self, partitions: frozenset[TopicPartition]) -> None:
        for partition in partitions:
            self._pending.pop(partition, None)
            self._next.pop(partition, None)


class CommandLoop:
    def __init__(
        self,
        consumer_factory: ConsumerFactory,
        runner: JobRunner,
        dead_letters: DeadLetterPublisher,
        catch_up: Callable[[], Awaitable[None]],
        metrics: Metrics | None = None,
        tracing: "Tracing | None" = None,
    ) -> None:
        self._consumer = consumer_factory(self._on_revoked, self._on_assigned)
        self._tracing = tracing
        self._runner = runner
        self._metrics = metrics if metrics is not None else runner.metrics
        self._dead_letters = dead_letters
        self._catch_up = catch_up
        self._offsets = OffsetTracker()
        self._committed: dict[TopicPartition, int] = {}
        # Set while the ledger holds every event of the assigned partitions' jobs.
        self._ready = asyncio.Event()
        self._generation = 0

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self, grace_seconds: float) -> None:
        """Let running jobs finish within the grace period; hand the rest over."""
        # Only jobs this worker runs; watching another worker's lease is dropped at once.
        tasks = self._runner.executing()
        if tasks:
            log.info("waiting for running jobs", count=len(tasks), grace_seconds=grace_seconds)
            await asyncio.wait(tasks, timeout=grace_seconds)
        await self._runner.abandon(set(self._runner.active))
        await self._commit()
        await self._consumer.stop()

    async def run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            # aiokafka hands out a new assignment's records before on_partitions_assigned has
            # finished, so nothing is handled until the ledger has caught up. It returns records
            # of the current assignment only, so the generation is taken after the wait (taken
            # before getmany, a rebalance during the fetch dropped the new assignment's first
            # records, which were then not fetched again until the next rebalance). Records
            # left when a rebalance comes mid-batch are dropped: uncommitted, they are fetched
            # again; one whose partition is gone meanwhile is the new owner's.
            await self._ready.wait()
            generation = self._generation
            for partition, records in batches.items():
                for record in records:
                    if generation != self._generation or (
                        partition not in self._consumer.assignment()
                    ):
                        break
                    await self._handle(
                        partition, record.offset, record.key, record.value, record.headers
                    )
            await self._commit()
            self._metrics.set_consumer_lag(await consumer_lag(self._consumer))

    async def _handle(
        self,
        partition: TopicPartition,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        origin = f"{partition.topic}/{partition.partition}/{offset}"
        try:
            command = COMMANDS.validate_json(value or b"")
        except ValidationError as invalid:
            reason = f"invalid command: {_summary(invalid)}"
            await self._dead_letter(key, value, reason, origin, "invalid_command")
            self._offsets.skip(partition, offset)
            return
        if key is not None and key != command.job_id.encode():
            reason = "message key does not match jobId"
            await self._dead_letter(key, value, reason, origin, "key_mismatch")
            self._offsets.skip(partition, offset)
            return
        self._offsets.begin(partition, offset, command.job_id)
        if command.type == "SubmitJob":
            failpoints.reach("command_received")
        try:
            task = await self._dispatch(command, headers)
        except IllegalMove:
            task = None  # already logged by the mover; the command changes nothing
        except CommandRefused as refused:
            await self._dead_letter(key, value, str(refused), origin, "refused")
            task = None
        if task is None:
            self._offsets.finish(partition, offset)
        else:
            task.add_done_callback(lambda done: self._finished(done, partition, offset))

    async def _dispatch(
        self, command: Command, headers: Sequence[tuple[str, bytes]] = ()
    ) -> "asyncio.Task[None] | None":
        handler = COMMAND_HANDLERS[type(command)]
        with structlog.contextvars.bound_contextvars(
            job_id=command.job_id, tenant=command.tenant, command=command.type
        ):
            log.info("command received", command_id=command.command_id)
            if self._tracing is None:
                return await handler(command, self._runner)
            return await self._tracing.processing(
                command.type,
                headers,
                {
                    "jobmanager.job_id": command.job_id,
                    "jobmanager.tenant": command.tenant,
                    "jobmanager.command_id": command.command_id,
                },
                lambda: handler(command, self._runner),
            )

    def _finished(self, task: "asyncio.Task[None]", partition: TopicPartition, offset: int) -> None:
        # A cancelled job was handed over, and a crashed one must be redelivered: neither counts.
        if not task.cancelled() and task.exception() is None:
            self._offsets.finish(partition, offset)

    async def _dead_letter(
        self,
        key: bytes | None,
        value: bytes | None,
        reason: str,
        origin: str,
        kind: DeadLetterReason,
    ) -> None:
        """``kind`` is the bounded reason label of the dead-letter counter."""
        log.warning("command dead-lettered", reason=reason, origin=origin)
        await self._dead_letters.dead_letter(key, value or b"", reason, origin)
        self._metrics.dead_lettered(kind)

    async def _commit(self, only: frozenset[TopicPartition] | None = None) -> None:
        offsets = {
            p: o
            for p, o in self._offsets.committable().items()
            if self._committed.get(p) != o and (only is None or p in only)
        }
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as failure:
            log.warning("commit failed; will retry", error=repr(failure))
            return
        self._committed.update(offsets)

    async def _on_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        self._ready.clear()
        self._generation += 1
        # Jobs running here keep running (their lease tells the next owner so); only watching
        # stops. With the eager protocol every rebalance revokes everything, so this is what
        # keeps a worker joining the group from failing the jobs of the partitions it gets.
        await self._runner.release(self._offsets.job_ids(revoked))
        await self._commit(only=revoked)
        self._offsets.forget(revoked)
        for partition in revoked:
            self._committed.pop(partition, None)

    async def _on_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        # The previous owner's events must be in the ledger before its commands are redelivered.
        await self._catch_up()
        # Jobs taken on from now on are written at this generation, higher than any earlier
        # owner's, so their first write fences a previous owner that is only paused.
        self._runner.owner_epoch = group_generation(self._consumer)
        self._ready.set()
        log.info("partitions assigned", partitions=sorted(p.partition for p in assigned))


def _summary(invalid: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'message'}: {error['msg']}"
        for error in invalid.errors()[:5]
    )
