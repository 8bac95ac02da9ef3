"""Helpers shared by the integration tests: reading topics and waiting with deadlines."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from adapters.local_files import LocalHome
from schemas.commands import SubmitJob
from schemas.events import EVENTS, Event
from schemas.jobs import JobRequest
from statemachine import FINAL_STATUSES

NOTES = Path(__file__).resolve().parent.parent / "fixtures" / "notes"
TENANT = "local"

Records = list[ConsumerRecord]


def _raise_if_dead(watch: Sequence["asyncio.Task[Any]"]) -> None:
    for task in watch:
        if task.done():
            error = "cancelled" if task.cancelled() else repr(task.exception())
            raise AssertionError(f"task {task.get_name()} ended while waiting: {error}")


class TopicTail:
    """Reads every partition of a topic from the beginning, without a consumer group."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.topic = topic
        self.records: Records = []
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    async def __aenter__(self) -> "TopicTail":
        await self._consumer.start()
        async with asyncio.timeout(30):
            while not self._consumer.assignment():  # noqa: ASYNC110 - aiokafka has no event
                await asyncio.sleep(0.05)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._consumer.stop()

    async def _poll(self) -> None:
        batches = await self._consumer.getmany(timeout_ms=100)
        for records in batches.values():
            self.records.extend(records)

    async def wait_for(
        self,
        condition: Callable[[Records], bool],
        what: str,
        within: float = 60.0,
        watch: Sequence["asyncio.Task[Any]"] = (),
    ) -> Records:
        """Read until ``condition(records)`` holds; fail after ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                while not condition(self.records):
                    _raise_if_dead(watch)
                    await self._poll()
        except TimeoutError:
            raise AssertionError(
                f"{self.topic}: no {what} within {within:g} s; read {len(self.records)} records"
            ) from None
        return self.records

    async def read_to_end(self, within: float = 30.0) -> Records:
        """Read everything published before this call."""
        partitions = sorted(self._consumer.assignment())
        ends = await self._consumer.end_offsets(partitions)
        async with asyncio.timeout(within):
            while not await self._reached(ends):
                await self._poll()
        return self.records

    async def _reached(self, ends: dict[TopicPartition, int]) -> bool:
        for partition, end in ends.items():
            if await self._consumer.position(partition) < end:
                return False
        return True


def job_events(records: Records, job_id: str) -> list[Event]:
    """The events of one job, in the order read (which is the partition's order)."""
    return [EVENTS.validate_json(r.value) for r in records if r.key == job_id.encode()]


def job_reached(job_id: str, *statuses: str) -> Callable[[Records], bool]:
    """A condition: the job has an event with one of ``statuses`` (any final one if none)."""
    wanted = set(statuses) or {str(s) for s in FINAL_STATUSES}
    return lambda records: any(e.status in wanted for e in job_events(records, job_id))


def headers(record: ConsumerRecord) -> dict[str, bytes]:
    return dict(record.headers)


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    what: str,
    within: float = 30.0,
    watch: Sequence["asyncio.Task[Any]"] = (),
) -> None:
    """Poll ``check`` until it is true; fail after ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            while not await check():
                _raise_if_dead(watch)
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"no {what} within {within:g} s") from None


async def committed_offset(
    admin: AIOKafkaAdminClient, group: str, partition: TopicPartition
) -> int | None:
    """The group's committed offset for ``partition``; None when it has none."""
    offsets = await admin.list_consumer_group_offsets(group, partitions=[partition])
    found = offsets.get(partition)
    return None if found is None or found.offset < 0 else int(found.offset)


def prepare_job(home: LocalHome, note: str = "success.zpln") -> JobRequest:
    """A model, input and output folders and a local configuration in ``home``."""
    return JobRequest(
        model_id=home.add_model(TENANT, NOTES / note),
        configuration_id=home.add_configuration(TENANT, "local python"),
        input_folder_id=home.create_folder(TENANT),
        output_folder_id=home.create_folder(TENANT),
        maximum_execution_time_in_seconds=600,
    )


def submit_command(request: JobRequest, job_id: str | None = None) -> SubmitJob:
    now = datetime.now(UTC)
    return SubmitJob(
        command_id=uuid.uuid4().hex,
        job_id=job_id or uuid.uuid4().hex,
        tenant=TENANT,
        request=request,
        creation_date=now,
        issued_at=now,
    )


async def until_healthy(
    session: aiohttp.ClientSession, url: str, service: "asyncio.Task[None]", within: float
) -> None:
    """Wait for the in-process gateway's /healthz; fail at once if ``run()`` ended instead."""
    async with asyncio.timeout(within):
        while True:
            if service.done():
                raise AssertionError(f"run() ended before the gateway answered: {service!r}")
            try:
                async with session.get(f"{url}/healthz") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
