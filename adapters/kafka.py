"""Kafka implementations of the publishing ports, the command consumer and the event reader.

Producer: ``acks=all`` with idempotence, so a retried send never duplicates within a session.
Consumers never auto-commit: the worker commits a command's offset only after every event it
caused was acknowledged (see :mod:`worker.consumer`).
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import IllegalStateError, KafkaError

from adapters.ports import BrokerUnavailable
from schemas.commands import Command
from schemas.events import Event, JobStatusChanged

if TYPE_CHECKING:  # tracing is optional: nothing of OpenTelemetry is imported while it is off
    from adapters.tracing import Tracing

log = structlog.get_logger(__name__)

_TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True, slots=True)
class Topics:
    commands: str
    events: str
    dead_letters: str


async def ensure_topics(
    bootstrap_servers: str,
    names: Iterable[str],
    partitions: int,
    replication_factor: int,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Create the topics that are missing, with their ``configs``; existing ones are left alone."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in names if name not in existing]
        if not missing:
            return
        response = await admin.create_topics(
            [
                NewTopic(
                    name,
                    partitions,
                    replication_factor,
                    topic_configs=dict((configs or {}).get(name, {})),
                )
                for name in missing
            ]
        )
        for name, code, *message in response.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise BrokerUnavailable(f"could not create topic {name}: {code} {message}")
        log.info("topics created", topics=missing, partitions=partitions)
    finally:
        await admin.close()


class KafkaProducer:
    """One idempotent producer shared by every publisher of a process."""

    def __init__(self, bootstrap_servers: str, ack_timeout_seconds: float, client_id: str) -> None:
        self._ack_timeout = ack_timeout_seconds
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def broker_reachable(self) -> str:
        """Ask a known broker for cluster metadata (one Metadata request on the producer's
        connections); return a summary, or raise ``KafkaError`` when none answers. Callers bound
        the wait and cache the answer."""
        cluster = await self._producer.client.fetch_all_metadata()
        return f"{len(cluster.brokers())} broker(s) answered"

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> tuple[int, int]:
        """Return (partition, offset) once the broker acknowledged; :class:`BrokerUnavailable`
        after the timeout."""
        try:
            async with asyncio.timeout(self._ack_timeout):
                metadata = await self._producer.send_and_wait(
                    topic, value=value, key=key, headers=list(headers)
                )
        except (TimeoutError, KafkaError) as failure:
            raise BrokerUnavailable(
                f"broker did not acknowledge within {self._ack_timeout:g} s: {failure!r}"
            ) from failure
        return metadata.partition, metadata.offset

    async def enqueue(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> "asyncio.Future[tuple[int, int]]":
        """Queue the message behind every message queued before it and return its
        acknowledgement: (partition, offset), or :class:`BrokerUnavailable` after the timeout.
        Returns once queued, so a caller can queue its next message without a round trip."""
        try:
            async with asyncio.timeout(self._ack_timeout):
                queued = await self._producer.send(
                    topic, value=value, key=key, headers=list(headers)
                )
        except (TimeoutError, KafkaError) as failure:
            raise BrokerUnavailable(
                f"broker did not take the message within {self._ack_timeout:g} s: {failure!r}"
            ) from failure
        acknowledged = asyncio.ensure_future(self._acknowledged(queued))
        # A caller that gives up on the message (a job handed over) must not leave an
        # unretrieved failure behind.
        acknowledged.add_done_callback(lambda done: done.cancelled() or done.exception())
        return acknowledged

    async def _acknowledged(self, queued: "asyncio.Future[Any]") -> tuple[int, int]:
        try:
            async with asyncio.timeout(self._ack_timeout):
                metadata = await queued
        except (TimeoutError, KafkaError) as failure:
            raise BrokerUnavailable(
                f"broker did not acknowledge within {self._ack_timeout:g} s: {failure!r}"
            ) from failure
        return metadata.partition, metadata.offset


class KafkaCommandPublisher:
    def __init__(
        self, producer: KafkaProducer, topic: str, tracing: "Tracing | None" = None
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._tracing = tracing

    async def publish(self, command: Command) -> None:
        headers = [
            ("type", command.type.encode()),
            ("schema-version", str(command.schema_version).encode()),
        ]
        value = command.model_dump_json().encode()
        if self._tracing is None:
            await self._producer.send(self._topic, command.job_id.encode(), value, headers)
            return
        attributes = {"jobmanager.job_id": command.job_id, "jobmanager.tenant": command.tenant}
        with self._tracing.sending(command.type, self._topic, attributes) as context:
            await self._producer.send(
                self._topic, command.job_id.encode(), value, headers + context
            )


class KafkaEventPublisher:
    def __init__(
        self, producer: KafkaProducer, topic: str, tracing: "Tracing | None" = None
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._tracing = tracing

    async def publish(self, event: Event) -> None:
        with self._sending(event) as headers:
            await self._producer.send(
                self._topic, event.job_id.encode(), event.model_dump_json().encode(), headers
            )

    async def enqueue(self, event: Event) -> "asyncio.Future[tuple[int, int]]":
        with self._sending(event) as headers:
            return await self._producer.enqueue(
                self._topic, event.job_id.encode(), event.model_dump_json().encode(), headers
            )

    @contextlib.contextmanager
    def _sending(self, event: Event) -> Iterator[list[tuple[str, bytes]]]:
        """The event's headers, inside its producer span when tracing is on."""
        headers = [("type", event.type.encode()), ("event-id", event.event_id.encode())]
        if self._tracing is None:
            yield headers
            return
        # One child span per status change (and per progress event) of the job's span.
        attributes: dict[str, str | int] = {
            "jobmanager.job_id": event.job_id,
            "jobmanager.tenant": event.tenant,
            "jobmanager.status": str(event.status),
            "jobmanager.sequence": event.sequence,
        }
        if isinstance(event, JobStatusChanged):
            attributes["jobmanager.trigger"] = event.trigger
            if event.previous_status is not None:
                attributes["jobmanager.previous_status"] = str(event.previous_status)
        with self._tracing.sending(event.type, self._topic, attributes) as context:
            yield headers + context


