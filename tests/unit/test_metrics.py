"""Metrics and probes over in-memory adapters: the Mover's counters, the runner's gauges, the
HTTP middleware (through aiohttp's test server) and the readiness probe."""

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import TopicPartition

from adapters.http.auth import Authenticator, AuthSettings, mint
from adapters.http.gateway import BASE, Gateway
from adapters.local_files import (
    LocalHome,
)
from adapters.memory import (
    MemoryCommandPublisher,
    MemoryDeadLetterPublisher,
    MemoryEventPublisher,
)
from adapters.metrics import CheckResult, Metrics, Probes, Readiness, lag_check
from adapters.projection_store import MemoryProjectionStore
from schemas.commands import SubmitJob
from schemas.notes import Note, NoteRun
from schemas.status import JobStatus
from statemachine import TRANSITIONS, IllegalMove, JobMachine
from tests.fakes.engine import OneCallEngine
from tests.unit.factories import job_home, local_runner, submit_job
from worker.consumer import CommandLoop
from worker.moves import Mover
from worker.projection import Projection

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
TENANT = "tenanta"
CREATED = datetime(2024, 3, 5, 9, 14, 2, 118_000, tzinfo=UTC)
DEADLINE = 10.0
S = JobStatus


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    assert value is not None, f"no sample {name}{labels}"
    return value


def _transitions(metrics: Metrics, source: str, dest: str, trigger: str) -> float:
    return _value(
        metrics, "jobmanager_job_transitions_total", **{"from": source, "to": dest}, trigger=trigger
    )


def _submit(job_id: str = "job-1") -> SubmitJob:
    return submit_job(job_id, tenant=TENANT, at=CREATED)


class SteppingClock:
    """Ten seconds later at every call."""

    def __init__(self) -> None:
        self.now = CREATED

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=10)
        return self.now


def _mover(metrics: Metrics) -> tuple[Mover, MemoryEventPublisher]:
    events = MemoryEventPublisher()
    mover = Mover(
        JobMachine(), events, Projection(MemoryProjectionStore()), SteppingClock(), metrics=metrics
    )
    return mover, events


# -- the Mover --------------------------------------------------------------------------------


def test_every_edge_of_the_table_starts_at_zero() -> None:
    """All edges (and the first event) are exported before any move, so rates work at once."""
    metrics = Metrics()

    for move in TRANSITIONS:
        assert _transitions(metrics, move.source, move.dest, move.trigger) == 0
    assert _transitions(metrics, "none", "SUBMITTED", "submit") == 0
    for status in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert _value(metrics, "jobmanager_jobs_finished_total", status=status) == 0


def test_registries_are_per_instance() -> None:
    """Two processes' worth of metrics side by side: no clash, no shared counts."""
    first, second = Metrics(), Metrics()

    first.dead_lettered("refused")

    assert _value(first, "jobmanager_dead_letters_total", reason="refused") == 1
    assert _value(second, "jobmanager_dead_letters_total", reason="refused") == 0


async def test_moves_through_the_mover_count_edges_final_status_and_duration() -> None:
    metrics = Metrics()
    mover, _ = _mover(metrics)

    await mover.create(_submit())
    for trigger in ("start", "run", "succeed"):
        await mover.move("job-1", trigger)

    assert _transitions(metrics, "none", "SUBMITTED", "submit") == 1
    assert _transitions(metrics, "SUBMITTED", "STARTING", "start") == 1
    assert _transitions(metrics, "STARTING", "RUNNING", "run") == 1
    assert _transitions(metrics, "RUNNING", "SUCCEEDED", "succeed") == 1
    assert _transitions(metrics, "RUNNING", "FAILED", "fail") == 0
    assert _value(metrics, "jobmanager_jobs_finished_total", status="SUCCEEDED") == 1
    assert _value(metrics, "jobmanager_jobs_finished_total", status="FAILED") == 0
    # The clock moved 10 s per event: the final event is 40 s after the creation date.
    assert _value(metrics, "jobmanager_job_duration_seconds_count", status="SUCCEEDED") == 1
    assert _value(metrics, "jobmanager_job_duration_seconds_sum", status="SUCCEEDED") == 40


async def test_progress_is_no_transition() -> None:
    metrics = Metrics()
    mover, _ = _mover(metrics)
    await mover.create(_submit())

    await mover.progress("job-1", "Validating inputs.")

    total = sum(_transitions(metrics, move.source, move.dest, move.trigger) for move in TRANSITIONS)
    assert total == 0


async def test_illegal_move_is_counted_and_not_a_transition() -> None:
    metrics = Metrics()
    mover, events = _mover(metrics)
    await mover.create(_submit())

    with pytest.raises(IllegalMove):
        await mover.move("job-1", "succeed")

    assert len(events.published) == 1
    assert (
        _value(
            metrics,
            "jobmanager_job_illegal_moves_total",
            **{"from": "SUBMITTED"},
            trigger="succeed",
        )
        == 1
    )
    assert _transitions(metrics, "RUNNING", "SUCCEEDED", "succeed") == 0


