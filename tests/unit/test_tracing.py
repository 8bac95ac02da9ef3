"""Optional tracing over in-memory spans: the gateway's request span reaches the command's
headers, the worker continues that trace for the job and puts it on every event it publishes,
and with tracing off nothing of OpenTelemetry is imported and no header is added.

The Kafka publishers run for real over a recording stand-in for the producer.
"""

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import TopicPartition
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from structlog.testing import capture_logs

from adapters.http.auth import Authenticator, AuthSettings, mint
from adapters.http.gateway import BASE, Gateway
from adapters.kafka import KafkaCommandPublisher, KafkaEventPublisher, KafkaProducer
from adapters.memory import MemoryDeadLetterPublisher
from adapters.projection_store import MemoryProjectionStore
from adapters.tracing import Tracing, build_tracing
from schemas.commands import StopJob
from schemas.events import EVENTS, JobStatusChanged
from schemas.notes import Note, NoteRun
from statemachine import JobMachine
from tests.fakes.engine import OneCallEngine
from tests.unit.factories import job_body, job_home, local_runner, submit_job
from worker import bootstrap
from worker.consumer import CommandLoop
from worker.jobs import JobRunner
from worker.moves import Mover
from worker.projection import Projection
from worker.settings import Settings

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
TENANT = "tenanta"
JOBS = f"{BASE}/jobs"
ASYNCAPI = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"
DEADLINE = 10.0
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
BODY = job_body()


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


@dataclass
class RecordingProducer:
    """Stands in for the broker client: keeps what was sent, acknowledges at once."""

    sent: list[Sent] = field(default_factory=list)

    async def send(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        self.sent.append(Sent(topic, key, value, dict(headers)))

    async def enqueue(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]] = ()
    ) -> "asyncio.Future[None]":
        await self.send(topic, key, value, headers)
        acknowledged: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acknowledged.set_result(None)
        return acknowledged


def _producer(recording: RecordingProducer) -> KafkaProducer:
    return recording  # type: ignore[return-value]


def _traceparent(headers: dict[str, bytes]) -> tuple[str, str]:
    """(trace id, parent span id) of a W3C traceparent header."""
    version, trace_id, span_id, flags = headers["traceparent"].decode().split("-")
    assert version == "00"
    assert int(flags, 16) & 1, "sampled"
    return trace_id, span_id


