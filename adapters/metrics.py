"""Observability: Prometheus metrics, the HTTP metrics middleware and the health/readiness probes.

Every process builds one :class:`Metrics` with its own ``CollectorRegistry`` (never the global
default), so tests can build several side by side. The worker's code calls the semantic methods
(``transition``, ``dead_lettered``, ...); only this module knows Prometheus.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder

from schemas.status import JobStatus
from statemachine import FINAL_STATUSES, TRANSITIONS

NAMESPACE = "jobmanager"
# The ``from`` label of a job's first event (it has no previous status).
CREATED_FROM = "none"
CREATE_TRIGGER = "submit"
DeadLetterReason = Literal["invalid_command", "key_mismatch", "refused"]
DEAD_LETTER_REASONS: tuple[DeadLetterReason, ...] = get_args(DeadLetterReason)
UNMATCHED_ROUTE = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Jobs may run up to a day (``maximumExecutionTimeInSeconds`` defaults to 86,400).
JOB_SECONDS_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
RETRY_AFTER_SECONDS = "5"


class Metrics:
    """The metrics of one process, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.http_requests = Counter(
            "http_requests",
            "HTTP requests answered, by route pattern (not the raw path) and status.",
            ("method", "route", "status"),
            namespace=NAMESPACE,
            registry=r,
        )
        self.http_latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route pattern.",
            ("method", "route"),
            namespace=NAMESPACE,
            registry=r,
        )
        self.transitions = Counter(
            "job_transitions",
            "Job status changes published, by edge of the transition table and its trigger "
            f"(from={CREATED_FROM!r} for a job's first event).",
            ("from", "to", "trigger"),
            namespace=NAMESPACE,
            registry=r,
        )
        self.illegal_moves = Counter(
            "job_illegal_moves",
            "Moves the state machine refused (never published), by status and trigger.",
            ("from", "trigger"),
            namespace=NAMESPACE,
            registry=r,
        )
        self.jobs_finished = Counter(
            "jobs_finished",
            "Jobs that reached a final status, by that status.",
            ("status",),
            namespace=NAMESPACE,
            registry=r,
        )
        self.job_duration = Histogram(
            "job_duration_seconds",
            "Time from a job's creation to its final status, by that status.",
            ("status",),
            namespace=NAMESPACE,
            registry=r,
            buckets=JOB_SECONDS_BUCKETS,
        )
        self.engine_time = Histogram(
            "job_engine_seconds",
            "Time a job's note ran in the execution engine (what the time limit counts).",
            namespace=NAMESPACE,
            registry=r,
            buckets=JOB_SECONDS_BUCKETS,
        )
        self.jobs_in_flight = Gauge(
            "jobs_in_flight",
            "Jobs this worker is running (waiting for an environment or a slot included).",
            namespace=NAMESPACE,
            registry=r,
        )
        self.environments_occupied = Gauge(
            "environments_occupied",
            "Jobs of this worker holding their configuration's environment.",
            namespace=NAMESPACE,
            registry=r,
        )
        self.dead_letters = Counter(
            "dead_letters",
            "Commands parked on the dead-letter topic, by reason.",
            ("reason",),
            namespace=NAMESPACE,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "consumer_lag",
            "Records of an assigned partition not yet read by this worker (highwater - position).",
            ("topic", "partition"),
            namespace=NAMESPACE,
            registry=r,
        )
        self.projection_lag = Gauge(
            "projection_lag",
            "Events on the broker not yet applied to this process's projection (-1: unknown).",
            namespace=NAMESPACE,
            registry=r,
        )
        self.projection_lag.set(-1)
        self._lag_series: set[tuple[str, str]] = set()
        # Known series start at zero, so rates and absent edges are visible from the start.
        for move in TRANSITIONS:
            self.transitions.labels(move.source.value, move.dest.value, move.trigger)
        self.transitions.labels(CREATED_FROM, JobStatus.SUBMITTED.value, CREATE_TRIGGER)
        for status in FINAL_STATUSES:
            self.jobs_finished.labels(status.value)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)

    # -- jobs -----------------------------------------------------------------------------

    def transition(
        self,
        previous: JobStatus | None,
        status: JobStatus,
        trigger: str,
        created: datetime,
        occurred: datetime,
    ) -> None:
        """A published status change; a final one also counts the job and its duration."""
        source = CREATED_FROM if previous is None else previous.value
        self.transitions.labels(source, status.value, trigger).inc()
        if status in FINAL_STATUSES:
            self.jobs_finished.labels(status.value).inc()
            seconds = max(0.0, (occurred - created).total_seconds())
            self.job_duration.labels(status.value).observe(seconds)

    def illegal_move(self, current: JobStatus, trigger: str) -> None:
        self.illegal_moves.labels(current.value, trigger).inc()

    def engine_timer(self) -> AbstractContextManager[Any]:
        """Observes the engine time of the block (however it ends)."""
        return self.engine_time.time()

    def holding_environment(self) -> AbstractContextManager[Any]:
        """Counts the block as a job holding its configuration's environment."""
        return self.environments_occupied.track_inprogress()

    def count_in_flight(self, count: Callable[[], int]) -> None:
        """The in-flight gauge reads ``count()`` at every scrape."""
        self.jobs_in_flight.set_function(lambda: float(count()))

    # -- messaging ------------------------------------------------------------------------

    def dead_lettered(self, reason: DeadLetterReason) -> None:
        self.dead_letters.labels(reason).inc()

    def set_consumer_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """The lag of every assigned partition; partitions no longer assigned are dropped."""
        current = {(topic, str(partition)): lag for (topic, partition), lag in lags.items()}
        for gone in self._lag_series - current.keys():
            self.consumer_lag.remove(*gone)
        for labels, lag in current.items():
            self.consumer_lag.labels(*labels).set(lag)
        self._lag_series = set(current)

    def follow_projection_lag(self, lag: Callable[[], int | None]) -> None:
        """The projection-lag gauge reads ``lag()`` at every scrape (None: unknown, -1)."""

        def read() -> float:
            value = lag()
            return -1.0 if value is None else float(value)

        self.projection_lag.set_function(read)

    # -- HTTP -----------------------------------------------------------------------------

    def request_recorder(self) -> Callable[[web.Request, int, float], None]:
        """``record(request, status, seconds)``: counts a request by method, route pattern and
        status answered, and observes its time.

        The labelled children are looked up once per series rather than per request
        (``labels()`` validates and locks every call; series are few: methods x route patterns
        x statuses), one dict lookup finding both.
        """
        requests, latency = self.http_requests, self.http_latency
        series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

        def record(request: web.Request, status: int, seconds: float) -> None:
            method = request.method if request.method in _METHODS else "other"
            key = (method, route_pattern(request), status)
            children = series.get(key)
            if children is None:
                children = series[key] = (
                    requests.labels(method, key[1], str(status)),
                    latency.labels(method, key[1]),
                )
            children[0].inc()
            children[1].observe(seconds)

        return record

    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        """Counts every request by method, route pattern and final status, and times it.

        Put it first (outermost), so it sees the status the error middleware answered with.
        The gateway records through its one answering middleware instead (``request_recorder``).
        """
        record = self.request_recorder()

        @web.middleware
        async def metrics_middleware(
            request: web.Request,
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        ) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as http:
                status = http.status
                raise
            finally:
                record(request, status, time.perf_counter() - started)

        return metrics_middleware

    async def exposition(self, request: web.Request) -> web.Response:
        """``GET /metrics``: the registry in the format the scraper asked for."""
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(self.registry), headers={"Content-Type": content_type})