# -- the runner -------------------------------------------------------------------------------


class BlockingEngine(OneCallEngine):
    """Runs until released, then succeeds."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def run(self, note: Note, workspace: Path, variables: Mapping[str, str]) -> NoteRun:
        self.started.set()
        await self.release.wait()
        return NoteRun(paragraphs=())


async def test_runner_gauges_follow_a_job_and_engine_time_is_observed(tmp_path: Path) -> None:
    """In flight and holding the environment while running; both back to 0 once final."""
    home = job_home(tmp_path / "home", TENANT)
    metrics = Metrics()
    mover, _ = _mover(metrics)
    engine = BlockingEngine()
    runner = local_runner(mover, home, engine)

    task = await runner.submit(_submit())
    await asyncio.wait_for(engine.started.wait(), DEADLINE)

    assert _value(metrics, "jobmanager_jobs_in_flight") == 1
    assert _value(metrics, "jobmanager_environments_occupied") == 1
    assert _value(metrics, "jobmanager_job_engine_seconds_count") == 0

    engine.release.set()
    await asyncio.wait_for(task, DEADLINE)

    assert _value(metrics, "jobmanager_jobs_in_flight") == 0
    assert _value(metrics, "jobmanager_environments_occupied") == 0
    assert _value(metrics, "jobmanager_job_engine_seconds_count") == 1
    assert _value(metrics, "jobmanager_jobs_finished_total", status="SUCCEEDED") == 1


# -- the command loop -------------------------------------------------------------------------


class IdleConsumer:
    """Enough of a consumer for handling single records."""

    def assignment(self) -> set[Any]:
        return set()


async def test_dead_letters_are_counted_by_reason(tmp_path: Path) -> None:
    metrics = Metrics()
    mover, _ = _mover(metrics)
    runner = local_runner(mover, LocalHome(tmp_path / "home"), BlockingEngine())
    parked = MemoryDeadLetterPublisher()

    async def caught_up() -> None:
        return None

    loop = CommandLoop(lambda _revoked, _assigned: IdleConsumer(), runner, parked, caught_up)
    partition = TopicPartition("commands", 0)
    await loop._handle(partition, 0, b"job-1", b"not json")
    await loop._handle(partition, 1, b"other-job", _submit().model_dump_json().encode())

    assert [p.reason.split(":")[0] for p in parked.parked] == [
        "invalid command",
        "message key does not match jobId",
    ]
    assert _value(metrics, "jobmanager_dead_letters_total", reason="invalid_command") == 1
    assert _value(metrics, "jobmanager_dead_letters_total", reason="key_mismatch") == 1
    assert _value(metrics, "jobmanager_dead_letters_total", reason="refused") == 0


def test_consumer_lag_keeps_only_assigned_partitions() -> None:
    metrics = Metrics()

    metrics.set_consumer_lag({("commands", 0): 3, ("commands", 1): 0})
    metrics.set_consumer_lag({("commands", 1): 7})

    assert (
        metrics.registry.get_sample_value(
            "jobmanager_consumer_lag", {"topic": "commands", "partition": "0"}
        )
        is None
    )
    assert _value(metrics, "jobmanager_consumer_lag", topic="commands", partition="1") == 7


# -- HTTP -------------------------------------------------------------------------------------


@pytest.fixture
async def gateway_client() -> AsyncIterator[tuple[TestClient[Any, Any], Metrics]]:
    metrics = Metrics()
    store = MemoryProjectionStore()
    gateway = Gateway(
        MemoryCommandPublisher(),
        store,
        Authenticator(AuthSettings(hs256_secret=SECRET)),
        Projection(store).accept,
        probes=Probes(metrics),
    )
    client: TestClient[Any, Any] = TestClient(TestServer(gateway.app()))
    await client.start_server()
    try:
        yield client, metrics
    finally:
        await client.close()


def _requests(metrics: Metrics, method: str, route: str, status: str) -> float:
    value = metrics.registry.get_sample_value(
        "jobmanager_http_requests_total", {"method": method, "route": route, "status": status}
    )
    return 0.0 if value is None else value


async def test_http_requests_are_counted_by_route_pattern_and_status(
    gateway_client: tuple[TestClient[Any, Any], Metrics],
) -> None:
    client, metrics = gateway_client
    token = {"Authorization": f"Bearer {mint(SECRET, TENANT)}"}
    job_route = f"{BASE}/jobs/{{id}}"

    for job_id in ("first-unknown-id", "second-unknown-id"):
        assert (await client.get(f"{BASE}/jobs/{job_id}", headers=token)).status == 404
    assert (await client.get(f"{BASE}/jobs/some-id")).status == 401
    assert (await client.get(f"{BASE}/jobs", headers=token)).status == 200
    assert (await client.get("/no/such/path/123")).status == 404
    assert (await client.delete(f"{BASE}/jobs", headers=token)).status == 405

    assert _requests(metrics, "GET", job_route, "404") == 2
    assert _requests(metrics, "GET", job_route, "401") == 1
    assert _requests(metrics, "GET", f"{BASE}/jobs", "200") == 1
    assert _requests(metrics, "GET", "unmatched", "404") == 1
    assert _requests(metrics, "DELETE", "unmatched", "405") == 1
    histogram = {"method": "GET", "route": job_route}
    count = metrics.registry.get_sample_value(
        "jobmanager_http_request_duration_seconds_count", histogram
    )
    assert count == 3
    exposed = await (await client.get("/metrics")).text()
    assert "unknown-id" not in exposed, "raw paths never become label values"
    assert "/no/such/path" not in exposed
    assert 'route="/api/jobmanager/v3/jobs/{id}"' in exposed


async def test_metrics_endpoint_speaks_prometheus_and_openmetrics(
    gateway_client: tuple[TestClient[Any, Any], Metrics],
) -> None:
    client, _ = gateway_client

    plain = await client.get("/metrics")
    openmetrics = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )

    assert plain.status == 200
    assert plain.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE jobmanager_job_transitions_total counter" in await plain.text()
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await openmetrics.text()).rstrip().endswith("# EOF")


async def test_healthz_and_readyz_need_no_token(
    gateway_client: tuple[TestClient[Any, Any], Metrics],
) -> None:
    client, _ = gateway_client

    health = await client.get("/healthz")
    ready = await client.get("/readyz")

    assert (health.status, await health.json()) == (200, {"status": "ok"})
    assert ready.status == 200
    assert (await ready.json())["status"] == "ready"


# -- readiness --------------------------------------------------------------------------------


class ManualClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_readiness_is_cached_then_rechecked() -> None:
    calls: list[bool] = []
    healthy = [True]

    async def broker() -> CheckResult:
        calls.append(True)
        return CheckResult(healthy[0], "answered" if healthy[0] else "refused")

    clock = ManualClock()
    readiness = Readiness({"broker": broker}, cache_seconds=1.0, clock=clock)

    assert (await readiness.report()).ready
    healthy[0] = False
    clock.now += 0.5
    assert (await readiness.report()).ready, "within the cache period: the cached answer"
    clock.now += 0.6
    report = await readiness.report()

    assert not report.ready
    assert len(calls) == 2
    assert report.body()["failed"] == ["broker"]


async def test_concurrent_probes_share_one_check() -> None:
    calls: list[bool] = []
    gate = asyncio.Event()

    async def slow() -> CheckResult:
        calls.append(True)
        await gate.wait()
        return CheckResult(True, "fine")

    readiness = Readiness({"broker": slow})
    probes = [asyncio.create_task(readiness.report()) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    reports = await asyncio.wait_for(asyncio.gather(*probes), DEADLINE)

    assert all(report.ready for report in reports)
    assert len(calls) == 1


async def test_failing_or_hanging_checks_fail_readiness() -> None:
    async def raises() -> CheckResult:
        raise ConnectionRefusedError("broker is down")

    async def hangs() -> CheckResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    readiness = Readiness(
        {"broker": raises, "metadata": hangs, "projection": lag_check(lambda: 3, 10)},
        check_timeout_seconds=0.05,
    )
    body = (await asyncio.wait_for(readiness.report(), DEADLINE)).body()

    assert body["status"] == "unavailable"
    assert body["failed"] == ["broker", "metadata"]
    checks: dict[str, Any] = body["checks"]  # type: ignore[assignment]
    assert "broker is down" in checks["broker"]["detail"]
    assert "no answer within" in checks["metadata"]["detail"]
    assert checks["projection"] == {
        "ok": True,
        "detail": "3 messages behind",
        "lag": 3,
        "maxLag": 10,
    }


@pytest.mark.parametrize(("lag", "ready"), [(0, True), (1000, True), (1001, False), (None, False)])
async def test_projection_lag_check(lag: int | None, ready: bool) -> None:
    result = await lag_check(lambda: lag, 1000)()

    assert result.ok is ready


async def test_readyz_503_names_the_failed_check_and_retry_after() -> None:
    async def down() -> CheckResult:
        return CheckResult(False, "no broker answered")

    probes = Probes(Metrics(), Readiness({"broker": down, "projection": lag_check(lambda: 0, 5)}))
    client: TestClient[Any, Any] = TestClient(TestServer(probes.app()))
    await client.start_server()
    try:
        ready = await client.get("/readyz")
        body = await ready.json()
        health = await client.get("/healthz")
    finally:
        await client.close()

    assert ready.status == 503
    assert ready.headers["Retry-After"]
    assert body["status"] == "unavailable"
    assert body["failed"] == ["broker"]
    assert body["checks"]["broker"] == {"ok": False, "detail": "no broker answered"}
    assert health.status == 200


async def test_projection_lag_gauge_reads_at_scrape_time() -> None:
    metrics = Metrics()
    lag: list[int | None] = [None]
    metrics.follow_projection_lag(lambda: lag[0])

    assert _value(metrics, "jobmanager_projection_lag") == -1
    lag[0] = 12
    assert _value(metrics, "jobmanager_projection_lag") == 12
