"""P5: poison input on the commands topic goes to the dead-letter topic; nothing else changes.

One real ``jobmanager serve`` on the test broker. A first job runs to its end; then poison is
written straight to the commands topic (keyed like the next job, so it sits in front of that
job in its partition): garbage bytes, an empty value, a tombstone, deep JSON, a wrong schema
version, an unknown command type, a message near the broker's size limit, a mis-keyed command,
a stop from another tenant and a submit that reuses the first job's id with another request.
Then a second job is submitted over HTTP. It must run to its end (the worker kept consuming),
every poison message must be on the dead-letter topic with its original bytes and a reason, and
the events topic must hold nothing but the two jobs' own histories.
"""

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from adapters.http.gateway import idempotent_job_id
from schemas.events import JobStatusChanged
from tests.reliability.figures import record
from tests.reliability.live import (
    JOBS,
    TENANT,
    events_by_job,
    job_body,
    read_topic,
    terminal_count,
    token,
    wait_all_final,
)
from tests.service import Service, running_service
from worker.settings import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.reliability, pytest.mark.timeout(180)]

# Under the broker's default message.max.bytes (1 MiB) with room for the dead letter's headers.
NEAR_LIMIT_BYTES = 1_000_000
HUGE_ID = NEAR_LIMIT_BYTES - 2_000


@pytest.fixture
def service(settings: Settings, tmp_path: Path) -> Iterator[Service]:
    with running_service(settings, tmp_path / "serve.log") as running:
        yield running


Poison = tuple[str, bytes, bytes | None, str]


def _poison(first: dict[str, object], second_id: str) -> list[Poison]:
    """(kind, key, value, words of its reason) in the order written; ``first`` is the first
    job's SubmitJob as JSON."""
    key = second_id.encode()
    valid = {**first, "jobId": second_id, "commandId": uuid.uuid4().hex}
    request = dict(first["request"])  # type: ignore[call-overload]
    return [
        ("garbage bytes", key, b"\x00\xff\xfe not JSON {", "Invalid JSON"),
        ("bad UTF-8 in JSON", key, b'{"type": "SubmitJob", "jobId": "\xc3\x28"}', "Invalid JSON"),
        ("empty value", key, b"", "Invalid JSON"),
        ("tombstone", key, None, "Invalid JSON"),
        ("deep JSON", key, b"[" * 100_000 + b"]" * 100_000, "recursion limit"),
        (
            "wrong schema version",
            key,
            json.dumps({**valid, "schemaVersion": 2}).encode(),
            "schemaVersion",
        ),
        (
            "unknown command type",
            key,
            json.dumps({**valid, "type": "DeleteJob"}).encode(),
            "DeleteJob",
        ),
        (
            "missing fields",
            key,
            json.dumps({"type": "SubmitJob", "jobId": second_id}).encode(),
            "Field required",
        ),
        (
            "huge message",
            key,
            # An id far over its 256-character limit: invalid, whatever else the message says.
            json.dumps({**valid, "request": {**request, "modelId": "m" * HUGE_ID}}).encode(),
            "modelId",
        ),
        (
            "key differs from jobId",
            key,
            json.dumps({**valid, "jobId": "someone-else"}).encode(),
            "key does not match",
        ),
        (
            "stop from another tenant",
            str(first["jobId"]).encode(),
            json.dumps(
                {
                    "type": "StopJob",
                    "commandId": uuid.uuid4().hex,
                    "jobId": first["jobId"],
                    "tenant": "intruder",
                    "issuedAt": first["issuedAt"],
                }
            ).encode(),
            "another tenant",
        ),
        (
            "submit reusing a job id",
            str(first["jobId"]).encode(),
            json.dumps({**first, "request": {**request, "outputFolderId": "elsewhere"}}).encode(),
            "different request",
        ),
    ]


async def _write(bootstrap: str, topic: str, messages: list[Poison]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=2 * NEAR_LIMIT_BYTES
    )
    await producer.start()
    try:
        for _, key, value, _ in messages:
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


