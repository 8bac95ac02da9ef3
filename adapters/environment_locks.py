"""Claims on environments, folded from the environments topic (or kept in memory for tests).

The fold is the same for both: per configuration, the job ids that claimed it and did not
release it yet, in claim order. Which of them really holds the environment is the worker's call
(it skips jobs that are already final), so a lost release never blocks a configuration forever.
"""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from pydantic import ValidationError

from adapters.kafka import EventReader, KafkaProducer
from adapters.retry import until_acknowledged
from schemas.environments import (
    ENVIRONMENT_MESSAGES,
    EnvironmentClaimed,
    EnvironmentMessage,
    EnvironmentReleased,
    lock_key,
)

log = structlog.get_logger(__name__)


class ClaimQueues:
    """Per configuration key, the unreleased claims in order. A job's repeated claim keeps its
    first place (a redelivered SubmitJob must not jump the queue or lose its turn)."""

    def __init__(self) -> None:
        self._queues: dict[str, list[str]] = {}
        self.changed = asyncio.Condition()

    def apply(self, message: EnvironmentMessage) -> None:
        key = lock_key(message.tenant, message.configuration_id)
        queue = self._queues.setdefault(key, [])
        if isinstance(message, EnvironmentClaimed):
            if message.job_id not in queue:
                queue.append(message.job_id)
        elif message.job_id in queue:
            queue.remove(message.job_id)
            if not queue:
                del self._queues[key]

    def queue(self, tenant: str, configuration_id: str) -> tuple[str, ...]:
        return tuple(self._queues.get(lock_key(tenant, configuration_id), ()))

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with self.changed:
            await self.changed.wait_for(predicate)


class _QueueReads:
    claims: ClaimQueues

    def queue(self, tenant: str, configuration_id: str) -> tuple[str, ...]:
        return self.claims.queue(tenant, configuration_id)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        await self.claims.wait_for(predicate)


class MemoryEnvironmentLocks(_QueueReads):
    """Claims applied at once, in process; for unit tests and single-process use."""

    def __init__(self) -> None:
        self.claims = ClaimQueues()
        self.published: list[EnvironmentMessage] = []

    async def claim(self, tenant: str, configuration_id: str, job_id: str) -> None:
        await self._append(EnvironmentClaimed(
            tenant=tenant, configuration_id=configuration_id, job_id=job_id, occurred_at=_now()
        ))  # fmt: skip

    async def release(self, tenant: str, configuration_id: str, job_id: str) -> None:
        await self._append(EnvironmentReleased(
            tenant=tenant, configuration_id=configuration_id, job_id=job_id, occurred_at=_now()
        ))  # fmt: skip

    async def _append(self, message: EnvironmentMessage) -> None:
        self.published.append(message)
        self.claims.apply(message)
        await self.claims.notify()


class KafkaEnvironmentLocks(_QueueReads):
    """Claims and releases on the environments topic; ``claim`` returns once the claim is read
    back, so the queue it is judged against includes every earlier claim of any worker: a
    configuration's claims share a key, so a partition, and reading that partition up to the
    claim's own offset reads every claim before it."""

    def __init__(
        self,
        producer: KafkaProducer,
        reader: EventReader,
        topic: str,
        catch_up_timeout_seconds: float,
    ) -> None:
        self._producer = producer
        self._reader = reader
        self._topic = topic
        self._timeout = catch_up_timeout_seconds
        self.claims = ClaimQueues()

    async def claim(self, tenant: str, configuration_id: str, job_id: str) -> None:
        partition, offset = await self._send(EnvironmentClaimed(
            tenant=tenant, configuration_id=configuration_id, job_id=job_id, occurred_at=_now()
        ))  # fmt: skip
        await self._reader.read_past(partition, offset, self._timeout)

    async def release(self, tenant: str, configuration_id: str, job_id: str) -> None:
        await self._send(EnvironmentReleased(
            tenant=tenant, configuration_id=configuration_id, job_id=job_id, occurred_at=_now()
        ))  # fmt: skip

    async def _send(self, message: EnvironmentMessage) -> tuple[int, int]:
        key = lock_key(message.tenant, message.configuration_id).encode()
        value = message.model_dump_json().encode()
        return await until_acknowledged(
            lambda: self._producer.send(self._topic, key, value),
            what=f"{message.type} {message.job_id}",
        )

    async def follow(self) -> None:
        """Fold the environments topic into the claim queues until cancelled."""
        while True:
            values = await self._reader.next_batch(timeout_ms=200)
            for raw in values:
                try:
                    self.claims.apply(ENVIRONMENT_MESSAGES.validate_json(raw))
                except ValidationError as invalid:
                    log.error("unreadable environment claim skipped", error=str(invalid)[:500])
            if values:
                await self.claims.notify()


def _now() -> datetime:
    return datetime.now(UTC)
