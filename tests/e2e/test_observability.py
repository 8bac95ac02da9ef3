"""/metrics, /healthz and /readyz of the real processes over a real broker.

The readiness test runs a broker of its own (``deploy/kafka``), so it can stop and restart it
without disturbing the session's broker.
"""

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FIXTURES
from tests.kafka_broker import KAFKA_DEPLOY, free_port
from tests.service import (
    JOBMANAGER,
    Response,
    Service,
    fresh_settings,
    running_service,
    settings_env,
)
from worker.settings import Settings

pytestmark = pytest.mark.kafka

NOTES = FIXTURES / "notes"
JOBS = "/api/jobmanager/v3/jobs"
POLL_SECONDS = 0.2
T = TypeVar("T")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Scrape:
    text: str
    samples: Samples

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {labels: value for (n, labels), value in self.samples.items() if n == name}


def _scrape(base_url: str) -> Scrape:
    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as answer:
        assert answer.status == 200
        text = answer.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(text, samples)


def _eventually(what: str, probe: Callable[[], T | None], timeout: float, log: Path) -> T:
    """Poll ``probe`` until it returns something; fail with the service log at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s\n{log.read_text()[-4000:]}")
        time.sleep(POLL_SECONDS)


def _run_success(service: Service) -> str:
    token = service.cli("token")
    created = service.request("POST", JOBS, service.job_body(NOTES / "success.zpln"), token)
    assert created.status == 201, created.body
    final = service.wait_for_status(created.body["id"], token, {"SUCCEEDED", "FAILED", "STOPPED"})
    assert final["status"] == "SUCCEEDED", final["message"]
    job_id: str = final["id"]
    return job_id


def _edge(scrape: Scrape, source: str, dest: str, trigger: str) -> float | None:
    return scrape.value(
        "jobmanager_job_transitions_total", **{"from": source, "to": dest, "trigger": trigger}
    )


SUCCESS_EDGES = [
    ("none", "SUBMITTED", "submit"),
    ("SUBMITTED", "STARTING", "start"),
    ("STARTING", "RUNNING", "run"),
    ("RUNNING", "SUCCEEDED", "succeed"),
]


def _check_success_counted(scrape: Scrape) -> None:
    for edge in SUCCESS_EDGES:
        assert _edge(scrape, *edge) == 1, edge
    assert _edge(scrape, "RUNNING", "FAILED", "fail") == 0
    assert scrape.value("jobmanager_jobs_finished_total", status="SUCCEEDED") == 1
    assert scrape.value("jobmanager_jobs_finished_total", status="FAILED") == 0
    assert scrape.value("jobmanager_job_duration_seconds_count", status="SUCCEEDED") == 1
    assert scrape.value("jobmanager_job_engine_seconds_count") == 1
    assert scrape.value("jobmanager_jobs_in_flight") == 0
    assert scrape.value("jobmanager_environments_occupied") == 0


def _succeeded_counted(url: str) -> Callable[[], Scrape | None]:
    def probe() -> Scrape | None:
        # The job's task ends a moment after its final move (it still releases its claim).
        scrape = _scrape(url)
        done = scrape.value("jobmanager_jobs_finished_total", status="SUCCEEDED")
        idle = scrape.value("jobmanager_jobs_in_flight") == 0
        return scrape if done == 1 and idle else None

    return probe


def test_metrics_count_the_succeeded_job_and_its_transitions(
    settings: Settings, tmp_path: Path
) -> None:
    """`serve`: one registry on the gateway port shows the gateway's and the worker's metrics."""
    log = tmp_path / "serve.log"
    with running_service(settings, log) as service:
        job_id = _run_success(service)

        scrape = _eventually("the job counted", _succeeded_counted(service.url), 30, log)

        _check_success_counted(scrape)
        job_route = f"{JOBS}/{{id}}"
        assert (
            scrape.value("jobmanager_http_requests_total", method="POST", route=JOBS, status="201")
            == 1
        )
        assert (
            scrape.value(
                "jobmanager_http_requests_total", method="GET", route=job_route, status="200"
            )
            or 0
        ) >= 1
        assert job_id not in scrape.text, "job ids never become label values"
        lags = _eventually(
            "the lag of every commands partition",
            lambda: _commands_lag(service.url, settings),
            30,
            log,
        )
        assert lags == dict.fromkeys(range(settings.topic_partitions), 0.0)
        ready = service.request("GET", "/readyz")
        assert ready.status == 200, ready.body
        assert ready.body["status"] == "ready"
        assert ready.body["checks"]["broker"]["ok"] is True
        assert ready.body["checks"]["projection"]["lag"] <= settings.ready_max_lag


def _commands_lag(url: str, settings: Settings) -> dict[int, float] | None:
    lags = {
        int(dict(labels)["partition"]): value
        for labels, value in _scrape(url).series("jobmanager_consumer_lag").items()
        if dict(labels)["topic"] == settings.commands_topic
    }
    return lags if len(lags) == settings.topic_partitions else None


@contextmanager
def _worker_process(settings: Settings, log: Path, metrics_port: int) -> Iterator[str]:
    """``jobmanager worker`` with its probes on ``metrics_port``; yields their base URL."""
    env = settings_env(settings, JOBMANAGER_WORKER_METRICS_PORT=str(metrics_port))
    with log.open("w") as sink:
        process = subprocess.Popen(
            [str(JOBMANAGER), "worker"], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{metrics_port}"
    try:

        def healthy() -> bool | None:
            assert process.poll() is None, f"worker exited:\n{log.read_text()[-4000:]}"
            return True if _status(url + "/healthz") == 200 else None

        _eventually("the worker's /healthz", healthy, 90, log)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def test_worker_serves_probes_and_its_own_metrics(settings: Settings, tmp_path: Path) -> None:
    """`worker` + `gateway`: each process has its own registry; the job counts at the worker."""
    worker_log = tmp_path / "worker.log"
    with (
        _worker_process(settings, worker_log, free_port()) as worker,
        running_service(settings, tmp_path / "gateway.log", "gateway") as gateway,
    ):
        _run_success(gateway)

        scrape = _eventually("the job counted", _succeeded_counted(worker), 30, worker_log)

        _check_success_counted(scrape)
        gateway_scrape = _scrape(gateway.url)
        assert gateway_scrape.value("jobmanager_jobs_finished_total", status="SUCCEEDED") == 0
        assert (
            gateway_scrape.value(
                "jobmanager_http_requests_total", method="POST", route=JOBS, status="201"
            )
            == 1
        )
        assert _status(worker + "/readyz") == 200
        assert _status(worker + "/healthz") == 200


# -- readiness while the broker is away --------------------------------------------------------


def _kafka(script: str, env: Mapping[str, str], *args: str) -> None:
    done = subprocess.run(
        ["bash", str(KAFKA_DEPLOY / script), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A broker for this test alone; yields the env that up.sh/down.sh need to address it."""
    env = {
        **os.environ,
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_DATA_DIR": str(tmp_path / "kafka"),
    }
    _kafka("up.sh", env)
    try:
        yield env
    finally:
        _kafka("down.sh", env, "--purge")