def test_poison_is_dead_lettered_and_nothing_else_changes(
    service: Service, settings: Settings
) -> None:
    """Every poison message is parked with a reason; the worker runs the next job; no event."""
    bearer = token(settings)
    bootstrap = settings.kafka_bootstrap_servers
    first = service.request("POST", JOBS, job_body(settings), bearer)
    assert first.status == 201, first.body
    first_id = first.body["id"]
    wait_all_final(service, bearer, [first_id])
    before = service.request("GET", f"{JOBS}/{first_id}", token=bearer).body
    commands = read_topic(bootstrap, settings.commands_topic)
    first_command = json.loads(next(r.value for r in commands if r.key == first_id.encode()))

    key = uuid.uuid4().hex
    second_id = idempotent_job_id(TENANT, key)
    poison = _poison(first_command, second_id)
    started = time.monotonic()
    asyncio.run(_write(bootstrap, settings.commands_topic, poison))
    second = service.raw(
        "POST",
        JOBS,
        json.dumps(job_body(settings)).encode(),
        {"Authorization": f"Bearer {bearer}", "Idempotency-Key": key},
    )
    assert second.status == 201, second.body
    assert second.body["id"] == second_id
    final = wait_all_final(service, bearer, [second_id])
    elapsed = time.monotonic() - started

    dead = read_topic(bootstrap, settings.dead_letter_topic)
    events = events_by_job(read_topic(bootstrap, settings.events_topic))
    after = service.request("GET", f"{JOBS}/{first_id}", token=bearer).body
    listed = service.request("GET", f"{JOBS}?pageSize=100", token=bearer).body
    reasons = [dict(r.headers).get("reason", b"").decode() for r in dead]
    parked = {(r.key, r.value): reason for r, reason in zip(dead, reasons, strict=True)}
    missing = [kind for kind, k, v, _ in poison if (k, v or b"") not in parked]
    wrong_reason = [
        (kind, parked[(k, v or b"")])
        for kind, k, v, why in poison
        if (k, v or b"") in parked and why not in parked[(k, v or b"")]
    ]
    unexpected_jobs = sorted(set(events) - {first_id, second_id})
    record(
        "P5",
        "test_poison_is_dead_lettered_and_nothing_else_changes",
        poison_messages=len(poison),
        faults_injected=len(poison),
        dead_lettered=len(dead),
        dead_letters_missing=len(missing),
        dead_letters_without_reason=sum(1 for reason in reasons if not reason),
        largest_poison_bytes=max(len(v or b"") for _, _, v, _ in poison),
        jobs_submitted=2,
        jobs_lost=sum(1 for job in (first_id, second_id) if job not in events),
        unexpected_event_streams=len(unexpected_jobs),
        duplicate_terminals=sum(max(0, terminal_count(e) - 1) for e in events.values()),
        seconds_poison_to_next_job_final=round(elapsed, 1),
    )

    assert not missing, f"not dead-lettered: {missing}; reasons seen: {reasons}"
    assert not wrong_reason, wrong_reason
    assert len(dead) == len(poison), reasons
    assert all(reasons), "every dead letter says why"
    for record_ in dead:
        assert dict(record_.headers)["origin"].decode().startswith(settings.commands_topic + "/")
    assert final[second_id]["status"] == "SUCCEEDED", final[second_id]
    assert after == before, "poison changed the first job"
    assert {item["id"] for item in listed["content"]} == {first_id, second_id}
    assert unexpected_jobs == [], "poison created jobs"
    for job_id in (first_id, second_id):
        moves = [e for e in events[job_id] if isinstance(e, JobStatusChanged)]
        assert [e.sequence for e in events[job_id]] == list(range(1, len(events[job_id]) + 1))
        assert terminal_count(moves) == 1
    assert events[first_id][-1].job.model_dump(mode="json", by_alias=True) == before
