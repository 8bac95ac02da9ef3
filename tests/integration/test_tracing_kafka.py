"""Tracing over the real broker: the whole service in this process (``worker.bootstrap.run``)
with ``JOBMANAGER_TRACING=console``; a caller's trace reaches the command's and every event's
Kafka headers."""

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from adapters.http.auth import mint
from adapters.local_files import LocalHome
from schemas.events import EVENTS, JobStatusChanged
from tests.integration.helpers import (
    TENANT,
    TopicTail,
    headers,
    job_reached,
    prepare_job,
    until_healthy,
)
from tests.kafka_broker import free_port
from worker.bootstrap import Roles, run
from worker.settings import Settings

pytestmark = pytest.mark.kafka

JOBS = "/api/jobmanager/v3/jobs"
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE}-b7ad6b7169203331-01"
WITHIN = 20.0


def _trace(record_headers: dict[str, bytes]) -> tuple[str, str]:
    """(trace id, span id) of a record's traceparent header."""
    assert "traceparent" in record_headers, record_headers
    _, trace_id, span_id, _ = record_headers["traceparent"].decode().split("-")
    return trace_id, span_id


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[tuple[Settings, "asyncio.Task[None]"]]:
    """Gateway and worker in this process, tracing to the console, until the test ends."""
    settings = settings.model_copy(update={"port": free_port(), "tracing": "console"})
    stopping = asyncio.Event()
    task = asyncio.create_task(run(settings, Roles(), stopping), name="service")
    try:
        yield settings, task
    finally:
        stopping.set()
        try:
            async with asyncio.timeout(settings.shutdown_grace_seconds + 20):
                await task
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


async def _post_when_healthy(
    url: str, body: dict[str, object], token: str, service: "asyncio.Task[None]"
) -> str:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await until_healthy(session, url, service, WITHIN)
        async with session.post(
            f"{url}{JOBS}",
            data=json.dumps(body),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "traceparent": CALLER_TRACEPARENT,
            },
        ) as made:
            assert made.status == 201, await made.text()
            job_id: str = (await made.json())["id"]
            return job_id


async def test_a_callers_trace_reaches_the_command_and_every_event_over_kafka(
    service: tuple[Settings, "asyncio.Task[None]"],
) -> None:
    """traceparent in the SubmitJob's headers and in each event's, all in the caller's trace."""
    settings, running = service
    assert settings.jwt_secret is not None
    home = LocalHome(settings.home)
    request = prepare_job(home)
    (home.folder(TENANT, request.input_folder_id) / "data.csv").write_text("a,b\n1,2\n")
    token = mint(settings.jwt_secret.get_secret_value(), TENANT)
    url = f"http://{settings.host}:{settings.port}"

    job_id = await _post_when_healthy(url, request.model_dump(mode="json"), token, running)

    async with TopicTail(settings.kafka_bootstrap_servers, settings.events_topic) as events:
        records = await events.wait_for(
            job_reached(job_id, "SUCCEEDED", "FAILED"), "final event", WITHIN, [running]
        )
    async with TopicTail(settings.kafka_bootstrap_servers, settings.commands_topic) as commands:
        command_records = await commands.wait_for(
            lambda found: any(r.key == job_id.encode() for r in found), "command", WITHIN
        )

    (command,) = [r for r in command_records if r.key == job_id.encode()]
    assert headers(command)["type"] == b"SubmitJob"
    assert _trace(headers(command))[0] == CALLER_TRACE

    ours = [r for r in records if r.key == job_id.encode()]
    changes = [
        (event.status, _trace(headers(record)))
        for record in ours
        if isinstance(event := EVENTS.validate_json(record.value), JobStatusChanged)
    ]
    assert [status for status, _ in changes] == ["SUBMITTED", "STARTING", "RUNNING", "SUCCEEDED"]
    traces = [_trace(headers(record)) for record in ours]
    assert {trace_id for trace_id, _ in traces} == {CALLER_TRACE}
    # Each event was sent in a span of its own, so a consumer continues from that status change.
    assert len({span_id for _, span_id in traces}) == len(ours)
    assert _trace(headers(command))[1] not in {span_id for _, span_id in traces}