def route_pattern(request: web.Request) -> str:
    """The matched route's pattern (``/jobs/{id}``), never the raw path, so ids add no series."""
    resource = request.match_info.route.resource
    return UNMATCHED_ROUTE if resource is None else resource.canonical


# -- probes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    detail: str
    facts: Mapping[str, object] = field(default_factory=dict)


Check = Callable[[], Awaitable[CheckResult]]


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    checks: Mapping[str, CheckResult]

    @property
    def ready(self) -> bool:
        return all(result.ok for result in self.checks.values())

    def body(self) -> dict[str, object]:
        return {
            "status": "ready" if self.ready else "unavailable",
            "failed": [name for name, result in self.checks.items() if not result.ok],
            "checks": {
                name: {"ok": result.ok, "detail": result.detail, **result.facts}
                for name, result in self.checks.items()
            },
        }


class Readiness:
    """Named checks, run together and cached for ``cache_seconds`` so probes cannot hammer the
    broker; concurrent probes share one run. A check that raises or overruns fails."""

    def __init__(
        self,
        checks: Mapping[str, Check],
        *,
        cache_seconds: float = 1.0,
        check_timeout_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._checks = dict(checks)
        self._cache_seconds = cache_seconds
        self._timeout = check_timeout_seconds
        self._clock = clock
        self._lock = asyncio.Lock()
        self._last: tuple[float, ReadinessReport] | None = None

    async def report(self) -> ReadinessReport:
        async with self._lock:
            now = self._clock()
            if self._last is not None and now - self._last[0] < self._cache_seconds:
                return self._last[1]
            names = list(self._checks)
            results = await asyncio.gather(*(self._run(self._checks[name]) for name in names))
            report = ReadinessReport(dict(zip(names, results, strict=True)))
            self._last = (self._clock(), report)
            return report

    async def _run(self, check: Check) -> CheckResult:
        try:
            async with asyncio.timeout(self._timeout):
                return await check()
        except TimeoutError:
            return CheckResult(False, f"no answer within {self._timeout:g} s")
        except Exception as failure:  # noqa: BLE001 - a failing check is the answer
            return CheckResult(False, f"failed: {failure!r}")


def lag_check(lag: Callable[[], int | None], max_lag: int) -> Check:
    """Ready while ``lag()`` (messages not yet applied) is known and at most ``max_lag``."""

    async def check() -> CheckResult:
        value = lag()
        facts = {"lag": value, "maxLag": max_lag}
        if value is None:
            return CheckResult(False, "lag unknown: no fetch answered yet", facts)
        if value > max_lag:
            return CheckResult(False, f"{value} messages behind (more than {max_lag})", facts)
        return CheckResult(True, f"{value} messages behind", facts)

    return check


class Probes:
    """``/healthz``, ``/readyz`` and ``/metrics`` for an aiohttp application."""

    def __init__(self, metrics: Metrics, readiness: Readiness | None = None) -> None:
        self.metrics = metrics
        self.readiness = readiness if readiness is not None else Readiness({})

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/healthz", self.health)
        app.router.add_get("/readyz", self.ready)
        app.router.add_get("/metrics", self.metrics.exposition)

    async def health(self, _: web.Request) -> web.Response:
        """The process answers: always 200."""
        return web.json_response({"status": "ok"})

    async def ready(self, _: web.Request) -> web.Response:
        report = await self.readiness.report()
        if report.ready:
            return web.json_response(report.body())
        return web.json_response(
            report.body(), status=503, headers={"Retry-After": RETRY_AFTER_SECONDS}
        )

    def app(self, middlewares: Sequence[Any] = ()) -> web.Application:
        """A small application of the probes alone (the worker's metrics port)."""
        app = web.Application(middlewares=[self.metrics.middleware(), *middlewares])
        self.add_routes(app)
        return app