def _ids(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def _parent(span: ReadableSpan) -> str | None:
    return None if span.parent is None else format(span.parent.span_id, "016x")


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    """Finished spans, exported as each one ends."""
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Tracing:
    """Tracing into the in-memory exporter, on a provider of its own."""
    return Tracing.with_exporter(exporter, batch=False)


# -- the gateway ------------------------------------------------------------------------------


@dataclass
class Api:
    client: TestClient[Any, Any]
    producer: RecordingProducer


async def _api(tracing: Tracing | None) -> Api:
    producer = RecordingProducer()
    store = MemoryProjectionStore()
    gateway = Gateway(
        KafkaCommandPublisher(_producer(producer), "commands", tracing),
        store,
        Authenticator(AuthSettings(hs256_secret=SECRET)),
        Projection(store).accept,
        tracing=tracing,
    )
    client: TestClient[Any, Any] = TestClient(TestServer(gateway.app()))
    await client.start_server()
    return Api(client, producer)


@pytest.fixture
async def traced_api(tracing: Tracing) -> AsyncIterator[Api]:
    """The gateway with tracing on, publishing through the Kafka command publisher."""
    api = await _api(tracing)
    try:
        yield api
    finally:
        await api.client.close()


@pytest.fixture
async def untraced_api() -> AsyncIterator[Api]:
    """The gateway as it is by default: tracing off."""
    api = await _api(None)
    try:
        yield api
    finally:
        await api.client.close()


def _headers(**extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(SECRET, TENANT)}", **extra}


async def test_a_post_sends_its_command_with_the_request_span_in_traceparent(
    traced_api: Api, exporter: InMemorySpanExporter
) -> None:
    """POST /jobs: a server span, a producer span under it, and that span in the headers."""
    response = await traced_api.client.post(JOBS, json=BODY, headers=_headers())
    assert response.status == 201, await response.text()

    (command,) = traced_api.producer.sent
    assert command.headers["type"] == b"SubmitJob"
    trace_id, parent_id = _traceparent(command.headers)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    server = spans[f"POST {JOBS}"]
    send = spans["send SubmitJob"]
    assert server.kind is SpanKind.SERVER
    assert send.kind is SpanKind.PRODUCER
    assert _ids(server)[0] == _ids(send)[0] == trace_id
    assert _ids(send)[1] == parent_id
    assert _parent(send) == _ids(server)[1]
    assert server.parent is None
    assert server.attributes is not None
    assert send.attributes is not None
    assert server.attributes["http.response.status_code"] == 201
    assert server.attributes["jobmanager.request_id"] == response.headers["X-Request-Id"]
    assert send.attributes["jobmanager.job_id"] == (await response.json())["id"]
    assert send.attributes["messaging.destination.name"] == "commands"


async def test_a_callers_traceparent_is_continued_into_the_command(
    traced_api: Api, exporter: InMemorySpanExporter
) -> None:
    """A client's W3C traceparent becomes the parent of the request span and the command's trace."""
    response = await traced_api.client.post(
        JOBS, json=BODY, headers=_headers(traceparent=CALLER_TRACEPARENT)
    )
    assert response.status == 201, await response.text()

    (command,) = traced_api.producer.sent
    assert _traceparent(command.headers)[0] == CALLER_TRACE
    server = next(s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER)
    assert _parent(server) == CALLER_SPAN


async def test_a_stop_command_carries_the_trace_of_its_request(
    traced_api: Api, exporter: InMemorySpanExporter
) -> None:
    """POST /jobs/{id}/stop sends its StopJob in the stop request's own trace."""
    created = await traced_api.client.post(JOBS, json=BODY, headers=_headers())
    job_id = (await created.json())["id"]
    stopped = await traced_api.client.post(
        f"{JOBS}/{job_id}/stop", headers=_headers(traceparent=CALLER_TRACEPARENT)
    )
    assert stopped.status == 200, await stopped.text()

    submit, stop = traced_api.producer.sent
    assert stop.headers["type"] == b"StopJob"
    assert _traceparent(stop.headers)[0] == CALLER_TRACE != _traceparent(submit.headers)[0]
    names = [span.name for span in exporter.get_finished_spans()]
    assert f"POST {JOBS}/{{id}}/stop" in names


async def test_an_error_answer_is_a_span_with_its_status_and_logref(
    traced_api: Api, exporter: InMemorySpanExporter
) -> None:
    """A refused request is still traced, with the answered status and the logref."""
    response = await traced_api.client.post(JOBS, json={"modelId": 1}, headers=_headers())
    assert response.status == 400
    logref = (await response.json())["errors"][0]["logref"]

    (server,) = exporter.get_finished_spans()
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 400
    assert server.attributes["jobmanager.request_id"] == logref
    assert traced_api.producer.sent == []


async def test_with_tracing_off_a_command_gets_no_trace_headers(untraced_api: Api) -> None:
    """Tracing off: the command has exactly its usual headers, even when the caller sent one."""
    response = await untraced_api.client.post(
        JOBS, json=BODY, headers=_headers(traceparent=CALLER_TRACEPARENT)
    )
    assert response.status == 201, await response.text()

    (command,) = untraced_api.producer.sent
    assert list(command.headers) == ["type", "schema-version"]


# -- the worker -------------------------------------------------------------------------------


class SucceedingEngine(OneCallEngine):
    """Succeeds with no paragraphs; with ``block``, only after ``release`` is set."""

    def __init__(self, *, block: bool = False) -> None:
        super().__init__()
        self.block = block
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def run(self, note: Note, workspace: Path, variables: Any) -> NoteRun:
        self.started.set()
        if self.block:
            await self.release.wait()
        return NoteRun(paragraphs=())


class IdleConsumer:
    """Enough of a consumer for handling single records."""

    def assignment(self) -> set[Any]:
        return set()


@dataclass
class Worker:
    loop: CommandLoop
    runner: JobRunner
    producer: RecordingProducer
    engine: SucceedingEngine

    def events(self) -> list[Sent]:
        return [sent for sent in self.producer.sent if sent.topic == "events"]

    async def run_job(self, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        """Hand a SubmitJob record to the loop and wait until its job's task is done."""
        await self.start_job(headers)
        await self.job_done()

    async def start_job(self, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        partition = TopicPartition("commands", 0)
        await self.loop._handle(partition, 0, b"job-1", _submit(), headers)

    async def job_done(self) -> None:
        task = self.runner.active["job-1"].task
        assert task is not None
        # Awaiting the task resumes after the callbacks added before, the span's end among them.
        await asyncio.wait_for(task, DEADLINE)

    def statuses(self) -> list[tuple[str, str]]:
        """(status, trace id) of each status change published."""
        return [
            (event.status, _traceparent(sent.headers)[0])
            for sent in self.events()
            if isinstance(event := EVENTS.validate_json(sent.value), JobStatusChanged)
        ]


def _worker(tmp_path: Path, tracing: Tracing | None, *, block: bool = False) -> Worker:
    home = job_home(tmp_path / "home", TENANT)
    producer = RecordingProducer()
    engine = SucceedingEngine(block=block)
    mover = Mover(
        JobMachine(),
        KafkaEventPublisher(_producer(producer), "events", tracing),
        Projection(MemoryProjectionStore()),
    )
    runner = local_runner(mover, home, engine)

    async def caught_up() -> None:
        return None

    loop = CommandLoop(
        lambda _revoked, _assigned: IdleConsumer(),  # type: ignore[arg-type,return-value]
        runner,
        MemoryDeadLetterPublisher(),
        caught_up,
        tracing=tracing,
    )
    return Worker(loop, runner, producer, engine)


def _submit(job_id: str = "job-1") -> bytes:
    return submit_job(job_id, tenant=TENANT, seconds=60).model_dump_json().encode()


async def test_the_worker_continues_the_commands_trace_on_every_status_change(
    tmp_path: Path, tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    """One span per job run under the command's span; every event is sent in a child span of it,
    whose context is in the event's headers, all in the command's trace."""
    worker = _worker(tmp_path, tracing)
    headers = [("type", b"SubmitJob"), ("traceparent", CALLER_TRACEPARENT.encode())]

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        await worker.run_job(headers)

    events = worker.events()
    statuses = [
        e.status
        for e in (EVENTS.validate_json(s.value) for s in events)
        if isinstance(e, JobStatusChanged)
    ]
    assert statuses == ["SUBMITTED", "STARTING", "RUNNING", "SUCCEEDED"]
    spans = exporter.get_finished_spans()
    (process,) = [s for s in spans if s.name == "process SubmitJob"]
    assert process.kind is SpanKind.CONSUMER
    assert _ids(process)[0] == CALLER_TRACE
    assert _parent(process) == CALLER_SPAN
    sends = {_ids(s)[1]: s for s in spans if s.name.startswith("send ")}
    assert len(sends) == len(events)
    for sent in events:
        trace_id, span_id = _traceparent(sent.headers)
        assert trace_id == CALLER_TRACE
        send = sends[span_id]  # the event's own child span
        assert _parent(send) == _ids(process)[1]
        assert send.name == f"send {sent.headers['type'].decode()}"
    # The job's span covers the whole run, up to its last status change.
    assert process.end_time is not None
    assert all(s.end_time is not None and s.end_time <= process.end_time for s in sends.values())
    final = next(
        s for s in sends.values() if (s.attributes or {}).get("jobmanager.status") == "SUCCEEDED"
    )
    assert final.attributes is not None
    assert final.attributes["jobmanager.previous_status"] == "RUNNING"
    assert final.attributes["jobmanager.trigger"] == "succeed"
    # The headers are as the AsyncAPI document describes them, and the logs name the trace.
    pattern = json.loads(ASYNCAPI.read_text())["components"]["schemas"]["EventHeaders"]
    assert all(
        re.fullmatch(
            pattern["properties"]["traceparent"]["pattern"], s.headers["traceparent"].decode()
        )
        for s in events
    )
    changes = [line for line in logs if line["event"] == "job status changed"]
    assert len(changes) == 4
    assert {line["trace_id"] for line in changes} == {CALLER_TRACE}


async def test_a_stop_moves_to_stopping_in_its_own_trace_and_the_job_ends_in_its_own(
    tmp_path: Path, tracing: Tracing
) -> None:
    """STOPPING is caused by the StopJob, in its trace; STOPPED ends the job run, in the job's."""
    worker = _worker(tmp_path, tracing, block=True)
    stop_trace = "11111111111111111111111111111111"
    stop = StopJob(command_id="stop-1", job_id="job-1", tenant=TENANT, issued_at=datetime.now(UTC))

    await worker.start_job([("traceparent", CALLER_TRACEPARENT.encode())])
    await asyncio.wait_for(worker.engine.started.wait(), DEADLINE)
    await worker.loop._handle(
        TopicPartition("commands", 0),
        1,
        b"job-1",
        stop.model_dump_json().encode(),
        [("traceparent", f"00-{stop_trace}-{CALLER_SPAN}-01".encode())],
    )
    await worker.job_done()

    assert worker.statuses() == [
        ("SUBMITTED", CALLER_TRACE),
        ("STARTING", CALLER_TRACE),
        ("RUNNING", CALLER_TRACE),
        ("STOPPING", stop_trace),
        ("STOPPED", CALLER_TRACE),
    ]


async def test_a_command_without_trace_headers_starts_a_trace_of_its_own(
    tmp_path: Path, tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    """A command from a producer that does not trace still gets one trace for its whole job."""
    worker = _worker(tmp_path, tracing)

    await worker.run_job()

    (process,) = [s for s in exporter.get_finished_spans() if s.name == "process SubmitJob"]
    assert process.parent is None
    assert {_traceparent(s.headers)[0] for s in worker.events()} == {_ids(process)[0]}


async def test_with_tracing_off_events_get_no_trace_headers(tmp_path: Path) -> None:
    """Tracing off: events carry exactly their usual headers, whatever the command carried."""
    worker = _worker(tmp_path, None)
    headers = [("traceparent", CALLER_TRACEPARENT.encode())]

    await worker.run_job(headers)

    assert worker.events()
    assert all(list(sent.headers) == ["type", "event-id"] for sent in worker.events())


# -- settings and start-up --------------------------------------------------------------------


def test_tracing_is_off_by_default_and_set_by_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """JOBMANAGER_TRACING defaults to off and selects console or otlp."""
    monkeypatch.delenv("JOBMANAGER_TRACING", raising=False)
    assert Settings().tracing == "off"
    assert bootstrap._tracing(Settings()) is None
    monkeypatch.setenv("JOBMANAGER_TRACING", "otlp")
    assert Settings().tracing == "otlp"
    monkeypatch.setenv("JOBMANAGER_TRACING", "zipkin")
    with pytest.raises(ValueError, match="tracing"):
        Settings()


def test_with_tracing_off_nothing_of_opentelemetry_is_imported() -> None:
    """Starting up with tracing off (every module the processes load) imports no OpenTelemetry."""
    script = (
        "import sys\n"
        "import worker.cli, worker.bootstrap, adapters.kafka, adapters.http.gateway\n"
        "from worker.settings import Settings\n"
        "assert worker.bootstrap._tracing(Settings(tracing='off')) is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_console_tracing_prints_spans_to_stdout() -> None:
    """JOBMANAGER_TRACING=console: spans are printed (as JSON) once flushed."""
    script = (
        "from adapters.tracing import build_tracing\n"
        "tracing = build_tracing('console')\n"
        "with tracing.sending('SubmitJob', 'commands', {'jobmanager.job_id': 'j1'}) as headers:\n"
        "    assert [k for k, _ in headers] == ['traceparent']\n"
        "tracing.shutdown()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert '"name": "send SubmitJob"' in done.stdout
    assert '"service.name": "jobmanager"' in done.stdout


def test_otlp_tracing_builds_and_shuts_down_without_a_collector() -> None:
    """JOBMANAGER_TRACING=otlp builds the OTLP/HTTP exporter; with no spans it stops at once."""
    tracing = build_tracing("otlp")
    assert tracing is not None
    tracing.shutdown()


def test_tracing_without_the_sdk_stops_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tracing asked for without the `otel` extra: start-up ends naming the extra."""
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace.export", None)
    with pytest.raises(SystemExit, match=r"jobmanager\[otel\]"):
        bootstrap._tracing(Settings(tracing="console"))