class KafkaDeadLetterPublisher:
    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def dead_letter(self, key: bytes | None, value: bytes, reason: str, origin: str) -> None:
        await self._producer.send(
            self._topic,
            key,
            value,
            # Cut on characters, not bytes, so the header stays valid UTF-8.
            [("reason", reason[:2000].encode()), ("origin", origin.encode())],
        )


async def consumer_lag(consumer: AIOKafkaConsumer) -> dict[tuple[str, int], int]:
    """Per assigned partition: records on the broker not yet handed out (highwater - position).

    No broker call: the highwater comes with every fetch answer. Partitions not fetched since
    their assignment (highwater unknown) are left out.
    """
    lags: dict[tuple[str, int], int] = {}
    for partition in consumer.assignment():
        try:
            highwater = consumer.highwater(partition)
            if highwater is None:
                continue
            # A fetched partition has a valid position, so this returns at once.
            async with asyncio.timeout(1.0):
                position = await consumer.position(partition)
        except (IllegalStateError, AssertionError, TimeoutError):
            continue  # revoked meanwhile, or its position is being reset
        lags[(partition.topic, partition.partition)] = max(0, highwater - position)
    return lags


PartitionsCallback = Callable[[frozenset[TopicPartition]], Awaitable[None]]


def group_generation(consumer: AIOKafkaConsumer) -> int:
    """The consumer group generation of the member's current assignment (0 before one).

    Every rebalance raises it, so a partition's next owner always has a higher one than its
    previous owner. aiokafka keeps it on its coordinator only (no public accessor).
    """
    coordinator = getattr(consumer, "_coordinator", None)
    generation = getattr(coordinator, "generation", 0)
    return max(0, generation) if isinstance(generation, int) else 0


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, on_revoked: PartitionsCallback, on_assigned: PartitionsCallback) -> None:
        self._on_revoked = on_revoked
        self._on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._on_revoked(frozenset(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._on_assigned(frozenset(assigned))


def command_consumer(
    bootstrap_servers: str,
    topic: str,
    group_id: str,
    on_revoked: PartitionsCallback,
    on_assigned: PartitionsCallback,
    session_timeout_ms: int = 10_000,
    heartbeat_interval_ms: int = 3_000,
) -> AIOKafkaConsumer:
    """A group member on the commands topic; offsets are committed by the caller only.

    ``session_timeout_ms`` bounds how long a dead member keeps its partitions, so it is the
    main part of the time to take a crashed worker's jobs over.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=heartbeat_interval_ms,
        # A job runs outside the poll loop, so long jobs never exceed the poll interval.
        max_poll_records=100,
    )
    consumer.subscribe([topic], listener=_Rebalance(on_revoked, on_assigned))
    return consumer


class EventReader:
    """Reads every partition of the events topic from the beginning, without a group.

    Used to build projections; :meth:`caught_up` waits until everything published before the
    call has been read.
    """

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._topic = topic
        # Without a group, a subscribing consumer is assigned every partition of the topic and,
        # with no committed offsets, starts at the beginning.
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap_servers,
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
        )
        self._progress = asyncio.Condition()
        self._read: dict[TopicPartition, int] = {}
        self._applied: dict[TopicPartition, int] = {}

    @property
    def _partitions(self) -> list[TopicPartition]:
        return sorted(self._consumer.assignment())

    async def start(self) -> None:
        await self._consumer.start()
        # A topic created a moment ago may not be in the first metadata answers yet.
        async with asyncio.timeout(30):
            # aiokafka offers no event for "assignment known"; poll it briefly.
            while not self._consumer.assignment():  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        await self._consumer.stop()

    async def next_batch(self, timeout_ms: int = 500) -> list[bytes]:
        """The next values; the caller applies them before calling again."""
        # Straight from the records, without next_records' pairs: a replay reads millions.
        batches = await self._fetch(timeout_ms)
        return [record.value for records in batches.values() for record in records if record.value]

    async def next_records(self, timeout_ms: int = 500) -> list[tuple[bytes | None, bytes | None]]:
        """The next (key, value) pairs, tombstones (value None) included, for compacted topics;
        the caller applies them before calling again."""
        batches = await self._fetch(timeout_ms)
        return [(record.key, record.value) for records in batches.values() for record in records]

    async def _fetch(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        # The previous batch has been applied now, so its positions may be announced.
        async with self._progress:
            self._applied = dict(self._read)
            self._progress.notify_all()
        batches: dict[TopicPartition, list[Any]] = await self._consumer.getmany(
            timeout_ms=timeout_ms, max_records=5000
        )
        for partition in self._partitions:
            self._read[partition] = await self._consumer.position(partition)
        return batches

    def lag(self) -> int | None:
        """Records on the broker not yet applied, from the last fetch's highwater marks (no broker
        call); None while a partition has not been fetched yet."""
        total = 0
        for partition in self._partitions:
            highwater = self._consumer.highwater(partition)
            if highwater is None:
                return None
            total += max(0, highwater - self._applied.get(partition, 0))
        return total

    async def read_past(self, partition: int, offset: int, timeout_seconds: float) -> None:
        """Return once the record at ``offset`` of ``partition``, and so every earlier one of
        that partition, has been read and applied. Cheaper than :meth:`caught_up` (no offsets
        request) when the caller knows where its own record landed."""
        where = TopicPartition(self._topic, partition)
        async with asyncio.timeout(timeout_seconds), self._progress:
            await self._progress.wait_for(lambda: self._applied.get(where, 0) > offset)

    async def caught_up(self, timeout_seconds: float) -> None:
        """Return once everything published before the call has been read and applied."""
        ends = await self._consumer.end_offsets(self._partitions)
        async with asyncio.timeout(timeout_seconds), self._progress:
            await self._progress.wait_for(
                lambda: all(self._applied.get(tp, 0) >= end for tp, end in ends.items())
            )