def _readyz(service: Service, status: int) -> Callable[[], Response | None]:
    """A probe: the /readyz answer once it has ``status``."""

    def probe() -> Response | None:
        try:
            answer = service.request("GET", "/readyz")
        except OSError:
            return None
        return answer if answer.status == status else None

    return probe


def test_readyz_is_503_while_the_broker_is_down(own_broker: dict[str, str], tmp_path: Path) -> None:
    settings = fresh_settings(f"127.0.0.1:{own_broker['KAFKA_PORT']}", tmp_path / "home")
    log = tmp_path / "serve.log"
    with running_service(settings, log) as service:
        ready = _eventually("/readyz 200 at start", _readyz(service, 200), 30, log)
        assert ready.body["failed"] == []

        _kafka("down.sh", own_broker)
        down = _eventually("/readyz 503 with the broker down", _readyz(service, 503), 60, log)

        assert down.body["status"] == "unavailable"
        assert down.body["failed"] == ["broker"]
        assert down.body["checks"]["broker"]["ok"] is False
        assert down.headers["Retry-After"]
        assert _status(service.url + "/healthz") == 200, "alive all the same"

        _kafka("up.sh", own_broker)  # the same data dir and ports
        back = _eventually("/readyz 200 with the broker back", _readyz(service, 200), 90, log)

        assert back.body["status"] == "ready"
